"""Compiled loops of the embedded evaluator (numba): one pass over a query's postings that
gathers each posting's value, applies its clause's weight with Lucene's float32 rounding and
adds the score to its document; the dense rows of the hot lists; the top hits' threshold.

A 500-item history reaches about a million postings at 100 000 items (docs/search.md,
"Speed"); numpy needs a pass (and an array) per step and costs ~8 ns a posting, these loops
~1 ns. The arithmetic is Lucene's, operation for operation, in the same precision (numba
keeps float32 * float32 in float32 and never contracts or reorders without `fastmath`),
so scores stay bit-identical to `tests/test_lucene_parity.py`'s Lucene.

The kernels are compiled for fixed signatures when this module is imported (from numba's
cache in `__pycache__` after the first time: `cache=True`), so a server compiles before it
forks and no request waits for the compiler. The Python wrappers below bring their inputs
to those signatures: C-contiguous, read-only views (the version's arrays are read-only memory
maps; in-memory ones are viewed read-only, never copied).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, types

_F8 = types.Array(types.float64, 1, "C")
_F4 = types.Array(types.float32, 1, "C")
_I4 = types.Array(types.int32, 1, "C")
_B1 = types.Array(types.boolean, 1, "C")
_RO_I4 = types.Array(types.int32, 1, "C", readonly=True)
_RO_I8 = types.Array(types.int64, 1, "C", readonly=True)
_RO_F4 = types.Array(types.float32, 1, "C", readonly=True)
_RO_F8 = types.Array(types.float64, 1, "C", readonly=True)
_RO_U2 = types.Array(types.uint16, 1, "C", readonly=True)
_RO_B1 = types.Array(types.boolean, 1, "C", readonly=True)
_RO_U4_2D = types.Array(types.uint32, 2, "C", readonly=True)
_I8 = types.Array(types.int64, 1, "C")
_JIT: dict[str, Any] = {"cache": True, "nogil": True, "boundscheck": False}

NO_COUNTS = np.zeros(0, np.int32)
"""`counts` argument meaning "do not count matching clauses"."""


@dataclass(frozen=True)
class Runs:
    """Postings of one segment, one run per clause: clause i's documents are
    docs[starts[i]:ends[i]] + offset, ascending (`split` relies on it), and its values
    values[starts[i]:ends[i]] (an empty run when starts[i] == ends[i]). `docs` and `values`
    are a field's whole CSR arrays (or a gathered copy), so nothing is copied per query."""

    docs: np.ndarray
    values: np.ndarray | None
    starts: np.ndarray
    ends: np.ndarray
    offset: int = 0
    codes: np.ndarray | None = None
    """uint16 aligned with docs: then posting p's value is values[codes[p]] (`values` a small
    table of the field's distinct values), 2 bytes a posting to read instead of 4 or 8."""

    def positions(self) -> np.ndarray:
        """The positions in docs / values of every posting, run after run."""
        lengths = self.ends - self.starts
        ends = np.cumsum(lengths)
        return np.repeat(self.starts - (ends - lengths), lengths) + np.arange(ends[-1] if ends.size else 0)


def readonly(array: np.ndarray, dtype) -> np.ndarray:
    """A C-contiguous read-only view of `array` as `dtype` (a copy only when it must convert)."""
    out = np.ascontiguousarray(array, dtype=dtype)
    if out.flags.writeable:
        out = out.view()
        out.flags.writeable = False
    return out


