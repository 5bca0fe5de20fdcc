"""Recommendation quality on MovieLens: cooccur's variants beside popularity, Spark MLlib ALS,
`implicit` (ALS, item-item cosine, BM25) and Microsoft's SAR, on the same split and metrics.

    pip install implicit && pip install --no-deps recommenders   # the peers (benchmark only)
    python bench/quality.py            # writes bench/results/quality.json and docs/benchmarks.md

Two protocols (PROTOCOLS below): a per-user temporal hold-out of each user's newest likes,
and Microsoft's SAR-table protocol (a random 75/25 split of each user's rated items, k = 10).
The metrics are evaluation/measures.py's (definitions: docs/evaluation.md). Models that can
only rank items they were trained on are topped up with popularity (training primary counts)
to k, as cooccur backfills; every method excludes the user's training primary items.
Tuned hyper-parameters (ALS rank x regularisation) are chosen on a validation split carved
from the training part with the same splitter, never on the test part.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.movielens import DEFAULT_SOURCE, convert  # noqa: E402
from evaluation.measures import score_rankings  # noqa: E402
from evaluation.plots import plot_curves  # noqa: E402
from evaluation.run import train_and_index  # noqa: E402
from evaluation.splits import Split, parse_split, prepare_split, split_events, validation_split  # noqa: E402
from evaluation.tuning import tune as tune_settings  # noqa: E402
from evaluation.variants import Variant, default_variants, run_variants  # noqa: E402
from query.settings import QuerySettings  # noqa: E402

DATA = REPO / "bench" / "data" / "movielens"
RESULTS = REPO / "bench" / "results" / "quality.json"
DOCS = REPO / "docs" / "benchmarks.md"
IMAGES = REPO / "docs" / "img"
PLOT_KS = tuple(range(1, 21))
"""Every method's precision@k and MAP@k for these k are drawn per protocol."""
FORMER_DEFAULTS = {"history_decay": 0.9, "scoring": "terms", "popularity_prior": False, "max_query_events": 100,
                   "secondary_boost": 1.0}
FORMER_MAX_CORRELATORS = 50
"""The defaults before the popularity prior (0.1.0), shown beside the shipped ones: their own
model (50 correlators per item) queried with BM25 term clauses, every indicator at boost 1."""
ALS_GRID = [{"rank": r, "reg": g} for r in (10, 50) for g in (0.01, 0.1)]
PEERS_INSTALL = "pip install implicit && pip install --no-deps recommenders"
# Microsoft recommenders README, MovieLens 100k, stratified 75/25 split per user, k = 10.
# Their MAP column divided by the number of relevant items (its older `map`), not min(k, ·).
MS_PUBLISHED = {
    "dataset": "MovieLens 100k (943 users, 1,682 movies, every rating relevant)",
    "rows": {
        "SAR": {"map_rel": 0.110591, "ndcg": 0.382461, "precision": 0.330753, "recall": 0.176385},
        "BPR (cornac)": {"map_rel": 0.105365, "ndcg": 0.389948, "precision": 0.349841, "recall": 0.181807},
        "NCF": {"map_rel": 0.107720, "ndcg": 0.396118, "precision": 0.347296, "recall": 0.180775},
        "ALS (Spark, explicit)": {"map_rel": 0.004732, "ndcg": 0.044239, "precision": 0.048462,
                                  "recall": 0.017796},
    },
}


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    split: str
    primary: str
    indicators: tuple[str, ...]
    ks: tuple[int, ...]
    seed: int = 42


PROTOCOLS = [
    Protocol("leave-last-5", "Per-user temporal hold-out: each user's 5 newest likes", "leave-last:5",
             "like", ("like", "rate", "tag"), (10, 20)),
    Protocol("sar-protocol", "Microsoft's SAR-table protocol: random 75/25 per user, every rating relevant",
             "random:0.25", "rate", ("rate", "like", "tag"), (10,)),
]


# =========================================================================== index space
@dataclass
class Interactions:
    """Training primary interactions as a binary users x items matrix (CF models' input)."""

    users: list[str]
    items: list[str]
    matrix: sp.csr_matrix
    times: dict[tuple[int, int], float]

    @property
    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.users)}

    def popularity_order(self) -> np.ndarray:
        counts = np.asarray(self.matrix.sum(axis=0)).ravel()
        return np.lexsort((np.arange(len(self.items)), -counts))  # count desc, then item id


