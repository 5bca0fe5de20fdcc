"""The indicator job against an independent numpy computation of the same LLR tables."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pyarrow.csv as pacsv
import pytest

from bench.generate import generate, to_table
from indicators.cooccurrence import IndicatorSpec, indicators
from indicators.downsample import binarize, downsample, sample_hash
from indicators.job import train
from indicators.model import model_data
from indicators.parts import read_table
from indicators.settings import IndicatorSettings, TrainSettings

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def events_csv(tmp_path_factory):
    """~4000 generated events (views, carts, purchases) over 150 users and 80 items."""
    path = tmp_path_factory.mktemp("events") / "events.csv"
    pacsv.write_csv(to_table(generate(4000, 150, 80, seed=7)), path)
    return path


def read_rows(path) -> list[tuple[str, str, str]]:
    t = pacsv.read_csv(path).to_pylist()
    return [(r["user"], r["event"], r["item"]) for r in t]


def reference_kept(spark, rows, actions, seed, cap_user, cap_item):
    """Downsampling done the slow, obvious way (Python sorts) on Spark's own hash values."""
    pairs = sorted({(e, u, i) for u, e, i in rows if e in actions})
    df = spark.createDataFrame(pairs, "action string, user string, item string")
    h = {(r.action, r.user, r.item): r.h for r in df.select("*", sample_hash(seed).alias("h")).collect()}
    by_user = defaultdict(list)
    for p in pairs:
        by_user[(p[0], p[1])].append(p)
    kept = []
    for group in by_user.values():
        group.sort(key=lambda p: (h[p], p[2]))
        kept += group[:cap_user] if cap_user else group
    by_item = defaultdict(list)
    for p in kept:
        by_item[(p[0], p[2])].append(p)
    final = []
    for group in by_item.values():
        group.sort(key=lambda p: (h[p], p[1]))
        final += group[:cap_item] if cap_item else group
    return final


def reference_indicators(kept, primary, specs, n_users):
    """Dense numpy A'B, LLR by the textbook G^2 = 2 sum O ln(O/E), top-k with ties by id."""
    users = sorted({u for _, u, _ in kept})
    uix = {u: k for k, u in enumerate(users)}

    def matrix(action):
        items = sorted({i for a, _, i in kept if a == action})
        m = np.zeros((len(users), len(items)))
        for a, u, i in kept:
            if a == action:
                m[uix[u], items.index(i)] = 1
        return m, items

    a_mat, a_items = matrix(primary)
    out = {}
    for spec in specs:
        b_mat, b_items = matrix(spec.name)
        c = a_mat.T @ b_mat
        a_cnt, b_cnt = a_mat.sum(0), b_mat.sum(0)
        for x, a in enumerate(a_items):
            scored = []
            for y, b in enumerate(b_items):
                k11 = c[x, y]
                if k11 == 0 or (spec.name == primary and a == b):
                    continue
                table = np.array([[k11, a_cnt[x] - k11], [b_cnt[y] - k11, 0.0]])
                table[1, 1] = n_users - table.sum()
                expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n_users
                nz = table > 0
                g2 = max(2 * float((table[nz] * np.log(table[nz] / expected[nz])).sum()), 0.0)
                if spec.min_llr is None or g2 >= spec.min_llr:
                    scored.append((b, g2))
            scored.sort(key=lambda t: (-round(t[1], 9), t[0]))
            if scored:
                out[(spec.name, a)] = scored[: spec.max_correlators]
    return out


def job_indicators(df) -> dict:
    return {
        (r["indicator"], r["item"]): list(zip(r["correlators"], r["scores"], strict=True))
        for r in df.collect()
    }


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, correlators in want.items():
        assert [b for b, _ in got[key]] == [b for b, _ in correlators], key
        np.testing.assert_allclose(
            [s for _, s in got[key]], [s for _, s in correlators], rtol=1e-9, atol=1e-9
        )


@pytest.mark.parametrize(
    "cap_user, cap_item, min_llr, max_k",
    [(0, 0, None, 50), (12, 15, None, 5), (12, 15, 2.0, 7)],
    ids=["no-downsampling", "downsampled", "downsampled-min-llr"],
)
def test_indicators_equal_numpy_reference(spark, events_csv, cap_user, cap_item, min_llr, max_k):
    rows = read_rows(events_csv)
    actions = ["purchase", "view", "cart"]
    specs = [IndicatorSpec(a, max_k, min_llr) for a in actions]
    n_users = len({u for u, e, _ in rows if e in actions})
    events = spark.createDataFrame(rows, "user string, event string, item string")
    kept_df = downsample(binarize(events, actions), 3, cap_user, cap_item, 3).where("kept")
    got = job_indicators(indicators(kept_df, "purchase", specs, n_users, partitions=3))

    kept = reference_kept(spark, rows, actions, 3, cap_user, cap_item)
    assert sorted((r.action, r.user, r.item) for r in kept_df.collect()) == sorted(kept)
    want = reference_indicators(kept, "purchase", specs, n_users)
    assert len(want) > 50  # the fixture really has structure to find
    assert_same(got, want)