def _positions(runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    return readonly(runs.starts, np.int64), readonly(runs.ends, np.int64)


# --------------------------------------------------------------------------- kernels
ALL = np.zeros(0, np.bool_)
"""`within` argument meaning "every document"."""
_EVERY = np.iinfo(np.int64).max
"""`hi` argument meaning "up to the last document"."""
SPLIT_MIN = 65_536
"""Postings below which a kernel call is not split over threads (a thread hand-off costs
tens of microseconds: the time of ~20 000 postings)."""

_pool: tuple[int, int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _executor(threads: int) -> ThreadPoolExecutor:
    """A persistent pool of threads - 1 threads (the caller's thread takes a range too), made
    anew in a forked child (threads do not survive a fork) or for another count."""
    global _pool
    pid = os.getpid()
    with _pool_lock:
        if _pool is None or _pool[0] != pid or _pool[1] != threads:
            if _pool is not None and _pool[0] == pid:
                _pool[2].shutdown(wait=False)
            _pool = (pid, threads, ThreadPoolExecutor(threads - 1, thread_name_prefix="cooccur-search"))
        return _pool[2]


def split(fn: Callable[[int, int], Any], n: int, threads: int, runs: Runs | None = None) -> list:
    """[fn(lo, hi)] over `threads` document ranges [lo, hi) covering 0..n (the first is
    [0, ...), the last [..., _EVERY)), run in parallel (the kernels release the GIL): each
    range's documents get every run's postings of that range, in run order, so each
    document's sums are added in the same order as in one call (bit-identical). One call
    fn(0, _EVERY) when threads is 1 or `runs` hold fewer than SPLIT_MIN postings."""
    if threads <= 1 or n < threads or (runs is not None and int((runs.ends - runs.starts).sum()) < SPLIT_MIN):
        return [fn(0, _EVERY)]
    bounds = [0, *(n * k // threads for k in range(1, threads)), _EVERY]
    pool = _executor(threads)
    futures = [pool.submit(fn, bounds[k], bounds[k + 1]) for k in range(1, threads)]
    first = fn(bounds[0], bounds[1])
    return [first, *(f.result() for f in futures)]


@njit(cache=True, nogil=True, inline="always")
def _cut(docs, a, b, offset, lo, hi):
    # the part [a', b') of the run docs[a:b] (ascending) whose documents are in [lo, hi)
    if lo > 0:
        a = a + np.searchsorted(docs[a:b], lo - offset)
    if hi < _EVERY and b > a:
        b = a + np.searchsorted(docs[a:b], hi - offset)
    return a, b


@njit(types.void(_F8, _I4, _RO_I4, _RO_I8, _RO_I8, types.int64, _RO_F4, _RO_B1, types.int64, types.int64), **_JIT)
def _add_runs(sums, counts, docs, starts, ends, offset, scores, within, lo, hi):
    count = counts.size > 0
    everyone = within.size == 0
    for i in range(starts.size):
        s = np.float64(scores[i])
        a, b = _cut(docs, starts[i], ends[i], offset, lo, hi)
        for p in range(a, b):
            d = docs[p] + offset
            if everyone or within[d]:
                sums[d] += s
                if count:
                    counts[d] += 1


def add_runs(sums: np.ndarray, counts: np.ndarray, runs: Runs, scores: np.ndarray, within: np.ndarray = ALL,
             threads: int = 1) -> None:
    """sums[doc] += scores[i] (a float32, added in double as Lucene's BooleanScorer sums) for
    every posting of run i; counts[doc] += 1 unless `counts` is NO_COUNTS. With `within`
    (bool per document), only for the documents it holds: the others are left as they are
    (a query's filters exclude them: their scores never count). With `threads` > 1, split
    by document range (`split`)."""
    args = (readonly(runs.docs, np.int32), *_positions(runs), runs.offset, readonly(scores, np.float32),
            readonly(within, np.bool_))
    split(lambda lo, hi: _add_runs(sums, counts, *args, lo, hi), sums.size, threads, runs)


@njit([types.boolean(_F8, _I4, _RO_I4, _RO_F4, _RO_I8, _RO_I8, types.int64, _RO_F4, _RO_B1, types.int64,
                     types.int64),
       types.boolean(_F8, _I4, _RO_I4, _RO_F8, _RO_I8, _RO_I8, types.int64, _RO_F4, _RO_B1, types.int64,
                     types.int64)], **_JIT)
def _add_feature_runs(sums, counts, docs, values, starts, ends, offset, weights, within, lo, hi):
    count = counts.size > 0
    everyone = within.size == 0
    positive = True
    for i in range(starts.size):
        w = np.float64(weights[i])
        a, b = _cut(docs, starts[i], ends[i], offset, lo, hi)
        for p in range(a, b):
            d = docs[p] + offset
            if not (everyone or within[d]):
                continue
            # float64 values (log): (float) (w * Math.log(a + S)), in double then rounded; float32
            # values: the product of two floats is exact in double, so rounding it once is the
            # float32 product, bit for bit (IEEE 754)
            s = np.float32(np.float64(values[p]) * w)
            if not s > 0:
                positive = False
            sums[d] += np.float64(s)
            if count:
                counts[d] += 1
    return positive


@njit([types.boolean(_F8, _I4, _RO_I4, _RO_U2, _RO_F4, _RO_I8, _RO_I8, types.int64, _RO_F4, _RO_B1, types.int64,
                     types.int64),
       types.boolean(_F8, _I4, _RO_I4, _RO_U2, _RO_F8, _RO_I8, _RO_I8, types.int64, _RO_F4, _RO_B1, types.int64,
                     types.int64)], **_JIT)
def _add_feature_codes(sums, counts, docs, codes, table, starts, ends, offset, weights, within, lo, hi):
    # _add_feature_runs with each posting's value read from the table by its code
    count = counts.size > 0
    everyone = within.size == 0
    positive = True
    scored = np.empty(table.size, np.float64)
    for i in range(starts.size):
        w = np.float64(weights[i])
        a, b = _cut(docs, starts[i], ends[i], offset, lo, hi)
        if b - a > 4 * table.size and not count:
            # a long run: its clause's score of every code first (the same float32 products),
            # then one table read and one add per posting (a third less time a posting)
            for c in range(table.size):
                s = np.float32(np.float64(table[c]) * w)
                if not s > 0:  # (some code may be unused here: "not positive" only costs a pass)
                    positive = False
                scored[c] = np.float64(s)
            if everyone:
                for p in range(a, b):
                    sums[docs[p] + offset] += scored[codes[p]]
            else:
                for p in range(a, b):
                    d = docs[p] + offset
                    if within[d]:
                        sums[d] += scored[codes[p]]
            continue
        for p in range(a, b):
            d = docs[p] + offset
            if not (everyone or within[d]):
                continue
            s = np.float32(np.float64(table[codes[p]]) * w)
            if not s > 0:
                positive = False
            sums[d] += np.float64(s)
            if count:
                counts[d] += 1
    return positive


def add_feature_runs(sums: np.ndarray, counts: np.ndarray, runs: Runs, weights: np.ndarray,
                     within: np.ndarray = ALL, threads: int = 1) -> bool:
    """rank_feature clauses: for every posting p of run i, the float32 score w_i * values[p]
    (float32 values: in float32; float64 values, the log function's ln(a + S): in double,
    rounded to float32; with codes, values[codes[p]]), added in double to sums[doc]; counts
    `within` and `threads` as in add_runs. Returns whether every score (within) was > 0 (then
    "matches a clause" is "sum > 0")."""
    values = runs.values
    assert values is not None, "rank_feature runs carry values"
    dtype = np.float64 if values.dtype == np.float64 else np.float32
    tail = (*_positions(runs), runs.offset, readonly(weights, np.float32), readonly(within, np.bool_))
    docs = readonly(runs.docs, np.int32)
    if runs.codes is not None:
        coded = (docs, readonly(runs.codes, np.uint16), readonly(values, dtype))
        return all(split(lambda lo, hi: _add_feature_codes(sums, counts, *coded, *tail, lo, hi), sums.size,
                         threads, runs))
    return all(split(lambda lo, hi: _add_feature_runs(sums, counts, docs, readonly(values, dtype), *tail, lo, hi),
                     sums.size, threads, runs))


@njit(types.void(_B1, _RO_I4, _RO_I8, _RO_I8, types.int64), **_JIT)
def _mark_runs(hit, docs, starts, ends, offset):
    for i in range(starts.size):
        for p in range(starts[i], ends[i]):
            hit[docs[p] + offset] = True


def mark_runs(hit: np.ndarray, runs: Runs) -> None:
    """hit[doc] = True for every posting of the runs."""
    _mark_runs(hit, readonly(runs.docs, np.int32), *_positions(runs), runs.offset)


@njit(types.void(_F8, _I4, _RO_U2, _RO_F4), **_JIT)
def _add_code_row(sums, counts, codes, table):
    count = counts.size > 0
    for d in range(codes.size):
        c = codes[d]
        if c:
            sums[d] += np.float64(table[c])
            if count:
                counts[d] += 1


def add_code_row(sums: np.ndarray, counts: np.ndarray, codes: np.ndarray, table: np.ndarray) -> None:
    """A hot feature's dense row: sums[d] += table[codes[d]] (float32 scores of the row's
    distinct values; code 0: no feature) over the row's documents; counts as in add_runs."""
    _add_code_row(sums, counts, readonly(codes, np.uint16), readonly(table, np.float32))


@njit(types.void(_F8, _I4, _RO_B1, types.float64), **_JIT)
def _add_bool_row(sums, counts, row, score):
    count = counts.size > 0
    for d in range(row.size):
        if row[d]:
            sums[d] += score
            if count:
                counts[d] += 1


def add_bool_row(sums: np.ndarray, counts: np.ndarray, row: np.ndarray, score: float) -> None:
    """A hot term's dense row: sums[d] += score where row[d]; counts as in add_runs."""
    _add_bool_row(sums, counts, readonly(row, np.bool_), np.float64(score))


@njit(types.float32(_RO_B1, _RO_F4, types.int64), **_JIT)
def _kth_score(mask, score, k):
    # a min-heap of the k best scores so far: heap[0] is the k-th best
    heap = np.empty(k, np.float32)
    size = 0
    for d in range(mask.size):
        if not mask[d]:
            continue
        s = score[d]
        if size < k:
            # sift up
            j = size
            size += 1
            while j > 0:
                parent = (j - 1) >> 1
                if heap[parent] <= s:
                    break
                heap[j] = heap[parent]
                j = parent
            heap[j] = s
        elif s > heap[0]:
            # replace the smallest and sift down
            j = 0
            while True:
                child = 2 * j + 1
                if child >= k:
                    break
                if child + 1 < k and heap[child + 1] < heap[child]:
                    child += 1
                if heap[child] >= s:
                    break
                heap[j] = heap[child]
                j = child
            heap[j] = s
    if size < k:
        return -np.inf
    return heap[0]


def kth_score(mask: np.ndarray, score: np.ndarray, k: int) -> np.float32:
    """The k-th best score among the documents of `mask` (-inf when fewer match), in one pass:
    only documents scoring at least that can be among the k best."""
    return _kth_score(readonly(mask, np.bool_), readonly(score, np.float32), k)


@njit(types.boolean(_F4, _RO_B1, _RO_B1, _RO_F4, _RO_F8, types.float64, types.boolean), **_JIT)
def _multiply_values(out, mask, within, score, values, missing, has_missing):
    everyone = within.size == 0
    for d in range(mask.size):
        if not (mask[d] and (everyone or within[d])):
            continue
        v = values[d]
        if np.isnan(v):
            if not has_missing:
                return False
            v = missing
        if v < 0:
            return False
        c = np.float32(np.float64(score[d]) * v)
        if not c >= 0:
            return False
        out[d] = c
    return True


def multiply_values(mask: np.ndarray, within: np.ndarray, score: np.ndarray, values: np.ndarray,
                    missing: float | None) -> np.ndarray | None:
    """The prior's function_score in one pass: for every document of `mask` (and `within`),
    the float32 of score * value in double (Elasticsearch's field_value_factor with boost_mode
    multiply: a float doc value read as a double, the product rounded to the float score),
    a missing value taken as `missing`; 0 elsewhere. None when a value is missing without
    `missing`, negative, or a product is not >= 0: those take the general path, which reports
    them as Elasticsearch would."""
    out = np.zeros(mask.size, np.float32)
    ok = _multiply_values(out, readonly(mask, np.bool_), readonly(within, np.bool_), readonly(score, np.float32),
                          readonly(values, np.float64), 0.0 if missing is None else float(missing),
                          missing is not None)
    return out if ok else None


# --------------------------------------------------------------------------- term look-up
@njit(types.uint64(_RO_U4_2D, types.int64), cache=True, nogil=True, inline="always")
def _hash_row(strings, i):
    # FNV-1a over the code points up to the first NUL (numpy pads <U strings with NULs)
    h = np.uint64(14695981039346656037)
    for c in strings[i]:
        if c == 0:
            break
        h = (h ^ np.uint64(c)) * np.uint64(1099511628211)
    return h


@njit(types.boolean(_RO_U4_2D, types.int64, _RO_U4_2D, types.int64), cache=True, nogil=True, inline="always")
def _same_row(a, i, b, j):
    wa, wb = a.shape[1], b.shape[1]
    for k in range(max(wa, wb)):
        ca = a[i, k] if k < wa else np.uint32(0)
        cb = b[j, k] if k < wb else np.uint32(0)
        if ca != cb:
            return False
    return True


@njit(types.Array(types.int32, 1, "C")(_RO_U4_2D), cache=True, nogil=True)
def _hash_table(strings):
    n = strings.shape[0]
    size = 2
    while size < 2 * n:
        size *= 2
    table = np.zeros(size, np.int32)
    mask = np.uint64(size - 1)
    for i in range(n):
        at = _hash_row(strings, i) & mask
        while table[at] != 0:
            at = (at + np.uint64(1)) & mask
        table[at] = i + 1
    return table


@njit(types.void(_RO_I4, _RO_U4_2D, _RO_U4_2D, _I8, _B1), cache=True, nogil=True)
def _hash_find(table, strings, wanted, pos, found):
    mask = np.uint64(table.size - 1)
    for j in range(wanted.shape[0]):
        at = _hash_row(wanted, j) & mask
        pos[j] = 0
        found[j] = False
        while table[at] != 0:
            i = table[at] - 1
            if _same_row(strings, i, wanted, j):
                pos[j] = i
                found[j] = True
                break
            at = (at + np.uint64(1)) & mask


def code_points(strings: np.ndarray) -> np.ndarray:
    """A `<U` array's strings as a read-only uint32[n, width] matrix of code points (a view)."""
    width = strings.dtype.itemsize // 4
    return readonly(strings.reshape(-1), strings.dtype).view(np.uint32).reshape(strings.size, width)


def hash_table(strings: np.ndarray) -> np.ndarray:
    """An open-addressing hash table (int32: 1 + position, 0 empty; at least twice the
    strings' number of slots) of a `<U` array's strings, for `hash_find`: a look-up reads a
    slot or two and one string, where a Python dict of the strings reads scattered objects
    (a microsecond a term once they have left the cache, as after a query's postings)."""
    return _hash_table(code_points(strings))


def hash_find(table: np.ndarray, strings: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions, found) of the `wanted` strings (a `<U` array) in `strings` through its
    `hash_table`; 0 where not found."""
    pos = np.empty(wanted.size, np.int64)
    found = np.empty(wanted.size, np.bool_)
    _hash_find(readonly(table, np.int32), code_points(strings), code_points(wanted), pos, found)
    return pos, found


# --------------------------------------------------------------------------- indexing
@njit(cache=True, nogil=True)
def _csr(terms, slots, n_terms, n_slots, values):
    last = np.full(n_terms, -1, np.int64)
    counts = np.zeros(n_terms + 1, np.int64)
    dl = np.zeros(n_slots, np.int32)
    for p in range(terms.size):
        t = terms[p]
        if last[t] != slots[p]:
            last[t] = slots[p]
            counts[t + 1] += 1
            dl[slots[p]] += 1
    indptr = np.cumsum(counts)
    pos = indptr[:-1].copy()
    indices = np.empty(indptr[-1], np.int32)
    out = np.empty(indptr[-1] if values.size else 0, values.dtype)
    last[:] = -1
    at = np.zeros(n_terms, np.int64)
    for p in range(terms.size):
        t = terms[p]
        s = slots[p]
        if last[t] == s:
            if values.size:
                out[at[t]] = values[p]  # a repeated feature keeps its first place and its last value
            continue
        last[t] = s
        at[t] = pos[t]
        indices[pos[t]] = s
        if values.size:
            out[pos[t]] = values[p]
        pos[t] += 1
    return indptr, indices, dl, out


def csr(terms: np.ndarray, slots: np.ndarray, n_terms: int, n_slots: int,
        values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """CSR postings from (term id, slot) pairs given in ascending slot order, in one counting
    pass: (int64 row pointers, int32 slots ascending within each term, int32 distinct terms
    per slot, the values aligned with the slots or None). A pair repeated within a slot is
    one posting (docs-only postings; a dict keeps a repeated key's first place and last value)."""
    empty = np.zeros(0, np.float64)
    indptr, indices, dl, out = _csr(readonly(terms, np.int64), readonly(slots, np.int64), n_terms, n_slots,
                                    readonly(empty if values is None else values, np.float64))
    return indptr, indices, dl, None if values is None else out
