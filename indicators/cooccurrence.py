"""Co-occurrence counts and LLR indicators, as vectorised per-partition work.

The indicator of primary item a and action E is row a of A'E (users x items matrices of
binary interactions, as Mahout's SimilarityAnalysis computes them), scored by LLR. Primary
items are split into blocks, one partition each; a block's partition receives what it
needs to compute its rows of A'E completely: the block's primary interactions and all
interactions of the users who have one of its items. It then multiplies sparse matrices
(scipy), scores by LLR (indicators.llr) and keeps the top correlators per item, ties by
item id. The only shuffle moves interactions (each at most once per block), never partial
pair counts, which outnumber interactions by orders of magnitude. Item ids stay strings,
factorised per partition with Arrow; nothing is row-at-a-time Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import sparse

from .columns import concat, run_ranks, sorted_codes
from .llr import LlrTable
from .model import Location, location

if TYPE_CHECKING:  # pyspark is imported where it is used: the update's fold needs none
    from pyspark.sql import DataFrame

INDICATORS_SCHEMA = "indicator string, item string, correlators array<string>, scores array<double>"


@dataclass(frozen=True)
class IndicatorSpec:
    name: str
    max_correlators: int
    min_llr: float | None


# Log-scale score buckets for the top-k prefilter: 4 per doubling, up to LLR 2^16.
_BUCKETS = 64


def _top_candidates(row: np.ndarray, score: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """Mask of the entries that can be in their row's top k (sorting all pairs is the
    job's most expensive step; this keeps a few times k per row).

    Per row, count entries per score bucket and keep the buckets from the top down until
    they hold at least k entries. Everything dropped scores strictly below everything
    kept in its row, so the top k (ties included) survive exactly."""
    if len(row) <= k:
        return np.ones(len(row), dtype=bool)
    bucket = np.minimum((np.log2(score + 1.0) * 4).astype(np.int64), _BUCKETS - 1)
    counts = np.bincount(row * _BUCKETS + bucket, minlength=n_rows * _BUCKETS)
    # Entries at or above each bucket, per row (cumulative from the top bucket down).
    above = np.cumsum(counts.reshape(n_rows, _BUCKETS)[:, ::-1], axis=1)[:, ::-1]
    # Lowest bucket whose entries-at-or-above is still >= k (0 when the row has < k).
    enough = above >= k
    lowest = np.where(enough.any(axis=1), _BUCKETS - 1 - np.argmax(enough[:, ::-1], axis=1), 0)
    return bucket >= lowest[row]


def score_rows(
    c: sparse.csr_matrix, a_counts: np.ndarray, b_counts: np.ndarray, table: LlrTable,
    spec: IndicatorSpec, col_rank: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top correlators of every row of a co-occurrence matrix, by LLR.

    `c` holds k11 per (a, b) with sorted column indices; self pairs are already gone. Ties
    break by item id: by column when columns are in id order, else by `col_rank` (each
    column's position in id order). Returns (row, col, score), rows ascending, each row's
    entries best first. Shared by the job and `cooccur update`, so an update scores
    exactly as a full run does."""
    row = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
    col, k11 = c.indices.astype(np.int64), c.data
    score = table.scores(
        k11, a_counts[row], b_counts[col],
        table.marginal_entropy(a_counts)[row], table.marginal_entropy(b_counts)[col],
    )
    if spec.min_llr is not None:
        ok = score >= spec.min_llr
        row, col, score = row[ok], col[ok], score[ok]
    keep = _top_candidates(row, score, c.shape[0], spec.max_correlators)
    row, col, score = row[keep], col[keep], score[keep]
    # Rows come sorted, and within a row columns in id order (or ranked so); a stable sort
    # by score keeps that order among equal scores, so ties break by item id.
    order = np.lexsort((-score, row) if col_rank is None else (col_rank[col], -score, row))
    row, col, score = row[order], col[order], score[order]
    keep = run_ranks(row)[0] < spec.max_correlators
    return row[keep], col[keep], score[keep]


@dataclass(frozen=True)
class PairState:
    """Where blocks save their pair counts (a path or URI every executor writes to), and
    the model's item codes (state/items.parquet: the position of each item id) that the
    files use."""

    directory: str
    items: pa.Array


def pair_table(indicator: int, a_codes: np.ndarray, b_codes: np.ndarray, c: sparse.csr_matrix) -> pa.Table:
    """k11 of every co-occurring pair of `c` (rows a, columns b, sorted), as saved in the
    model's state/pairs/: the indicator's position and the items' codes, integers only
    (the pairs outnumber the items by orders of magnitude)."""
    rows = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
    return pa.table({
        "indicator": pa.array(np.full(c.nnz, indicator, dtype=np.int8)),
        "a": pa.array(a_codes[rows].astype(np.int32)),
        "b": pa.array(b_codes[c.indices].astype(np.int32)),
        "k11": pa.array(c.data.astype(np.int32)),
    })


def write_pairs(table: pa.Table, where: Location) -> None:
    """Save pair counts: lz4 (zstd reads back several times slower) and no column
    statistics (nothing filters on them)."""
    pq.write_table(table, where.path, filesystem=where.fs, compression="lz4", write_statistics=False)


