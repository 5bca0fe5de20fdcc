"""Binarize interactions and cap them per user, then per item, by a seeded hash.

Keeping the interactions with the smallest hash(seed, user, item) is random yet
deterministic, independent of partitioning, and maintainable incrementally: a new
interaction enters a kept set only if its hash is among the smallest. Order (fixed):
first at most `max_interactions_per_user` items per (user, action), then at most
`max_users_per_item` users per (item, action) among what the first cap kept. Mahout's
sampleDownAndBinarize divides ints, so a user over its cap can lose everything; here a
user over the cap keeps exactly the cap.

Before both caps, `min_events_per_user` leaves out (`held`) every interaction of the users
with fewer primary events than that (raw events, repeats included: the Universal
Recommender's minEventsPerUser). The user pass sees all of a user's rows at once, so this
costs no extra shuffle.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import concat, run_ranks, sorted_codes

if TYPE_CHECKING:  # pyspark is imported where it is used: `sample_hashes` needs none
    from pyspark.sql import DataFrame

USER_CAPPED_SCHEMA = (
    "action string, user string, item string, h long, user_kept boolean, user_capped boolean, "
    "first_user boolean, first_user_action boolean, held boolean, primary_events long"
)
MARKED_SCHEMA = (
    "action string, user string, item string, h long, user_kept boolean, kept boolean, "
    "item_users long, "
    "user_capped boolean, item_capped boolean, first_user boolean, first_user_action boolean, "
    "first_item boolean, held boolean, primary_events long"
)


def sample_hash(seed: int):
    """The downsampling key of a (user, item) interaction."""
    from pyspark.sql import functions as F

    return F.xxhash64(F.lit(seed).cast("long"), F.col("user"), F.col("item"))


def sample_hashes(seed: int, users: list[str], items: list[str]) -> np.ndarray:
    """`sample_hash` without Spark, for events that arrive without it (`cooccur update
    --from-store`): Spark's xxhash64 hashes each value with XXH64 seeded by the previous
    value's hash, starting from 42; the seed is a long (8 bytes, little-endian)."""
    import xxhash  # only the store path needs it

    start = xxhash.xxh64_intdigest(struct.pack("<q", seed), 42)
    h64 = xxhash.xxh64_intdigest
    out = np.fromiter(
        (h64(i.encode(), h64(u.encode(), start)) for u, i in zip(users, items, strict=True)),
        dtype=np.uint64, count=len(users),
    )
    return out.view(np.int64)


def binarize(events: DataFrame, actions: list[str]) -> DataFrame:
    """(action, user, item) of the indicator actions; `downsample` drops repeats."""
    from pyspark.sql import functions as F

    return events.where(F.col("event").isin(*actions)).select(
        F.col("event").alias("action"), "user", "item"
    )


