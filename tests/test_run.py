"""evaluation.run: the report's table and JSON; the run refuses a split without test users."""

from __future__ import annotations

import json

import pytest

from evaluation.errors import EvaluationError
from evaluation.measures import Metrics
from evaluation.run import EvaluationReport, checked_ks, format_table, work_directory
from evaluation.splits import SKIP_NO_HISTORY, parse_split
from evaluation.variants import Variant, VariantResult


def test_format_table_and_json(tmp_path):
    m = {10: Metrics(10, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 7)}
    report = EvaluationReport(
        split={"split": "time:2018-01-01", "cut": "2018-01-01T00:00:00Z", "seed": 0}, primary="like",
        indicators=["like"], ks=[10], users={"test": 9, "evaluated": 7, "skipped": {SKIP_NO_HISTORY: 2}},
        catalogue=50, events={"train_events": 90, "test_events": 10},
        variants=[VariantResult("primary/ours", ["like"], "ours", m, 0.07, 7)], timings={"train": 1.0},
    )
    text = format_table(report)
    assert "7 evaluated of 9" in text and "2 no training history" in text
    row = next(line for line in text.splitlines() if line.startswith("primary/ours"))
    assert row.split() == ["primary/ours", "10", "0.1000", "0.2000", "0.3000", "0.4000", "0.5000",
                           "0.6000", "10.00"]
    data = json.loads(json.dumps(report.to_json()))
    assert data["variants"][0]["metrics"]["10"]["map"] == 0.3 and data["k"] == [10]


def test_checked_ks():
    assert checked_ks([20, 10, 10, 1]) == [1, 10, 20]
    for bad in ([], [0, 10]):
        with pytest.raises(EvaluationError, match="k must be >= 1"):
            checked_ks(bad)


def test_work_directory_keeps_a_given_one_and_removes_its_own(tmp_path):
    with work_directory(tmp_path / "given" / "work", "x-") as given:
        (given / "f").write_text("kept")
    assert (tmp_path / "given" / "work" / "f").read_text() == "kept"
    with work_directory(None, "cooccur-test-") as own:
        (own / "f").write_text("gone")
        assert own.name.startswith("cooccur-test-")
    assert not own.exists()


@pytest.mark.spark
def test_evaluate_refuses_a_split_without_test_users(spark, tmp_path):
    from evaluation.run import evaluate
    from indicators.settings import TrainSettings

    events = tmp_path / "events.csv"
    events.write_text("user,event,item,time\nu1,like,a,2020-01-01T00:00:00Z\nu1,like,b,2020-01-02T00:00:00Z\n")
    with pytest.raises(EvaluationError, match="no user has both"):
        evaluate(spark, [str(events)], TrainSettings(primary="like"), parse_split("time:2030-01-01"),
                 workdir=tmp_path / "work", variants=[Variant("popularity", ())])
