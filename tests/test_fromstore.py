"""query/fromstore.py: the event store as training input, and the watermark it leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indicators.settings import IndicatorSettings, TrainSettings
from query.errors import EventStoreError
from query.eventstore import EventStore, parse_events
from query.fromstore import open_existing, store_file, train_from_store
from query.refresh import update_from_store


def user_event(event, user, item, day):
    return {"event": event, "entityType": "user", "entityId": user, "targetEntityType": "item",
            "targetEntityId": item, "eventTime": f"2026-01-{day:02d}T00:00:00Z"}


def make_store(path):
    store = EventStore(path)
    store.insert(parse_events(
        [user_event("buy", f"u{u}", f"i{(u + k) % 5}", 1 + k) for u in range(8) for k in range(3)]
        + [user_event("view", f"u{u}", f"i{(u * 2) % 5}", 9) for u in range(8)]
        + [{"event": "$set", "entityType": "item", "entityId": "i1", "properties": {"category": ["a", "b"]},
            "eventTime": "2026-01-01T00:00:00Z"}]))
    return store


def test_store_file_is_one_snapshot_with_its_watermark(tmp_path):
    make_store(tmp_path / "e.db").close()
    with store_file(tmp_path / "e.db") as snap:
        lines = [json.loads(x) for x in Path(snap.path).read_text().splitlines()]
        assert (snap.lines, snap.user_events) == (33, 32) == (len(lines), len(lines) - 1)
        assert lines[0]["event"] == "$set" and lines[0]["properties"] == {"category": ["a", "b"]}
        assert snap.event_store == {"path": str((tmp_path / "e.db").resolve()), "rowid": 32, "item_changes": 1}
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(EventStoreError, match="no event store there") as e, store_file(tmp_path / "missing.db"):
        pass
    assert "cooccur events import" in e.value.hint and not (tmp_path / "missing.db").exists()
    with pytest.raises(EventStoreError):
        open_existing(tmp_path / "missing.db")


@pytest.mark.spark
def test_train_from_store_then_update_continues_from_its_watermark(spark, tmp_path):
    store = make_store(tmp_path / "e.db")
    settings = TrainSettings(primary="buy", indicators=[IndicatorSettings("buy"), IndicatorSettings("view")])
    report = train_from_store(tmp_path / "e.db", settings, tmp_path / "model")
    assert report.input["rows"] == 33 and report.input["user_events"] == 32
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["event_store"]["rowid"] == 32 and manifest["properties"] == ["category"]

    assert update_from_store(tmp_path / "model", tmp_path / "e.db") is None  # nothing new since training
    # An event older than the newest one trained on: a time watermark would miss it, the row id does not.
    store.insert(parse_events([user_event("buy", "u9", "i1", 1)]))
    update = update_from_store(tmp_path / "model", tmp_path / "e.db")
    assert update is not None and update.new_users == 1


@pytest.mark.spark
def test_a_store_without_user_events_is_an_error(spark, tmp_path):
    EventStore(tmp_path / "e.db").close()
    with pytest.raises(EventStoreError, match="holds no user events"):
        train_from_store(tmp_path / "e.db", TrainSettings(), tmp_path / "model")
    assert not (tmp_path / "model").exists()
