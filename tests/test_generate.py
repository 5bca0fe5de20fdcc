"""The synthetic data generator (bench/generate.py) and the bundled sample it makes."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.generate import (
    CART,
    CATEGORY_PREF,
    EVENT_NAMES,
    PURCHASE,
    SAMPLE,
    VIEW,
    generate,
    item_set_events,
    to_table,
    write,
)

REPO = Path(__file__).resolve().parent.parent
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
PIO_USER_KEYS = [
    "event",
    "entityType",
    "entityId",
    "targetEntityType",
    "targetEntityId",
    "eventTime",
]


@pytest.fixture(scope="module")
def mid() -> dict[str, np.ndarray]:
    """200k events over 10k users and 2000 items: enough for skew and heavy users."""
    return generate(200_000, 10_000, 2_000, seed=7, category_pref=0.02)


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = generate(20_000, 1_000, 500, seed=3)
    b = generate(20_000, 1_000, 500, seed=3)
    c = generate(20_000, 1_000, 500, seed=4)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["item"], c["item"])


def test_counts_ranges_and_order(mid: dict[str, np.ndarray]) -> None:
    n = 200_000
    for key in ("user", "event", "item", "time"):
        assert mid[key].shape == (n,)
    counts = np.bincount(mid["event"], minlength=len(EVENT_NAMES))
    # category-pref 2%, the rest split 80/12/8 (the default mix)
    assert counts[CATEGORY_PREF] == 4_000
    assert counts[CART] == round(0.12 * 196_000)
    assert counts[PURCHASE] == round(0.08 * 196_000)
    assert counts.sum() == n
    assert mid["user"].min() >= 0 and mid["user"].max() < 10_000
    normal = mid["event"] != CATEGORY_PREF
    assert mid["item"][normal].min() >= 0 and mid["item"][normal].max() < 2_000
    assert np.all(np.diff(mid["time"]) >= 0)
    assert mid["time"][0] >= mid["start"] and mid["time"][-1] < mid["end"]
    assert int(mid["end"] - mid["start"]) == 90 * 86400
    assert _iso(int(mid["start"])) == "2026-08-01T00:00:00Z"
    # every category has items; a second category is never the first one
    cats = mid["item_categories"]
    assert set(cats[:, 0].tolist()) == set(range(20))
    assert np.all(cats[:, 0] != cats[:, 1])
    assert 0.2 < np.mean(cats[:, 1] >= 0) < 0.4


def test_power_law_skew(mid: dict[str, np.ndarray]) -> None:
    per_user = np.sort(np.bincount(mid["user"], minlength=10_000))[::-1]
    assert per_user[:100].sum() / per_user.sum() > 0.10  # top 1% of users: > 10x their share
    assert np.median(per_user) < per_user.mean()
    views = mid["event"] == VIEW
    per_item = np.sort(np.bincount(mid["item"][views], minlength=2_000))[::-1]
    assert per_item[:20].sum() / per_item.sum() > 0.05  # top 1% of items: > 5x their share


def test_purchases_mostly_follow_a_view_of_the_same_item(mid: dict[str, np.ndarray]) -> None:
    key = mid["user"] * 2_000 + mid["item"]
    views = mid["event"] == VIEW
    # first view time per (user, item): times are sorted, so np.unique's first index is the earliest
    v_keys, first = np.unique(key[views], return_index=True)
    v_first = mid["time"][views][first]
    buys = mid["event"] == PURCHASE
    pos = np.searchsorted(v_keys, key[buys])
    pos = np.minimum(pos, len(v_keys) - 1)
    viewed_before = (v_keys[pos] == key[buys]) & (v_first[pos] <= mid["time"][buys])
    assert viewed_before.mean() > 0.8
    # ... and carts are always a later copy of a view
    carts = mid["event"] == CART
    pos = np.minimum(np.searchsorted(v_keys, key[carts]), len(v_keys) - 1)
    assert np.all((v_keys[pos] == key[carts]) & (v_first[pos] <= mid["time"][carts]))


def test_heavy_users_pass_the_default_cap(mid: dict[str, np.ndarray]) -> None:
    views = mid["event"] == VIEW
    pairs = np.unique(mid["user"][views] * 2_000 + mid["item"][views])
    distinct = np.bincount(pairs // 2_000, minlength=10_000)
    heavy = np.flatnonzero(distinct > 500)
    assert len(heavy) >= 3
    assert set(np.flatnonzero(mid["user_heavy"]).tolist()) <= set(heavy.tolist())
    # with fewer items than a cap no heavy users are made
    assert not generate(5_000, 300, 200, seed=1)["user_heavy"].any()


def test_item_windows_and_category_prefs(mid: dict[str, np.ndarray]) -> None:
    normal = mid["event"] != CATEGORY_PREF
    items, times = mid["item"][normal], mid["time"][normal]
    avail, expire = mid["item_available"][items], mid["item_expire"][items]
    assert (mid["item_available"] >= 0).any() and (mid["item_expire"] >= 0).any()
    assert np.all(times[avail >= 0] >= avail[avail >= 0])
    assert np.all(times[expire >= 0] < expire[expire >= 0])
    cp = ~normal
    prefs = mid["user_prefs"][mid["user"][cp]]
    assert np.all((prefs == mid["item"][cp][:, None]).any(axis=1))


def test_time_strings_match_datetime(mid: dict[str, np.ndarray]) -> None:
    table = to_table(mid)
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(mid["time"]), 50).tolist() + [0, len(mid["time"]) - 1]:
        row = {k: table[k][i].as_py() for k in table.column_names}
        assert row["time"] == _iso(int(mid["time"][i]))
        assert row["user"] == f"u{mid['user'][i]}"
        assert row["event"] == EVENT_NAMES[mid["event"][i]]
        prefix = "c" if mid["event"][i] == CATEGORY_PREF else "i"
        assert row["item"] == f"{prefix}{mid['item'][i]}"


def test_csv_parquet_and_jsonl_files(tmp_path: Path) -> None:
    data = generate(3_000, 200, 150, seed=5, category_pref=0.05)
    expected = to_table(data).to_pylist()

    write(data, tmp_path / "c", "csv")
    with open(tmp_path / "c" / "events.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["user", "event", "item", "time"]
    assert [dict(zip(rows[0], r, strict=True)) for r in rows[1:]] == expected

    write(data, tmp_path / "p", "parquet")
    table = pq.read_table(tmp_path / "p" / "events.parquet")
    assert table.column_names == ["user", "event", "item", "time"]
    assert table.to_pylist() == expected
    for d in ("c", "p"):
        sets = [json.loads(x) for x in (tmp_path / d / "items.jsonl").read_text().splitlines()]
        assert sets == item_set_events(data)

    write(data, tmp_path / "j", "jsonl")
    lines = [json.loads(x) for x in (tmp_path / "j" / "events.jsonl").read_text().splitlines()]
    sets, events = lines[:150], lines[150:]
    assert len(events) == 3_000
    for e in sets:
        assert list(e) == ["event", "entityType", "entityId", "properties", "eventTime"]
        assert e["event"] == "$set" and e["entityType"] == "item"
        assert 1 <= len(e["properties"]["category"]) <= 2
        for k in ("availableDate", "expireDate"):
            assert k not in e["properties"] or ISO.match(e["properties"][k])
    assert [e["entityId"] for e in sets] == [f"i{i}" for i in range(150)]
    for e, row in zip(events, expected, strict=True):
        assert list(e) == PIO_USER_KEYS
        assert e["entityType"] == "user" and e["targetEntityType"] == "item"
        assert ISO.match(e["eventTime"])
        assert (e["entityId"], e["event"], e["targetEntityId"], e["eventTime"]) == (
            row["user"],
            row["event"],
            row["item"],
            row["time"],
        )


def test_sample_command_reproduces_the_committed_sample(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "generate.py"), "--sample", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    committed = (REPO / "sample" / "events.jsonl").read_bytes()
    assert (tmp_path / "events.jsonl").read_bytes() == committed
    assert len(committed) < 1_000_000


def _llr(k11: np.ndarray, k12: np.ndarray, k21: np.ndarray, k22: np.ndarray) -> np.ndarray:
    """Dunning's G^2 in the unnormalised-entropy form (as Mahout's LogLikelihood)."""

    def xlogx(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)

    def entropy(*ks: np.ndarray) -> np.ndarray:
        return xlogx(sum(ks)) - sum(xlogx(k) for k in ks)

    row = entropy(k11 + k12, k21 + k22)
    col = entropy(k11 + k21, k12 + k22)
    mat = entropy(k11, k12, k21, k22)
    return np.maximum(0.0, 2.0 * (row + col - mat))


def test_llr_finds_the_category_structure_in_the_sample() -> None:
    """The point of the sample: LLR correlators share categories far more than chance."""
    data = generate(**SAMPLE)
    n_users, n_items = SAMPLE["n_users"], SAMPLE["n_items"]

    def matrix(code: int) -> np.ndarray:
        m = np.zeros((n_users, n_items))
        sel = data["event"] == code
        m[data["user"][sel], data["item"][sel]] = 1.0
        return m

    p, v = matrix(PURCHASE), matrix(VIEW)
    cats = data["item_categories"]
    shares_cat = np.zeros((n_items, n_items), dtype=bool)
    for c in range(SAMPLE["n_categories"]):
        member = (cats == c).any(axis=1)
        shares_cat |= member[:, None] & member[None, :]
    off_diag = ~np.eye(n_items, dtype=bool)
    chance = shares_cat[off_diag].mean()
    assert chance < 0.15

    for other, floor in ((p, 0.4), (v, 0.6)):
        k11 = p.T @ other
        k12 = p.sum(axis=0)[:, None] - k11
        k21 = other.sum(axis=0)[None, :] - k11
        k22 = n_users - k11 - k12 - k21
        score = _llr(k11, k12, k21, k22)
        if other is p:
            np.fill_diagonal(score, 0.0)
        top = np.argsort(-score, axis=1, kind="stable")[:, :5]
        rows = np.repeat(np.arange(n_items), 5)
        kept = score[rows, top.ravel()] > 0
        share = shares_cat[rows, top.ravel()][kept].mean()
        assert share > floor > 3 * chance
