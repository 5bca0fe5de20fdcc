"""The SQLite event store: history, item property compaction, export, prune, bulk import."""

from __future__ import annotations

import io
import json
import sqlite3
import threading

import pytest

from query.errors import BadRequest, EventFileError, ImportRejected
from query.eventstore import EventStore, import_events, parse_event, parse_events

DAY = 86_400_000


def ev(user, action, item, t):
    return {"event": action, "entityType": "user", "entityId": user, "targetEntityType": "item",
            "targetEntityId": item, "eventTime": t}


@pytest.fixture
def store(tmp_path):
    s = EventStore(tmp_path / "events.db")
    yield s
    s.close()


def test_wal_mode_and_index(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [r[2] for r in conn.execute("PRAGMA index_info(events_user_action_time)")]
    assert cols == ["user", "action", "time"]


def test_history_is_distinct_newest_first_and_capped(store):
    store.insert(parse_events([
        ev("u", "view", "a", "2025-01-01T00:00:00Z"), ev("u", "view", "b", "2025-01-02T00:00:00Z"),
        ev("u", "view", "a", "2025-01-03T00:00:00Z"), ev("u", "view", "c", "2025-01-02T12:00:00Z"),
        ev("u", "purchase", "b", "2025-01-04T00:00:00Z"), ev("v", "view", "x", "2025-01-05T00:00:00Z"),
    ]))
    assert store.history("u", None, 10) == {"view": ["a", "c", "b"], "purchase": ["b"]}
    assert store.history("u", ["view"], 2) == {"view": ["a", "c"]}
    assert store.history("nobody", None, 10) == {}


def test_histories_read_several_actions_each_with_its_own_limit(store):
    store.insert(parse_events([
        ev("u", "view", "a", "2025-01-01T00:00:00Z"), ev("u", "view", "b", "2025-01-02T00:00:00Z"),
        ev("u", "view", "a", "2025-01-03T00:00:00Z"), ev("u", "view", "c", "2025-01-02T12:00:00Z"),
        ev("u", "purchase", "b", "2025-01-04T00:00:00Z"), ev("u", "purchase", "d", "2025-01-04T00:00:00Z"),
        ev("v", "view", "x", "2025-01-05T00:00:00Z"),
    ]))
    # newest first, equal times by item; the actions in the order asked; none without events
    assert store.histories("u", {"purchase": 5, "view": 2, "cart": 3}) == {"purchase": ["b", "d"],
                                                                        "view": ["a", "c"]}
    assert list(store.histories("u", {"view": 1, "purchase": 1})) == ["view", "purchase"]
    assert store.histories("u", {"view": 0}) == {} and store.histories("u", {}) == {}


def test_item_properties_compact_to_latest(store):
    def item(name, props, t):
        obj = {"event": name, "entityType": "item", "entityId": "i1", "eventTime": t}
        if props is not None:
            obj["properties"] = props
        return parse_event(obj)

    r = store.insert([item("$set", {"category": ["a"], "color": "red"}, "2025-01-01T00:00:00Z")])
    assert len(r.item_changes) == 1
    store.insert([item("$set", {"category": ["b"]}, "2025-01-03T00:00:00Z")])
    # Older than what is stored: ignored (events can arrive out of order).
    r = store.insert([item("$set", {"category": ["old"]}, "2025-01-02T00:00:00Z")])
    assert r.item_changes == []
    assert store.item_properties("i1") == {"category": ["b"], "color": "red"}
    store.insert([item("$unset", {"color": None}, "2025-01-04T00:00:00Z")])
    assert store.item_properties("i1") == {"category": ["b"]}
    out = io.StringIO()
    store.export(out)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines == [
        {"event": "$set", "entityType": "item", "entityId": "i1", "properties": {"category": ["b"]},
         "eventTime": "2025-01-03T00:00:00.000Z"},
        {"event": "$unset", "entityType": "item", "entityId": "i1", "properties": {"color": None},
         "eventTime": "2025-01-04T00:00:00.000Z"},
    ]
    store.insert([item("$delete", None, "2025-01-05T00:00:00Z")])
    assert store.item_properties("i1") == {}
    assert store.stats()["deleted_items"] == 1


def test_export_round_trips_user_events(store):
    events = [ev("u", "view", "a", "2025-01-01T00:00:00.000Z"), ev("u", "buy", "b", "2025-01-02T00:00:00.000Z")]
    store.insert(parse_events(events))
    out = io.StringIO()
    assert store.export(out) == 2
    assert [json.loads(x) for x in out.getvalue().splitlines()] == events


def test_prune_per_action(store):
    now = 1_000 * DAY
    store.insert([parse_event(ev("u", "view", "old", "1970-01-02T00:00:00Z")),
                  parse_event(ev("u", "buy", "old", "1970-01-02T00:00:00Z")),
                  parse_event(ev("u", "view", "new", "1972-09-25T00:00:00Z"))])  # day 998
    assert store.prune({"view": 365}, now=now) == {"view": 1}
    assert store.history("u", None, 10) == {"view": ["new"], "buy": ["old"]}


def test_concurrent_writers_and_readers(store):
    errors = []

    def work(n):
        try:
            for i in range(50):
                store.insert([parse_event(ev(f"u{n}", "view", f"i{i}", f"2025-01-01T00:00:{i:02d}Z"))])
                store.history(f"u{n}", ["view"], 5)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.stats()["events"] == 200
    assert store.history("u3", ["view"], 2) == {"view": ["i49", "i48"]}


@pytest.mark.parametrize("obj, field", [
    ({"entityType": "user", "entityId": "u"}, "event"),
    ({"event": "view", "entityType": "user", "entityId": "u"}, "targetEntityId"),
    ({"event": "view", "entityType": "item", "entityId": "u", "targetEntityId": "i"}, "entityType"),
    ({"event": "view", "entityType": "user", "entityId": "u", "targetEntityId": "i", "eventTime": "x"}, "eventTime"),
    ({"event": "$set", "entityType": "item", "entityId": "i"}, "properties"),
    ({"event": "$set", "entityType": "item", "entityId": "i", "properties": {"c": {"x": 1}}}, "properties.c"),
    ({"event": "$bogus", "entityType": "item", "entityId": "i"}, "event"),
    ({"event": "view", "entityType": "user", "entityId": "u", "targetEntityId": "i", "foo": 1}, "foo"),
])
def test_bad_events_name_the_field(obj, field):
    with pytest.raises(BadRequest) as e:
        parse_event(obj)
    assert e.value.field == field
    with pytest.raises(BadRequest) as e:
        parse_events([ev("u", "view", "i", "2025-01-01"), obj])
    assert e.value.field == f"[1].{field}"


def test_import_jsonl_and_csv(store, tmp_path):
    jl = tmp_path / "e.jsonl"
    jl.write_text(json.dumps(ev("u", "view", "a", "2025-01-01T00:00:00Z")) + "\n\n"
                  + json.dumps({"event": "$set", "entityType": "item", "entityId": "a",
                                "properties": {"category": ["c"]}}) + "\n")
    rep = import_events(store, jl)
    assert (rep.events, rep.rejected, len(rep.item_changes)) == (2, 0, 1)
    csv_path = tmp_path / "e.csv"
    csv_path.write_text("user,event,item,time\nu,purchase,b,2025-01-02T00:00:00Z\nw,view,a,1735776000\n")
    rep = import_events(store, csv_path)
    assert rep.events == 2 and rep.rate > 0
    assert store.history("u", None, 10) == {"view": ["a"], "purchase": ["b"]}
    out = io.StringIO()
    store.export(out)
    assert '"eventTime": "2025-01-02T00:00:00.000Z"' in out.getvalue()


def test_import_bad_rows_reject_whole_file_or_go_to_rejects(store, tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("user,event,item,time\nu,view,a,2025-01-01\n,view,b,2025-01-01\nu,view,c,notatime\nu,view\n")
    with pytest.raises(ImportRejected) as e:
        import_events(store, p)
    assert e.value.rejected == 3 and e.value.total == 4
    assert f"{p}:3: user" in str(e.value) and f"{p}:4: time" in str(e.value)
    assert store.stats()["events"] == 0
    rejects = tmp_path / "rejects.tsv"
    rep = import_events(store, p, rejects=rejects)
    assert (rep.events, rep.rejected) == (1, 3)
    assert [r.split("\t")[0] for r in rejects.read_text().splitlines()] == ["3", "4", "5"]


def test_import_file_errors(store, tmp_path):
    with pytest.raises(EventFileError, match="no such file"):
        import_events(store, tmp_path / "missing.jsonl")
    p = tmp_path / "h.csv"
    p.write_text("who,what\n")
    with pytest.raises(EventFileError, match="lacks column"):
        import_events(store, p)


def test_snapshots_after_a_watermark_survive_pruning(store):
    """Row ids are never reused, so events stored after a prune are after the watermark."""
    store.insert(parse_events([ev("u", "view", f"i{k}", "1970-01-02T00:00:00Z") for k in range(5)]))
    with store.snapshot_since() as (mark, events):
        assert len(list(events)) == 5
    assert store.prune({"view": 1}, now=1_000 * DAY) == {"view": 5}
    store.insert(parse_events([ev("u", "view", f"n{k}", "1972-09-25T00:00:00Z") for k in range(3)]))
    with store.snapshot_since(mark.rowid) as (after, events):
        assert [e.target_entity_id for e in events] == ["n0", "n1", "n2"]
    assert after.rowid == 8 and after.item_changes == 0


def test_snapshot_of_an_old_store_whose_ids_went_back_reads_by_time(tmp_path):
    """A store made before AUTOINCREMENT reuses pruned ids: the time watermark takes over."""
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.execute("CREATE TABLE events (user TEXT NOT NULL, action TEXT NOT NULL, item TEXT NOT NULL, "
                 "time INTEGER NOT NULL)")
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [("u", "view", "new", 5 * DAY), ("u", "view", "x", DAY)])
    conn.commit()
    store = EventStore(tmp_path / "old.db")
    with store.snapshot_since(after_rowid=9, after_ms=2 * DAY) as (mark, events):
        assert [e.target_entity_id for e in events] == ["new"] and mark.rowid == 2


def test_item_changes_are_counted(store):
    store.insert(parse_events([{"event": "$set", "entityType": "item", "entityId": "i1",
                                "properties": {"c": "a"}, "eventTime": "2025-01-01T00:00:00Z"},
                               {"event": "$set", "entityType": "item", "entityId": "i1",
                                "properties": {"c": "old"}, "eventTime": "2024-01-01T00:00:00Z"}]))
    with store.snapshot_since() as (mark, events):
        assert mark.item_changes == 1  # the older $set changed nothing
        assert [e.event for e in events] == ["$set"]


def test_event_ids_are_row_ids_and_never_reused(store):
    r = store.insert(parse_events([ev("u", "view", "a", "2025-01-01T00:00:00Z"),
                                   {"event": "$set", "entityType": "item", "entityId": "i", "properties": {"c": 1}},
                                   {"event": "$set", "entityType": "user", "entityId": "u", "properties": {"c": 1}},
                                   ev("u", "view", "b", "2025-01-02T00:00:00Z")]), with_ids=True)
    assert r.event_ids[0] == "1" and r.event_ids[3] == "2"
    assert len(r.event_ids[1]) == 32 and len(r.event_ids[2]) == 32 and r.event_ids[1] != r.event_ids[2]
    assert store.get_event("2")["targetEntityId"] == "b"
    assert store.get_event(r.event_ids[1])["properties"] == {"c": 1}
    assert store.get_event(r.event_ids[2]) is None  # a user $set is accepted, not stored
    store.prune({"view": 1})  # removes both views
    assert store.get_event("2") is None
    assert store.insert(parse_events(ev("u", "view", "c", "2030-01-01T00:00:00Z")), with_ids=True).event_ids == ["3"]
    # a later $set of the same property supersedes the first event
    later = store.insert(parse_events({"event": "$set", "entityType": "item", "entityId": "i",
                                       "properties": {"c": 2}, "eventTime": "2031-01-01T00:00:00Z"}), with_ids=True)
    assert store.get_event(r.event_ids[1]) is None
    assert store.find(entity_type="item") == [{
        "eventId": later.event_ids[0], "event": "$set", "entityType": "item", "entityId": "i",
        "properties": {"c": 2}, "eventTime": "2031-01-01T00:00:00.000Z"}]
    # big inserts (several executemany chunks) get consecutive ids
    many = [ev("w", "view", f"x{i}", "2030-01-01T00:00:00Z") for i in range(25_000)]
    ids = store.insert(parse_events(many), with_ids=True).event_ids
    assert ids == [str(i) for i in range(4, 4 + 25_000)]


def test_stores_from_before_event_ids_are_migrated(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, action TEXT NOT NULL,
                             item TEXT NOT NULL, time INTEGER NOT NULL);
        CREATE TABLE item_props (item TEXT NOT NULL, name TEXT NOT NULL, value TEXT, time INTEGER NOT NULL,
                                 PRIMARY KEY (item, name));
        CREATE TABLE item_deleted (item TEXT PRIMARY KEY, time INTEGER NOT NULL);
        INSERT INTO item_props VALUES ('i', 'c', '"x"', 5), ('i', 'd', NULL, 6);
        INSERT INTO item_deleted VALUES ('gone', 7);
    """)
    conn.commit()
    conn.close()
    store = EventStore(path)
    found = store.find(entity_type="item")
    assert [(e["event"], e["entityId"], e.get("properties")) for e in found] == [
        ("$set", "i", {"c": "x"}), ("$unset", "i", {"d": None}), ("$delete", "gone", None)]
    assert all(len(e["eventId"]) == 32 for e in found)
    assert store.get_event(found[2]["eventId"])["event"] == "$delete"
    EventStore(path).close()  # opening again changes nothing
    assert [e["eventId"] for e in EventStore(path).find(entity_type="item")] == [e["eventId"] for e in found]
    store.close()
