"""The saved counting state of a model (state/, docs/model-format.md): checking it and
reading the settings it was made with. No pyspark here: serving checks models too."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from .errors import JobError
from .model import MODEL_FORMAT, Location, data_of, location, read_manifest_at
from .parts import read_table
from .settings import IndicatorSettings, InputSettings, RankingSettings, TrainSettings

log = logging.getLogger(__name__)

class StateError(JobError):
    """The model has no usable counting state."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"{path}: {problem}",
            hint="train the model again with `cooccur train` (save_state = true, the default)",
        )


_HELD: set[str] = set()


@contextmanager
def writing(model: str | os.PathLike | Location) -> Iterator[None]:
    """Hold the model directory's writer lock (a file beside it): two updates of one model
    at a time would lose one. Re-entrant within a process. Local models only: a model on a
    remote store has one writer by deployment (docs/cluster.md)."""
    where = location(model)
    if not where.local or where.uri in _HELD:
        yield
        return
    parent, name = os.path.split(where.path)
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{name}.lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(where.uri, "another update is writing this model now") from None
        _HELD.add(where.uri)
        try:
            recover(where)
            yield
        finally:
            _HELD.discard(where.uri)


def recover(model: str | os.PathLike | Location) -> None:
    """Undo what a killed writer of a local `model` left under the former publish-by-rename
    (models are now published by their manifest, `indicators.model`): a model renamed aside
    (`.NAME.old-PID`) with no new one renamed in is put back; temporary copies
    (`.NAME.tmp-PID`, `.NAME.old-PID`) of processes that are gone are removed. Safe without
    the writer lock: only dead processes' copies are touched."""
    where = location(model)
    if not where.local:
        return
    model = Path(where.path)

    def dead(p: Path) -> bool:
        pid = p.name.rpartition("-")[2]
        if not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, another user's
            return False
        return False

    aside = sorted((p for p in model.parent.glob(f".{model.name}.old-*") if dead(p)),
                   key=lambda p: p.stat().st_mtime)
    if aside and not model.exists():
        os.replace(aside.pop(), model)
    for p in [*aside, *(p for p in model.parent.glob(f".{model.name}.tmp-*") if dead(p))]:
        log.warning("removing %s left by an interrupted run", p)
        shutil.rmtree(p, ignore_errors=True)


def read_state(where: Location, **options) -> pa.Table:
    """A state table (file or directory), or a StateError naming it when it is unreadable."""
    try:
        return read_table(where, **options)
    except (pa.ArrowException, OSError) as e:
        raise StateError(str(where), f"unreadable Parquet ({e})") from None


def model_settings(manifest: dict) -> TrainSettings:
    """The TrainSettings a model was trained with (an update must use the same)."""
    s = dict(manifest["settings"])
    s["indicators"] = [IndicatorSettings(**i) for i in s["indicators"]]
    s["input"] = InputSettings(**s["input"])
    s["rankings"] = RankingSettings(**s["rankings"])
    return TrainSettings(**s)


def read_manifest(model: str | os.PathLike | Location) -> dict:
    """The manifest of a model with state, or a StateError saying what is missing."""
    where = location(model)
    path = str(where / "manifest.json")
    try:
        manifest = read_manifest_at(where)
    except FileNotFoundError:
        raise StateError(where.uri, "not a model directory (no manifest.json)") from None
    except json.JSONDecodeError as e:
        raise StateError(path, f"invalid JSON at line {e.lineno}: {e.msg}") from None
    except OSError as e:
        raise StateError(path, f"unreadable ({e})") from None
    if manifest.get("format") != MODEL_FORMAT:
        raise StateError(path, f"format {manifest.get('format')!r}, expected {MODEL_FORMAT!r}")
    state = manifest.get("state") or {}
    if not isinstance(state, dict) or not state.get("pairs"):
        raise StateError(where.uri, "the model was trained without its counting state (state/)")
    if not all(
            isinstance(state.get(k), int) and state[k] >= 0 for k in ("users", "generation")):
        raise StateError(path, "`state` needs whole numbers `users` and `generation`")
    if not isinstance(manifest.get("settings"), dict) or not isinstance(manifest.get("indicators"), list):
        raise StateError(path, "no `settings` / `indicators` (training did not finish?)")
    parts = ["interactions", "items.parquet", "pairs", "ranking_events.parquet", "property_changes.parquet"]
    if manifest["settings"].get("min_events_per_user"):
        parts += ["held_interactions", "held_users"]
    state_dir = state_of(where, manifest)
    for part in parts:
        if not (state_dir / part).exists():
            raise StateError(str(state_dir), f"missing {part}")
    return manifest


def state_of(model: Location, manifest: dict) -> Location:
    """The state/ directory of the model version a manifest names."""
    try:
        return data_of(model, manifest) / "state"
    except ValueError as e:
        raise StateError(str(model / "manifest.json"), str(e)) from None