def interactions_of(rows: Sequence[tuple[str, str, float | None]]) -> Interactions:
    users = sorted({u for u, _, _ in rows})
    items = sorted({i for _, i, _ in rows})
    ui, ii = {u: n for n, u in enumerate(users)}, {i: n for n, i in enumerate(items)}
    times: dict[tuple[int, int], float] = {}
    for u, i, t in rows:
        key = (ui[u], ii[i])
        times[key] = max(times.get(key, 0.0), t or 0.0)
    keys = list(times)
    r = np.array([k[0] for k in keys], dtype=np.int32)
    c = np.array([k[1] for k in keys], dtype=np.int32)
    m = sp.csr_matrix((np.ones(len(keys), dtype=np.float32), (r, c)), shape=(len(users), len(items)))
    return Interactions(users, items, m, times)


def primary_rows(df, primary: str) -> list[tuple[str, str, float | None]]:
    from pyspark.sql import functions as F

    sel = df.where(F.col("event") == primary).select(
        "user", "item", F.unix_timestamp("time").cast("double").alias("t"))
    return [(r["user"], r["item"], r["t"]) for r in sel.toLocalIterator()]


def fill(ranked: list[int], seen: set[int], order: np.ndarray, k: int) -> list[int]:
    """Top up a ranked list to k with popular items the user has not seen."""
    out = [i for i in ranked if i not in seen][:k]
    have = set(out)
    for i in order:
        if len(out) >= k:
            break
        if int(i) not in have and int(i) not in seen:
            out.append(int(i))
            have.add(int(i))
    return out


def top_k_scores(scores: np.ndarray, seen: set[int], k: int) -> list[int]:
    s = scores.astype(np.float64).copy()
    if seen:
        s[list(seen)] = -np.inf
    n = min(k, len(s))
    idx = np.argpartition(-s, n - 1)[:n]
    idx = idx[np.lexsort((idx, -s[idx]))]
    return [int(i) for i in idx if np.isfinite(s[i])]


# =========================================================================== models
Ranker = Callable[[Interactions, dict, list[int], int], dict[int, list[int]]]


def spark_als(spark) -> Ranker:
    def rank(data: Interactions, params: dict, users: list[int], k: int) -> dict[int, list[int]]:
        from pyspark.ml.recommendation import ALS

        coo = data.matrix.tocoo()
        df = spark.createDataFrame(
            list(zip(coo.row.tolist(), coo.col.tolist(), [1.0] * coo.nnz, strict=True)),
            "u int, i int, r float")
        model = ALS(rank=params["rank"], regParam=params["reg"], implicitPrefs=True, alpha=1.0, maxIter=10,
                    seed=0, userCol="u", itemCol="i", ratingCol="r", coldStartStrategy="drop").fit(df)
        U = np.zeros((len(data.users), params["rank"]), dtype=np.float32)
        V = np.zeros((len(data.items), params["rank"]), dtype=np.float32)
        for r in model.userFactors.collect():
            U[r["id"]] = r["features"]
        for r in model.itemFactors.collect():
            V[r["id"]] = r["features"]
        out = {}
        for u in users:
            seen = set(data.matrix[u].indices.tolist())
            out[u] = top_k_scores(V @ U[u], seen, k)
        return out

    return rank


def implicit_model(kind: str) -> Ranker:
    def rank(data: Interactions, params: dict, users: list[int], k: int) -> dict[int, list[int]]:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        if kind == "als":
            model = AlternatingLeastSquares(factors=params["rank"], regularization=params["reg"],
                                            iterations=15, random_state=0)
        elif kind == "cosine":
            model = CosineRecommender()
        else:
            model = BM25Recommender()
        model.fit(data.matrix, show_progress=False)
        ids, _ = model.recommend(np.array(users), data.matrix[users], N=k, filter_already_liked_items=True)
        return {u: [int(i) for i in row if i >= 0] for u, row in zip(users, ids, strict=True)}

    return rank


