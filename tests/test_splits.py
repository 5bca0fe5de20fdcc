"""evaluation.splits: split parsing, each splitter on hand-made events, and the data the
evaluation loop collects of a split."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evaluation.errors import EvaluationError
from evaluation.splits import SKIP_NO_HELD_OUT, SKIP_NO_HISTORY, Split, parse_split, validation_split


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
    from evaluation.splits import split_events

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
    from evaluation.splits import prepare_split
    from indicators.reader import read_events
    from indicators.settings import InputSettings, TrainSettings

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
