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


def test_counts_have_thousands_separators(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("user,event,item,time\n" + "".join(f"u{k % 7},view,i{k},2025-01-01\n" for k in range(1200))
                   + "u,,b,2025-01-01\n" * 1001)
    result = CliRunner().invoke(main, ["events", "import", str(src), "--events", str(tmp_path / "e.db"),
                                       "--rejects", str(tmp_path / "bad.tsv"), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "imported 1,200 events" in result.stdout and "1,001 bad rows written" in result.stderr


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


def test_import_from_stdin_and_export_to_stdout(tmp_path):
    runner = CliRunner()
    db = ["--events", str(tmp_path / "e.db"), "--data-dir", str(tmp_path)]
    lines = "".join(json.dumps({"event": "view", "entityType": "user", "entityId": f"u{i}", "targetEntityType": "item",
                                "targetEntityId": "a", "eventTime": "2000-01-01T00:00:00Z"}) + "\n" for i in range(3))
    result = runner.invoke(main, ["events", "import", "-", *db], input=lines)
    assert result.exit_code == 0, result.output
    assert "imported 3 events" in result.stdout
    result = runner.invoke(main, ["events", "import", "-", "--stdin-format", "csv", *db],
                           input="user,event,item,time\nu9,buy,b,2000-01-02T00:00:00Z\n")
    assert result.exit_code == 0 and "imported 1 events" in result.stdout, result.output
    result = runner.invoke(main, ["events", "export", "-", *db])
    assert result.exit_code == 0, result.output
    exported = [json.loads(x) for x in result.stdout.splitlines()]
    assert [(e["event"], e["entityId"]) for e in exported] == [("view", "u0"), ("view", "u1"), ("view", "u2"),
                                                               ("buy", "u9")]
    assert result.stderr.strip() == f"exported 4 events from {tmp_path / 'e.db'}"


def test_import_with_a_mapping(tmp_path):
    mapping = tmp_path / "ratings.toml"
    mapping.write_text('user = "userId"\nitem = "movieId"\ntime = "timestamp"\n'
                       '[[event]]\nname = "rate"\n[[event]]\nname = "like"\nwhen = "rating >= 4"\n')
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,10,4.5,964982703\n1,20,2,964982704\n2,10,x,964982705\n")
    runner = CliRunner()
    args = ["events", "import", str(ratings), "--map", str(mapping), "--data-dir", str(tmp_path)]
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert f"Error: 1 of 3 rows rejected, nothing imported: {ratings}:4: rating: 'x' is not a number" in result.stderr
    result = runner.invoke(main, [*args, "--rejects", str(tmp_path / "bad.tsv")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("3 rows = 2 accepted + 1 rejected: imported 3 user events and 0 item events")
    assert EventStore(tmp_path / "events.db").history("1", None, 10) == {"rate": ["20", "10"], "like": ["10"]}

    mapping.write_text('item = "movieId"\n[properties]\ngenre = { column = "genres", split = "|" }\n')
    result = runner.invoke(main, args, input=None)
    assert result.exit_code == 1 and "no column 'genres'" in result.stderr and "Traceback" not in result.output
    mapping.write_text('item = "movieId"\n[properties]\ngenre = { colum = "genres" }\n')
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and f"Error: {mapping}: properties.genre.colum: unknown key" in result.stderr


def test_read_only_commands_create_no_store(tmp_path):
    runner = CliRunner()
    data = tmp_path / "data"
    for args in (["events", "export", "-"], ["events", "prune", "--keep", "view=3"]):
        result = runner.invoke(main, [*args, "--data-dir", str(data)])
        assert result.exit_code == 1, result.output
        assert "no event store there" in result.stderr and "cooccur events import" in result.stderr
    assert not data.exists()
