"""indexer.kernels: the compiled loops of the embedded evaluator and indexer, against numpy
references and hand-checked answers (the Lucene parity of whole searches is
tests/test_lucene_parity.py's)."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import kernels
from indexer.kernels import NO_COUNTS, Runs


def _runs(docs, starts, ends, values=None, offset=0):
    return Runs(np.array(docs, np.int32), None if values is None else np.array(values), np.array(starts, np.int64),
                np.array(ends, np.int64), offset)


def test_add_runs_known_answer():
    # run 0 = docs 1, 3; run 1 = doc 3; run 2 empty; offset 1
    sums, counts = np.zeros(6), np.zeros(6, np.int32)
    kernels.add_runs(sums, counts, _runs([1, 3, 3], [0, 2, 3], [2, 3, 3], offset=1),
                     np.array([0.5, 2.0, 9.0], np.float32))
    assert sums.tolist() == [0, 0, 0.5, 0, 2.5, 0]
    assert counts.tolist() == [0, 0, 1, 0, 2, 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_feature_scores_round_as_lucene(dtype):
    """float32 values: the float32 product w * v; float64 values (log's ln(a + S)): the double
    product rounded to float32; summed in double. Checked on many random products, where a
    double product rounded once and float32 arithmetic could differ."""
    rng = np.random.default_rng(1)
    values = (rng.lognormal(0, 3, 20_000)).astype(dtype)
    weights = rng.lognormal(0, 3, 4).astype(np.float32)
    docs = rng.integers(0, 50, values.size).astype(np.int32)
    starts = np.arange(4) * 5000
    sums = np.zeros(50)
    positive = kernels.add_feature_runs(sums, NO_COUNTS, Runs(docs, values, starts, starts + 5000), weights)
    w = np.repeat(weights, 5000)
    # float32: numpy float32 arithmetic; float64: computed in float64, then rounded
    scores = w * values if dtype == np.float32 else (w.astype(np.float64) * values).astype(np.float32)
    expected = np.zeros(50)
    for d, s in zip(docs.tolist(), scores.tolist(), strict=True):  # in posting order, as Lucene's sum
        expected[d] += s
    assert positive
    assert sums.tolist() == expected.tolist()  # bit for bit


def test_feature_codes_score_as_the_values():
    """Runs with codes: posting p's value is values[codes[p]], the same sums bit for bit as
    the values gathered."""
    rng = np.random.default_rng(2)
    table = rng.lognormal(0, 3, 300)
    codes = rng.integers(0, table.size, 20_000).astype(np.uint16)
    docs = rng.integers(0, 50, codes.size).astype(np.int32)
    weights = rng.lognormal(0, 3, 4).astype(np.float32)
    starts = np.arange(4) * 5000
    coded, plain = np.zeros(50), np.zeros(50)
    counts = np.zeros(50, np.int32)
    assert kernels.add_feature_runs(coded, counts, Runs(docs, table, starts, starts + 5000, codes=codes), weights)
    kernels.add_feature_runs(plain, NO_COUNTS, Runs(docs, table[codes], starts, starts + 5000), weights)
    assert coded.tolist() == plain.tolist()
    assert counts.tolist() == np.bincount(docs, minlength=50).tolist()


def test_within_leaves_the_other_documents_out():
    runs = _runs([0, 1, 2, 1], [0, 3], [3, 4], np.array([1.0, 2.0, 4.0, 8.0], np.float32))
    within = np.array([False, True, True])
    sums, counts = np.zeros(3), np.zeros(3, np.int32)
    kernels.add_runs(sums, counts, runs, np.array([0.5, 2.0], np.float32), within)
    assert sums.tolist() == [0, 2.5, 0.5] and counts.tolist() == [0, 2, 1]
    sums = np.zeros(3)
    # a zero score outside `within` does not count either
    assert kernels.add_feature_runs(sums, NO_COUNTS, _runs([0, 1, 2, 1], [0, 3], [3, 4], np.array(
        [0.0, 2.0, 4.0, 8.0], np.float32)), np.array([1.0, 0.5], np.float32), within)
    assert sums.tolist() == [0, 6.0, 4.0]
    codes = Runs(np.array([0, 1, 2, 1], np.int32), np.array([0.0, 2.0, 4.0, 8.0]), np.array([0, 3]),
                 np.array([3, 4]), codes=np.array([0, 1, 2, 3], np.uint16))
    sums = np.zeros(3)
    assert kernels.add_feature_runs(sums, NO_COUNTS, codes, np.array([1.0, 0.5], np.float32), within)
    assert sums.tolist() == [0, 6.0, 4.0]


def test_hash_find_known_answer():
    names = np.array(sorted(["", "a", "abc", "b", "x\x00y", "zz", "é", "😀"]))
    table = kernels.hash_table(names)
    assert table.size >= 2 * names.size and np.count_nonzero(table) == names.size
    # a narrower and a wider <U array than the names: compared with NUL padding
    for wanted in (["b", "q", "é"], ["abc", "zzz", "", "x\x00y", "x", "😀", "abcd", "b"]):
        pos, found = kernels.hash_find(table, names, np.array(wanted))
        expected = [wanted_one in names.tolist() for wanted_one in wanted]
        assert found.tolist() == expected
        assert [names[p] for p, f in zip(pos, found, strict=True) if f] == [w for w, e in zip(wanted, expected,
                                                                                         strict=True) if e]
        assert not pos[~found].any()
    empty = np.array([], "<U1")
    assert kernels.hash_find(kernels.hash_table(empty), empty, np.array(["a"]))[1].tolist() == [False]


def test_feature_scores_report_a_zero_score():
    sums = np.zeros(3)
    runs = _runs([0, 1], [0], [2], np.array([1.0, 2.0], np.float32))
    assert not kernels.add_feature_runs(sums, NO_COUNTS, runs, np.array([0.0], np.float32))
    assert kernels.add_feature_runs(sums, NO_COUNTS, runs, np.array([1.0], np.float32))


def test_marks_and_dense_rows():
    hit = np.zeros(5, bool)
    kernels.mark_runs(hit, _runs([0, 2, 4], [0, 1], [1, 2], offset=0))
    assert hit.tolist() == [True, False, True, False, False]
    sums, counts = np.zeros(4), np.zeros(4, np.int32)
    kernels.add_code_row(sums, counts, np.array([0, 2, 1], np.uint16), np.array([0, 1.5, 0.25], np.float32))
    kernels.add_bool_row(sums, counts, np.array([True, True, False, True]), 2.0)
    assert sums.tolist() == [2.0, 2.25, 1.5, 2.0]
    assert counts.tolist() == [1, 2, 1, 1]


def test_kth_score():
    rng = np.random.default_rng(2)
    score = rng.integers(0, 100, 10_000).astype(np.float32)  # many ties
    mask = rng.random(10_000) < 0.3
    for k in (1, 7, 100):
        assert kernels.kth_score(mask, score, k) == np.sort(score[mask])[-k]
    assert kernels.kth_score(np.zeros(3, bool), score[:3], 2) == -np.inf


def test_csr_known_answer():
    # slot 0: terms 2, 0, 2 (repeated); slot 1: none; slot 2: term 0
    indptr, indices, dl, values = kernels.csr(np.array([2, 0, 2, 0]), np.array([0, 0, 0, 2]), 3, 3,
                                              np.array([1.0, 2.0, 3.0, 4.0]))
    assert indptr.tolist() == [0, 2, 2, 3]
    assert indices.tolist() == [0, 2, 0]
    assert dl.tolist() == [2, 0, 1]
    assert values.tolist() == [2.0, 4.0, 3.0]  # a repeated key: first place, last value (a dict's)
    assert kernels.csr(np.array([1]), np.array([0]), 2, 1)[3] is None

@pytest.mark.parametrize("offset", [0, 7])
def test_threads_split_by_document_range_give_the_same_bits(monkeypatch, offset):
    """Each thread takes a range of the documents and every run's postings in it, in run
    order: sums (of values whose order matters in double), counts and `positive` equal one
    call's bit for bit, with `within` and codes too, for any number of threads."""
    monkeypatch.setattr(kernels, "SPLIT_MIN", 0)
    rng = np.random.default_rng(3)
    n = 1000
    lists = [np.sort(rng.choice(n - offset, rng.integers(0, 400), replace=False)) for _ in range(30)]
    lengths = np.array([len(x) for x in lists])
    ends = np.cumsum(lengths)
    docs = np.concatenate(lists).astype(np.int32)
    values = rng.lognormal(0, 8, docs.size).astype(np.float32)  # wide range: order changes double sums
    weights = rng.lognormal(0, 3, len(lists)).astype(np.float32)
    within = rng.random(n) < 0.7
    table, codes = np.unique(values, return_inverse=True)
    runs = [Runs(docs, values, ends - lengths, ends, offset),
            Runs(docs, table, ends - lengths, ends, offset, codes=codes.astype(np.uint16))]
    for r in runs:
        got = []
        for threads in (1, 2, 3, 8):
            sums, counts = np.zeros(n), np.zeros(n, np.int32)
            positive = kernels.add_feature_runs(sums, counts, r, weights, within, threads=threads)
            plain = np.zeros(n)
            kernels.add_runs(plain, NO_COUNTS, r, weights, threads=threads)
            got.append((sums.tobytes(), counts.tobytes(), positive, plain.tobytes()))
        assert all(g == got[0] for g in got)
    # and the one call is the sum in run order
    expected = np.zeros(n)
    for i, d in enumerate(lists):
        expected[d + offset] += weights[i].astype(np.float64)
    plain = np.zeros(n)
    kernels.add_runs(plain, NO_COUNTS, runs[0], weights, threads=3)
    assert plain.tobytes() == expected.tobytes()


def test_split_ranges_cover_the_documents_once(monkeypatch):
    every = np.iinfo(np.int64).max
    runs = _runs([0, 1, 2], [0], [3])
    assert kernels.split(lambda lo, hi: (lo, hi), 10, 3, runs) == [(0, every)]  # too short to split
    monkeypatch.setattr(kernels, "SPLIT_MIN", 3)
    assert kernels.split(lambda lo, hi: (lo, hi), 10, 3, runs) == [(0, 3), (3, 6), (6, every)]
    assert kernels.split(lambda lo, hi: (lo, hi), 10, 1, runs) == [(0, every)]


def test_multiply_values_is_the_double_product_rounded_once():
    """The prior's function_score: float32(double(score) * value) where the mask and `within`
    hold, 0 elsewhere; a missing value is `missing`; None (the general path) when a value is
    missing without `missing` or negative."""
    mask = np.array([True, True, True, False, True])
    within = np.array([True, True, True, True, False])
    score = np.array([0.1, 3.0, 0.7, 5.0, 2.0], np.float32)
    values = np.array([0.3, np.nan, 1e-8, 2.0, -1.0])
    got = kernels.multiply_values(mask, within, score, values, missing=1.5)
    expected = [np.float32(np.float64(np.float32(0.1)) * 0.3), np.float32(4.5),
                np.float32(np.float64(np.float32(0.7)) * 1e-8), 0, 0]
    assert got is not None and got.dtype == np.float32 and got.tolist() == [float(x) for x in expected]
    assert kernels.multiply_values(mask, within, score, values, missing=None) is None  # absent, no missing
    assert kernels.multiply_values(mask, kernels.ALL, score, values, missing=1.5) is None  # -1.0 now within


@pytest.mark.parametrize("filtered", [False, True])
def test_long_coded_runs_score_each_code_once_with_the_same_bits(filtered):
    """A run much longer than its value table takes each code's score from a table made for
    the run: the sums are the per-posting products' bits, added in run order."""
    rng = np.random.default_rng(5)
    n = 3000
    lists = [np.sort(rng.choice(n, k, replace=False)) for k in (2500, 40, 1800)]  # long, short, long
    lengths = np.array([len(x) for x in lists])
    ends = np.cumsum(lengths)
    docs = np.concatenate(lists).astype(np.int32)
    table = np.log(1 + rng.lognormal(0, 6, 20))  # float64: the log function's values
    codes = rng.integers(0, table.size, docs.size).astype(np.uint16)
    weights = np.array([0.98, 1.7, 0.3], np.float32)
    within = rng.random(n) < 0.6 if filtered else kernels.ALL
    sums = np.zeros(n)
    assert kernels.add_feature_runs(sums, NO_COUNTS, Runs(docs, table, ends - lengths, ends, 0, codes=codes),
                                    weights, within)
    expected = np.zeros(n)
    for i, d in enumerate(lists):
        c = codes[ends[i] - lengths[i]:ends[i]]
        s = (table[c] * np.float64(weights[i])).astype(np.float32).astype(np.float64)
        keep = within[d] if filtered else np.ones(d.size, bool)
        expected[d[keep]] += s[keep]
    assert sums.tobytes() == expected.tobytes()
