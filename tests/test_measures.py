"""evaluation.measures: each metric on hand-computed cases; averaging over users."""

from __future__ import annotations

import math

import pytest

from evaluation.measures import (
    Metrics,
    average_precision_at_k,
    coverage_at_k,
    hit_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    score_rankings,
)

L2_3 = 1 / math.log2(3)  # discount of rank 2
L2_5 = 1 / math.log2(5)  # discount of rank 4


# --------------------------------------------------------------------------- metrics
RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"b", "d", "x"}  # hits at ranks 2 and 4; x is never recommended


def test_precision_counts_hits_over_k():
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)
    assert precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 2)
    # k beyond the list: still divided by k (a short list is not rewarded)
    assert precision_at_k(RANKED, RELEVANT, 10) == pytest.approx(2 / 10)


def test_recall_counts_hits_over_relevant():
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, RELEVANT, 3) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, set(), 5) == 0.0


def test_average_precision_divides_by_min_k_relevant():
    # ranks 2 and 4 hold hits: precision@2 = 1/2, precision@4 = 2/4; min(5, 3) = 3
    assert average_precision_at_k(RANKED, RELEVANT, 5) == pytest.approx((1 / 2 + 2 / 4) / 3)
    # k = 2: one hit (precision@2 = 1/2), min(2, 3) = 2
    assert average_precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.25)
    # a perfect top 2 with 5 relevant items is 1, not 2/5 (the |relevant| denominator)
    assert average_precision_at_k(["a", "b"], {"a", "b", "c", "d", "e"}, 2) == pytest.approx(1.0)
    # fewer relevant items than k: denominator |relevant|
    assert average_precision_at_k(["x", "a"], {"a"}, 10) == pytest.approx(0.5)
    assert average_precision_at_k([], {"a"}, 10) == 0.0


def test_ndcg_binary_gain():
    dcg = L2_3 + L2_5  # hits at ranks 2 and 4
    ideal = 1 + L2_3 + 1 / math.log2(4)  # three relevant items at ranks 1..3
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.498189, abs=1e-6)
    # k = 2: ideal has min(2, 3) = 2 hits
    assert ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx(L2_3 / (1 + L2_3))
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(RANKED, {"zz"}, 5) == 0.0


def test_hit_rate_and_coverage():
    assert hit_at_k(RANKED, RELEVANT, 2) == 1.0
    assert hit_at_k(RANKED, RELEVANT, 1) == 0.0
    # first 2 of each list: {a, b} | {a, d} = 3 of 10 catalogue items
    assert coverage_at_k([["a", "b", "c"], ["a", "d"]], 2, 10) == pytest.approx(0.3)
    assert coverage_at_k([["a"]], 2, 0) == 0.0


def test_score_rankings_averages_over_relevant_users():
    rankings = {"u1": ["a", "b"], "u3": ["q"]}  # u2 got nothing: scores 0, still counted
    relevant = {"u1": {"a"}, "u2": {"b"}}
    m = score_rankings(rankings, relevant, [1, 2], catalogue=4)
    assert m[1] == Metrics(1, precision=0.5, recall=0.5, map=0.5, ndcg=0.5, hit_rate=0.5,
                           coverage=0.25, users=2)
    assert m[2].precision == pytest.approx(0.25)  # u1: 1 hit / 2
    assert m[2].coverage == pytest.approx(0.5)  # a, b of 4 (u3 is not evaluated)
