"""The search-server backends beside the embedded one, in one run: indexing throughput and
query latency of the same documents and the same builder bodies (bench/index.py's
generators: two indicator fields with Zipf correlators and their LLR weights, categories,
rankings and the prior; bodies with the shipped [query] settings and the former ones).

Each backend indexes the documents (best of --index-repeats), then the backends answer the
bodies in alternating batches, so a busy machine slows all alike; the hits are compared
(ids and order; scores within 1e-6 relative). Ratios are server / embedded. The servers are
the nodes of `make search-nodes` (tests/search_nodes.py starts them: one JVM, 512 MB heap,
HTTP on loopback), or --opensearch-url / --elasticsearch-url (start_servers, which
bench/index.py and bench/serve.py use too: a product without a node is skipped with one
line). The Elasticsearch node from
Maven Central has no rank_features (docs/elasticsearch.md): it answers the former
settings' bodies only.

    python bench/search_servers.py [--sizes 10000] [--queries 100] [--products opensearch elasticsearch]
                                   [--out bench/results/search-servers.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.index import SETTINGS, bodies, documents, percentiles  # noqa: E402
from indexer.backend import IndexSchema  # noqa: E402
from indexer.elasticsearch import ElasticsearchBackend  # noqa: E402
from indexer.embedded import EmbeddedBackend  # noqa: E402
from indexer.opensearch import OpenSearchBackend  # noqa: E402
from indexer.settings import ElasticsearchSettings, OpenSearchSettings  # noqa: E402

SCHEMA = IndexSchema(keyword_fields=("purchase", "view", "category"),
                     number_fields=("popular", "trending", "hot", "prior"),
                     feature_fields=("purchase_w", "view_w"))
PLAIN = IndexSchema(keyword_fields=SCHEMA.keyword_fields, number_fields=SCHEMA.number_fields)
CLASSES = {"opensearch": OpenSearchBackend, "elasticsearch": ElasticsearchBackend}
SETTINGS_CLASSES = {"opensearch": OpenSearchSettings, "elasticsearch": ElasticsearchSettings}
BATCH = 10


def server_backend(product: str, url: str, alias: str, keep_versions: int = 1):
    """The backend of `product` on the server at `url` under `alias`: no replicas (one node),
    bulk chunks of 500 documents."""
    return CLASSES[product](alias, SETTINGS_CLASSES[product](urls=[url], replicas=0, chunk_size=500),
                            keep_versions)


def drop(backend) -> None:
    """Delete every index of the backend's alias (a benchmark leaves the node as it found it)."""
    names = [st.name for st in backend._states()]
    if names:
        backend._delete_indices(names, missing_ok=True)


def start_servers(stack: contextlib.ExitStack, products: list[str], urls: dict[str, str | None]) -> dict[str, dict]:
    """{product: {"url", "version"}} of the servers a benchmark can use: the URL given for
    the product, else a node of `make search-nodes` started for the run (tests/search_nodes.py;
    stopped when `stack` closes). A product without a node (not built, no Java) or whose node
    does not start is left out with one line on stderr: the embedded rows still run."""
    from search_nodes import NodeUnavailable, running_node

    out = {}
    for product in products:
        url = urls.get(product)
        if not url:
            try:
                url = stack.enter_context(running_node(product))
            except NodeUnavailable as e:
                print(f"{product}: {e}; its rows are skipped (`make search-nodes` builds the node)",
                      file=sys.stderr, flush=True)
                continue
            except RuntimeError as e:
                print(f"{product}: {e}\n{product}: its rows are skipped", file=sys.stderr, flush=True)
                continue
        backend = server_backend(product, url, "bench")
        try:
            version = backend._info()["version"]["number"]
        except backend.client_errors as e:
            print(f"{product}: {backend._error(e, 'info')}; its rows are skipped", file=sys.stderr, flush=True)
            continue
        out[product] = {"url": url, "version": version}
        print(f"{product} {version} at {url}", file=sys.stderr, flush=True)
    return out


