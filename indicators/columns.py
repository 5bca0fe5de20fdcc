"""Arrow/numpy helpers shared by the job's per-partition passes (mapInArrow functions)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def concat(batches: Iterator[pa.RecordBatch]) -> pa.Table | None:
    """A partition's batches as one table (None when the partition is empty)."""
    tables = [pa.Table.from_batches([b]) for b in batches if b.num_rows]
    return pa.concat_tables(tables).combine_chunks() if tables else None


def sorted_codes(arr) -> tuple[np.ndarray, pa.Array]:
    """Int64 codes of a string array and its sorted dictionary: ordering by code is
    ordering by id, which is how every tie in the job breaks."""
    unique = pc.unique(arr)
    dictionary = unique.take(pc.array_sort_indices(unique))
    codes = pc.index_in(arr, value_set=dictionary).to_numpy(zero_copy_only=False)
    return codes.astype(np.int64), dictionary


def run_ranks(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each entry inside its run of equal keys, and that run's size per entry."""
    n = len(sorted_keys)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, sizes), np.repeat(sizes, sizes)
