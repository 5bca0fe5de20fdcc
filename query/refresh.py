"""Keep a deployment fresh with no operator: `cooccur serve --refresh-every DURATION`.

`update_from_store` folds the event store's new events into a model (`cooccur update
--from-store`).

Every interval: `cooccur update MODEL --from-store` folds the events the service stored
since the last run into the model, then `cooccur index MODEL --changed-only` rewrites
the item documents that changed into a new index version and switches to it (a full
`cooccur index` when the current version was not built from the model's base). Each
runs in a child process: Spark (and its memory) stays out of the serving process, and a
failed run leaves the model and the current index version as they were; the next tick
tries again.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from indicators import validate

from .errors import EventStoreError
from .eventstore import Event, EventStore
from .request import parse_time

log = logging.getLogger(__name__)


@dataclass
class RefreshStatus:
    """The last refresh, as GET /stats shows it."""

    runs: int = 0
    failures: int = 0
    last_started: str | None = None
    last_seconds: float | None = None
    last_result: str | None = None
    """updated (N documents changed), unchanged (no new events), or failed: reason."""


def update_from_store(model_dir: str | Path, store_path: str | Path, out: str | Path | None = None,
                      on_stage: Callable[[str], None] | None = None):
    """Fold the events stored since the model's watermark into the model (no Spark: the
    store's events are validated already); None when there were none.

    The watermark is the last event row id an update from this store saw (exact); a model
    trained from files has none yet, so its newest event's time stands in."""
    from indicators.state import writing

    if not Path(store_path).is_file():
        raise EventStoreError(str(store_path), "no event store there")
    with writing(out or model_dir):  # the watermark read and the update, as one (a path or URI)
        return _fold_new_events(model_dir, str(Path(store_path).resolve()), out, on_stage)


def _fold_new_events(model_dir: str | Path, store_path: str, out, on_stage):
    from indicators.state import read_manifest
    from indicators.update import update_from_events

    manifest = read_manifest(model_dir)
    mark = manifest.get("event_store") or {}
    same_store = mark.get("path") == store_path
    after_rowid = mark.get("rowid") if same_store else None
    after_ms = None
    if manifest.get("newest_event"):
        newest = parse_time(manifest["newest_event"], "newest_event")
        after_ms = (newest - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    user_events: list[tuple[str, str, str, int]] = []
    item_events: list[tuple[str, str, dict | None, int]] = []
    bad: list[tuple[str, str]] = []
    store = EventStore(store_path)
    with store.snapshot_since(after_rowid, after_ms) as (now, stored):
        for e in stored:
            reason = unfoldable(e)
            if reason is not None:
                bad.append((cast(str, e.event_id), reason))  # a stored event has its id
            elif e.is_item_change:
                item_events.append((e.event, e.entity_id, e.properties, e.time_ms * 1000))
            else:
                # a valid user event has a target (validate.parse_event)
                user_events.append((e.event, e.entity_id, cast(str, e.target_entity_id), e.time_ms * 1000))
    if bad:
        store.quarantine(bad)
        log.warning("%d stored event(s) quarantined (kept in the store, left out of updates), e.g. %s: %s",
                    len(bad), *bad[0])
    if same_store and not user_events and not bad and now.item_changes == mark.get("item_changes"):
        return None
    report = update_from_events(model_dir, user_events, item_events, out, source=store_path, on_stage=on_stage,
                                event_store={"path": store_path, "rowid": now.rowid,
                                             "item_changes": now.item_changes})
    report.quarantined = len(bad)
    return report


def unfoldable(event: Event) -> str | None:
    """Why a stored event cannot be folded into a model (None: it can): the shared
    validator's verdict on it now. Events stored before a rule existed (e.g. a lone
    surrogate, which no UTF-8 model file can hold) fail here instead of failing every update."""
    try:
        validate.parse_event(event.to_json(), now_ms=0)
    except validate.InvalidEvent as e:
        return str(e)
    except (OverflowError, OSError, ValueError) as e:  # a stored time out of range
        return f"eventTime: {event.time_ms} ms is out of range ({e})"
    return None


class Refresher(threading.Thread):
    """Runs update + index every `every` seconds until stopped."""

    def __init__(self, model_dir: str, every: float, cli_options: Sequence[str] = (),
                 index_options: Sequence[str] = (), events_options: Sequence[str] = (),
                 timeout: float = 3600.0) -> None:
        """`cli_options` go before the command (e.g. -c CONFIG); `index_options` (--backend,
        --data-dir, --name) and `events_options` (--events) after it: the service's index
        and event store."""
        super().__init__(name="cooccur-refresher", daemon=True)
        self.model_dir = model_dir
        self.every = every
        self.cli_options = list(cli_options)
        self.index_options = list(index_options)
        self.events_options = list(events_options)
        self.timeout = timeout
        self.status = RefreshStatus()
        self.stopped = threading.Event()

    def _cooccur(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "cli", *self.cli_options, *args, *self.index_options]
        if args[0] == "update":
            cmd += self.events_options
        return subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)

    @staticmethod
    def _reason(done: subprocess.CompletedProcess) -> str:
        errors = [line for line in done.stderr.splitlines() if line.startswith(("Error:", "Hint:"))]
        return " ".join(errors) or (done.stderr.strip().splitlines() or ["no output"])[-1]

    def run_once(self) -> RefreshStatus:
        """One refresh now; its outcome is also logged and kept in `status`."""
        s = self.status
        s.runs += 1
        s.last_started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        s.last_result, s.last_seconds = "running", None
        t = time.perf_counter()
        try:
            s.last_result = self._refresh()
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            s.last_result = f"failed: {e}"
        if s.last_result.startswith("failed"):
            s.failures += 1
            log.warning("refresh %s", s.last_result)
        else:
            log.info("refresh: %s", s.last_result)
        s.last_seconds = round(time.perf_counter() - t, 3)
        return s

    def _refresh(self) -> str:
        done = self._cooccur("update", self.model_dir, "--from-store", "--json")
        if done.returncode != 0:
            return f"failed: update: {self._reason(done)}"
        report = json.loads(done.stdout)
        if not report.get("updated"):
            return "unchanged (no new events)"
        # Index even when no document changed: the new version records the new model, so
        # the next --changed-only finds its base.
        done = self._cooccur("index", self.model_dir, "--changed-only")
        how = "changed only"
        if done.returncode != 0:
            # The current version is not the base of this model (first refresh after a
            # full train, or someone indexed another model): index it whole.
            log.info("index --changed-only refused (%s); indexing the whole model", self._reason(done))
            done, how = self._cooccur("index", self.model_dir), "full index"
        if done.returncode != 0:
            return f"failed: index: {self._reason(done)}"
        return f"updated ({report['changed_items']} documents changed, {how})"

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            self.run_once()

    def stop(self) -> None:
        self.stopped.set()

    def as_json(self) -> dict:
        return {"every_seconds": self.every, "model": self.model_dir, **asdict(self.status)}
