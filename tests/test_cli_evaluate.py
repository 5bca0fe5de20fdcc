"""`cooccur evaluate`: one real run on a small event file, and its user errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from cli import main


def write_events(path) -> None:
    """Two clusters of 3 items; 8 users each like (and rate) all 3 of theirs, one a day, the
    last being item u mod 3; a user with one like has no training history."""
    t0 = datetime(2021, 3, 1, tzinfo=UTC)
    rows = ["user,event,item,time"]
    for u in range(8):
        cluster = "p" if u % 2 else "q"
        for d, i in enumerate((u + 1 + j) % 3 for j in range(3)):
            t = (t0 + timedelta(days=d, minutes=u)).isoformat()
            rows += [f"u{u},like,{cluster}{i},{t}", f"u{u},rate,{cluster}{i},{t}"]
    rows.append(f"new,like,p0,{t0.isoformat()}")
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.spark
def test_evaluate_prints_a_table_and_writes_json(spark, tmp_path):
    events = tmp_path / "events.csv"
    write_events(events)
    out, chart = tmp_path / "report" / "eval.json", tmp_path / "report" / "eval.png"
    result = CliRunner().invoke(main, [
        "evaluate", str(events), "--split", "leave-last:1", "-k", "1", "-k", "3",
        "--primary", "like", "--indicator", "like", "--indicator", "rate", "--out", str(out),
        "--plot", str(chart),
    ])
    assert result.exit_code == 0, result.output
    # the chart has k = 1..20; the table and the JSON keep the asked k
    assert chart.read_bytes()[:4] == b"\x89PNG" and f"wrote {chart}" in result.stderr
    stdout = result.stdout
    assert "8 evaluated of 9" in stdout and "1 no training history" in stdout
    rows = {line.split()[0] + "@" + line.split()[1]: line.split() for line in stdout.splitlines()
            if line.startswith(("popularity", "primary/", "all/"))}
    assert sorted(rows) == sorted(f"{v}@{k}" for v in ("popularity", "primary/ours", "primary/ur",
                                                        "all/ours", "all/ur") for k in (1, 3))
    # each user's only unseen item of their cluster is the held-out one: first for every variant
    for v in ("primary/ours", "primary/ur", "all/ours", "all/ur"):
        assert rows[f"{v}@1"][2] == "1.0000"  # precision@1
    data = json.loads(out.read_text())
    assert data["k"] == [1, 3] and data["primary"] == "like" and data["indicators"] == ["like", "rate"]
    assert data["users"] == {"test": 9, "evaluated": 8,
                             "skipped": {"no held-out primary items": 0, "no training history": 1}}
    by_name = {v["name"]: v for v in data["variants"]}
    assert by_name["all/ours"]["metrics"]["3"]["recall"] == 1.0
    assert by_name["all/ours"]["queries"] == 8
    assert set(data["timings"]) == {"split", "train", "index", "queries"}


@pytest.mark.parametrize("args, message", [
    (["--split", "nope"], "--split 'nope': unknown split"),
    (["--split", "random:2"], "between 0 and 1"),
    (["--users", "0"], "--users 0"),
])
def test_evaluate_bad_options_fail_cleanly(tmp_path, args, message):
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "x.csv"), *args])
    assert result.exit_code == 1
    assert "Error:" in result.output and message in result.output
    assert "Traceback" not in result.output


@pytest.mark.spark
def test_evaluate_missing_input_fails_cleanly(spark, tmp_path):
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "missing.csv"), "--primary", "like"])
    assert result.exit_code == 1
    assert "Error: no input at" in result.output


def import_events(tmp_path):
    """write_events' rows in an event store (`cooccur events import`); returns the store's path."""
    events, store = tmp_path / "events.csv", tmp_path / "store" / "events.db"
    write_events(events)
    result = CliRunner().invoke(main, ["events", "import", str(events), "--events", str(store)])
    assert result.exit_code == 0, result.output
    return store


@pytest.mark.spark
def test_evaluate_from_store_scores_the_stored_events(spark, tmp_path):
    store = import_events(tmp_path)
    result = CliRunner().invoke(main, [
        "evaluate", "--from-store", "--events", str(store), "--split", "leave-last:1", "-k", "1",
        "--primary", "like", "--indicator", "like", "--indicator", "rate", "--json",
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # the same users and results as the file itself gives (test_evaluate_prints_a_table_and_writes_json)
    assert data["users"] == {"test": 9, "evaluated": 8,
                             "skipped": {"no held-out primary items": 0, "no training history": 1}}
    # each user: 4 training events, 2 test (the last like and its rating); "new": its one like
    assert data["events"] == {"train_events": 8 * 4, "test_events": 8 * 2 + 1}
    by_name = {v["name"]: v for v in data["variants"]}
    assert by_name["all/ours"]["metrics"]["1"]["precision"] == 1.0


def assert_missing_store_fails_cleanly(command: str, tmp_path, monkeypatch) -> None:
    """`cooccur COMMAND --from-store` without a store: Error + hint, exit 1, nothing created."""
    monkeypatch.chdir(tmp_path)  # the default store is ./cooccur-data/events.db
    result = CliRunner().invoke(main, [command, "--from-store", "--split", "leave-last:1"])
    assert result.exit_code == 1
    assert "Error: cooccur-data/events.db: no event store there" in result.stderr
    assert "Hint: store events first (`cooccur events import FILE`)" in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_evaluate_from_a_missing_store_fails_cleanly_and_creates_nothing(tmp_path, monkeypatch):
    assert_missing_store_fails_cleanly("evaluate", tmp_path, monkeypatch)