def sar_model() -> Ranker:
    def rank(data: Interactions, params: dict, users: list[int], k: int) -> dict[int, list[int]]:
        import pandas as pd
        from recommenders.models.sar import SAR

        if "NaN" not in np.__dict__:  # recommenders 1.2.1 still says np.NaN, gone in NumPy 2
            np.NaN = np.nan

        coo = data.matrix.tocoo()
        df = pd.DataFrame({
            "userID": coo.row, "itemID": coo.col, "rating": 1.0,
            "timestamp": [data.times[(int(r), int(c))] for r, c in zip(coo.row, coo.col, strict=True)],
        })
        model = SAR(col_user="userID", col_item="itemID", col_rating="rating", col_timestamp="timestamp",
                    similarity_type="jaccard", timedecay_formula=False)
        model.fit(df)
        recs = model.recommend_k_items(pd.DataFrame({"userID": users}), top_k=k, remove_seen=True)
        out: dict[int, list[int]] = {u: [] for u in users}
        for u, i in zip(recs["userID"], recs["itemID"], strict=True):
            out[int(u)].append(int(i))
        return out

    return rank


# =========================================================================== one protocol
def _metrics_json(metrics, ks: Sequence[int]) -> dict:
    return {str(k): metrics[k].as_dict() for k in ks}


def _curves(metrics) -> dict:
    """precision and MAP at every k of PLOT_KS (the charts' points)."""
    return {str(k): {"precision": round(metrics[k].precision, 6), "map": round(metrics[k].map, 6)}
            for k in PLOT_KS}


def map_rel(rankings: dict[str, list[str]], relevant: dict[str, set[str]], k: int) -> float:
    """MAP@k with |relevant| as AP's denominator (the older convention of published tables)."""
    total = 0.0
    for u, rel in relevant.items():
        hits, s = 0, 0.0
        for i, item in enumerate(rankings.get(u, [])[:k], 1):
            if item in rel:
                hits += 1
                s += hits / i
        total += s / len(rel)
    return total / max(len(relevant), 1)