def test_partitioning_does_not_change_the_result(spark, events_csv):
    rows = read_rows(events_csv)
    specs = [IndicatorSpec("purchase", 10, None), IndicatorSpec("view", 10, None)]
    events = spark.createDataFrame(rows, "user string, event string, item string")
    results = []
    for parts in (1, 2, 5):
        kept = downsample(binarize(events.repartition(parts), ["purchase", "view"]), 1, 10, 12, parts)
        kept = kept.where("kept")
        results.append(job_indicators(indicators(kept, "purchase", specs, 150, partitions=parts)))
    assert results[0] == results[1] == results[2]


def test_heavy_users_keep_exactly_the_cap(spark):
    rows = [("heavy", "view", f"i{k}") for k in range(40)] + [("light", "view", "i1")]
    df = spark.createDataFrame(rows, "user string, event string, item string")
    kept = downsample(binarize(df, ["view"]), 0, 25, 0, 2).where("kept").collect()
    per_user = defaultdict(int)
    for r in kept:
        per_user[r.user] += 1
    assert per_user == {"heavy": 25, "light": 1}
    assert {r.user_capped for r in kept if r.user == "heavy"} == {True}
    # Another seed keeps another, equally sized, sample.
    other = {r.item for r in downsample(binarize(df, ["view"]), 99, 25, 0, 3).where("kept").collect()
             if r.user == "heavy"}
    assert len(other) == 25 and other != {r.item for r in kept if r.user == "heavy"}


def test_train_writes_the_model_directory(spark, events_csv, tmp_path):
    settings = TrainSettings(
        primary="purchase",
        indicators=[IndicatorSettings("purchase", 5), IndicatorSettings("view", 5)],
        max_interactions_per_user=12,
        seed=3,
    )
    lines: list[str] = []
    report = train(spark, [str(events_csv)], settings, tmp_path / "model", on_stage=lines.append)
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["format"] == "cooccur-model/1"
    assert manifest["indicators"] == ["purchase", "view"]
    counts = manifest["counts"]["input"]
    assert counts["rows"] == 4000 == counts["accepted"] + counts["rejected"]
    assert manifest["counts"]["actions"]["view"]["users_capped"] > 0
    assert [line.split()[0] for line in lines] == ["read", "downsample", "indicators", "rankings", "properties"]
    data = model_data(tmp_path / "model")
    assert manifest["data"] == f"versions/{manifest['model_id']}" == f"versions/{data.name}"
    ind = read_table(data / "indicators").to_pylist()
    assert {r["indicator"] for r in ind} == {"purchase", "view"}
    assert all(1 <= len(r["correlators"]) <= 5 for r in ind)
    assert all(r["scores"] == sorted(r["scores"], reverse=True) for r in ind)
    rank = read_table(data / "rankings").to_pylist()
    purchases = defaultdict(int)
    for _, e, i in read_rows(events_csv):
        purchases[i] += e == "purchase"
    assert {r["item"]: r["popular"] for r in rank} == {i: float(n) for i, n in purchases.items() if n}
    assert report.users == len({u for u, e, _ in read_rows(events_csv) if e in ("purchase", "view")})


@pytest.mark.parametrize(
    "failure, setting",
    [
        ("py4j.protocol.Py4JJavaError: java.lang.OutOfMemoryError: Java heap space", "spark.driver.memory"),
        ("org.apache.spark.SparkException: Python worker exited unexpectedly (crashed)",
         "spark.executor.pyspark.memory"),
    ],
)
def test_memory_failures_name_the_setting_to_raise(monkeypatch, tmp_path, failure, setting):
    import indicators.job as job
    from indicators.errors import SparkOutOfMemory

    def fail(*args, **kwargs):
        raise RuntimeError(failure)

    monkeypatch.setattr(job, "_train", fail)
    with pytest.raises(SparkOutOfMemory) as e:
        job.train(None, [], TrainSettings(), tmp_path / "m")
    assert setting in e.value.hint


# u2 bought `a` twice: the UR counts raw events (two), not distinct items (one).
MIN_EVENTS_CSV = """user,event,item,time
u1,buy,a,2026-01-01T00:00:01Z
u1,buy,b,2026-01-01T00:00:02Z
u1,view,x,2026-01-01T00:00:03Z
u2,buy,a,2026-01-01T00:00:04Z
u2,buy,a,2026-01-01T00:00:05Z
u2,view,x,2026-01-01T00:00:06Z
u3,buy,b,2026-01-01T00:00:07Z
u3,view,y,2026-01-01T00:00:08Z
u4,view,x,2026-01-01T00:00:09Z
u4,view,y,2026-01-01T00:00:10Z
u5,buy,c,2026-01-01T00:00:11Z
u5,buy,d,2026-01-01T00:00:12Z
u5,view,z,2026-01-01T00:00:13Z
"""


