"""Popularity rankings for backfill: popular, trending, hot (as the Universal Recommender).

Over a window [end - window, end]: popular = events in the window; trending = events in
its second half minus its first half (velocity); hot = (c3 - c2) - (c2 - c1) over its
thirds (acceleration). Computed from (item, time) rows with numpy, by the job and by
`cooccur update` alike, so an update ranks exactly as a full run does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from .columns import sorted_codes

RANKINGS_SCHEMA = pa.schema([
    ("item", pa.string()), ("popular", pa.float64()), ("trending", pa.float64()), ("hot", pa.float64()),
])
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(t: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    return (t.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def from_micros(us: int | None) -> datetime | None:
    """The inverse of `micros` (None stays None)."""
    return None if us is None else _EPOCH + timedelta(microseconds=int(us))


def kept_since(end: datetime, window: timedelta | None) -> int | None:
    """Events before this time (microseconds) can never count again once the newest event
    is `end`; None when every event counts."""
    return None if window is None else micros(end - window)


def rankings(
    items: pa.Array, times_us: pa.Array, end: datetime, window: timedelta | None,
    first: datetime | None = None,
) -> pa.Table:
    """item, popular, trending, hot for the items of ranked events (`items`, `times_us`:
    one entry per event, times in microseconds, null when unknown).

    Without a window it spans from `first` (the oldest event) to `end`; events without a
    time count for `popular` only when there is no window."""
    items = pa.chunked_array([items]).combine_chunks() if not isinstance(items, pa.Array) else items
    if len(items) == 0:
        return RANKINGS_SCHEMA.empty_table()
    code, dictionary = sorted_codes(items)
    times = pa.chunked_array([times_us]).combine_chunks() if not isinstance(times_us, pa.Array) else times_us
    has_time = ~np.asarray(times.is_null().to_numpy(zero_copy_only=False))
    t = times.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    end_us = micros(end)
    timed = has_time & (t <= end_us)
    if window is None:
        start = first or end
        popular_rows = ~has_time | timed
    else:
        start = end - window
        timed &= t >= micros(start)
        popular_rows = timed
    span_us = max((end - start).total_seconds() * 1e6, 1.0)
    frac = (t[timed] - micros(start)) / span_us
    half = np.minimum(np.floor(frac * 2), 1)
    third = np.minimum(np.floor(frac * 3), 2)
    n, tc = len(dictionary), code[timed]
    popular = np.bincount(code[popular_rows], minlength=n)
    trending = np.bincount(tc, weights=np.where(half == 1, 1.0, -1.0), minlength=n)
    c = [np.bincount(tc[third == k], minlength=n) for k in range(3)]
    ranked = np.flatnonzero(popular)
    return pa.table({
        "item": dictionary.take(pa.array(ranked)),
        "popular": popular[ranked].astype(np.float64),
        "trending": trending[ranked],
        "hot": ((c[2] - c[1]) - (c[1] - c[0]))[ranked].astype(np.float64),
    }, schema=RANKINGS_SCHEMA)
