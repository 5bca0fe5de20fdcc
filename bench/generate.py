"""Synthetic e-commerce events for tests, benchmarks and the bundled sample.

The model (all of it vectorised with numpy, deterministic given the seed):

- Categories (default 20) have Zipf-like popularity. Every item belongs to one category,
  about 30% to a second one. Item popularity is Zipf-like (power law) over a random order.
- Every user prefers 1-3 categories (drawn by category popularity). User activity is
  Zipf-Mandelbrot: a few users make a large share of the events, most make a handful.
- Views are drawn per user: with probability `p_pref` from one of the user's preferred
  categories, otherwise from any category; within a category, by item popularity. That
  within-category affinity is the structure the LLR indicators must find.
- Carts are a subset of views (views in a preferred category weigh 4x), a little later.
  Purchases: 55% from carts, 30% straight from views (so ~85% of purchases follow a view of
  the same item), 15% "direct" purchases drawn like views but more focused.
- A few "heavy" users (crawler-like: uniform over all items) get 1200-3000 views
  so that per-user downsampling (default cap 500) triggers; they exist only when there
  are enough items for more than 500 distinct ones.
- Optional `category-pref` events (user -> category id) for the Universal Recommender's
  category-preference indicator.
- Times: uniform over the span (default 90 days from 2026-08-01T00:00:00Z); items with an
  `availableDate` / `expireDate` only get events inside their window, so new items trend.
  Output is sorted by time.

Use as a library (`from bench.generate import generate`) or as a script:

    python bench/generate.py --events 1000000 --out bench/data/synth-1m --format csv
    python bench/generate.py --sample          # rewrites sample/events.jsonl exactly

Output files: `<out>/events.csv` (header user,event,item,time), `<out>/events.parquet`
(string columns user, event, item, time) or `<out>/events.jsonl` (PredictionIO events).
Item properties are PredictionIO `$set` events: in `<out>/items.jsonl` for CSV and
Parquet, at the top of `events.jsonl` for JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EVENT_NAMES: tuple[str, ...] = ("view", "cart", "purchase", "category-pref")
"""`event` codes of `generate()`'s output index this tuple."""
VIEW, CART, PURCHASE, CATEGORY_PREF = range(4)

DEFAULT_START = "2026-08-01T00:00:00Z"
REPO = Path(__file__).resolve().parent.parent

# The bundled sample: small enough to read, dense enough that LLR finds the categories.
# Purchases are a bigger share than in real shops so the primary action has signal.
SAMPLE = {
    "n_events": 5000,
    "n_users": 300,
    "n_items": 200,
    "n_categories": 20,
    "seed": 20260801,
    "action_mix": (0.70, 0.12, 0.18),
    "heavy_users": 0,
}

_CHUNK = 500_000  # rows formatted per batch: bounds memory and keeps Arrow offsets 32-bit


def _zipf_weights(n: int, exponent: float, offset: float) -> np.ndarray:
    """Zipf-Mandelbrot weights (rank + offset)^-exponent for ranks 1..n, normalised."""
    w = (np.arange(1, n + 1, dtype=np.float64) + offset) ** -exponent
    return w / w.sum()


def _parse_time(text: str) -> int:
    """ISO-8601 (with Z or offset) -> epoch seconds."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _weighted_sample(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices drawn with probability proportional to weights, in index order.

    Efraimidis-Spirakis keys (log(U) / w, keep the k largest): O(n), vectorised, unlike
    numpy's weighted choice without replacement which loops.
    """
    k = min(k, int(np.count_nonzero(weights > 0)))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    u = rng.random(len(weights))
    with np.errstate(divide="ignore"):
        keys = np.where(weights > 0, np.log(u) / np.where(weights > 0, weights, 1.0), -np.inf)
    chosen = np.argpartition(-keys, k - 1)[:k]
    return np.sort(chosen)


