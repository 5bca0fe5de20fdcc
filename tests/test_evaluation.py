"""Offline evaluation: metrics on hand-computed cases, splitters, variants, the whole loop."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from indexer.backend import IndexSchema
from indexer.embedded import EmbeddedBackend
from query.evaluation import (
    SKIP_NO_HELD_OUT,
    SKIP_NO_HISTORY,
    EvaluationError,
    EvaluationReport,
    Metrics,
    PreparedSplit,
    Split,
    Variant,
    VariantResult,
    average_precision_at_k,
    coverage_at_k,
    default_variants,
    format_table,
    hit_at_k,
    ndcg_at_k,
    parse_split,
    precision_at_k,
    recall_at_k,
    run_variants,
    score_rankings,
    ur_style_body,
    validation_split,
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


# --------------------------------------------------------------------------- split parsing
def test_parse_split():
    assert parse_split("time:2018-01-01") == Split("time", "2018-01-01")
    assert parse_split("time:2018-01-01").cut == datetime(2018, 1, 1, tzinfo=UTC)
    assert parse_split("time-fraction:0.8").fraction == 0.8
    assert parse_split("leave-last:2", seed=3) == Split("leave-last", "2", 3)
    assert parse_split("random:0.25").fraction == 0.25
    for bad in ("time", "time:yesterday", "time-fraction:1.5", "leave-last:0", "random:x", "by-user:3"):
        with pytest.raises(EvaluationError, match="--split"):
            parse_split(bad)


def test_validation_split_never_reuses_a_fixed_date():
    assert validation_split(Split("time", "2018-01-01")) == Split("time-fraction", "0.8")
    assert validation_split(Split("leave-last", "1")) == Split("leave-last", "1")


def test_validation_split_of_a_random_split_keeps_the_histories_long():
    # 1/8 of the 75% training part: validation histories keep 7/8 of the test's length
    assert validation_split(Split("random", "0.25", 42)) == Split("random", "0.125", 42)
    assert validation_split(Split("random", "0.1", 3)) == Split("random", "0.1", 3)


# --------------------------------------------------------------------------- splitters (Spark)
T0 = datetime(2020, 1, 1, tzinfo=UTC)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


# u1: three likes and views, the last like at the same moment as a view of the same item
# u2: two likes at one moment (a tie), then a view; u3 views only; u4 one like without time
EVENTS = [
    ("u1", "like", "a", day(1)), ("u1", "view", "b", day(2)), ("u1", "like", "b", day(3)),
    ("u1", "view", "c", day(4)), ("u1", "like", "c", day(4)),
    ("u2", "like", "a", day(5)), ("u2", "like", "b", day(5)), ("u2", "view", "x", day(6)),
    ("u3", "view", "a", day(1)),
    ("u4", "like", "z", None), ("u4", "like", "y", day(2)),
]


def _split(spark, text: str, seed: int = 0) -> set[tuple]:
    from query.evaluation import split_events

    df = spark.createDataFrame(EVENTS, "user string, event string, item string, time timestamp")
    marked, _ = split_events(df, parse_split(text, seed), "like")
    return {(r.user, r.event, r.item) for r in marked.where("test").collect()}


@pytest.mark.spark
def test_time_split_cut_date_and_undated_events_train(spark):
    assert _split(spark, f"time:{day(3).isoformat()}") == {
        ("u1", "like", "b"), ("u1", "view", "c"), ("u1", "like", "c"),
        ("u2", "like", "a"), ("u2", "like", "b"), ("u2", "view", "x"),
    }


@pytest.mark.spark
def test_time_fraction_split(spark):
    # span day 1 .. day 6: 0.5 cuts at day 3.5
    assert _split(spark, "time-fraction:0.5") == {
        ("u1", "view", "c"), ("u1", "like", "c"),
        ("u2", "like", "a"), ("u2", "like", "b"), ("u2", "view", "x"),
    }


@pytest.mark.spark
def test_leave_last_holds_out_the_newest_primary_and_everything_from_its_time(spark):
    assert _split(spark, "leave-last:1") == {
        ("u1", "view", "c"), ("u1", "like", "c"),  # the view at the held-out moment goes too
        ("u2", "like", "a"), ("u2", "like", "b"), ("u2", "view", "x"),  # a tie at day 5
        ("u4", "like", "y"),  # the undated like is never held out
    }
    two = _split(spark, "leave-last:2")
    assert ("u1", "like", "b") in two and ("u1", "like", "a") not in two


@pytest.mark.spark
def test_random_split_holds_out_a_fraction_of_each_users_items(spark):
    test = _split(spark, "random:0.5", seed=1)
    likes = {(u, i) for u, e, i in test if e == "like"}
    by_user = {u: sum(1 for x, _ in likes if x == u) for u in ("u1", "u2", "u3", "u4")}
    # u1: 3 items, keeps round(1.5) = 2 (half up) -> 1 held; u2, u4: 2 items -> 1 held; u3: none
    assert by_user == {"u1": 1, "u2": 1, "u3": 0, "u4": 1}
    # every event on a held-out (user, item) goes with it
    for u, i in likes:
        for e in EVENTS:
            if (e[0], e[2]) == (u, i):
                assert (e[0], e[1], e[2]) in test
    assert _split(spark, "random:0.5", seed=1) == test  # the seed makes it reproducible


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


def test_format_table_and_json(tmp_path):
    m = {10: Metrics(10, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 7)}
    report = EvaluationReport(
        split={"split": "time:2018-01-01", "cut": "2018-01-01T00:00:00Z", "seed": 0}, primary="like",
        indicators=["like"], ks=[10], users={"test": 9, "evaluated": 7, "skipped": {SKIP_NO_HISTORY: 2}},
        catalogue=50, events={"train_events": 90, "test_events": 10},
        variants=[VariantResult("primary/ours", ["like"], "ours", m, 0.07, 7)], timings={"train": 1.0},
    )
    text = format_table(report)
    assert "7 evaluated of 9" in text and "2 no training history" in text
    row = next(line for line in text.splitlines() if line.startswith("primary/ours"))
    assert row.split() == ["primary/ours", "10", "0.1000", "0.2000", "0.3000", "0.4000", "0.5000",
                           "0.6000", "10.00"]
    data = json.loads(json.dumps(report.to_json()))
    assert data["variants"][0]["metrics"]["10"]["map"] == 0.3 and data["k"] == [10]


# --------------------------------------------------------------------------- the whole loop (Spark)
def cluster_events() -> list[tuple[str, str, str, str]]:
    """Two taste clusters of 4 items; each user likes (and views) all 4 of theirs, one a day,
    in an order that makes user i's last like item i mod 4. Plus a user who likes one item
    twice (nothing new held out) and one with a single like (no training history)."""
    rows = []
    for u in range(12):
        cluster = "a" if u < 6 else "b"
        order = [(u + 1 + j) % 4 for j in range(4)]  # the last is u % 4
        for d, i in enumerate(order):
            t = (day(d) + timedelta(hours=u)).isoformat().replace("+00:00", "Z")
            rows.append((f"u{u}", "like", f"{cluster}{i}", t))
            rows.append((f"u{u}", "view", f"{cluster}{i}", t))
    rows.append(("again", "like", "a0", day(1).isoformat()))
    rows.append(("again", "like", "a0", day(2).isoformat()))
    rows.append(("once", "like", "b1", day(3).isoformat()))
    return rows


@pytest.fixture(scope="module")
def cluster_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "events.csv"
    path.write_text("user,event,item,time\n" + "".join(",".join(r) + "\n" for r in cluster_events()))
    return path


@pytest.mark.spark
def test_prepare_split_collects_what_the_loop_needs(spark, cluster_csv, tmp_path):
    """The Spark half of the loop (the query half runs on a hand index above; the whole
    command, training included, in tests/test_cli_evaluate.py)."""
    from indicators.reader import read_events
    from indicators.settings import InputSettings, TrainSettings
    from query.evaluation import prepare_split

    settings = TrainSettings(primary="like", indicators=[{"name": "like"}, {"name": "view"}])
    p = prepare_split(spark, [str(cluster_csv)], settings, parse_split("leave-last:1"), tmp_path)
    # 14 users; "again" re-liked a seen item, "once" has nothing before its only like
    assert p.test_users == 14
    assert p.skipped == {SKIP_NO_HELD_OUT: 1, SKIP_NO_HISTORY: 1}
    assert p.relevant == {f"u{u}": {f"{'a' if u < 6 else 'b'}{u % 4}"} for u in range(12)}
    # u0 liked a1, a2, a3 (one a day) before the held-out a0: newest first
    assert p.histories["u0"] == {"like": ["a3", "a2", "a1"], "view": ["a3", "a2", "a1"]}
    assert p.seen["u0"] == ["a3", "a2", "a1"]
    # each cluster user: 6 training events, 2 test (the last like and the view with it)
    assert p.counts == {"train_events": 12 * 6 + 1, "test_events": 12 * 2 + 1 + 1}
    assert p.catalogue == 8
    # the training part written for the job reads back through the job's own reader, times kept
    back = read_events(spark, [str(p.train_input)], InputSettings(format="jsonl"))
    assert back.counts.user_events == 73 and back.counts.rejected == 0
    written = [json.loads(line) for f in p.train_input.glob("part-*") for line in f.read_text().splitlines()]
    assert {"event": "like", "entityType": "user", "entityId": "u0", "targetEntityType": "item",
            "targetEntityId": "a1", "eventTime": "2020-01-01T00:00:00.000000Z"} in written
    p.events.unpersist()


@pytest.mark.spark
def test_evaluate_refuses_a_split_without_test_users(spark, cluster_csv, tmp_path):
    from indicators.settings import TrainSettings
    from query.evaluation import evaluate

    with pytest.raises(EvaluationError, match="no user has both"):
        evaluate(spark, [str(cluster_csv)], TrainSettings(primary="like"), parse_split("time:2030-01-01"),
                 workdir=tmp_path / "work", variants=[Variant("popularity", ())])


def test_importing_the_evaluation_does_not_import_spark():
    import subprocess
    import sys

    # indicators' pyspark-free modules (the shared validator, the model layout) may come along
    code = ("import sys, query.evaluation; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
