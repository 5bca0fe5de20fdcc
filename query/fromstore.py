"""The event store as the one source of truth for training: `cooccur train --from-store`
(and `evaluate` / `tune --from-store`).

One consistent snapshot of the store (every item property and deletion, then every user
event) is written as a PredictionIO JSON-lines file, which the Spark job reads like any
events file; the model records the snapshot's watermark, so a later `cooccur update
--from-store` folds exactly the events stored after it (by row id, query/refresh.py).
The job is imported only by `train_from_store`: the snapshot itself needs no Spark.
The file is local to the driver (the system's temp directory, TMPDIR): with a cluster
master, export the store to shared storage (`cooccur events export`) and train on that.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EventStoreError
from .eventstore import EventStore


@dataclass(frozen=True)
class StoreFile:
    """A snapshot of the store as a file: where, how many lines and user events, and the
    watermark `cooccur update --from-store` continues from."""

    path: str
    lines: int
    user_events: int
    event_store: dict[str, Any]
    """{path (resolved), rowid, item_changes}: the manifest's `event_store`."""


@contextmanager
def store_file(store_path: str | Path) -> Iterator[StoreFile]:
    """The store's events as a temporary PredictionIO JSON-lines file (removed on exit).
    A missing store is an error, never created: training from nothing is a mistake."""
    path = Path(store_path)
    store = open_existing(path)
    try:
        with tempfile.TemporaryDirectory(prefix="cooccur-store-") as tmp:
            out = Path(tmp) / "events.jsonl"
            lines = users = 0
            with store.snapshot_since() as (mark, events), open(out, "w", encoding="utf-8") as f:
                for e in events:
                    f.write(json.dumps(e.to_json()) + "\n")
                    lines += 1
                    users += not e.is_item_change
            yield StoreFile(str(out), lines, users, {
                "path": str(path.resolve()), "rowid": mark.rowid, "item_changes": mark.item_changes})
    finally:
        store.close()


NO_EVENTS_HINT = "store events first (`cooccur events import FILE`), or name the store with --events"


def open_existing(path: str | Path) -> EventStore:
    """The event store at `path` for a command that reads it: never created here."""
    if not Path(path).is_file():
        raise EventStoreError(str(path), "no event store there", hint=NO_EVENTS_HINT)
    return EventStore(path)


def train_from_store(store_path: str | Path, settings, out: str | os.PathLike, *,
                     on_stage: Callable[[str], None] | None = None):
    """Train a model (indicators.job.run_train) on every event in the store; the model's
    manifest records the store's watermark. Returns the job's TrainReport."""
    from indicators.job import run_train

    # Absolute: Spark resolves a relative path against the JVM's working directory, which is
    # not this process's once it has changed directory (a notebook's, a test's chdir).
    out = Path(out).resolve()
    with store_file(store_path) as snap:
        if snap.user_events == 0:
            raise EventStoreError(str(store_path), "the event store holds no user events", hint=NO_EVENTS_HINT)
        return run_train([snap.path], settings, out, on_stage=on_stage,
                         manifest_extra={"event_store": snap.event_store})
