"""evaluation.tuning: the search sees the training part only; the report and its TOML fragment."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

import pytest

from evaluation import tuning
from evaluation.splits import parse_split
from evaluation.tuning import Candidate
from indexer.settings import IndexSettings
from indicators.settings import TrainSettings
from query.settings import QuerySettings

SMALL_GRID = {"scoring": ("terms", "weights:log"), "prior_exponent": (0.0, 0.5), "min_llr": (0.0, 1.0)}


def write_events(path) -> None:
    """24 users in two taste clusters; each user's newest like is a poison item `T<u>` that
    exists only there (with a rate at the same instant), so under leave-last:1 it is the
    test part and must never reach the search."""
    t0 = datetime(2022, 1, 1, tzinfo=UTC)
    rows = ["user,event,item,time"]
    for u in range(24):
        cluster = "a" if u % 2 else "b"
        items = [f"{cluster}{(u + j) % 6}" for j in range(5)]
        for d, item in enumerate(items):
            t = (t0 + timedelta(days=d, minutes=u)).isoformat()
            rows += [f"u{u},like,{item},{t}", f"u{u},rate,{item},{t}"]
        t = (t0 + timedelta(days=10, minutes=u)).isoformat()
        rows += [f"u{u},like,T{u},{t}", f"u{u},rate,T{u},{t}"]
    path.write_text("\n".join(rows) + "\n")


def test_candidate_maps_to_settings():
    c = Candidate("weights:saturation", 0.25, 0.9, 50, 10.0, 100, (("rate", 0.5), ("tag", 0.0)))
    q = c.query_settings(QuerySettings(), "like")
    assert (q.scoring, q.weight_function, q.weight_parameter) == ("weights", "saturation", tuning.SATURATION_PIVOT)
    assert (q.history_decay, q.max_query_events, q.popularity_prior) == (0.9, 50, True)
    assert q.indicators == {"like": 1.0, "rate": 0.5}  # boost 0: tag left out
    assert c.index_settings(IndexSettings()).prior_exponent == 0.25
    assert c.with_setting("boost:tag", 0.25).boosts == (("rate", 0.5), ("tag", 0.25))
    assert set(c.dimensions()) == {*tuning.GRID, "boost:rate", "boost:tag"}
    assert c.as_dict()["boosts"] == {"rate": 0.5, "tag": 0.0}
    train = TrainSettings(primary="like", indicators=[{"name": "like", "min_llr": 10.0}, {"name": "rate"}])
    index = IndexSettings(prior_exponent=0.5)
    query = QuerySettings(scoring="weights", weight_function="log", history_decay=0.95, max_query_events=200)
    # unconfigured boosts: as served by default (secondary_boost 0.5)
    assert Candidate.of(train, index, query) == Candidate("weights:log", 0.5, 0.95, 200, 10.0, 100, (("rate", 0.5),))
    query = QuerySettings(indicators={"like": 1.0, "rate": 0.25})
    assert Candidate.of(train, index, query).boosts == (("rate", 0.25),)


def test_search_climbs_each_setting_and_keeps_held_ones():
    start = Candidate("terms", 0.0, 0.9, 100, 0.0, 50, (("rate", 1.0),))
    # the best point of this objective: weights:log, prior 0.5, history_decay 1, boost 0.25
    target = {"scoring": "weights:log", "prior_exponent": 0.5, "history_decay": 1.0}

    def objective(c: Candidate) -> float:
        return sum(getattr(c, k) == v for k, v in target.items()) + (c.boosts[0][1] == 0.25)

    best = tuning.search(objective, start, lambda line: None, rounds=3)
    assert (best.scoring, best.prior_exponent, best.history_decay, best.boosts) == (
        "weights:log", 0.5, 1.0, (("rate", 0.25),))
    assert (best.max_query_events, best.min_llr, best.max_correlators) == (100, 0.0, 50)  # ties keep the start
    held = tuning.search(objective, start, lambda line: None, rounds=3, hold=("history_decay", "boost:rate"))
    assert (held.scoring, held.prior_exponent, held.history_decay, held.boosts) == (
        "weights:log", 0.5, 0.9, (("rate", 1.0),))


@pytest.mark.spark
def test_no_test_event_reaches_the_search(spark, tmp_path, monkeypatch):
    events = tmp_path / "events.csv"
    write_events(events)
    monkeypatch.setattr(tuning, "GRID", SMALL_GRID)
    monkeypatch.setattr(tuning, "BOOSTS", (0.0, 1.0))
    prepared = []
    real = tuning.prepare_events

    def spy(*args, **kwargs):
        prepared.append(real(*args, **kwargs))
        return prepared[-1]

    monkeypatch.setattr(tuning, "prepare_events", spy)
    train = TrainSettings(primary="like", indicators=[{"name": "like"}, {"name": "rate"}])
    lines: list[str] = []
    report = tuning.tune(spark, [str(events)], train, parse_split("leave-last:1"), (1, 3), rounds=1,
                         workdir=tmp_path / "work", on_stage=lines.append)

    validation, test = prepared
    assert validation.workdir == tmp_path / "work" / "validation"
    # the validation split is leave-last:1 of the training part: each user's 5th like
    assert len(validation.relevant) == 24
    poison = [f"T{u}" for u in range(24)]
    for user in validation.relevant:
        seen_items = set(validation.relevant[user]) | set(validation.seen[user])
        seen_items |= {i for items in validation.histories[user].values() for i in items}
        assert not seen_items & set(poison), user
    text = "".join(p.read_text() for p in (validation.train_input).glob("part-*"))
    assert "u0" in text and not any(f'"T{u}"' in text for u in range(24))
    # every model the search trained: no poison item anywhere in it
    for model in (tmp_path / "work" / "validation").glob("model-llr*"):
        import pyarrow.parquet as pq

        for part in ("indicators", "rankings"):
            table = pq.ParquetDataset(sorted((model / part).glob("*.parquet"))).read()
            assert "T1" not in str(table.to_pydict()), (model, part)
    # the test part is the poison: it is what the final report scores
    assert all(rel == {f"T{u[1:]}"} for u, rel in test.relevant.items())

    assert report.k == 1 and report.validation == {"split": "leave-last:1"}
    assert {t.candidate for t in report.trials} >= {report.default, report.chosen}
    assert report.results["validation"]["tuned"][1].map >= report.results["validation"]["defaults"][1].map
    assert set(report.results["test"]) == {"defaults", "tuned"}
    assert any(line.startswith("round 1 scoring=") for line in lines)
    config = tomllib.loads(report.toml())
    assert config["train"]["primary"] == "like"
    assert [i["name"] for i in config["train"]["indicators"]] == ["like", "rate"]
    assert config["index"]["prior_exponent"] == report.chosen.prior_exponent
    assert config["query"]["history_decay"] == report.chosen.history_decay
    data = report.to_json()
    assert data["chosen"] == report.chosen.as_dict() and len(data["trials"]) == len(report.trials)
    text = tuning.format_tuning(report)
    assert "validation" in text and "test" in text and "prior_exponent" in text


@pytest.mark.spark
def test_random_validation_split_holds_out_an_eighth_of_the_training_part_only(spark, tmp_path):
    import json

    from pyspark.sql import functions as F

    from evaluation.splits import read_checked, split_events

    events = tmp_path / "events.csv"
    rows = ["user,event,item,time"]
    for u in range(12):
        rows += [f"u{u},rate,m{(u + j) % 30},2022-01-{j + 1:02d}T00:00:00Z" for j in range(24)]
    events.write_text("\n".join(rows) + "\n")
    train = TrainSettings(primary="rate", indicators=[{"name": "rate"}])
    split = parse_split("random:0.25", seed=7)
    user_events, item_events = read_checked(spark, [str(events)], train)
    marked, _ = split_events(user_events, split, "rate")
    test = {(r["user"], r["item"]) for r in marked.where(F.col("test")).collect()}
    assert len(test) == 12 * 6  # 24 - round(0.75 * 24) per user

    validation = tuning.prepare_validation(spark, user_events, item_events, train, split, tmp_path / "v")
    assert str(validation.split) == "random:0.125" and validation.split.seed == 7
    for user, relevant in validation.relevant.items():
        # 18 training items per user: 18 - round(0.875 * 18) = 2 held out for validation
        assert len(relevant) == 2, user
        history = set(validation.histories[user]["rate"])
        assert len(history) == 16 and not history & relevant
        assert not {(user, i) for i in relevant | history} & test
    lines = [json.loads(x) for p in validation.train_input.glob("part-*") for x in p.read_text().splitlines()]
    pairs = {(x["entityId"], x["targetEntityId"]) for x in lines if x["entityType"] == "user"}
    assert len(pairs) == 12 * 16 and not pairs & test