def generate(
    n_events: int,
    n_users: int,
    n_items: int,
    seed: int = 0,
    *,
    n_categories: int = 20,
    days: float = 90.0,
    start: str = DEFAULT_START,
    action_mix: tuple[float, float, float] = (0.80, 0.12, 0.08),
    category_pref: float = 0.0,
    heavy_users: int | None = None,
    p_pref: float = 0.75,
) -> dict[str, np.ndarray]:
    """Generate events and item properties as numpy arrays (see the module docstring).

    Args:
        n_events: exact number of user events returned.
        n_users, n_items, n_categories: id spaces ("u0".., "i0".., "c0"..); not every user
            or item necessarily gets an event.
        seed: same seed and arguments -> identical arrays.
        days, start: the time span (start: ISO-8601 UTC).
        action_mix: shares of view, cart, purchase among the non-category-pref events.
        category_pref: share of `category-pref` events (0 = none).
        heavy_users: crawler-like users with 1200-3000 views each; default: 3 + 1 per
            million events when n_items >= 1000 (else 0: with fewer items no user can
            exceed a 500-item cap anyway).
        p_pref: probability that a (normal) user's view is in one of their categories.

    Returns a dict of arrays. Events, sorted by time (N = n_events):
        user (int64, N), event (int8, N: index into EVENT_NAMES), item (int64, N: the item
        index; for category-pref events the category index), time (int64, N: epoch seconds).
    Items (n_items): item_categories (int16, n_items x 2, -1 = none), item_popularity
    (float64), item_available / item_expire (int64 epoch seconds, -1 = none).
    Users (n_users): user_prefs (int16, n_users x 3, -1 = none), user_heavy (bool).
    Scalars as 0-d arrays: start, end (epoch seconds).
    """
    if n_events < 0 or n_users < 1 or n_items < 1 or n_categories < 1:
        raise ValueError("need n_events >= 0 and at least one user, item and category")
    if n_items < n_categories:
        raise ValueError(f"need at least as many items ({n_items}) as categories ({n_categories})")
    if not 0 <= category_pref < 1:
        raise ValueError("category_pref is a share in [0, 1)")
    rng = np.random.default_rng(seed)
    t0 = _parse_time(start)
    span = int(days * 86400)
    t_end = t0 + span

    # --- categories and items
    cat_w = _zipf_weights(n_categories, 0.7, 1.0)
    item_rank = rng.permutation(n_items)
    item_pop = _zipf_weights(n_items, 1.0, 2.0)[item_rank]
    cat1 = rng.choice(n_categories, size=n_items, p=cat_w)
    cat1[rng.permutation(n_items)[:n_categories]] = np.arange(n_categories)  # none empty
    has2 = rng.random(n_items) < 0.3
    cat2 = (cat1 + 1 + rng.integers(0, max(n_categories - 1, 1), n_items)) % n_categories
    cat2 = np.where(has2 & (n_categories > 1), cat2, -1)
    item_cats = np.stack([cat1, cat2], axis=1).astype(np.int16)

    # (category, item) memberships sorted by category; the per-category cumulative
    # popularity is laid out as c + cdf_c in one increasing array, so one searchsorted
    # draws an item within any category for millions of events at once.
    m_cat = np.concatenate([cat1, cat2[cat2 >= 0]])
    m_item = np.concatenate([np.arange(n_items), np.flatnonzero(cat2 >= 0)])
    order = np.lexsort((m_item, m_cat))
    m_cat, m_item = m_cat[order], m_item[order]
    m_w = item_pop[m_item]
    cat_start = np.searchsorted(m_cat, np.arange(n_categories + 1))
    cdf = np.empty(len(m_w))
    for c in range(n_categories):  # n_categories iterations, each vectorised
        s, e = cat_start[c], cat_start[c + 1]
        part = np.cumsum(m_w[s:e])
        cdf[s:e] = c + part / part[-1]
        cdf[e - 1] = c + 1.0  # exact upper edge: u < 1 always lands inside the category

    # Launch / expiry windows for some items.
    avail = np.full(n_items, -1, dtype=np.int64)
    expire = np.full(n_items, -1, dtype=np.int64)
    day0 = t0 // 86400 * 86400
    n_days = int(days)
    if n_days >= 30:
        has_a = rng.random(n_items) < 0.10
        avail[has_a] = day0 + 86400 * rng.integers(10, n_days - 5, int(has_a.sum()))
        has_e = rng.random(n_items) < 0.08
        expire[has_e] = day0 + 86400 * rng.integers(20, n_days + 30, int(has_e.sum()))
        both = (avail >= 0) & (expire >= 0) & (expire < avail + 7 * 86400)
        expire[both] = avail[both] + 30 * 86400

    # --- users
    n_pref = rng.choice([1, 2, 3], size=n_users, p=[0.45, 0.35, 0.20])
    gumbel = np.log(cat_w)[None, :] - np.log(-np.log(rng.random((n_users, n_categories))))
    prefs = np.argsort(-gumbel, axis=1)[:, :3]  # weighted sampling without replacement
    prefs = np.where(np.arange(3)[None, :] < n_pref[:, None], prefs, -1).astype(np.int16)
    user_w = _zipf_weights(n_users, 0.9, 20.0)[rng.permutation(n_users)]

    n_cp = round(category_pref * n_events)
    rest = n_events - n_cp
    mix = np.asarray(action_mix, dtype=np.float64)
    mix = mix / mix.sum()
    n_cart = round(mix[1] * rest)
    n_purchase = round(mix[2] * rest)
    n_view = rest - n_cart - n_purchase

    if heavy_users is None:
        heavy_users = 3 + n_events // 1_000_000 if n_items >= 1000 else 0
    heavy_users = min(heavy_users, n_users)
    heavy_ids = np.argsort(-user_w, kind="stable")[:heavy_users]  # the most active users
    heavy_views = rng.integers(1200, 3001, heavy_users)
    if heavy_views.sum() > n_view // 5:  # heavy users never dominate the data
        heavy_views = heavy_views * (n_view // 5) // max(int(heavy_views.sum()), 1)
    is_heavy = np.zeros(n_users, dtype=bool)
    is_heavy[heavy_ids] = True
    normal_w = np.where(is_heavy, 0.0, user_w)
    normal_w /= normal_w.sum() if normal_w.sum() > 0 else 1.0

    def draw_items(users: np.ndarray, focus: float) -> tuple[np.ndarray, np.ndarray]:
        """Items for events of `users`: (item index, drawn-from-a-preferred-category flag)."""
        k = n_pref[users]
        pick = prefs[users, (rng.random(len(users)) * k).astype(np.int64)].astype(np.int64)
        in_pref = (rng.random(len(users)) < focus) & ~is_heavy[users]
        cats = np.where(in_pref, pick, rng.choice(n_categories, size=len(users), p=cat_w))
        idx = np.searchsorted(cdf, cats + rng.random(len(users)), side="right")
        items = m_item[np.minimum(idx, len(m_item) - 1)]
        # Heavy users crawl: uniform over all items, so they reach many distinct ones.
        heavy = is_heavy[users]
        items[heavy] = rng.integers(0, n_items, int(heavy.sum()))
        return items, in_pref

    def fit_windows(items: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Squeeze times of items with a launch/expiry date into their window."""
        a, x = avail[items], expire[items]
        lo = np.where(a >= 0, np.maximum(a, t0), t0)
        hi = np.where(x >= 0, np.minimum(x, t_end), t_end)
        hi = np.maximum(hi, lo + 1)
        return lo + (t - t0) * (hi - lo) // span

    def after(src_t: np.ndarray, items: np.ndarray, mean_s: float) -> np.ndarray:
        """A follow-up time mean_s after src_t (exponential), kept in the item's window."""
        x = expire[items]
        hi = np.where(x >= 0, np.minimum(x, t_end), t_end) - 1
        t = src_t + rng.exponential(mean_s, len(src_t)).astype(np.int64)
        return np.maximum(np.minimum(t, hi), src_t)

    # --- views
    counts = np.zeros(n_users, dtype=np.int64)
    counts[heavy_ids] = heavy_views
    counts += rng.multinomial(n_view - int(counts.sum()), normal_w)
    v_user = np.repeat(np.arange(n_users), counts)
    v_item, v_pref = draw_items(v_user, p_pref)
    v_time = fit_windows(v_item, t0 + rng.integers(0, span, n_view))

    # --- carts: a subset of views, preferred-category views 4x as likely
    c_src = _weighted_sample(rng, np.where(v_pref, 4.0, 1.0), n_cart)
    c_user, c_item = v_user[c_src], v_item[c_src]
    c_time = after(v_time[c_src], c_item, 20 * 60)
    c_pref = v_pref[c_src]

    # --- purchases: from carts, from views, and direct
    n_from_cart = min(round(0.55 * n_purchase), len(c_src))
    n_from_view = min(round(0.30 * n_purchase), n_view)
    n_direct = n_purchase - n_from_cart - n_from_view
    pc_src = _weighted_sample(rng, np.where(c_pref, 2.0, 1.0), n_from_cart)
    pv_src = _weighted_sample(rng, np.where(v_pref, 4.0, 1.0), n_from_view)
    d_user = rng.choice(n_users, size=n_direct, p=normal_w)
    d_item, _ = draw_items(d_user, min(1.0, p_pref + 0.15))
    d_time = fit_windows(d_item, t0 + rng.integers(0, span, n_direct))
    p_user = np.concatenate([c_user[pc_src], v_user[pv_src], d_user])
    p_item = np.concatenate([c_item[pc_src], v_item[pv_src], d_item])
    p_time = np.concatenate(
        [
            after(c_time[pc_src], c_item[pc_src], 60 * 60),
            after(v_time[pv_src], v_item[pv_src], 2 * 60 * 60),
            d_time,
        ]
    )

    # --- category-pref: user -> one of their preferred categories
    cp_user = rng.choice(n_users, size=n_cp, p=normal_w)
    cp_cat = prefs[cp_user, (rng.random(n_cp) * n_pref[cp_user]).astype(np.int64)]
    cp_time = t0 + rng.integers(0, span, n_cp)

    user = np.concatenate([v_user, c_user, p_user, cp_user])
    item = np.concatenate([v_item, c_item, p_item, cp_cat.astype(np.int64)])
    event = np.repeat(
        np.array([VIEW, CART, PURCHASE, CATEGORY_PREF], dtype=np.int8),
        [n_view, n_cart, n_purchase, n_cp],
    )
    t = np.concatenate([v_time, c_time, p_time, cp_time]).astype(np.int64)
    order = np.argsort(t, kind="stable")
    return {
        "user": user[order].astype(np.int64),
        "event": event[order],
        "item": item[order].astype(np.int64),
        "time": t[order],
        "item_categories": item_cats,
        "item_popularity": item_pop,
        "item_available": avail,
        "item_expire": expire,
        "user_prefs": prefs,
        "user_heavy": is_heavy,
        "start": np.array(t0),
        "end": np.array(t_end),
    }


# --------------------------------------------------------------------------- formatting


def _id_strings(prefix: str, n: int) -> pa.Array:
    return pa.array([f"{prefix}{i}" for i in range(n)], type=pa.string())


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Formatter:
    """Vectorised string columns for a generated dataset (Arrow `take` on small id tables)."""

    def __init__(self, data: dict[str, np.ndarray]) -> None:
        self.data = data
        n_users = len(data["user_prefs"])
        n_items = len(data["item_categories"])
        n_cats = int(data["item_categories"].max()) + 1
        self.users = _id_strings("u", n_users)
        self.items = _id_strings("i", n_items)
        self.cats = _id_strings("c", max(n_cats, int(data["user_prefs"].max()) + 1))
        self.events = pa.array(EVENT_NAMES, type=pa.string())
        # A time string is a day part + a time-of-day part: two small tables and a join
        # are ~10x faster than formatting every timestamp.
        times = data["time"]
        self.day0 = int(times.min()) // 86400 if len(times) else 0
        n_days = (int(times.max()) // 86400 - self.day0 + 1) if len(times) else 1
        days = (np.arange(n_days) + self.day0).astype("datetime64[D]")
        self.days = pa.array(np.datetime_as_string(days, unit="D"), type=pa.string())
        tod = np.arange(86400)
        self.tods = pa.array(
            np.char.mod("T%02d:", tod // 3600).astype(object)
            + np.char.mod("%02d:", tod // 60 % 60).astype(object)
            + np.char.mod("%02dZ", tod % 60).astype(object),
            type=pa.string(),
        )

    def columns(self, lo: int, hi: int) -> dict[str, pa.Array]:
        """user, event, item, time string columns of events lo..hi."""
        d = self.data
        ev = d["event"][lo:hi]
        item_ix = d["item"][lo:hi]
        item = pc.take(self.items, pa.array(np.where(ev == CATEGORY_PREF, 0, item_ix)))
        if (ev == CATEGORY_PREF).any():
            cat = pc.take(self.cats, pa.array(np.where(ev == CATEGORY_PREF, item_ix, 0)))
            item = pc.if_else(pa.array(ev == CATEGORY_PREF), cat, item)
        t = d["time"][lo:hi]
        time_s = pc.binary_join_element_wise(
            pc.take(self.days, pa.array(t // 86400 - self.day0)),
            pc.take(self.tods, pa.array(t % 86400)),
            "",
        )
        return {
            "user": pc.take(self.users, pa.array(d["user"][lo:hi])),
            "event": pc.take(self.events, pa.array(ev.astype(np.int64))),
            "item": item,
            "time": time_s,
        }


def _write_lines(f: BinaryIO, lines: pa.Array) -> None:
    """Write a string array whose values end in newlines as one contiguous buffer."""
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[
        lines.offset : lines.offset + len(lines) + 1
    ]
    data = lines.buffers()[2]
    f.write(memoryview(data)[int(offsets[0]) : int(offsets[-1])])


def item_set_events(data: dict[str, np.ndarray]) -> list[dict]:
    """PredictionIO `$set` events with each item's properties (category, dates), at the start."""
    when = _iso(int(data["start"]))
    out = []
    for i, (c1, c2) in enumerate(data["item_categories"].tolist()):
        props: dict = {"category": [f"c{c1}"] + ([f"c{c2}"] if c2 >= 0 else [])}
        if data["item_available"][i] >= 0:
            props["availableDate"] = _iso(int(data["item_available"][i]))
        if data["item_expire"][i] >= 0:
            props["expireDate"] = _iso(int(data["item_expire"][i]))
        out.append(
            {
                "event": "$set",
                "entityType": "item",
                "entityId": f"i{i}",
                "properties": props,
                "eventTime": when,
            }
        )
    return out


def to_table(data: dict[str, np.ndarray]) -> pa.Table:
    """The events as an Arrow table of strings: user, event, item, time (ISO-8601 UTC)."""
    fmt = _Formatter(data)
    return pa.table(fmt.columns(0, len(data["time"])))


def _progress(msg: str, t_start: float) -> None:
    print(f"[{time.perf_counter() - t_start:7.2f}s] {msg}", file=sys.stderr, flush=True)


def write(
    data: dict[str, np.ndarray], out: Path, fmt: str, t_start: float | None = None
) -> list[Path]:
    """Write events (csv, jsonl or parquet) and item `$set` events under `out`; return the files."""
    t_start = time.perf_counter() if t_start is None else t_start
    out.mkdir(parents=True, exist_ok=True)
    formatter = _Formatter(data)
    n = len(data["time"])
    sets = "".join(json.dumps(e) + "\n" for e in item_set_events(data)).encode()
    written = []
    if fmt == "parquet":
        import pyarrow.parquet as pq

        path = out / "events.parquet"
        with pq.ParquetWriter(
            path, pa.schema([(c, pa.string()) for c in ("user", "event", "item", "time")])
        ) as w:
            for lo in range(0, n, _CHUNK):
                w.write_table(pa.table(formatter.columns(lo, min(n, lo + _CHUNK))))
                _progress(f"{min(n, lo + _CHUNK):,}/{n:,} events", t_start)
        written.append(path)
    else:
        path = out / ("events.csv" if fmt == "csv" else "events.jsonl")
        with open(path, "wb") as f:
            if fmt == "csv":
                f.write(b"user,event,item,time\n")
            else:
                f.write(sets)
            for lo in range(0, n, _CHUNK):
                cols = formatter.columns(lo, min(n, lo + _CHUNK))
                if fmt == "csv":
                    parts = [
                        cols["user"],
                        ",",
                        cols["event"],
                        ",",
                        cols["item"],
                        ",",
                        cols["time"],
                        "\n",
                    ]
                else:
                    parts = [
                        '{"event": "', cols["event"],
                        '", "entityType": "user", "entityId": "', cols["user"],
                        '", "targetEntityType": "item", "targetEntityId": "', cols["item"],
                        '", "eventTime": "', cols["time"], '"}\n',
                    ]  # fmt: skip
                _write_lines(f, pc.binary_join_element_wise(*parts, ""))
                _progress(f"{min(n, lo + _CHUNK):,}/{n:,} events", t_start)
        written.append(path)
    if fmt != "jsonl":
        (out / "items.jsonl").write_bytes(sets)
        written.append(out / "items.jsonl")
    return written


def write_sample(out_dir: Path) -> Path:
    """Write the bundled sample (SAMPLE settings) as `<out_dir>/events.jsonl`."""
    data = generate(**SAMPLE)
    write(data, out_dir, "jsonl", t_start=time.perf_counter())
    return out_dir / "events.jsonl"


def main(argv: list[str] | None = None) -> int:
    """Command line: see --help."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="number of user events")
    p.add_argument("--users", type=int, help="user id space (default: events / 20)")
    p.add_argument("--items", type=int, help="item id space (default: events / 100)")
    p.add_argument("--categories", type=int, default=20)
    p.add_argument("--days", type=float, default=90.0, help="time span in days")
    p.add_argument("--start", default=DEFAULT_START, help="ISO-8601 start of the span")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--category-pref", type=float, default=0.0, help="share of category-pref events")
    p.add_argument("--heavy-users", type=int, help="crawler-like users with 1200-3000 views")
    p.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv")
    p.add_argument("--out", type=Path, help="output directory")
    p.add_argument(
        "--sample", action="store_true", help="write the bundled sample (sample/events.jsonl)"
    )
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    if a.sample:
        path = write_sample(a.out or REPO / "sample")
        _progress(f"wrote {path} ({path.stat().st_size:,} bytes)", t_start)
        return 0
    if a.out is None:
        p.error("--out is required (or --sample)")
    data = generate(
        a.events,
        a.users or max(50, a.events // 20),
        a.items or max(50, a.events // 100),
        a.seed,
        n_categories=a.categories,
        days=a.days,
        start=a.start,
        category_pref=a.category_pref,
        heavy_users=a.heavy_users,
    )
    _progress(f"generated {a.events:,} events", t_start)
    for path in write(data, a.out, a.format, t_start):
        _progress(f"wrote {path} ({path.stat().st_size:,} bytes)", t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
