"""`cooccur events import | export | prune`."""

from __future__ import annotations

import json

from click.testing import CliRunner
from query_testdata import make_backend

from cli import main
from query.eventstore import EventStore


def test_import_export_prune(tmp_path):
    backend = make_backend(tmp_path)
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(e) for e in [
        {"event": "view", "entityType": "user", "entityId": "u", "targetEntityType": "item",
         "targetEntityId": "a", "eventTime": "2000-01-01T00:00:00Z"},
        {"event": "purchase", "entityType": "user", "entityId": "u", "targetEntityType": "item",
         "targetEntityId": "b", "eventTime": "2000-01-01T00:00:00Z"},
        {"event": "$set", "entityType": "item", "entityId": "new", "properties": {"category": ["x"]},
         "eventTime": "2000-01-02T00:00:00Z"},
    ]) + "\n")
    runner = CliRunner()
    result = runner.invoke(main, ["events", "import", str(src), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "imported 3 events" in result.stdout and "events/s" in result.stdout
    assert "1 documents updated" in result.stdout
    assert backend.get(["new"]) == {"new": {"id": "new", "category": ["x"]}}

    out = tmp_path / "out.jsonl"
    result = runner.invoke(main, ["events", "export", str(out), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(e["event"], e["entityId"]) for e in lines] == [("$set", "new"), ("view", "u"), ("purchase", "u")]

    result = runner.invoke(main, ["events", "prune", "--keep", "view=30", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "view: removed 1 events older than 30 days" in result.stdout
    store = EventStore(tmp_path / "events.db")
    assert store.history("u", None, 10) == {"purchase": ["b"]}


def test_import_rejects(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("user,event,item,time\nu,view,a,2025-01-01\nu,,b,2025-01-01\n")
    runner = CliRunner()
    args = ["events", "import", str(src), "--events", str(tmp_path / "e.db"), "--data-dir", str(tmp_path)]
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and f"{src}:3: event" in result.output and "--rejects" in result.output
    result = runner.invoke(main, [*args, "--rejects", str(tmp_path / "bad.tsv")])
    # No index yet: the events are stored, item changes (none here) would wait for training.
    assert result.exit_code == 0, result.output
    assert "imported 1 events" in result.stdout
    assert (tmp_path / "bad.tsv").read_text().startswith("3\tevent:")


def test_prune_needs_retention(tmp_path):
    result = CliRunner().invoke(main, ["events", "prune", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "nothing to prune" in result.output


def test_user_errors_are_clean(tmp_path):
    runner = CliRunner()
    for keep in ("view=-1", "view=nan", "view=0"):
        r = runner.invoke(main, ["events", "prune", "--keep", keep, "--data-dir", str(tmp_path)])
        assert r.exit_code == 1 and "Error: [events] retention.view: must be a number of days > 0" in r.stderr
        assert "Traceback" not in r.output

    not_a_db = tmp_path / "passwd"
    not_a_db.write_text("root:x:0:0\n" * 50)
    r = runner.invoke(main, ["events", "export", "--events", str(not_a_db)])
    assert r.exit_code == 1 and "not a usable event store" in r.stderr

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"user,event,item,time\nu1,view,caf\xe9,2020-01-01\nu2,view,i2,2020-01-01\n")
    r = runner.invoke(main, ["events", "import", str(latin1), "--data-dir", str(tmp_path),
                             "--rejects", str(tmp_path / "new" / "dir" / "rejects.txt")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "new" / "dir" / "rejects.txt").read_text().startswith("2\t(line): not UTF-8 text")
