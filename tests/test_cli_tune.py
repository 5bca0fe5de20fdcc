"""`cooccur tune`: one real run on a small event file (a reduced grid), and its user errors."""

from __future__ import annotations

import json
import tomllib

import pytest
from click.testing import CliRunner
from test_cli_evaluate import assert_missing_store_fails_cleanly, import_events, write_events

from cli import main
from evaluation import tuning


@pytest.mark.spark
def test_tune_prints_the_choice_and_writes_toml(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "GRID", {"prior_exponent": (0.0, 0.5), "history_decay": (1.0, 0.9)})
    events = tmp_path / "events.csv"
    write_events(events)
    toml_path, out = tmp_path / "tuned.toml", tmp_path / "tune.json"
    result = CliRunner().invoke(main, [
        "tune", str(events), "--split", "leave-last:1", "-k", "3", "--primary", "like",
        "--indicator", "like", "--indicator", "rate", "--rounds", "1", "-o", str(toml_path), "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "settings chosen on leave-last:1 of its training part" in result.stdout
    assert "round 1 prior_exponent=" in result.stderr  # progress on stderr
    config = tomllib.loads(toml_path.read_text())
    assert set(config) == {"train", "index", "query"}
    data = json.loads(out.read_text())
    assert config["query"]["history_decay"] == data["chosen"]["history_decay"]
    assert set(data["results"]) == {"validation", "test"}


@pytest.mark.parametrize("args, message", [
    (["--split", "nope"], "--split 'nope': unknown split"),
    (["--rounds", "0"], "--rounds 0"),
])
def test_tune_bad_options_fail_cleanly(tmp_path, args, message):
    result = CliRunner().invoke(main, ["tune", str(tmp_path / "x.csv"), *args])
    assert result.exit_code == 1
    assert "Error:" in result.output and message in result.output
    assert "Traceback" not in result.output


@pytest.mark.spark
def test_tune_from_store(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "GRID", {"history_decay": (1.0, 0.9)})
    store = import_events(tmp_path)
    result = CliRunner().invoke(main, [
        "tune", "--from-store", "--events", str(store), "--split", "leave-last:1", "-k", "3", "--primary", "like",
        "--indicator", "like", "--indicator", "rate", "--rounds", "1", "--json",
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # the search starts at the defaults and tries the grid's values
    tried = {t["history_decay"] for t in data["trials"]}
    assert tried == {data["defaults"]["history_decay"], 1.0, 0.9}
    assert data["chosen"]["history_decay"] in tried
    assert set(data["results"]) == {"validation", "test"}
    assert data["results"]["test"]["tuned"]["3"]["users"] == 8


def test_tune_from_a_missing_store_fails_cleanly_and_creates_nothing(tmp_path, monkeypatch):
    assert_missing_store_fails_cleanly("tune", tmp_path, monkeypatch)
