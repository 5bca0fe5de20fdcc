"""One summary line per stage of a run, with its time (the job's and the update's)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Stages:
    """Times each stage and logs one summary line per stage."""

    def __init__(self, on_stage: Callable[[str], None] | None) -> None:
        self.timings: dict[str, float] = {}
        self.on_stage = on_stage or (lambda line: log.info(line))
        self._t = time.perf_counter()

    def done(self, name: str, summary: str, seconds: float | None = None) -> None:
        """Log a finished stage; its time is since the last one unless given (a stage that
        ran concurrently with others)."""
        now = time.perf_counter()
        self.timings[name] = round(now - self._t, 3) if seconds is None else seconds
        self._t = now
        self.on_stage(f"{name:<12} {summary} ({self.timings[name]:.1f} s)")


def timed(fn, *args):
    """(seconds, result) of fn(*args)."""
    t = time.perf_counter()
    result = fn(*args)
    return round(time.perf_counter() - t, 3), result