def run_protocol(spark, proto: Protocol, paths: list[str], workdir: Path, peers: dict[str, bool],
                 log: Callable[[str], None]) -> dict:
    from pyspark.sql import functions as F

    from indicators.settings import TrainSettings

    settings = TrainSettings(primary=proto.primary, indicators=[{"name": n} for n in proto.indicators])
    split = parse_split(proto.split, proto.seed)
    ks = list(proto.ks)
    t0 = time.perf_counter()
    prepared = prepare_split(spark, paths, settings, split, workdir)
    split_seconds = time.perf_counter() - t0
    log(f"[{proto.name}] split: {len(prepared.relevant)} users to evaluate, skipped {prepared.skipped}")
    relevant = prepared.relevant
    methods: list[dict] = []

    # --- cooccur: one training + index, then every query variant
    all_ks = sorted(set(ks) | set(PLOT_KS))
    backend, timings = train_and_index(spark, prepared, settings)
    ranked_by_variant: dict[str, dict[str, list[str]]] = {}
    runs = [(v, QuerySettings(), f"cooccur {v.name}", {"indicators": v.indicators, "scoring": v.scoring})
            for v in default_variants(proto.primary, settings.actions) if v.name != "all/ours"]
    runs[0] = (runs[0][0], QuerySettings(), "popularity", runs[0][3])
    everything = Variant("all/ours", tuple(settings.actions))
    former_train = replace(settings, indicators=[replace(i, max_correlators=FORMER_MAX_CORRELATORS)
                                                 for i in settings.indicators])
    former_backend, _ = train_and_index(spark, prepared, former_train, model_name="model-former")
    runs += [(replace(everything, name="shipped"), QuerySettings(), "cooccur (shipped defaults)",
              {"shipped_defaults": True}),
             (replace(everything, name="former"), QuerySettings(**FORMER_DEFAULTS), "cooccur (former defaults)",
              {"former_defaults": True, **FORMER_DEFAULTS, "max_correlators": FORMER_MAX_CORRELATORS})]
    for v, query_settings, name, params in runs:
        (r,) = run_variants(former_backend if v.name == "former" else backend, prepared, [v], all_ks,
                            query_settings, rankings_out=ranked_by_variant)
        methods.append({
            "method": name, "family": "baseline" if v.name == "popularity" else "cooccur",
            "params": params, "metrics": _metrics_json(r.metrics, ks), "curves": _curves(r.metrics),
            "train_seconds": 0.0 if v.name == "popularity" else timings["train"] + timings["index"],
            "recommend_seconds": round(r.seconds, 3), "users": r.queries,
            "map_rel": round(map_rel(ranked_by_variant[v.name], relevant, ks[0]), 6),
        })
        log(f"[{proto.name}] {name}: MAP@{ks[0]} {r.metrics[ks[0]].map:.4f}")

    # --- cooccur tuned on a validation split of the training part (never the test part)
    t = time.perf_counter()
    tuned = tune_settings(spark, paths, settings, split, all_ks, k=ks[0], workdir=workdir / "tune",
                 on_stage=lambda line: log(f"[{proto.name}] tune: {line}"))
    tune_seconds = time.perf_counter() - t
    tm = tuned.results["test"]["tuned"]
    methods.append({
        "method": "cooccur (tuned)", "family": "cooccur",
        "params": {"tuned": True, **tuned.chosen.as_dict()},
        "metrics": _metrics_json(tm, ks), "curves": _curves(tm),
        "validation": {name: round(m[ks[0]].map, 6) for name, m in tuned.results["validation"].items()},
        "trials": len(tuned.trials), "train_seconds": tuned.timings["test_train"] + tuned.timings["test_index"],
        "tune_seconds": round(tune_seconds, 3), "recommend_seconds": None, "users": len(relevant),
        "map_rel": None,
    })
    log(f"[{proto.name}] cooccur (tuned) {tuned.chosen.describe()}: MAP@{ks[0]} {tm[ks[0]].map:.4f}")

    # --- the CF models' input: training primary interactions, and a validation split of them
    train_part = prepared.events.where(~F.col("test")).drop("test")
    data = interactions_of(primary_rows(train_part, proto.primary))
    uidx = data.user_index
    eval_users = [uidx[u] for u in sorted(relevant) if u in uidx]
    order = data.popularity_order()

    vsplit = validation_split(split)
    vmarked, _ = split_events(train_part, vsplit, proto.primary)
    vtrain = interactions_of(primary_rows(vmarked.where(~F.col("test")), proto.primary))
    vtest_rows = primary_rows(vmarked.where(F.col("test")), proto.primary)
    vuidx, viidx = vtrain.user_index, {it: n for n, it in enumerate(vtrain.items)}
    vrel: dict[int, set[int]] = {}
    for u, i, _ in vtest_rows:
        if u in vuidx and i in viidx and viidx[i] not in set(vtrain.matrix[vuidx[u]].indices.tolist()):
            vrel.setdefault(vuidx[u], set()).add(viidx[i])
    vorder = vtrain.popularity_order()
    log(f"[{proto.name}] validation ({vsplit}): {len(vrel)} users")

    def as_ids(d: Interactions, ranked: dict[int, list[int]], users: list[int], ord_: np.ndarray,
               k: int) -> dict[str, list[str]]:
        out = {}
        for u in users:
            seen = set(d.matrix[u].indices.tolist())
            out[d.users[u]] = [d.items[i] for i in fill(ranked.get(u, []), seen, ord_, k)]
        return out

    def tune(ranker: Ranker, grid: list[dict]) -> tuple[dict, list[dict]]:
        tried = []
        vusers = sorted(vrel)
        vrel_ids = {vtrain.users[u]: {vtrain.items[i] for i in s} for u, s in vrel.items()}
        for params in grid:
            ranked = ranker(vtrain, params, vusers, ks[0])
            m = score_rankings(as_ids(vtrain, ranked, vusers, vorder, ks[0]), vrel_ids, [ks[0]], len(vtrain.items))
            tried.append({**params, f"validation_map@{ks[0]}": round(m[ks[0]].map, 6)})
            log(f"[{proto.name}]   {params} -> validation MAP@{ks[0]} {m[ks[0]].map:.4f}")
        best = max(tried, key=lambda t: t[f"validation_map@{ks[0]}"])
        return {k: best[k] for k in grid[0]}, tried

    candidates: list[tuple[str, str, Ranker, list[dict] | None]] = [
        ("Spark MLlib ALS (implicit)", "Spark MLlib", spark_als(spark), ALS_GRID)]
    if peers["implicit"]:
        candidates += [("implicit ALS", "implicit", implicit_model("als"), ALS_GRID),
                       ("implicit cosine (item-item)", "implicit", implicit_model("cosine"), None),
                       ("implicit BM25 (item-item)", "implicit", implicit_model("bm25"), None)]
    if peers["recommenders"]:
        candidates.append(("SAR (recommenders SARSingleNode)", "recommenders", sar_model(), None))
    kmax = max(all_ks)
    for name, family, ranker, grid in candidates:
        t = time.perf_counter()
        params, tried = tune(ranker, grid) if grid else ({}, [])
        tune_seconds = time.perf_counter() - t
        t = time.perf_counter()
        ranked = ranker(data, params, eval_users, kmax)
        fit_and_rank = time.perf_counter() - t
        rankings = as_ids(data, ranked, eval_users, order, kmax)
        # users with a training history but no training primary item: popularity, as cooccur
        popular = [data.items[i] for i in order[:kmax]]
        rankings.update({u: popular for u in relevant if u not in rankings})
        metrics = score_rankings(rankings, relevant, all_ks, prepared.catalogue)
        methods.append({
            "method": name, "family": family, "params": params, "grid": tried,
            "metrics": _metrics_json(metrics, ks), "curves": _curves(metrics),
            "map_rel": round(map_rel(rankings, relevant, ks[0]), 6),
            "train_seconds": round(fit_and_rank, 3), "tune_seconds": round(tune_seconds, 3),
            "recommend_seconds": None, "users": len(eval_users),
        })
        log(f"[{proto.name}] {name} {params}: MAP@{ks[0]} {metrics[ks[0]].map:.4f} ({fit_and_rank:.1f} s)")
    prepared.events.unpersist()
    return {
        "name": proto.name, "title": proto.title, "split": prepared.detail, "seed": proto.seed,
        "primary": proto.primary, "indicators": list(proto.indicators), "k": ks,
        "users": {"test": prepared.test_users, "evaluated": len(relevant), "skipped": prepared.skipped},
        "catalogue": prepared.catalogue, "events": prepared.counts,
        "timings": {"split": round(split_seconds, 3), **timings},
        "methods": methods,
    }


