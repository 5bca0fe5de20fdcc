"""`cooccur update` through click: from files, from the event store, clean errors; and the
background refresh of `cooccur serve --refresh-every` (real child processes)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from indicators.model import model_data
from query.eventstore import EventStore, parse_events
from query.refresh import Refresher

pytestmark = pytest.mark.spark

CONFIG = '[train]\nprimary = "purchase"\n[[train.indicators]]\nname = "purchase"\n' \
         '[[train.indicators]]\nname = "view"\n'


def rows(users: range, day: int) -> str:
    return "".join(f"u{u},{e},i{(u * 7 + k) % 13},2026-01-{day:02d}T00:{k:02d}:00Z\n"
                   for u in users for k, e in enumerate(["purchase", "view", "view", "purchase", "view"]))


def run(*args, config: Path):
    return CliRunner().invoke(main, ["-c", str(config), *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def base_model(spark, tmp_path_factory):
    """A model trained on users 0-29 (trained once; each test updates a copy)."""
    d = tmp_path_factory.mktemp("base")
    (d / "base.csv").write_text("user,event,item,time\n" + rows(range(30), 1))
    (d / "c.toml").write_text(CONFIG)
    r = run("train", d / "base.csv", "-o", d / "model", config=d / "c.toml")
    assert r.exit_code == 0, r.output
    return d / "model"


@pytest.fixture
def trained(base_model, tmp_path):
    """A config, a copy of the base model, and a CSV of new events (users 25-39)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG + f'[index]\ndata_dir = "{tmp_path / "data"}"\n')
    (tmp_path / "new.csv").write_text("user,event,item,time\n" + rows(range(25, 40), 2))
    shutil.copytree(base_model, tmp_path / "model")
    return cfg, tmp_path


def add(d: Path, events: list[dict]) -> None:
    """Store events as the HTTP service does."""
    (d / "data").mkdir(exist_ok=True)
    EventStore(str(d / "data" / "events.db")).insert(parse_events(events))


def manifest(model: Path) -> dict:
    return json.loads((model / "manifest.json").read_text())


def test_update_from_files_reports_and_replaces_the_model(trained):
    cfg, d = trained
    base_id = manifest(d / "model")["model_id"]
    r = run("update", d / "model", d / "new.csv", config=cfg)
    assert r.exit_code == 0, r.output
    assert "input: 75 rows = 75 accepted + 0 rejected" in r.stdout
    assert "users: 40 (+10)" in r.stdout
    m = manifest(d / "model")
    assert m["base_model_id"] == base_id and m["counts"]["users"] == 40


def test_update_from_the_event_store_keeps_a_watermark(trained):
    cfg, d = trained
    add(d, [{"event": "purchase", "entityType": "user", "entityId": f"u{u}", "targetEntityType": "item",
             "targetEntityId": item, "eventTime": "2026-01-03T00:00:00Z"}
            for u in (50, 51) for item in ("i1", "i2")])
    r = run("update", d / "model", "--from-store", "--json", config=cfg)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["updated"] and report["new_users"] == 2 and report["input"]["user_events"] == 4
    assert manifest(d / "model")["event_store"]["rowid"] == 4
    again = run("update", d / "model", "--from-store", "--json", config=cfg)
    assert json.loads(again.stdout) == {"updated": False}
    assert "no new events" in again.stderr


@pytest.mark.parametrize("args,message", [
    ((), "give new EVENTS files or --from-store"),
    (("{d}/new.csv", "--from-store"), "give new EVENTS files or --from-store"),
    (("--from-store", "--events", "{d}/missing.db"), "no event store there"),
])
def test_wrong_arguments_fail_cleanly(trained, args, message):
    cfg, d = trained
    r = run("update", d / "model", *[a.format(d=d) for a in args], config=cfg)
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output


def test_a_model_without_state_is_refused_with_a_hint(trained):
    cfg, d = trained
    r = run("update", d / "nowhere", d / "new.csv", config=cfg)
    assert r.exit_code == 1 and "no manifest.json" in r.output and "Hint: train the model" in r.output


def test_refresher_updates_and_reindexes_in_child_processes(trained):
    """What `serve --refresh-every` runs each tick: a real update + index --changed-only."""
    cfg, d = trained
    assert run("index", d / "model", config=cfg).exit_code == 0
    add(d, [{"event": "view", "entityType": "user", "entityId": "u3", "targetEntityType": "item",
             "targetEntityId": "i99", "eventTime": "2026-01-03T00:00:00Z"}])
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{Path(__file__).resolve().parents[1]}{os.pathsep}{env_path}"
    try:
        refresher = Refresher(str(d / "model"), 60, cli_options=["-c", str(cfg)])
        first = refresher.run_once().last_result
        assert first.startswith("updated (") and first.endswith("changed only)"), first
        assert refresher.run_once().last_result == "unchanged (no new events)"
    finally:
        os.environ["PYTHONPATH"] = env_path
    r = run("indexes", config=cfg)
    assert manifest(d / "model")["model_id"] in r.stdout
    hits = run("recommend", "--item", "i3", "--json", config=cfg)
    assert hits.exit_code == 0


