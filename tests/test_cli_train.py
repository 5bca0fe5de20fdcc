"""`cooccur train` through click: output, config + flags, and clean errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main

pytestmark = pytest.mark.spark

GOOD = "".join(
    f"u{u},{e},i{(u * 7 + k) % 13},2026-01-0{1 + k % 9}\n"
    for u in range(30) for k, e in enumerate(["purchase", "view", "view", "purchase", "view"])
)


@pytest.fixture
def events(tmp_path):
    f = tmp_path / "events.csv"
    f.write_text("user,event,item,time\n" + GOOD)
    return f


def run(*args, config: str | None = None, env=None):
    base = ["-c", config] if config else []
    return CliRunner().invoke(main, [*base, *map(str, args)], env=env, catch_exceptions=False)


def test_train_writes_model_and_reports_counts(spark, tmp_path, events):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\nprimary = "purchase"\n[[train.indicators]]\nname = "purchase"\n'
                   '[[train.indicators]]\nname = "view"\n')
    r = run("train", events, "-o", tmp_path / "model", "--max-correlators", 3, config=str(cfg))
    assert r.exit_code == 0, r.output
    assert "input: 150 rows = 150 accepted + 0 rejected" in r.stdout
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["indicators"] == ["purchase", "view"]
    assert manifest["settings"]["indicators"][1]["max_correlators"] == 3
    assert "indicators" in r.stderr and "downsample" in r.stderr


def test_bad_rows_fail_with_file_and_line(spark, tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("user,event,item,time\n" + GOOD + "u1,purchase,,2026-01-01\n")
    r = run("train", f, "-o", tmp_path / "model")
    assert r.exit_code == 1
    assert f"Error: 1 of 151 input rows rejected: {f}:152: item: is required (the item the user acted on)" in r.stderr
    assert "Traceback" not in r.output
    assert not (tmp_path / "model").exists()


def test_rejects_file_keeps_every_bad_row(spark, tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("user,event,item,time\n" + GOOD + "u1,purchase,,2026-01-01\nu2,view,i1,never\n")
    r = run("train", f, "-o", tmp_path / "model", "--rejects", tmp_path / "rejects.jsonl")
    assert r.exit_code == 0, r.output
    assert "input: 152 rows = 150 accepted + 2 rejected" in r.stdout
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [(x["line"], x["field"], x["problem"]) for x in rejects] == [
        (152, "item", "is required (the item the user acted on)"),
        (153, "time", "'never' is not an ISO-8601 date/time"),
    ]
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["counts"]["input"]["rejected"] == 2


def test_user_errors_are_one_line(tmp_path, events):
    r = run("train", tmp_path / "nope.csv", "-o", tmp_path / "m")
    assert r.exit_code == 1 and "Error: no input at" in r.stderr and "Traceback" not in r.output

    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nprimery = 'buy'\n")
    r = run("train", events, "-o", tmp_path / "m", config=str(cfg))
    assert r.exit_code == 1 and "Error: [train]: unknown setting(s) primery" in r.stderr

    r = run("train", events, "-o", tmp_path / "m", "--conf", "no-equals-sign")
    assert r.exit_code == 1 and "expected KEY=VALUE" in r.stderr


@pytest.mark.parametrize("given, error, hint", [
    ("file:///no/such/dir", "Error: no input at file:///no/such/dir", "give a file, a directory or a glob"),
    ("mock:///bucket/none/*.csv", "Error: no input at mock:///bucket/none/*.csv", "give a file"),
    ("nosuch://host/ev", "Error: cannot open nosuch://host/ev: Unrecognized filesystem", "hdfs://"),
])
def test_input_uris_that_cannot_be_read_are_one_line(tmp_path, given, error, hint):
    r = run("train", given, "-o", tmp_path / "m")
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    lines = r.stderr.splitlines()
    assert lines[0].startswith(error) and lines[1].startswith("Hint: ") and hint in lines[1], r.stderr
    assert not (tmp_path / "m").exists()


def test_missing_java_is_named(tmp_path, events):
    env = {"JAVA_HOME": str(tmp_path / "no-jdk"), "PATH": str(tmp_path)}
    r = run("train", events, "-o", tmp_path / "m", env=env)
    assert r.exit_code == 1
    assert "Error: Java was not found: Spark needs Java 17 or newer" in r.stderr
    assert "Hint: install Java 17+" in r.stderr


def test_train_from_store(spark, tmp_path, events):
    store = tmp_path / "events.db"
    r = run("events", "import", events, "--events", store)
    assert r.exit_code == 0, r.output
    r = run("train", "--from-store", "--events", store, "-o", tmp_path / "model")
    assert r.exit_code == 0, r.output
    assert "input: 150 rows = 150 accepted + 0 rejected" in r.stdout
    assert json.loads((tmp_path / "model" / "manifest.json").read_text())["event_store"]["rowid"] == 150


def test_from_store_errors(tmp_path, events):
    r = run("train", events, "--from-store", "-o", tmp_path / "m")
    assert r.exit_code == 1 and "give EVENTS files or --from-store" in r.stderr
    r = run("train", "--from-store", "--events", tmp_path / "none.db", "-o", tmp_path / "m")
    assert r.exit_code == 1 and "none.db: no event store there" in r.stderr and "cooccur events import" in r.stderr
    assert not (tmp_path / "none.db").exists()