# =========================================================================== report
def render(results: dict) -> str:
    """docs/benchmarks.md from the JSON (nothing in it is typed by hand)."""
    L = [
        "# Benchmarks: recommendation quality",
        "",
        "<!-- Generated by bench/quality.py from bench/results/quality.json: edit the script, not this file. -->",
        "",
        f"Produced by `{results['command']}` on {results['created']} "
        f"({results['machine']['cpus']} CPUs, load average {results['machine']['loadavg']} at the start; "
        f"Python {results['machine']['python']}). Data: MovieLens ml-latest-small "
        "(../shared/data/ml-latest-small, converted by bench/movielens.py): `like` = a rating >= 4, "
        "`rate` = every rating, `tag` = every tag; genres are item `category` properties.",
        "",
        "The peers are installed for the benchmark only (not project dependencies):",
        "",
        "```",
        PEERS_INSTALL,
        "```",
        "",
        "Metrics are defined in [evaluation.md](evaluation.md): precision@k (hits / k), recall@k "
        "(hits / relevant), MAP@k (AP's denominator is **min(k, relevant items)**), NDCG@k (binary gain), "
        "hit rate@k, catalogue coverage@k (distinct items in anyone's top k / items with a training "
        "primary event). Every method excludes the user's training primary items and is topped up "
        "with popular items to k (cooccur's own backfill; popularity order for the others).",
        "",
        "Times: cooccur's *train* is the Spark indicator job plus indexing into the embedded "
        "backend, once for all its variants; *recommend* is the sum of the per-user queries. For the "
        "other models *train* is the final fit plus scoring the test users, *tune* the grid on the "
        "validation split.",
        "",
    ]
    for p in results["protocols"]:
        k0 = p["k"][0]
        skipped = ", ".join(f"{n} {r}" for r, n in p["users"]["skipped"].items() if n) or "none"
        L += [f"## {p['title']}", "",
              f"Split `{p['split']['split']}` (seed {p['seed']})"
              + (f", cut {p['split']['cut']}" if "cut" in p["split"] else "")
              + f"; primary action `{p['primary']}`; cooccur indicators {', '.join(p['indicators'])}. "
              f"{p['users']['evaluated']} users evaluated of {p['users']['test']} in the test part "
              f"(skipped: {skipped}); catalogue {p['catalogue']:,} items; "
              f"{p['events']['train_events']:,} training and {p['events']['test_events']:,} test events.", ""]
        for k in p["k"]:
            L += [f"### k = {k}", "",
                  "| method | precision | recall | MAP | NDCG | hit rate | coverage | train s | tune s | recommend s |",
                  "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
            for m in p["methods"]:
                x = m["metrics"][str(k)]
                params = m.get("params") or {}
                label = m["method"] + (f" ({', '.join(f'{a}={b}' for a, b in params.items())})"
                                       if m["family"] not in ("cooccur", "baseline") and params else "")
                rec = "" if m.get("recommend_seconds") is None else f"{m['recommend_seconds']:.2f}"
                tune = f"{m['tune_seconds']:.1f}" if m.get("tune_seconds") else ""
                L.append(f"| {label} | {x['precision']:.4f} | {x['recall']:.4f} | {x['map']:.4f} | "
                         f"{x['ndcg']:.4f} | {x['hit_rate']:.4f} | {x['coverage']:.4f} | "
                         f"{m['train_seconds']:.1f} | {tune} | {rec} |")
            L.append("")
        L += [f"![precision@k and MAP@k, k = 1..20, {p['title']}](img/quality-{p['name']}.png)", ""]
        for m in p["methods"]:
            if m["method"] == "cooccur (tuned)":
                chosen = ", ".join(f"{a} {b}" for a, b in m["params"].items() if a != "tuned")
                L += [f"cooccur (tuned): {chosen}; chosen by MAP@{k0} among {m['trials']} settings on the "
                      f"validation split (validation MAP@{k0} {m['validation']['tuned']:.4f}, shipped "
                      f"defaults {m['validation']['defaults']:.4f}); `cooccur tune` does the same for any data.", ""]
        grids = [m for m in p["methods"] if m.get("grid")]
        if grids:
            L += [f"Hyper-parameters chosen by MAP@{k0} on the validation split "
                  f"(`{validation_split(Split(*p['split']['split'].split(':', 1)))}` of the training part):", ""]
            for m in grids:
                tried = "; ".join(
                    f"rank {g['rank']}, reg {g['reg']}: {g[f'validation_map@{k0}']:.4f}" for g in m["grid"])
                L.append(f"- {m['method']}: {tried}")
            L.append("")
        if p["name"] == "sar-protocol":
            L += ["Beside Microsoft's published table (their data set differs: "
                  f"{MS_PUBLISHED['dataset']}; their MAP divides by the relevant items, shown here as "
                  "MAP (rel)):", "",
                  "| method | MAP (rel) | NDCG@10 | precision@10 | recall@10 |", "|---|--:|--:|--:|--:|"]
            for name, r in MS_PUBLISHED["rows"].items():
                L.append(f"| published: {name} | {r['map_rel']:.4f} | {r['ndcg']:.4f} | {r['precision']:.4f} | "
                         f"{r['recall']:.4f} |")
            for m in p["methods"]:
                if m.get("map_rel") is not None:
                    x = m["metrics"]["10"]
                    L.append(f"| here: {m['method']} | {m['map_rel']:.4f} | {x['ndcg']:.4f} | "
                             f"{x['precision']:.4f} | {x['recall']:.4f} |")
            L.append("")
    L += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(L)


def peers_available() -> dict[str, bool]:
    out = {}
    for name, probe in (("implicit", "implicit.nearest_neighbours"), ("recommenders", "recommenders.models.sar")):
        try:
            __import__(probe)
            out[name] = True
        except ImportError as e:
            print(f"{name} is not installed ({e}): skipped; {PEERS_INSTALL}", file=sys.stderr)
            out[name] = False
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--protocol", action="append", choices=[x.name for x in PROTOCOLS],
                   help="Run only these protocols (repeatable; default all).")
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--docs", type=Path, default=DOCS)
    p.add_argument("--images", type=Path, default=IMAGES)
    a = p.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if not (DATA / "events.csv").exists():
        convert(a.source, DATA)
    peers = peers_available()
    from indicators.spark import build_spark_session

    spark = build_spark_session("local[*]", {"spark.ui.showConsoleProgress": "false",
                                             "spark.driver.memory": "2g"}, app_name="cooccur-quality")
    paths = [str(DATA / "events.csv"), str(DATA / "items.jsonl")]
    results = {
        "command": "python bench/quality.py" + (" " + " ".join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else ""),
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "loadavg": round(os.getloadavg()[0], 1),
                    "python": platform.python_version()},
        "peers": peers, "protocols": [], "notes": [],
    }
    work = Path(tempfile.mkdtemp(prefix="cooccur-quality-"))
    try:
        for proto in PROTOCOLS:
            if a.protocol and proto.name not in a.protocol:
                continue
            r = run_protocol(spark, proto, paths, work / proto.name, peers, log)
            results["protocols"].append(r)
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["notes"] = NOTES + [f"{n} was not installed: skipped." for n, ok in peers.items() if not ok]
    for r in results["protocols"]:
        curves = {m["method"]: {int(k): v for k, v in m["curves"].items()} for m in r["methods"]}
        plot_curves(curves, a.images / f"quality-{r['name']}.png", r["title"])
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(results, indent=2) + "\n")
    a.docs.write_text(render(results))
    log(f"wrote {a.json} and {a.docs}")
    return 0


