"""evaluation.variants: the UR-style query body, and every variant ranked and scored on a hand index."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.splits import SKIP_NO_HELD_OUT, SKIP_NO_HISTORY, PreparedSplit, Split
from evaluation.variants import default_variants, run_variants, ur_style_body
from indexer.backend import IndexSchema
from indexer.embedded import EmbeddedBackend

# --------------------------------------------------------------------------- variants (no Spark)
SCHEMA = IndexSchema(keyword_fields=("like", "view"), number_fields=("popular", "trending", "hot"))
DOCS = [
    {"id": "a", "popular": 20.0},
    {"id": "b", "like": ["a"], "popular": 1.0},
    {"id": "c", "like": ["a", "x"], "popular": 5.0},
    {"id": "d", "like": ["z"], "view": ["a"], "popular": 10.0},
]


def test_ur_style_body():
    body = ur_style_body({"like": ["a", "b"], "view": []}, {"like": 1.0, "view": 0.5}, ["a"], 3)
    assert body == {
        "size": 3,
        "query": {"bool": {
            "must": [{"bool": {"should": [{"terms": {"like": ["a", "b"], "boost": 1.0}}],
                               "minimum_should_match": 1}}],
            "must_not": [{"ids": {"values": ["a"]}}],
        }},
        "sort": [{"_score": {"order": "desc"}}, {"popular": {"order": "desc"}}, {"id": {"order": "asc"}}],
        "_source": False,
    }
    assert ur_style_body({"view": ["a"]}, {"like": 1.0}, [], 3) is None


def _prepared(tmp_path: Path) -> PreparedSplit:
    return PreparedSplit(
        workdir=tmp_path, train_input=tmp_path, events=None, split=Split("leave-last", "1"),
        detail={"split": "leave-last:1"}, primary="like",
        histories={"u1": {"like": ["a"], "view": ["a"]}, "u2": {"like": ["z"]}},
        seen={"u1": ["a"], "u2": ["z"]}, relevant={"u1": {"c"}, "u2": {"b"}},
        skipped={SKIP_NO_HISTORY: 0, SKIP_NO_HELD_OUT: 0}, test_users=2, catalogue=4,
    )


def test_run_variants_ranks_and_scores_by_hand(tmp_path):
    backend = EmbeddedBackend(tmp_path / "index", "items")
    backend.create_version(SCHEMA, [dict(d) for d in DOCS])
    prepared = _prepared(tmp_path)
    calls = []
    results = {r.name: r for r in run_variants(
        backend, prepared, default_variants("like", ["like", "view"]), [1, 3], progress=calls.append)}
    assert list(results) == ["popularity", "primary/ours", "primary/ur", "all/ours", "all/ur"]
    assert calls == [1, 1]
    # u1 (like a): b and c match `like: a` with equal BM25 scores -> by popularity c (5), b (1),
    #   as the UR breaks ties; backfill d.
    #   UR-style: both score 1 (constant), popularity breaks the tie: c (5), b (1); then d.
    #   popularity: a is seen -> d (10), c (5), b (1).      relevant {c}
    # u2 (like z): d matches; backfill a, c (b is less popular). relevant {b}: no hit anywhere.
    ours, ur, pop = results["primary/ours"].metrics[3], results["primary/ur"].metrics[3], \
        results["popularity"].metrics[3]
    assert ours.map == pytest.approx((1 + 0) / 2)
    assert ur.map == pytest.approx((1 + 0) / 2)
    assert pop.map == pytest.approx((1 / 2 + 0) / 2)
    assert ours.ndcg == pytest.approx(1 / 2)
    assert ours.precision == pytest.approx((1 / 3) / 2) and ours.hit_rate == 0.5
    assert ours.coverage == pytest.approx(1.0)  # {b, c, d} | {d, a, c}
    # all indicators: d also matches `view: a` for u1. BM25 scores it below b and c (view's
    # idf and length norm: 0.288 vs 0.524), so ours keeps [c, b, d]; UR-style gives every
    # match the same constant and popularity decides: [d, c, b].
    assert results["all/ours"].metrics[3].map == pytest.approx((1 + 0) / 2)
    assert results["all/ur"].metrics[3].map == pytest.approx((1 / 2 + 0) / 2)
    assert results["all/ur"].metrics[1].hit_rate == 0.0  # d first: a miss at k = 1
    assert results["all/ours"].metrics[1].hit_rate == 0.5  # c first (ties by popularity)
    assert results["primary/ur"].metrics[1].hit_rate == 0.5  # c first for u1
    assert results["popularity"].scoring == "popularity" and results["all/ur"].indicators == ["like", "view"]
