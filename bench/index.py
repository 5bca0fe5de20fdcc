"""Embedded backend benchmark: indexing throughput and query latency.

Generates model-like item documents (two indicator fields with up to 50 correlators each,
zipf-like item popularity, 1-2 of 50 categories, popularity rankings), indexes them at
10k and 100k items, then times typical recommendation queries: a history of 10 or 500
items as boosted should-terms over both indicator fields, a category filter, and the
history excluded with must_not ids.

    python bench/index.py [--sizes 10000 100000] [--queries 200] [--out bench/results/index.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.backend import IndexSchema  # noqa: E402
from indexer.embedded import EmbeddedBackend  # noqa: E402

FIELDS = ("purchase", "view")
SCHEMA = IndexSchema(keyword_fields=(*FIELDS, "category"), number_fields=("popular", "trending", "hot"))


def documents(n: int, seed: int = 1) -> tuple[list[dict], list[str], list[float]]:
    rnd = random.Random(seed)
    ids = [f"item-{k:07d}" for k in range(n)]
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(n)]
    cum = np.cumsum(weights)
    nprnd = np.random.default_rng(seed)
    categories = [f"cat-{k:02d}" for k in range(50)]
    docs = []
    for doc_id in ids:
        doc = {"id": doc_id}
        for field in FIELDS:
            k = rnd.randint(5, 50)
            picks = np.searchsorted(cum, nprnd.random(k) * cum[-1])
            doc[field] = [ids[i] for i in dict.fromkeys(picks.tolist())]
        doc["category"] = rnd.sample(categories, rnd.randint(1, 2))
        doc["popular"] = float(rnd.randint(0, 1000))
        doc["trending"] = float(rnd.randint(-50, 50))
        doc["hot"] = float(rnd.randint(-10, 10))
        docs.append(doc)
    return docs, ids, weights


def query(history: list[str], category: str) -> dict:
    should = [{"term": {f: {"value": h, "boost": b}}} for f, b in (("purchase", 1.0), ("view", 0.5))
              for h in history]
    return {
        "query": {"bool": {
            "should": should,
            "filter": [{"terms": {"category": [category]}}],
            "must_not": [{"ids": {"values": history}}],
            "minimum_should_match": 1,
        }},
        "size": 20,
        "sort": [{"_score": "desc"}, {"popular": "desc"}, {"id": "asc"}],
        "_source": False,
    }


def run(sizes: list[int], n_queries: int) -> dict:
    results: dict = {"machine": {"python": platform.python_version(), "numpy": np.__version__,
                                 "cpus": os.cpu_count(), "load_average_before": os.getloadavg()[0]},
               "sizes": []}
    for n in sizes:
        docs, ids, weights = documents(n)
        postings = sum(len(d[f]) for d in docs for f in FIELDS)
        with tempfile.TemporaryDirectory() as tmp:
            backend = EmbeddedBackend(tmp, "items", keep_versions=1)
            started = time.perf_counter()
            report = backend.create_version(SCHEMA, docs)
            seconds = time.perf_counter() - started
            entry = {"items": n, "indicator_postings": postings, "index_seconds": round(seconds, 3),
                     "documents_per_second": round(n / seconds), "version": report.version,
                     "queries": []}
            print(f"{n:>7} items: indexed in {seconds:6.2f} s = {n / seconds:9,.0f} documents/s "
                  f"({postings:,} indicator postings)")
            rnd = random.Random(n)
            backend.search(query(ids[:10], "cat-00"))  # first call maps the version
            for history_len in (10, 500):
                latencies = []
                for _ in range(n_queries):
                    history = list(dict.fromkeys(rnd.choices(ids, weights=weights, k=history_len)))
                    body = query(history, f"cat-{rnd.randrange(50):02d}")
                    t0 = time.perf_counter()
                    backend.search(body)
                    latencies.append((time.perf_counter() - t0) * 1000)
                p50, p99 = np.percentile(latencies, [50, 99])
                entry["queries"].append({"history": history_len, "fields": len(FIELDS),
                                         "category_filter": True, "queries": n_queries,
                                         "p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2)})
                print(f"{'':>7}  history {history_len:>3} x {len(FIELDS)} fields + category filter: "
                      f"p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   ({n_queries} queries)")
            backend._snapshot = None  # release the memory-mapped version before the dir goes
        results["sizes"].append(entry)
        del docs
    # the machine is shared: a high load average explains slow or noisy figures
    results["machine"]["load_average_after"] = os.getloadavg()[0]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "index.json"))
    args = parser.parse_args()
    results = run(args.sizes, args.queries)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
