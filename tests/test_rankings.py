"""Popularity rankings: known answers worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from indicators.rankings import rankings

pytestmark = pytest.mark.spark

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
def events(spark):
    return spark.createDataFrame(EVENTS, "user string, event string, item string, time string") \
        .selectExpr("user", "event", "item", "to_timestamp(time) as time")


def test_window_counts_velocity_acceleration(events):
    got = {r.item: (r.popular, r.trending, r.hot)
           for r in rankings(events, ["buy"], END, timedelta(days=9)).collect()}
    # x: 4 in the window; halves 2 and 2 -> trending 0; thirds 1, 1, 2 -> hot (2-1)-(1-1) = 1.
    # y: 1 in the last third -> trending 1 (second half minus first), hot (1-0)-(0-0) = 1.
    assert got == {"x": (4.0, 0.0, 1.0), "y": (1.0, 1.0, 1.0)}


def test_no_window_counts_everything_up_to_the_end(events):
    first = datetime(2025, 12, 30, tzinfo=UTC)
    got = {r.item: r.popular for r in rankings(events, ["buy"], END, None, first).collect()}
    assert got == {"x": 5.0, "y": 1.0}