def index(backend, schema: IndexSchema, docs: list[dict], repeats: int) -> float:
    """Best documents/s of `repeats` full index runs."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        backend.create_version(schema, docs)
        best = max(best, len(docs) / (time.perf_counter() - start))
    return best


def plain(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if not k.endswith("_w")}


def run_size(n: int, n_queries: int, servers: dict[str, str], repeats: int, data: Path) -> dict:
    docs, _, _ = documents(n)
    cases = bodies(n, n_queries)
    backends: dict = {"embedded": EmbeddedBackend(data / f"e{n}", "items", 1)}
    schemas = {"embedded": SCHEMA}
    for product, url in servers.items():
        backends[product] = server_backend(product, url, f"bench_{product}_{n}")
        schemas[product] = SCHEMA
    for product, backend in list(backends.items()):
        if product != "embedded" and not _has_features(backend):
            schemas[product] = PLAIN
    entry: dict = {"items": n, "index_docs_per_s": {}, "queries": {}}
    for product, backend in backends.items():
        schema = schemas[product]
        these = docs if schema is SCHEMA else [plain(d) for d in docs]
        entry["index_docs_per_s"][product] = round(index(backend, schema, these, repeats))
        print(f"{n:>7} items  index {product:<13} {entry['index_docs_per_s'][product]:>8,} docs/s", flush=True)
    for case, case_bodies in cases.items():
        weighted = not case.startswith("former")
        who = [p for p in backends if not weighted or schemas[p] is SCHEMA]
        ms: dict[str, list[float]] = {p: [] for p in who}
        hits: dict[str, list] = {p: [] for p in who}
        for start in range(0, len(case_bodies), BATCH):
            for product in who:
                for body in case_bodies[start:start + BATCH]:
                    t = time.perf_counter()
                    result = backends[product].search(body)
                    ms[product].append((time.perf_counter() - t) * 1000)
                    hits[product].append([(h.id, h.score) for h in result.hits])
        row = {p: percentiles(ms[p]) for p in who}
        for p in who:
            if p != "embedded":
                row[p]["same_hits_as_embedded"] = all(
                    [i for i, _ in a] == [i for i, _ in b]
                    and all(abs(x - y) <= 1e-6 * max(abs(x), abs(y), 1e-12)
                            for (_, x), (_, y) in zip(a, b, strict=True))
                    for a, b in zip(hits[p], hits["embedded"], strict=True))
                row[p]["p50_ratio_to_embedded"] = round(row[p]["p50_ms"] / row["embedded"]["p50_ms"], 2)
        entry["queries"][case] = row
        print(f"{n:>7} items  {case:<12} " + "  ".join(
            f"{p} p50 {row[p]['p50_ms']:.2f} ms p99 {row[p]['p99_ms']:.2f} ms"
            + (f" (x{row[p]['p50_ratio_to_embedded']}, same hits: {row[p]['same_hits_as_embedded']})"
               if p != "embedded" else "") for p in who), flush=True)
    for product, backend in backends.items():
        if product != "embedded":
            drop(backend)
    return entry


def _has_features(backend) -> bool:
    from live_search import has_rank_features

    return has_rank_features(backend)


def main() -> None:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--products", nargs="+", default=["opensearch"], choices=sorted(CLASSES))
    parser.add_argument("--opensearch-url")
    parser.add_argument("--elasticsearch-url")
    parser.add_argument("--index-repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "search-servers.json"))
    args = parser.parse_args()
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        running = start_servers(stack, args.products, {p: getattr(args, f"{p}_url") for p in args.products})
        if not running:
            sys.exit("no server to measure")
        servers = {p: r["url"] for p, r in running.items()}
        versions = {p: r["version"] for p, r in running.items()}
        print(f"servers: {versions}; settings {list(SETTINGS)}", flush=True)
        entries = [run_size(n, args.queries, servers, args.index_repeats, Path(tmp)) for n in args.sizes]
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average": os.getloadavg()},
              "servers": versions, "queries_per_case": args.queries, "sizes": entries}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
