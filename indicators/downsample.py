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
    """Mark which interactions the caps keep; every input row comes out once.

    Columns added: `kept`; `item_users` = users kept for (action, item); the flags
    `user_capped` / `item_capped` (the user or item had more than its cap); and, for
    counting without distinct aggregations, `first_user` (one row per user over all
    actions), `first_user_action` (one per (user, action)) and `first_item` (one per
    (action, item)). Windows partitioned by user, then by (user, action), share one
    shuffle; the item window needs a second one."""
    df = interactions.withColumn("h", sample_hash(seed))
    by_user = Window.partitionBy("user")
    by_user_action = Window.partitionBy("user", "action")
    df = (
        df.withColumn("first_user", F.row_number().over(by_user.orderBy("action", "h", "item")) == 1)
        .withColumn("_n", F.count(F.lit(1)).over(by_user_action))
        .withColumn("_r", F.row_number().over(by_user_action.orderBy("h", "item")))
        .withColumn("first_user_action", F.col("_r") == 1)
        .withColumn("user_capped", (F.col("_n") > max_per_user) & F.lit(max_per_user > 0))
        .withColumn("_user_kept", (F.col("_r") <= max_per_user) | F.lit(max_per_user == 0))
    )
    by_item = Window.partitionBy("action", "item")
    # Among the rows the user cap kept (ordered first), keep the smallest hashes.
    item_rank = F.row_number().over(by_item.orderBy(F.col("_user_kept").desc(), "h", "user"))
    n_item = F.sum(F.col("_user_kept").cast("int")).over(by_item)
    df = (
        df.withColumn("_ir", item_rank)
        .withColumn("_ni", n_item)
        .withColumn("first_item", F.col("_ir") == 1)
        .withColumn("item_capped", (F.col("_ni") > max_per_item) & F.lit(max_per_item > 0))
        .withColumn(
            "kept", F.col("_user_kept") & ((F.col("_ir") <= max_per_item) | F.lit(max_per_item == 0))
        )
        .withColumn(
            "item_users",
            F.col("_ni") if max_per_item == 0 else F.least(F.col("_ni"), F.lit(max_per_item)),
        )
    )
    return df.drop("h", "_n", "_r", "_user_kept", "_ir", "_ni")
