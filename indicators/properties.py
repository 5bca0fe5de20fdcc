"""Item properties from PredictionIO `$set` / `$unset` / `$delete` events; the latest wins.

Events are ordered by time, then by their position in the input (a later line wins a tie).
Spark turns events into one change per (item, property) (`property_changes`); the latest
change per (item, property) and the latest `$delete` per item decide (`current_properties`,
pyarrow). Those latest changes are the model's state: `cooccur update` adds new changes to
them (a later generation wins a time tie, as a later file would) and gets what a full run
on all events would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import sorted_codes

if TYPE_CHECKING:  # pyspark is imported where it is used: update --from-store needs none
    from pyspark.sql import Column, DataFrame

CHANGES_SCHEMA = pa.schema([
    ("item", pa.string()), ("kind", pa.string()), ("name", pa.string()),
    ("values", pa.list_(pa.string())), ("time_us", pa.int64()), ("gen", pa.int64()),
    ("file", pa.string()), ("pos", pa.int64()),
])
PROPERTIES_SCHEMA = pa.schema([("item", pa.string()), ("name", pa.string()), ("values", pa.list_(pa.string()))])


def property_changes(item_events: DataFrame, gen: int = 0) -> DataFrame:
    """One row per property a `$set`/`$unset` names, and one per `$delete` (name null):
    item, kind (set/unset/delete), name, values, time_us (0 when unknown), gen, file, pos."""
    from pyspark.sql import functions as F

    at: list[Column | str] = [
        F.coalesce(F.unix_micros("time"), F.lit(0).cast("long")).alias("time_us"),
        F.lit(gen).cast("long").alias("gen"), "file", "pos",
    ]
    exploded = item_events.where(F.col("event").isin("$set", "$unset")).select(
        "item", "event", *at,
        F.explode(F.from_json("properties", "map<string,string>")).alias("name", "raw"),
    )
    # A JSON array stays a list; a scalar becomes a one-element list (as text).
    values = F.when(F.trim("raw").startswith("["), F.from_json("raw", "array<string>")).otherwise(F.array("raw"))
    is_set = (F.col("event") == "$set") & F.col("raw").isNotNull()
    changes = exploded.select(
        "item", F.when(is_set, "set").otherwise("unset").alias("kind"), "name",
        F.when(is_set, values).alias("values"), "time_us", "gen", "file", "pos",
    )
    deletes = item_events.where(F.col("event") == "$delete").select(
        "item", F.lit("delete").alias("kind"), F.lit(None).cast("string").alias("name"),
        F.lit(None).cast("array<string>").alias("values"), *at,
    )
    return changes.unionByName(deletes)


def _spark_values(raw) -> list | None:
    """A property's values as `property_changes` makes them from JSON text (a JSON array
    stays a list, a scalar becomes a one-element list; non-strings as compact JSON), for
    properties parsed already."""
    def text(v):
        return v if isinstance(v, str) or v is None else json.dumps(v, separators=(",", ":"))

    if isinstance(raw, str) and raw.strip(" ").startswith("["):
        # Spark parses such a string as a JSON array too (and gets null when it is not one).
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(raw, list):
            return None
    return [text(v) for v in raw] if isinstance(raw, list) else [text(raw)]


def changes_from_pio(item_events: Iterable[tuple[str, str, dict | None, int | None]], gen: int,
                     source: str) -> pa.Table:
    """`property_changes` for PredictionIO item events parsed already (event, item,
    properties, time in microseconds), in input order (`pos`), from `source` (`file`)."""
    rows: dict[str, list] = {name: [] for name in CHANGES_SCHEMA.names}

    def add(item, kind, name, values, time_us, pos):
        for key, v in zip(CHANGES_SCHEMA.names, (item, kind, name, values, time_us or 0, gen, source, pos),
                          strict=True):
            rows[key].append(v)

    for pos, (event, item, props, time_us) in enumerate(item_events):
        if event == "$delete":
            add(item, "delete", None, None, time_us, pos)
        elif event in ("$set", "$unset"):
            for name, raw in (props or {}).items():
                is_set = event == "$set" and raw is not None
                add(item, "set" if is_set else "unset", name, _spark_values(raw) if is_set else None, time_us, pos)
    return pa.table(rows, schema=CHANGES_SCHEMA)


def _last_per_key(keys: pa.Array) -> np.ndarray:
    """Positions of the last row of every key (rows in time order)."""
    codes, _ = sorted_codes(keys)
    _, last_reversed = np.unique(codes[::-1], return_index=True)
    return np.sort(len(codes) - 1 - last_reversed)


def current_properties(changes: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(state, properties): the latest change per (item, property) plus the latest delete
    per item, and the item properties they leave (item, name, values)."""
    changes = changes.select(CHANGES_SCHEMA.names).cast(CHANGES_SCHEMA)
    if changes.num_rows == 0:
        return changes, PROPERTIES_SCHEMA.empty_table()
    changes = changes.sort_by([("time_us", "ascending"), ("gen", "ascending"),
                               ("file", "ascending"), ("pos", "ascending")])
    is_delete = pc.equal(changes["kind"], "delete").to_numpy(zero_copy_only=False)
    order = np.arange(changes.num_rows)
    sets = changes.filter(pa.array(~is_delete))
    deletes = changes.filter(pa.array(is_delete))
    set_order, delete_order = order[~is_delete], order[is_delete]
    key = pc.binary_join_element_wise(sets["item"], sets["name"], "\x00")
    last = _last_per_key(key)
    sets, set_order = sets.take(pa.array(last)), set_order[last]
    last = _last_per_key(deletes["item"])
    deletes, delete_order = deletes.take(pa.array(last)), delete_order[last]
    # A change survives a delete of its item only when it came after it.
    deleted_at = np.full(sets.num_rows, -1)
    at = pc.index_in(sets["item"], value_set=deletes["item"]).to_numpy(zero_copy_only=False)
    found = ~np.isnan(at.astype(np.float64))
    deleted_at[found] = delete_order[at[found].astype(np.int64)]
    alive = (
        pc.equal(sets["kind"], "set").to_numpy(zero_copy_only=False)
        & (set_order > deleted_at)
        & (pc.fill_null(pc.list_value_length(sets["values"]), 0).to_numpy(zero_copy_only=False) > 0)
    )
    state = pa.concat_tables([sets, deletes])
    props = (sets.filter(pa.array(alive)).select(PROPERTIES_SCHEMA.names)
             .sort_by([("item", "ascending"), ("name", "ascending")]))
    return state, props
