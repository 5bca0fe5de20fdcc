"""`cooccur recommend` on a real embedded index and event store."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from query_testdata import make_backend

from cli import main
from query.eventstore import EventStore, parse_events


@pytest.fixture
def env(tmp_path):
    make_backend(tmp_path)  # index "items" under tmp_path, the data dir
    store = EventStore(tmp_path / "events.db")
    store.insert(parse_events([
        {"event": "purchase", "entityType": "user", "entityId": "u", "targetEntityType": "item",
         "targetEntityId": "a", "eventTime": "2025-01-01T00:00:00Z"}]))
    store.close()
    config = tmp_path / "cooccur.toml"
    config.write_text('[query]\nindicators = {purchase = 1.0, view = 0.5}\n')
    return tmp_path, ["-c", str(config)]


def run(env, *args):
    path, cfg = env
    return CliRunner().invoke(main, [*cfg, "recommend", "--data-dir", str(path), *args])


def test_user_json(env):
    result = run(env, "--user", "u", "--num", "3", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert [s["item"] for s in body["itemScores"]] == ["i2", "i1", "i4"]  # a tie: popularity first
    assert body["itemScores"][0]["source"] == {"personal": ["purchase"]}


def test_table_field_rules_and_item_set(env):
    result = run(env, "--user", "u", "--num", "2", "--field", "category:y:3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["1", "i2"] and "(personal: purchase)" in lines[0]
    result = run(env, "--history-json", '{"purchase": ["a"]}', "--field", "category:x:-1", "--num", "5", "--json")
    assert [s["item"] for s in json.loads(result.stdout)["itemScores"]] == ["i1", "i3", "i5"]
    result = run(env, "--item-set", "i1", "--return-self", "--num", "1", "--json")
    assert [s["item"] for s in json.loads(result.stdout)["itemScores"]] == ["i1"]


@pytest.mark.parametrize("args, message", [
    (["--field", "category"], "--field"),
    (["--field", "category:x:high"], "not a number"),
    (["--history-json", "{bad"], "--history-json"),
    (["--user", "u", "--num", "0"], "num: must be an integer >= 1"),
    (["--user", "u", "--num", "1"] * 1 + ["--field", "colour:x:1"], "'colour' is not a field of the index"),
])
def test_errors_are_clean(env, args, message):
    result = run(env, *args)
    assert result.exit_code == 1
    assert "Error:" in result.output and message in result.output and "Traceback" not in result.output


def test_no_subject_is_popular_items(env):
    """As the UR's `{}`: popular items (backfill), no error."""
    result = run(env, "--num", "3", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert [s["item"] for s in body["itemScores"]] == ["i4", "i2", "i1"]
    assert {s["score"] for s in body["itemScores"]} == {0.0}


def test_no_index_yet(tmp_path):
    result = CliRunner().invoke(main, ["recommend", "--data-dir", str(tmp_path), "--user", "u"])
    assert result.exit_code == 1 and "no current version" in result.output and "cooccur index" in result.output


def test_formats_and_shown_properties(env):
    scores = [s["score"] for s in json.loads(run(env, "--user", "u", "--num", "2", "--json").stdout)["itemScores"]]
    result = run(env, "--user", "u", "--num", "2", "--format", "csv", "--show", "category", "--show", "date")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "rank,item,score,source,category,date",
        f"1,i2,{scores[0]:.6g},personal: purchase,y,2025-02-10T00:00:00Z",
        f"2,i1,{scores[1]:.6g},personal: purchase,x,2025-01-10T00:00:00Z",
    ]
    result = run(env, "--user", "u", "--num", "2", "--format", "ndjson", "--show", "category")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["rank"], r["item"], r["properties"]) for r in rows] == [(1, "i2", {"category": ["y"]}),
                                                                      (2, "i1", {"category": ["x"]})]
    result = run(env, "--user", "u", "--num", "1", "--format", "json", "--show", "category")
    assert json.loads(result.stdout)["itemScores"][0]["properties"] == {"category": ["y"]}
    result = run(env, "--user", "u", "--num", "1", "--show", "category")
    assert result.stdout.split() == ["1", "i2", result.stdout.split()[2], "(personal:", "purchase)", "y"]
    assert result.stderr == ""  # nothing on stderr for a user with history (the version only with -v)


def test_table_columns_are_aligned(env):
    result = run(env, "--history-json", '{"purchase": ["a"]}', "--num", "5", "--show", "category")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    cells = [line.split("  (")[0].split() for line in lines]  # rank, item, score
    assert [c[1] for c in cells] == ["i2", "i1", "i4", "b", "i3"] and cells[0][2] != cells[2][2] == "0"
    # Items of 1 and 2 characters, scores of 1 and 8: each column still starts (text) or
    # ends (numbers) at one place.
    assert len({line.index(c[1]) for line, c in zip(lines, cells, strict=True)}) == 1
    assert len({line.index("  (") for line in lines}) == 1  # the scores' right edge
    assert len({line.rindex(line.split()[-1]) for line in lines}) == 1  # the shown category


def test_user_without_history_is_told_the_results_are_backfill(env):
    result = run(env, "--user", "stranger", "--num", "2")
    assert result.exit_code == 0, result.output
    assert "user stranger has no history in the event store" in result.stderr
    assert "backfill" in result.stderr and "cooccur events import" in result.stderr
    assert all("(backfill: popular)" in line for line in result.stdout.splitlines())


def test_no_event_store_is_not_created(tmp_path):
    make_backend(tmp_path)
    result = CliRunner().invoke(main, ["recommend", "--data-dir", str(tmp_path), "--user", "u", "--num", "1"])
    assert result.exit_code == 0, result.output
    assert "has no history" in result.stderr
    assert not (tmp_path / "events.db").exists()