def _block_indicators(
    primary: int, specs: list[IndicatorSpec], actions: list[int], n_users: int,
    pair_state: PairState | None = None,
):
    """Complete rows of A'B for the primary items of one partition, LLR, top-k per item.

    The partition holds its primary items' (role A) interactions and every interaction
    of every user who has one of them (role B), so each row of A'B is complete here.
    With `pair_state`, the partition also saves its pair counts (the state that
    `cooccur update` adds new events to)."""
    names = pa.array([s.name for s in specs], type=pa.string())

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        t = concat(batches)
        if t is None:
            return
        users, _ = sorted_codes(t.column("user"))
        n_local = int(users.max()) + 1
        action = t.column("action_id").to_numpy()
        role_a = t.column("role_a").to_numpy(zero_copy_only=False)
        item_users = t.column("item_users").to_numpy()
        items = t.column("item")

        def side(rows: np.ndarray):
            # A user's B rows arrive once per block of theirs in this partition: dedupe.
            codes, dictionary = sorted_codes(items.take(pa.array(rows)))
            counts = np.zeros(len(dictionary), dtype=np.int64)
            counts[codes] = item_users[rows]
            m = sparse.csr_matrix(
                (np.ones(len(rows), dtype=np.int64), (users[rows], codes)),
                shape=(n_local, len(dictionary)),
            )
            m.sum_duplicates()
            m.data[:] = 1
            return m, dictionary, counts

        a_mat, a_dict, a_counts = side(np.flatnonzero(role_a & (action == primary)))
        a_t = a_mat.T.tocsr()
        table = LlrTable(n_users)
        out_ind, out_row, out_b, out_score, pairs = [], [], [], [], []
        for ind, act in enumerate(actions):
            b_mat, b_dict, b_counts = side(np.flatnonzero(~role_a & (action == act)))
            c = (a_t @ b_mat).tocsr()
            if act == primary:
                # An item is not its own correlator: map a's code to b's code, drop equals.
                a_as_b = pc.index_in(a_dict, value_set=b_dict).fill_null(-1).to_numpy()
                c = c.tocoo()
                keep = c.col != a_as_b[c.row]
                c = sparse.csr_matrix((c.data[keep], (c.row[keep], c.col[keep])), shape=c.shape)
            c.sort_indices()
            if pair_state is not None:
                code = lambda d: pc.index_in(d, value_set=pair_state.items).to_numpy(zero_copy_only=False)  # noqa: E731
                pairs.append(pair_table(ind, code(a_dict), code(b_dict), c))
            row, col, score = score_rows(c, a_counts, b_counts, table, specs[ind])
            out_ind.append(np.full(len(row), ind))
            out_row.append(row)
            out_b.append(b_dict.take(pa.array(col)))
            out_score.append(score)
        if pairs and pair_state is not None:  # (pairs are only kept with a pair_state)
            from pyspark import TaskContext  # only inside a task

            task = TaskContext.get()
            part = task.partitionId() if task else 0
            # Named by partition: a retried task overwrites its own file, never adds one.
            write_pairs(pa.concat_tables(pairs), location(pair_state.directory) / f"part-{part:05d}.parquet")
        ind_all = np.concatenate(out_ind)
        if len(ind_all) == 0:
            return
        row_all = np.concatenate(out_row)
        group = ind_all * len(a_dict) + row_all
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        offsets = pa.array(np.r_[starts, len(group)].astype(np.int32))
        yield pa.RecordBatch.from_arrays(
            [
                names.take(pa.array(ind_all[starts])),
                a_dict.take(pa.array(row_all[starts])),
                pa.ListArray.from_arrays(offsets, pa.concat_arrays(out_b)),
                pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(out_score))),
            ],
            names=["indicator", "item", "correlators", "scores"],
        )

    return run


def indicators(
    kept: DataFrame,
    primary: str,
    specs: list[IndicatorSpec],
    n_users: int,
    partitions: int,
    pair_state: PairState | None = None,
) -> DataFrame:
    """LLR indicators from downsampled interactions (action, user, item, item_users).

    Primary items are hashed into `partitions` blocks. A block receives its items'
    primary interactions (role A) and, once per block, all interactions of the users who
    have one of its items (role B): at most `partitions` copies of each interaction are
    shuffled, instead of every partial pair count. `specs` lists the indicators in output
    order (the primary's first); one row per (indicator, item) with a correlator. With
    `pair_state`, every block also saves its pair counts."""
    from pyspark.sql import functions as F

    actions = [primary] + [s.name for s in specs if s.name != primary]
    action_id = F.lit(-1)
    for i, act in enumerate(actions):
        action_id = F.when(F.col("action") == act, F.lit(i)).otherwise(action_id)
    rows = kept.select("user", "item", "item_users", action_id.alias("action_id"))
    block = F.pmod(F.xxhash64("item"), F.lit(partitions))
    a_rows = rows.where(F.col("action_id") == 0).withColumn("block", block)
    user_blocks = a_rows.select("user", "block").distinct()
    b_rows = rows.join(user_blocks, "user")
    both = a_rows.withColumn("role_a", F.lit(True)).unionByName(
        b_rows.withColumn("role_a", F.lit(False))
    )
    ind_actions = [actions.index(s.name) for s in specs]
    return both.repartition(partitions, "block").mapInArrow(
        _block_indicators(0, specs, ind_actions, n_users, pair_state), INDICATORS_SCHEMA
    )