NOTES = [
    "Spark MLlib ALS and implicit ALS learn from the binary primary interactions (implicitPrefs, "
    "alpha 1; Spark maxIter 10, implicit 15 iterations); implicit's item-item models use their "
    "defaults (K = 20; BM25 K1 = 1.2, B = 0.75); SAR uses Jaccard similarity without time "
    "decay on the binary primary interactions: its quick-start 30-day decay, measured from the "
    "newest event, weighs the history of a user last active years earlier (MovieLens spans "
    "1996-2018) to about zero, which leaves such users with arbitrary recommendations.",
    "cooccur's `primary/*` variants query the primary indicator with the user's primary history "
    "only; `all/*` add the secondary indicators (cross-occurrence) with the whole history; `ours` "
    "is one BM25 `term` clause per history item (the query builder's default), `ur` one "
    "constant-score `terms` clause per indicator with ties broken by popularity (the Universal "
    "Recommender's shape).",
    "MovieLens ratings have no notion of sessions, so a global time cut leaves few users with both "
    "a training history and held-out likes (18 of 165 test users at 80% of the time span): the "
    "per-user temporal hold-out measures the same thing (predict what a user likes next from what "
    "came before) over every user.",
    "recommenders 1.2.1's SAR still uses `np.NaN`, which NumPy 2 removed: the benchmark restores "
    "that alias (`np.NaN = np.nan`) before fitting SAR; nothing else of recommenders is needed "
    "(it is installed with `--no-deps`; SAR imports only numpy, pandas and scipy).",
    "cooccur (shipped defaults) is every indicator queried with the shipped [train]/[index]/[query] "
    "defaults (100 correlators per item, no minimum LLR, caps of 500; correlator weights with "
    "ln(1 + LLR), the popularity prior ** 0.5, history_decay 0.95, 50 events per action, "
    "secondary indicators at boost 0.5; chosen by bench/defaults.py on validation splits, "
    "docs/evaluation.md); cooccur (former defaults) is what 0.1.0 shipped (50 correlators, BM25 "
    "term clauses, history_decay 0.9, 100 events, boost 1 each, no prior); cooccur (tuned) is `cooccur tune`'s choice "
    "on a validation split carved from the training part (never the test part), then trained and "
    "evaluated on the test split like the others; the ALS models get a hyper-parameter grid on "
    "the same kind of validation split.",
    "The SAR-table protocol is run on ml-latest-small (610 users, 9.7k movies), not on MovieLens "
    "100k (943 users, 1.7k movies), and on binary ratings (SAR's table used rating values as "
    "weights): read the numbers beside theirs, not as a replication.",
]


if __name__ == "__main__":
    sys.exit(main())
