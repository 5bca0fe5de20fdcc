"""Binarize interactions and cap them per user, then per item, by a seeded hash.

Keeping the interactions with the smallest hash(seed, user, item) is random yet
deterministic, independent of partitioning, and maintainable incrementally: a new
interaction enters a kept set only if its hash is among the smallest. Order (fixed):
first at most `max_interactions_per_user` items per (user, action), then at most
`max_users_per_item` users per (item, action) among what the first cap kept. Mahout's
sampleDownAndBinarize divides ints, so a user over its cap can lose everything; here a
user over the cap keeps exactly the cap.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window


def sample_hash(seed: int):
    """The downsampling key of a (user, item) interaction."""
    return F.xxhash64(F.lit(seed).cast("long"), F.col("user"), F.col("item"))


def binarize(events: DataFrame, actions: list[str]) -> DataFrame:
    """Distinct (action, user, item) of the indicator actions."""
    return (
        events.where(F.col("event").isin(*actions))
        .select(F.col("event").alias("action"), "user", "item")
        .distinct()
    )


def downsample(
    interactions: DataFrame, seed: int, max_per_user: int, max_per_item: int
) -> DataFrame:
    """Cap interactions; adds `item_users` = users kept for (action, item).

    Columns out: action, user, item, item_users, plus the flags `user_capped`
    (the user had more than the cap) and `item_capped` for the report."""
    df = interactions.withColumn("h", sample_hash(seed))
    by_user = Window.partitionBy("action", "user")
    if max_per_user > 0:
        df = (
            df.withColumn("_n", F.count(F.lit(1)).over(by_user))
            .withColumn("_r", F.row_number().over(by_user.orderBy("h", "item")))
            .where(F.col("_r") <= max_per_user)
            .withColumn("user_capped", F.col("_n") > max_per_user)
            .drop("_n", "_r")
        )
    else:
        df = df.withColumn("user_capped", F.lit(False))
    by_item = Window.partitionBy("action", "item")
    df = df.withColumn("_n", F.count(F.lit(1)).over(by_item))
    if max_per_item > 0:
        df = (
            df.withColumn("_r", F.row_number().over(by_item.orderBy("h", "user")))
            .where(F.col("_r") <= max_per_item)
            .withColumn("item_capped", F.col("_n") > max_per_item)
            .withColumn("item_users", F.least(F.col("_n"), F.lit(max_per_item)))
            .drop("_r")
        )
    else:
        df = df.withColumn("item_capped", F.lit(False)).withColumn("item_users", F.col("_n"))
    return df.drop("_n", "h")