def test_refresher_reports_a_failed_update(tmp_path):
    refresher = Refresher(str(tmp_path / "nowhere"), 60)
    status = refresher.run_once()
    assert status.failures == 1 and status.last_result.startswith("failed: update: Error:")
    assert "no event store there" in status.last_result


def test_item_changes_alone_update_the_model(trained):
    cfg, d = trained
    add(d, [{"event": "purchase", "entityType": "user", "entityId": "u1", "targetEntityType": "item",
             "targetEntityId": "i1", "eventTime": "2026-01-03T00:00:00Z"}])
    assert json.loads(run("update", d / "model", "--from-store", "--json", config=cfg).stdout)["updated"]
    add(d, [{"event": "$set", "entityType": "item", "entityId": "i2", "properties": {"color": "red"},
             "eventTime": "2026-01-04T00:00:00Z"}])
    r = run("update", d / "model", "--from-store", "--json", config=cfg)
    assert json.loads(r.stdout)["changed_items"] == 1
    assert manifest(d / "model")["properties"] == ["color"]


def test_corrupt_state_and_a_busy_model_fail_cleanly(trained):
    import fcntl

    cfg, d = trained
    add(d, [{"event": "view", "entityType": "user", "entityId": "u1", "targetEntityType": "item",
             "targetEntityId": "i1", "eventTime": "2026-01-03T00:00:00Z"}])
    with open(d / ".model.lock", "w") as other_writer:  # as another process would hold it
        fcntl.flock(other_writer, fcntl.LOCK_EX)
        r = run("update", d / "model", "--from-store", config=cfg)
    assert r.exit_code == 1 and "another update is writing this model now" in r.output
    (Path(model_data(d / "model").path) / "state" / "property_changes.parquet").write_bytes(b"not parquet")
    r = run("update", d / "model", "--from-store", config=cfg)
    assert r.exit_code == 1 and "property_changes.parquet: unreadable Parquet" in r.output
    assert "Traceback" not in r.output


def test_a_version_left_by_a_killed_update_is_never_read_and_is_cleaned_up(trained):
    """A killed update leaves an unpublished version beside the model's: the manifest still
    names the old one, the next update goes on from it and removes the leftover."""
    cfg, d = trained
    leftover = d / "model" / "versions" / "killed"
    shutil.copytree(model_data(d / "model").path, leftover)
    add(d, [{"event": "view", "entityType": "user", "entityId": "u1", "targetEntityType": "item",
             "targetEntityId": "i1", "eventTime": "2026-01-03T00:00:00Z"}])
    r = run("update", d / "model", "--from-store", config=cfg)
    assert r.exit_code == 0, r.output
    assert not leftover.exists() and manifest(d / "model")["state"]["generation"] == 1


@pytest.mark.parametrize("args,message", [
    (("--refresh-every", "0 s", "--model", "{d}/model"), "at least 1 second"),
    (("--refresh-every", "soon", "--model", "{d}/model"), "cannot read duration"),
    (("--refresh-every", "5 s"), "--refresh-every and --model go together"),
    (("--refresh-every", "5 s", "--model", "{d}"), "no manifest.json"),
])
def test_serve_refresh_options_are_checked_before_serving(trained, args, message):
    cfg, d = trained
    r = run("serve", "--port", "0", *[a.format(d=d) for a in args], config=cfg)
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output


def test_an_event_the_update_cannot_fold_is_quarantined(trained):
    """Issue 11, finding 1: one stored event the update cannot fold (a lone surrogate, which
    no UTF-8 model file holds; stored by an older version) stopped every later update. Now it
    is quarantined (kept, marked with the reason, counted) and the other events are folded,
    then and at the next update."""
    import sqlite3

    from query.recommender import Recommender
    from query.service import App

    cfg, d = trained
    purchase = lambda u, item: {"event": "purchase", "entityType": "user", "entityId": u,  # noqa: E731
                                "targetEntityType": "item", "targetEntityId": item,
                                "eventTime": "2026-01-03T00:00:00Z"}
    add(d, [purchase("u60", "i1"), purchase("u60", "i2")])
    with sqlite3.connect(d / "data" / "events.db") as conn:  # as the HTTP API stored it before the fix
        conn.execute("INSERT INTO item_props VALUES ('i1', 'title', ?, 1767398400000, 'bad-event')",
                     (json.dumps("\udc00"),))
        conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'item_changes'")
    r = run("update", d / "model", "--from-store", "--json", config=cfg)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["updated"] and report["quarantined"] == 1 and report["new_users"] == 1
    store = EventStore(str(d / "data" / "events.db"))
    assert store.quarantined() == [{"eventId": "bad-event", "at": store.quarantined()[0]["at"],
                                    "reason": "properties.title: holds a lone surrogate (U+DC00), not valid Unicode"}]
    app = App(Recommender(None, store))
    assert app.stats()["events"]["quarantined"] == 1  # GET /stats

    add(d, [purchase("u61", "i3"), {"event": "$set", "entityType": "item", "entityId": "i4",
                                    "properties": {"color": "red"}}])
    r = run("update", d / "model", "--from-store", "--json", config=cfg)
    report = json.loads(r.stdout)
    assert report["updated"] and report["quarantined"] == 0 and report["new_users"] == 1
    assert report["input"]["user_events"] == 1
