"""Popularity rankings: known answers worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from indicators import rankings as rk
from indicators.rankings import rankings

END = datetime(2026, 1, 10, tzinfo=UTC)
EVENTS = [
    ("u1", "buy", "x", "2025-12-30T00:00:00"),  # before the 9-day window
    ("u1", "buy", "x", "2026-01-01T12:00:00"),  # first third, first half
    ("u2", "buy", "x", "2026-01-04T12:00:00"),  # second third, first half
    ("u3", "buy", "x", "2026-01-07T12:00:00"),  # last third, second half
    ("u4", "buy", "x", "2026-01-08T12:00:00"),  # last third, second half
    ("u5", "buy", "x", "2026-01-11T00:00:00"),  # after the end
    ("u1", "buy", "y", "2026-01-09T21:36:00"),  # last third
    ("u1", "view", "z", "2026-01-05T00:00:00"),  # another action: not ranked
]


@pytest.fixture
def events():
    """(items, times in microseconds) of the ranked action, as the job passes them."""
    rows = [(item, rk.micros(datetime.fromisoformat(t).replace(tzinfo=UTC)))
            for _, event, item, t in EVENTS if event == "buy"]
    return pa.array([r[0] for r in rows]), pa.array([r[1] for r in rows], pa.int64())


def table(t) -> dict:
    return {r["item"]: (r["popular"], r["trending"], r["hot"]) for r in t.to_pylist()}


def test_window_counts_velocity_acceleration(events):
    got = table(rankings(*events, END, timedelta(days=9)))
    # x: 4 in the window; halves 2 and 2 -> trending 0; thirds 1, 1, 2 -> hot (2-1)-(1-1) = 1.
    # y: 1 in the last third -> trending 1 (second half minus first), hot (1-0)-(0-0) = 1.
    assert got == {"x": (4.0, 0.0, 1.0), "y": (1.0, 1.0, 1.0)}


def test_no_window_counts_everything_up_to_the_end(events):
    first = datetime(2025, 12, 30, tzinfo=UTC)
    got = table(rankings(*events, END, None, first))
    assert {k: v[0] for k, v in got.items()} == {"x": 5.0, "y": 1.0}


def test_events_without_time_count_only_without_a_window():
    items, times = pa.array(["x", "x"]), pa.array([None, rk.micros(END)], pa.int64())
    assert table(rankings(items, times, END, None, END))["x"][0] == 2.0
    assert table(rankings(items, times, END, timedelta(days=1)))["x"][0] == 1.0
    assert rankings(pa.array([], pa.string()), pa.array([], pa.int64()), END, None).num_rows == 0
