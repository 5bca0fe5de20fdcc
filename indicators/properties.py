"""Item properties from PredictionIO `$set` / `$unset` / `$delete` events; the latest wins.

Events are ordered by time, then by their position in the input (a later line wins a tie).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window


def properties(item_events: DataFrame) -> DataFrame:
    """item, name, values (list<string>) of the current properties of every item."""
    order = [F.coalesce("time", F.lit("1970-01-01").cast("timestamp")), "file", "pos"]
    deleted = (
        item_events.where(F.col("event") == "$delete")
        .groupBy("item")
        .agg(F.max(F.struct(*order)).alias("deleted_at"))
    )
    changes = item_events.where(F.col("event").isin("$set", "$unset")).select(
        "item", "event", F.struct(*order).alias("at"),
        F.explode(F.from_json("properties", "map<string,string>")).alias("name", "raw"),
    )
    latest = Window.partitionBy("item", "name").orderBy(F.col("at").desc())
    current = (
        changes.withColumn("_r", F.row_number().over(latest))
        .where(F.col("_r") == 1)
        .join(deleted, "item", "left")
        .where(F.col("deleted_at").isNull() | (F.col("at") > F.col("deleted_at")))
        .where((F.col("event") == "$set") & F.col("raw").isNotNull())
    )
    # A JSON array stays a list; a scalar becomes a one-element list (as text).
    as_list = F.from_json("raw", "array<string>")
    values = F.when(F.trim("raw").startswith("["), as_list).otherwise(F.array("raw"))
    return current.select("item", "name", values.alias("values")).where(F.size("values") > 0)
