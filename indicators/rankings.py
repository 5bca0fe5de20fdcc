"""Popularity rankings for backfill: popular, trending, hot (as the Universal Recommender).

Over a window [end - window, end]: popular = events in the window; trending = events in
its second half minus its first half (velocity); hot = (c3 - c2) - (c2 - c1) over its
thirds (acceleration).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def rankings(
    events: DataFrame, actions: list[str], end: datetime, window: timedelta | None,
    first: datetime | None = None,
) -> DataFrame:
    """item, popular, trending, hot for items with events of `actions` in the window.

    Without a window it spans from `first` (the oldest event) to `end`; events without a
    time count for `popular` only when there is no window."""
    ev = events.where(F.col("event").isin(*actions))
    timed = ev.where(F.col("time").isNotNull() & (F.col("time") <= F.lit(end)))
    if window is None:
        start = first or end
        popular_rows = ev.where(F.col("time").isNull() | (F.col("time") <= F.lit(end)))
    else:
        start = end - window
        timed = timed.where(F.col("time") >= F.lit(start))
        popular_rows = timed
    span_us = max((end - start).total_seconds() * 1e6, 1.0)
    frac = (F.unix_micros("time") - F.lit(int(start.timestamp() * 1e6))) / F.lit(span_us)
    half = F.least(F.floor(frac * 2), F.lit(1))
    third = F.least(F.floor(frac * 3), F.lit(2))
    moves = timed.groupBy("item").agg(
        F.sum(F.when(half == 1, 1).otherwise(-1)).alias("trending"),
        F.count(F.when(third == 0, 1)).alias("c1"),
        F.count(F.when(third == 1, 1)).alias("c2"),
        F.count(F.when(third == 2, 1)).alias("c3"),
    )
    popular = popular_rows.groupBy("item").agg(F.count(F.lit(1)).alias("popular"))
    return popular.join(moves, "item", "left").select(
        "item",
        F.col("popular").cast("double"),
        F.coalesce(F.col("trending"), F.lit(0)).cast("double").alias("trending"),
        F.coalesce((F.col("c3") - F.col("c2")) - (F.col("c2") - F.col("c1")), F.lit(0))
        .cast("double").alias("hot"),
    )