def g2(k11, k12, k21, k22) -> float:
    """Textbook G^2 = 2 sum O ln(O / E) of a 2x2 table (E = row total x column total / N)."""
    table = np.array([[k11, k12], [k21, k22]], dtype=float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    nz = table > 0
    return float(2 * (table[nz] * np.log(table[nz] / expected[nz])).sum())


@pytest.mark.parametrize("minimum, n_users, left_out, view_tables", [
    # Everyone with an indicator event counts: N = 5. a: u1 u2; b: u1 u3; c, d, z: u5;
    # x: u1 u2 u4; y: u3 u4.
    (0, 5, 0, {"a": {"x": (2, 0, 1, 2)},
               "b": {"x": (1, 1, 2, 1), "y": (1, 1, 1, 2)},
               "c": {"z": (1, 0, 0, 4)}, "d": {"z": (1, 0, 0, 4)}}),
    # The UR's N: users with a primary event. u4 (views only) is out: N = 4; x: u1 u2; y: u3.
    (1, 4, 1, {"a": {"x": (2, 0, 0, 2)},
               "b": {"x": (1, 1, 1, 1), "y": (1, 1, 0, 2)},
               "c": {"z": (1, 0, 0, 3)}, "d": {"z": (1, 0, 0, 3)}}),
    # Two buy events: u3 (one) is out too, u2 (`a` twice) stays. N = 3; b: u1; y: nobody.
    (2, 3, 2, {"a": {"x": (2, 0, 0, 1)},
               "b": {"x": (1, 0, 1, 1)},
               "c": {"z": (1, 0, 0, 2)}, "d": {"z": (1, 0, 0, 2)}}),
])
def test_min_events_per_user_sets_who_counts_and_n(spark, tmp_path, minimum, n_users, left_out, view_tables):
    """Rows are (k11, k12, k21, k22) of the `view` indicator: users with the primary item
    and the viewed one, the primary item only, the viewed one only, neither."""
    path = tmp_path / "events.csv"
    path.write_text(MIN_EVENTS_CSV)
    settings = TrainSettings(primary="buy", indicators=[IndicatorSettings("buy"), IndicatorSettings("view")],
                             min_events_per_user=minimum)
    report = train(spark, [str(path)], settings, tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert (report.users, report.users_left_out) == (n_users, left_out)
    assert manifest["state"]["users"] == manifest["counts"]["users"] == n_users
    assert manifest["counts"]["users_left_out"] == left_out
    assert all(sum(t) == n_users for row in view_tables.values() for t in row.values())
    rows = read_table(model_data(tmp_path / "model") / "indicators").to_pylist()
    got = {r["item"]: dict(zip(r["correlators"], r["scores"], strict=True)) for r in rows if r["indicator"] == "view"}
    assert got.keys() == view_tables.keys()
    for item, tables in view_tables.items():
        assert got[item].keys() == tables.keys(), item
        for b, table in tables.items():
            assert got[item][b] == pytest.approx(g2(*table), abs=1e-9), (item, b)
    # Rankings still count every event (u2 bought `a` twice, u3 bought `b`).
    rank = {r["item"]: r["popular"] for r in read_table(model_data(tmp_path / "model") / "rankings").to_pylist()}
    assert rank == {"a": 3.0, "b": 2.0, "c": 1.0, "d": 1.0}


@pytest.mark.parametrize("value", [-1, True, 1.5, "2"])
def test_min_events_per_user_must_be_a_whole_number(value):
    with pytest.raises(ValueError, match="min_events_per_user"):
        TrainSettings(min_events_per_user=value)


def test_file_uri_inputs_train_the_same_model_as_plain_paths(spark, tmp_path):
    """A directory, a glob and a single file given as file:// URIs (as on a cluster's shared
    mount) train the model the same paths give; item properties ($set events) included."""
    from urllib.parse import quote

    from test_update import assert_same_model, generate, read_model, settings, write

    events = generate(seed=2, n=500)
    (tmp_path / "in dir").mkdir()
    (tmp_path / "glob").mkdir()
    write(tmp_path / "in dir" / "a.jsonl", events[:200])
    write(tmp_path / "glob" / "b.jsonl", events[200:350])
    write(tmp_path / "c.jsonl", events[350:])
    plain = [str(tmp_path / "in dir"), str(tmp_path / "glob" / "*.jsonl"), str(tmp_path / "c.jsonl")]
    uris = [f"file://{quote(p, safe='/*')}" for p in plain]
    train(spark, plain, settings(), tmp_path / "plain")
    report = train(spark, uris, settings(), tmp_path / "uris")
    assert report.input["files"] == 3 and report.input["rows"] == len(events)
    assert_same_model(read_model(tmp_path / "uris"), read_model(tmp_path / "plain"))
    assert read_model(tmp_path / "plain")["properties"]
