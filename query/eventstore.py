"""The live event store: SQLite in WAL mode, written by the service and by bulk import, read by
every query (a user's newest items per action) and exported for the next `cooccur train`.

Tables:
  events(id, user, action, item, time)       user -> item interactions; index (user, action, time)
  item_props(item, name, value, time, event_id)
                                             compacted `$set` / `$unset` history: the latest
                                             value per (item, property); value NULL = unset
  item_deleted(item, time, event_id)         items removed with `$delete`
Times are integer milliseconds since the epoch (UTC).

Event ids (PredictionIO's `eventId`): a user event's is its row id in decimal (AUTOINCREMENT:
never reused, even after pruning); an item event's is a UUID (32 hex digits) stored with the
property values (or the deletion) it set, readable for as long as they are current.
"""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
import threading
import time as _time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from indicators import validate
from indicators.validate import ITEM_EVENTS, Event, format_time

from .errors import BadRequest, EventFileError, EventStoreError, ImportRejected

log = logging.getLogger(__name__)

DAY_MS = 86_400_000

SCHEMA = """
-- AUTOINCREMENT: a row id is never reused, even after pruning, so `cooccur update
-- --from-store` can use the last one it saw as its watermark.
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    user   TEXT NOT NULL,
    action TEXT NOT NULL,
    item   TEXT NOT NULL,
    time   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user_action_time ON events (user, action, time);
CREATE INDEX IF NOT EXISTS events_action_time ON events (action, time);
CREATE TABLE IF NOT EXISTS item_props (
    item     TEXT NOT NULL,
    name     TEXT NOT NULL,
    value    TEXT,
    time     INTEGER NOT NULL,
    event_id TEXT,
    PRIMARY KEY (item, name)
);
CREATE TABLE IF NOT EXISTS item_deleted (
    item     TEXT PRIMARY KEY,
    time     INTEGER NOT NULL,
    event_id TEXT
);
-- item_changes counts stored item changes: updates see whether any came since their last.
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters VALUES ('item_changes', 0);
-- Stored events an update could not fold, with the reason: kept, left out of updates and exports.
CREATE TABLE IF NOT EXISTS quarantine (
    event_id TEXT PRIMARY KEY,
    reason   TEXT NOT NULL,
    time     INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Watermark:
    """Where a snapshot of the store ended: the last event row id, and how many item
    changes had been stored."""

    rowid: int
    item_changes: int


@dataclass(frozen=True)
class Export:
    """What an export wrote: lines, user events among them, the last event row id (the
    watermark of the next `export_since`)."""

    lines: int
    user_events: int
    last_rowid: int


def now_ms() -> int:
    return int(_time.time() * 1000)


def ms_to_iso(ms: int) -> str:
    return format_time(datetime.fromtimestamp(ms / 1000, tz=UTC))


def parse_event(obj: Any, where: str = "", *, now: int | None = None) -> Event:
    """Validate one PredictionIO event object with the shared validator
    (indicators/validate.py; raises `BadRequest` naming the field)."""
    try:
        return validate.parse_event(obj, where, now_ms=now if now is not None else now_ms())
    except validate.InvalidEvent as e:
        raise BadRequest(e.field, e.problem) from None


def parse_events(body: Any, *, now: int | None = None) -> list[Event]:
    """A PredictionIO event object or a batch (JSON array) of them."""
    if isinstance(body, list):
        if not body:
            raise BadRequest("(body)", "the batch is empty")
        return [parse_event(e, f"[{i}]", now=now) for i, e in enumerate(body)]
    return [parse_event(body, now=now)]


@dataclass
class InsertReport:
    """What one insert did."""

    stored: int = 0
    """User events stored."""
    item_changes: list[Event] = field(default_factory=list)
    """Item events that changed the stored properties (newer than what was stored)."""
    ignored: int = 0
    """Property events on non-item entities (users): accepted, not used by the recommender."""
    event_ids: list[str] = field(default_factory=list)
    """With `insert(..., with_ids=True)`: each event's id, in the order given."""