def _user_cap(cap: int, primary: str | None = None, minimum: int = 0):
    """Per partition of users: count each user's primary events (with `minimum`), drop
    repeats, hold out the users below `minimum`, keep the `cap` smallest (hash, item) per
    (user, action) of the others, mark first rows for counting."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        t = concat(batches)
        if t is None:
            return
        user, _ = sorted_codes(t["user"])
        action, actions = sorted_codes(t["action"])
        item, items = sorted_codes(t["item"])
        n_action, n_item = len(actions), len(items)
        if minimum:
            is_primary = pc.equal(actions, primary).to_numpy(zero_copy_only=False)[action]
            primary_events = np.bincount(user[is_primary], minlength=int(user.max()) + 1)
        group = user.astype(np.int64) * n_action + action
        _, first = np.unique(group * n_item + item, return_index=True)  # binarize
        t, group, item = t.take(pa.array(first)), group[first], item[first]
        h = t["h"].to_numpy()
        order = np.lexsort((item, h, group))
        t, group = t.take(pa.array(order)), group[order]
        rank, size = run_ranks(group)
        user_sorted = group // n_action
        if minimum:
            events = primary_events[user_sorted]
            held = events < minimum
        else:
            events, held = np.zeros(len(group), np.int64), np.zeros(len(group), bool)
        yield pa.RecordBatch.from_arrays(
            [
                t["action"].combine_chunks(), t["user"].combine_chunks(),
                t["item"].combine_chunks(), t["h"].combine_chunks(),
                pa.array(((rank < cap) | (cap == 0)) & ~held),
                pa.array((size > cap) & (cap > 0) & ~held),
                pa.array(np.r_[True, user_sorted[1:] != user_sorted[:-1]]),
                pa.array(rank == 0),
                pa.array(held),
                pa.array(events.astype(np.int64)),
            ],
            schema=pa.schema([
                ("action", pa.string()), ("user", pa.string()), ("item", pa.string()),
                ("h", pa.int64()), ("user_kept", pa.bool_()), ("user_capped", pa.bool_()),
                ("first_user", pa.bool_()), ("first_user_action", pa.bool_()),
                ("held", pa.bool_()), ("primary_events", pa.int64()),
            ]),
        )

    return run


def _item_cap(cap: int):
    """Per partition of (action, item): among the rows the user cap kept, keep the `cap`
    smallest (hash, user); count the users kept per item."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        t = concat(batches)
        if t is None:
            return
        action, actions = sorted_codes(t["action"])
        item, _ = sorted_codes(t["item"])
        user, _ = sorted_codes(t["user"])
        n_action = len(actions)
        group = item.astype(np.int64) * n_action + action
        user_kept = t["user_kept"].to_numpy(zero_copy_only=False)
        held = t["held"].to_numpy(zero_copy_only=False)
        # Rows the user cap dropped sort last, so ranks count only kept ones first; held
        # rows after those, so a group's first row is a counted user's when there is one.
        order = np.lexsort((user, t["h"].to_numpy(), ~user_kept, held, group))
        t, group, user_kept, held = t.take(pa.array(order)), group[order], user_kept[order], held[order]
        rank, _ = run_ranks(group)
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        sizes = np.diff(np.r_[starts, len(group)])
        kept_in_group = np.repeat(np.add.reduceat(user_kept.astype(np.int64), starts), sizes)
        item_users = kept_in_group if cap == 0 else np.minimum(kept_in_group, cap)
        yield pa.RecordBatch.from_arrays(
            [
                t["action"].combine_chunks(), t["user"].combine_chunks(), t["item"].combine_chunks(),
                t["h"].combine_chunks(), pa.array(user_kept),
                pa.array(user_kept & ((rank < cap) | (cap == 0))),
                pa.array(item_users.astype(np.int64)),
                t["user_capped"].combine_chunks(),
                pa.array((kept_in_group > cap) & (cap > 0)),
                t["first_user"].combine_chunks(), t["first_user_action"].combine_chunks(),
                pa.array((rank == 0) & ~held), pa.array(held), t["primary_events"].combine_chunks(),
            ],
            schema=pa.schema([
                ("action", pa.string()), ("user", pa.string()), ("item", pa.string()),
                ("h", pa.int64()), ("user_kept", pa.bool_()),
                ("kept", pa.bool_()), ("item_users", pa.int64()), ("user_capped", pa.bool_()),
                ("item_capped", pa.bool_()), ("first_user", pa.bool_()),
                ("first_user_action", pa.bool_()), ("first_item", pa.bool_()),
                ("held", pa.bool_()), ("primary_events", pa.int64()),
            ]),
        )

    return run


def downsample(
    interactions: DataFrame, seed: int, max_per_user: int, max_per_item: int, partitions: int,
    primary: str | None = None, min_events_per_user: int = 0,
) -> DataFrame:
    """Mark which interactions the caps keep; every distinct interaction comes out once.

    Columns: action, user, item, `h` (the hash), `user_kept` (kept by the user cap),
    `kept`; `item_users` = users kept for (action, item);
    `user_capped` / `item_capped` (the user or item had more than its cap); and, to count
    without distinct aggregations, `first_user` (one row per user over all actions),
    `first_user_action` (one per (user, action)), `first_item` (one per (action, item)
    among the users counted); `held`: the user has fewer than `min_events_per_user` events
    of `primary` (`primary_events`, counted with `min_events_per_user` only) and is left out
    (never kept, capped or first of an item). Two shuffles (by user, then by item), each
    followed by a vectorised pass in numpy."""
    by_user = (
        interactions.withColumn("h", sample_hash(seed))
        .repartition(partitions, "user")
        .mapInArrow(_user_cap(max_per_user, primary, min_events_per_user), USER_CAPPED_SCHEMA)
    )
    return by_user.repartition(partitions, "action", "item").mapInArrow(
        _item_cap(max_per_item), MARKED_SCHEMA
    )
