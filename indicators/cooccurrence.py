"""Co-occurrence counts and LLR indicators, as vectorised per-partition work.

Stage 1 (partitioned by user): each partition builds sparse user x item matrices A (the
primary action) and B (each indicator action) for its own users and emits the partial
pair counts of A'B (scipy's sparse product; Schelter et al. 2013 / Mahout's
SimilarityAnalysis count the same matrix). Stage 2 (partitioned by primary item a): sums
the partial counts per (a, b), scores them by LLR (indicators.llr), and keeps the top
correlators per a, ties by item id. One shuffle of partial counts between the stages; no
row-at-a-time Python; item ids stay strings and are factorised per partition with Arrow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import sparse

from .llr import llr_from_counts

PAIRS_SCHEMA = "ind int, a string, b string, k11 long, a_users long, b_users long"
INDICATORS_SCHEMA = "indicator string, item string, correlators array<string>, scores array<double>"


@dataclass(frozen=True)
class IndicatorSpec:
    name: str
    max_correlators: int
    min_llr: float | None


def _codes(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Dense int codes of a string array and its dictionary (code -> string)."""
    enc = pc.dictionary_encode(arr).combine_chunks() if isinstance(arr, pa.ChunkedArray) else pc.dictionary_encode(arr)
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary


def _pair_counts(primary: int, indicators: list[int]):
    """Stage 1: partial A'B counts of one partition of users."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tables = [pa.Table.from_batches([b]) for b in batches if b.num_rows]
        if not tables:
            return
        t = pa.concat_tables(tables).combine_chunks()
        users, _ = _codes(t.column("user"))
        n_users = int(users.max()) + 1
        action = t.column("action_id").to_numpy()
        item_users = t.column("item_users").to_numpy()
        items = t.column("item")
        side = {}
        for act in {primary, *indicators}:
            rows = np.flatnonzero(action == act)
            codes, dictionary = _codes(items.take(pa.array(rows)))
            counts = np.zeros(len(dictionary), dtype=np.int64)
            counts[codes] = item_users[rows]
            matrix = sparse.csr_matrix(
                (np.ones(len(rows), dtype=np.int64), (users[rows], codes)),
                shape=(n_users, len(dictionary)),
            )
            side[act] = (matrix, dictionary, counts)
        a_mat, a_dict, a_counts = side[primary]
        a_t = a_mat.T.tocsr()
        for ind, act in enumerate(indicators):
            b_mat, b_dict, b_counts = side[act]
            c = (a_t @ b_mat).tocoo()
            keep = c.row != c.col if act == primary else slice(None)
            row, col, k11 = c.row[keep], c.col[keep], c.data[keep]
            if len(row) == 0:
                continue
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(np.full(len(row), ind, dtype=np.int32)),
                    a_dict.take(pa.array(row)),
                    b_dict.take(pa.array(col)),
                    pa.array(k11.astype(np.int64)),
                    pa.array(a_counts[row]),
                    pa.array(b_counts[col]),
                ],
                names=["ind", "a", "b", "k11", "a_users", "b_users"],
            )

    return run


def _top_correlators(specs: list[IndicatorSpec], n_users: int):
    """Stage 2: sum partial counts per (a, b), LLR, top-k per a (ties by b's id)."""
    max_k = np.array([s.max_correlators for s in specs], dtype=np.int64)
    min_llr = np.array([-np.inf if s.min_llr is None else s.min_llr for s in specs])
    names = [s.name for s in specs]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tables = [pa.Table.from_batches([b]) for b in batches if b.num_rows]
        if not tables:
            return
        t = pa.concat_tables(tables).combine_chunks()
        ind = t.column("ind").to_numpy().astype(np.int64)
        a, a_dict = _codes(t.column("a"))
        b, b_dict = _codes(t.column("b"))
        # b's rank in id order, so sorting by rank breaks score ties by item id.
        b_rank = np.empty(len(b_dict), dtype=np.int64)
        b_rank[pc.sort_indices(b_dict).to_numpy()] = np.arange(len(b_dict))
        row = ind * len(a_dict) + a
        key = row * len(b_dict) + b_rank[b]
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        k11 = np.add.reduceat(t.column("k11").to_numpy()[order], starts)
        first = order[starts]
        a_users = t.column("a_users").to_numpy()[first]
        b_users = t.column("b_users").to_numpy()[first]
        row, b_code, ind_u = row[first], b[first], ind[first]
        score = llr_from_counts(k11, a_users, b_users, n_users)
        ok = score >= min_llr[ind_u]
        row, b_code, ind_u, score = row[ok], b_code[ok], ind_u[ok], score[ok]
        order = np.lexsort((b_rank[b_code], -score, row))
        row, b_code, ind_u, score = row[order], b_code[order], ind_u[order], score[order]
        group_start = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        sizes = np.diff(np.r_[group_start, len(row)])
        rank_in_group = np.arange(len(row)) - np.repeat(group_start, sizes)
        keep = rank_in_group < max_k[ind_u]
        row, b_code, ind_u, score = row[keep], b_code[keep], ind_u[keep], score[keep]
        if len(row) == 0:
            return
        group_start = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        offsets = pa.array(np.r_[group_start, len(row)].astype(np.int32))
        first_of_group = row[group_start]
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(names, type=pa.string()).take(pa.array(ind_u[group_start])),
                a_dict.take(pa.array(first_of_group % len(a_dict))),
                pa.ListArray.from_arrays(offsets, b_dict.take(pa.array(b_code))),
                pa.ListArray.from_arrays(offsets, pa.array(score, type=pa.float64())),
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
) -> DataFrame:
    """LLR indicators from downsampled interactions (action, user, item, item_users).

    `specs` lists the indicators in output order (the primary action's first); the
    result has one row per (indicator, item) with at least one correlator."""
    actions = [primary] + [s.name for s in specs if s.name != primary]
    action_id = F.lit(-1)
    for i, act in enumerate(actions):
        action_id = F.when(F.col("action") == act, F.lit(i)).otherwise(action_id)
    ind_actions = [actions.index(s.name) for s in specs]
    pairs = (
        kept.select("user", "item", "item_users", action_id.alias("action_id"))
        .repartition(partitions, "user")
        .mapInArrow(_pair_counts(0, ind_actions), PAIRS_SCHEMA)
    )
    return pairs.repartition(partitions, "ind", "a").mapInArrow(
        _top_correlators(specs, n_users), INDICATORS_SCHEMA
    )