class EventStore:
    """One SQLite file; safe to use from many threads (a connection per thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        try:
            conn = self._conn()
            with conn:
                conn.executescript(SCHEMA)
            self._migrate(conn)
        except sqlite3.Error as e:  # not a database, unreadable, or locked for too long
            self.close()
            raise EventStoreError(str(self.path), f"not a usable event store: {e}") from None

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Stores made before event ids: add the item tables' event_id column, and give the
        stored values ids of their own."""
        for table in ("item_props", "item_deleted"):
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            if "event_id" not in columns:
                try:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN event_id TEXT")
                except sqlite3.OperationalError as e:  # another process added it first
                    if "duplicate column" not in str(e):
                        raise
            conn.execute(f"UPDATE {table} SET event_id = lower(hex(randomblob(16))) WHERE event_id IS NULL")
        conn.execute("CREATE INDEX IF NOT EXISTS item_props_event ON item_props (event_id)")
        conn.execute("CREATE INDEX IF NOT EXISTS item_deleted_event ON item_deleted (event_id)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode (only an OS crash can lose
            # the last transactions) and much faster than FULL.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------------ writes
    def insert(self, events: Iterable[Event], *, with_ids: bool = False) -> InsertReport:
        """Store events in one transaction; item property events are compacted at once.
        `with_ids`: also report each event's id (`InsertReport.event_ids`)."""
        report = InsertReport()
        rows: list[tuple[str, str, str, int]] = []
        slots: list[int] = []  # positions in report.event_ids of the rows not yet written
        conn = self._conn()
        sql = "INSERT INTO events (user, action, item, time) VALUES (?, ?, ?, ?)"

        def flush() -> None:
            conn.executemany(sql, rows)
            if with_ids and rows:
                # One writer (BEGIN IMMEDIATE): the rows got consecutive ids ending at the largest.
                last = conn.execute("SELECT MAX(rowid) FROM events").fetchone()[0]
                for n, slot in enumerate(slots):
                    report.event_ids[slot] = str(last - len(rows) + 1 + n)
            report.stored += len(rows)
            rows.clear()
            slots.clear()

        # One writer at a time inside this process; other processes wait on SQLite's lock.
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for e in events:
                    if e.event in ITEM_EVENTS:
                        event_id = uuid.uuid4().hex
                        if e.entity_type != "item":
                            report.ignored += 1
                        elif self._apply_item_event(conn, e, event_id):
                            report.item_changes.append(e)
                            conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'item_changes'")
                        if with_ids:
                            report.event_ids.append(event_id)
                        continue
                    rows.append((e.entity_id, e.event, e.target_entity_id or "", e.time_ms))
                    if with_ids:
                        slots.append(len(report.event_ids))
                        report.event_ids.append("")
                    if len(rows) >= 10_000:
                        flush()
                flush()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return report

    def _apply_item_event(self, conn: sqlite3.Connection, e: Event, event_id: str | None = None) -> bool:
        """Compact one item event into item_props / item_deleted; False if it is older than
        what is stored (events may arrive out of order)."""
        event_id = event_id or uuid.uuid4().hex
        deleted = conn.execute("SELECT time FROM item_deleted WHERE item = ?", (e.entity_id,)).fetchone()
        if deleted and deleted[0] > e.time_ms:
            return False
        if e.event == "$delete":
            conn.execute("DELETE FROM item_props WHERE item = ? AND time <= ?", (e.entity_id, e.time_ms))
            conn.execute(
                "INSERT INTO item_deleted (item, time, event_id) VALUES (?, ?, ?) ON CONFLICT(item) DO UPDATE SET "
                "time = excluded.time, event_id = excluded.event_id",
                (e.entity_id, e.time_ms, event_id),
            )
            return True
        changed = False
        for name, value in (e.properties or {}).items():
            stored = None if e.event == "$unset" else json.dumps(value)
            cur = conn.execute(
                "INSERT INTO item_props (item, name, value, time, event_id) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(item, name) DO UPDATE SET "
                "value = excluded.value, time = excluded.time, event_id = excluded.event_id "
                "WHERE excluded.time >= item_props.time",
                (e.entity_id, name, stored, e.time_ms, event_id),
            )
            changed = changed or cur.rowcount > 0
        return changed

    def prune(self, retention: dict[str, float], now: int | None = None) -> dict[str, int]:
        """Remove events older than each action's retention (days); returns removed per action."""
        now = now_ms() if now is None else now
        removed: dict[str, int] = {}
        conn = self._conn()
        with self._write_lock:
            for action, days in sorted(retention.items()):
                cutoff = now - int(days * DAY_MS)
                cur = conn.execute("DELETE FROM events WHERE action = ? AND time < ?", (action, cutoff))
                removed[action] = cur.rowcount
        return removed

    # ------------------------------------------------------------------ reads
    def history(self, user: str, actions: Sequence[str] | None, limit: int) -> dict[str, list[str]]:
        """The user's distinct items per action, newest first, at most `limit` per action.
        actions=None: every action the user has."""
        if actions is None:
            actions = [r[0] for r in self._conn().execute("SELECT DISTINCT action FROM events WHERE user = ?",
                                                          (user,))]
        return self.histories(user, dict.fromkeys(actions, limit))

    def histories(self, user: str, limits: Mapping[str, int]) -> dict[str, list[str]]:
        """The user's distinct items per action, newest first, at most `limits[action]` for
        each action, in one statement (a query reads its history and its blacklisted items
        at once: one round trip instead of one per action)."""
        if not limits:
            return {}
        actions = list(limits)
        # one LIMITed subquery per action (each an index range of events_user_action_time),
        # so a long history is cut in SQLite, not in Python
        one = ("SELECT * FROM (SELECT ? AS a, item, MAX(time) AS t FROM events WHERE user = ? AND action = ? "
               "GROUP BY item ORDER BY t DESC, item LIMIT ?)")
        args: list[str | int] = []
        for n, action in enumerate(actions):
            args += [n, user, action, limits[action]]
        out: dict[str, list[str]] = {}
        sql = " UNION ALL ".join([one] * len(actions)) + " ORDER BY a, t DESC, item"
        for n, item, _ in self._conn().execute(sql, args):
            out.setdefault(actions[n], []).append(item)
        return out

    def item_properties(self, item: str) -> dict[str, Any]:
        """The item's current stored properties (unset ones absent)."""
        rows = self._conn().execute(
            "SELECT name, value FROM item_props WHERE item = ? AND value IS NOT NULL ORDER BY name", (item,)
        )
        return {name: json.loads(value) for name, value in rows}

    # ------------------------------------------------------------------ PredictionIO reads
    def get_event(self, event_id: str) -> dict[str, Any] | None:
        """One stored event as PredictionIO's JSON (with `eventId`), or None: a user event by
        its row id, an item event while what it set is current (a later change of the same
        property, or a `$delete`, supersedes it)."""
        conn = self._conn()
        if event_id.isdigit():
            row = conn.execute("SELECT id, user, action, item, time FROM events WHERE id = ?",
                               (int(event_id),)).fetchone()
            return _user_event_json(*row) if row else None
        events = self._item_events(conn, "event_id = ?", [event_id])
        return events[0] if events else None

    def find(self, *, entity_type: str | None = None, entity_id: str | None = None, event: str | None = None,
             target_entity_type: str | None = None, target_entity_id: str | None = None,
             start_ms: int | None = None, until_ms: int | None = None, limit: int | None = 20,
             reverse: bool = False) -> list[dict[str, Any]]:
        """Stored events matching every given filter, as PredictionIO's JSON, oldest first
        (`reverse`: newest first), at most `limit` (None: all). PredictionIO's
        `GET /events.json`: user events, and items' current `$set` / `$unset` / `$delete`."""
        conn = self._conn()
        out: list[dict[str, Any]] = []
        order = "DESC" if reverse else "ASC"
        if entity_type in (None, "user") and target_entity_type in (None, "item"):
            where: list[str] = ["1"]
            args: list[str | int] = []
            for column, value in (("user", entity_id), ("action", event), ("item", target_entity_id)):
                if value is not None:
                    where.append(f"{column} = ?")
                    args.append(value)
            if start_ms is not None:
                where.append("time >= ?")
                args.append(start_ms)
            if until_ms is not None:
                where.append("time < ?")
                args.append(until_ms)
            sql = (f"SELECT id, user, action, item, time FROM events WHERE {' AND '.join(where)} "
                   f"ORDER BY time {order}, id {order}")
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            out = [{**_user_event_json(*row), "_ms": row[4]} for row in conn.execute(sql, args)]
        if entity_type in (None, "item") and target_entity_type is None and target_entity_id is None \
                and (event is None or event in ITEM_EVENTS):
            where, args = ["1"], []
            if entity_id is not None:
                where.append("item = ?")
                args.append(entity_id)
            if start_ms is not None:
                where.append("time >= ?")
                args.append(start_ms)
            if until_ms is not None:
                where.append("time < ?")
                args.append(until_ms)
            items = [e for e in self._item_events(conn, " AND ".join(where), args) if event in (None, e["event"])]
            if items:
                items.sort(key=lambda e: e["_ms"], reverse=reverse)
                out = sorted(out + items, key=lambda e: e["_ms"], reverse=reverse)  # stable: ties keep order
        if limit is not None:
            out = out[:limit]
        for e in out:
            e.pop("_ms", None)
        return out

    @staticmethod
    def _item_events(conn: sqlite3.Connection, where: str, args: list[Any]) -> list[dict[str, Any]]:
        """The current item events matching `where` (over item, time, event_id): one `$set`
        per event id with the properties it still holds, one `$unset` per event id of unset
        properties, the `$delete`s."""
        grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
        for item, name, value, t, event_id in conn.execute(
            f"SELECT item, name, value, time, event_id FROM item_props WHERE {where} ORDER BY time, item, name", args
        ):
            kind = "$unset" if value is None else "$set"
            e = grouped.setdefault((event_id, item, kind), {
                "eventId": event_id, "event": kind, "entityType": "item", "entityId": item,
                "properties": {}, "eventTime": ms_to_iso(t), "_ms": t})
            e["properties"][name] = None if value is None else json.loads(value)
        out = list(grouped.values())
        for item, t, event_id in conn.execute(
            f"SELECT item, time, event_id FROM item_deleted WHERE {where} ORDER BY time, item", args
        ):
            out.append({"eventId": event_id, "event": "$delete", "entityType": "item", "entityId": item,
                        "eventTime": ms_to_iso(t), "_ms": t})
        return out

    def export(self, out: TextIO) -> int:
        """Write everything as PredictionIO JSON lines, oldest first; returns lines written.
        Item properties come as one `$set` / `$unset` per property at its latest time."""
        return self.export_since(out).lines

    def export_since(self, out: TextIO, after_rowid: int | None = None, after_ms: int | None = None) -> Export:
        """Like `export`, but only the user events stored after a watermark (see
        `snapshot_since`). Returns lines written and the new watermark."""
        n = users = 0
        with self.snapshot_since(after_rowid, after_ms) as (mark, events):
            for e in events:
                out.write(json.dumps(e.to_json()) + "\n")
                n += 1
                users += not e.is_item_change
        return Export(lines=n, user_events=users, last_rowid=mark.rowid)

    @contextmanager
    def snapshot_since(
        self, after_rowid: int | None = None, after_ms: int | None = None
    ) -> Iterator[tuple[Watermark, Iterator[Event]]]:
        """(watermark, events) of one consistent snapshot, even while the service writes:
        every item delete and property (compacted to the latest per item and name, so
        applying them again changes nothing), then the user events stored after a
        watermark: a row id from an earlier snapshot (exact), else a time (events after it),
        else all; oldest first. The returned watermark is the next one.

        Stores made before row ids were AUTOINCREMENT can reuse the ids of pruned rows;
        when the last id is below the given one, the time stands in."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            last = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM events").fetchone()[0]
            row = conn.execute("SELECT value FROM counters WHERE name = 'item_changes'").fetchone()
            if after_rowid is not None and last < after_rowid:
                log.warning("event row ids went back (%d < %d): reading events by time instead", last, after_rowid)
                after_rowid = None
            yield Watermark(last, row[0] if row else 0), self._events_until(conn, last, after_rowid, after_ms)
        finally:
            conn.execute("COMMIT")

    @staticmethod
    def _events_until(conn: sqlite3.Connection, last: int, after_rowid: int | None,
                      after_ms: int | None) -> Iterator[Event]:
        """The snapshot's events (see `snapshot_since`), each with its event id; quarantined
        ones left out."""
        kept = "event_id NOT IN (SELECT event_id FROM quarantine)"
        for item, t, event_id in conn.execute(
            f"SELECT item, time, event_id FROM item_deleted WHERE {kept} ORDER BY time, item"
        ):
            yield Event("$delete", "item", item, t, event_id=event_id)
        for item, name, value, t, event_id in conn.execute(
            f"SELECT item, name, value, time, event_id FROM item_props WHERE {kept} ORDER BY time, item, name"
        ):
            if value is None:
                yield Event("$unset", "item", item, t, properties={name: None}, event_id=event_id)
            else:
                yield Event("$set", "item", item, t, properties={name: json.loads(value)}, event_id=event_id)
        where, args = "rowid <= ? AND CAST(rowid AS TEXT) NOT IN (SELECT event_id FROM quarantine)", [last]
        if after_rowid is not None:
            where, args = where + " AND rowid > ?", args + [after_rowid]
        elif after_ms is not None:
            where, args = where + " AND time > ?", args + [after_ms]
        for rowid, user, action, item, t in conn.execute(
            f"SELECT rowid, user, action, item, time FROM events WHERE {where} ORDER BY time, rowid", args
        ):
            yield Event(action, "user", user, t, "item", item, event_id=str(rowid))

    def quarantine(self, bad: Sequence[tuple[str, str]]) -> None:
        """Mark stored events (event id, reason) as ones an update cannot fold: they stay in
        the store (readable by id) and are left out of later updates and exports."""
        with self._write_lock:
            self._conn().executemany(
                "INSERT INTO quarantine (event_id, reason, time) VALUES (?, ?, ?) "
                "ON CONFLICT(event_id) DO UPDATE SET reason = excluded.reason",
                [(event_id, reason, now_ms()) for event_id, reason in bad])

    def quarantined(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest quarantined events: eventId, reason, when."""
        rows = self._conn().execute(
            "SELECT event_id, reason, time FROM quarantine ORDER BY time DESC, event_id LIMIT ?", (limit,))
        return [{"eventId": e, "reason": r, "at": ms_to_iso(t)} for e, r, t in rows]

    def stats(self) -> dict[str, Any]:
        conn = self._conn()
        per_action = dict(conn.execute("SELECT action, COUNT(*) FROM events GROUP BY action ORDER BY action"))
        return {
            "path": str(self.path),
            "events": sum(per_action.values()),
            "per_action": per_action,
            "items_with_properties": conn.execute("SELECT COUNT(DISTINCT item) FROM item_props").fetchone()[0],
            "deleted_items": conn.execute("SELECT COUNT(*) FROM item_deleted").fetchone()[0],
            "quarantined": conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0],
        }


def _user_event_json(rowid: int, user: str, action: str, item: str, t: int) -> dict[str, Any]:
    return {"eventId": str(rowid), "event": action, "entityType": "user", "entityId": user,
            "targetEntityType": "item", "targetEntityId": item, "eventTime": ms_to_iso(t)}


# ---------------------------------------------------------------------------- import
@dataclass
class ImportReport:
    path: str
    events: int
    rejected: int
    seconds: float
    item_changes: list[Event] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def read_events_file(path: str | Path) -> Iterator[tuple[int, Event | BadRequest, str]]:
    """(line number, event or the problem, raw line) for each row of a JSON-lines (PredictionIO)
    or CSV/TSV (header user,event,item[,time]) file. The format follows the extension:
    .csv / .tsv, anything else is JSON lines. Rows go through the validator `cooccur train`
    and the HTTP API use (indicators/validate.py), line by line as `train` reads them."""
    p = Path(path)
    if not p.is_file():
        raise EventFileError(str(p), "no such file")
    suffix = p.suffix.lower()
    now = now_ms()
    with open(p, "rb") as f:
        if suffix in (".csv", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            first = f.readline().decode("utf-8", "replace")
            header = [h.strip() for h in next(csv.reader([first], delimiter=sep), [])]
            missing = [c for c in ("user", "event", "item") if c not in header]
            if missing:
                raise EventFileError(str(p), f"header {header} lacks column(s) {', '.join(missing)}")
            at = [header.index(name) if name in header else None for name in ("user", "event", "item", "time")]

            def parse(text: str) -> Event:
                cells = validate.csv_cells(text, sep, len(header))
                user, event, item, time = (None if k is None else cells[k] for k in at)
                return validate.parse_row(user, event, item, time, now_ms=now)

            start = 2
        else:
            def parse(text: str) -> Event:
                return validate.parse_json_line(text, now_ms=now)

            start = 1
        for line, raw in enumerate(f, start):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            shown = raw.decode("utf-8", "replace")
            try:
                yield line, parse(validate.decode_line(raw)), shown
            except validate.InvalidEvent as e:
                yield line, BadRequest(e.field, e.problem), shown


def import_events(store: EventStore, path: str | Path, *, rejects: str | Path | None = None,
                  check: Callable[[list[Event]], None] | None = None) -> ImportReport:
    """Bulk-load an events file into the store (no HTTP). Bad rows are never dropped silently:
    without `rejects` any bad row rejects the whole file (nothing stored); with it they are
    written there (`line<TAB>field: problem<TAB>raw row`) and the rest is stored. `check`:
    the service's own checks of an event (`Recommender.check_events`: reserved and date
    properties), so a row the HTTP API refuses is refused here too."""
    start = _time.perf_counter()
    good: list[Event] = []
    bad: list[tuple[int, str, str, str]] = []
    for line, result, raw in read_events_file(path):
        if check is not None and isinstance(result, Event) and result.is_item_change:
            try:
                check([result])
            except BadRequest as e:
                result = e
        if isinstance(result, BadRequest):
            bad.append((line, result.field, result.problem, raw))
        else:
            good.append(result)
    if bad and rejects is None:
        raise ImportRejected(str(path), len(bad), len(bad) + len(good), [(b[0], b[1], b[2]) for b in bad])
    if bad and rejects is not None:  # (None raised above)
        Path(rejects).parent.mkdir(parents=True, exist_ok=True)
        with open(rejects, "w", encoding="utf-8") as f:
            for line, field_, problem, raw in bad:
                f.write(f"{line}\t{field_}: {problem}\t{raw}\n")
    report = store.insert(good)
    return ImportReport(str(path), len(good), len(bad), _time.perf_counter() - start, report.item_changes)
