"""Embedded backend benchmark: indexing throughput and in-process query latency, this
code against a baseline revision, side by side in one run.

Generates model-like item documents (two indicator fields with 5-50 Zipf-popular
correlators each, their LLR weights as `<indicator>_w` rank_features, 1-2 of 50
categories, popularity rankings and the `prior`) and writes them as a model directory
(Parquet, docs/model-format.md); indexes the model at 10k and 100k items as `cooccur index`
does (open_model, schema_for, iter_documents, create_version), then
times `backend.search` on recommendation bodies made by the query builder
(query.builder.build_query) for a history of 10 or 500 items over both indicator fields
(boosts 1.0 and 0.5), a category filter (a rule with a negative bias) and the history
excluded with must_not ids, with two settings:

    default   the shipped [query] defaults: rank_feature clauses on the correlator weights
              (log), the personal part in function_score(prior)
    former    the figures' former settings: BM25 term clauses, no prior
              (scoring = "terms", popularity_prior = false)

Each code version (this checkout, and `--baseline REV` extracted with `git archive`) runs
in its own child process over identical documents and histories; the parent alternates
the two in small batches of queries (and the indexing runs), so a shared, noisy machine
slows both alike, and reports after/before ratios. The load average is recorded.

Search servers beside it, in the same run (`--servers opensearch`, the default): a third
child indexes the same model directory into the server's backend (this checkout's
indexer/opensearch.py, no replicas) and answers the same bodies in the same alternating
batches; its rows carry server / embedded (after) ratios and whether its hits equal the
embedded ones (ids, order, scores within 1e-6). The server is the node of `make
search-nodes` (tests/search_nodes.py starts it: one JVM, 512 MB heap, HTTP on loopback) or
--opensearch-url; without a built node the row is skipped with one line (--no-servers: the
embedded backend only).

    python bench/index.py [--sizes 10000 100000] [--queries 200] [--baseline REV | --no-baseline]
                          [--servers opensearch | --no-servers] [--opensearch-url URL]
                          [--out bench/results/index.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "6c73041"
"""main before issue 14's fourth round (format-2 versions, threads by document range, the
per-run code tables); the earlier rounds' baseline was 9683efa (the numpy evaluator)."""
FIELDS = (("purchase", 1.0), ("view", 0.5))
SETTINGS = {
    "default": {},
    "former": {"scoring": "terms", "popularity_prior": False},
}
HISTORIES = (10, 500)
BATCH = 10
ALL_CORES = "after, threads = cores"
"""The row of this checkout with [index] search_threads = 0 (auto: every core for one search)."""
"""Queries per turn before the parent switches to the other code version."""


# ----------------------------------------------------------------------------- data
def documents(n: int, seed: int = 1):
    """(documents, ids, Zipf weights of the ids) for n items, the same for every caller."""
    import numpy as np

    rnd = random.Random(seed)
    nprnd = np.random.default_rng(seed)
    ids = [f"item-{k:07d}" for k in range(n)]
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(n)]
    cum = np.cumsum(weights)
    categories = [f"cat-{k:02d}" for k in range(50)]
    docs = []
    for doc_id in ids:
        doc = {"id": doc_id}
        for field, _ in FIELDS:
            k = rnd.randint(5, 50)
            picks = np.searchsorted(cum, nprnd.random(k) * cum[-1])
            correlators = [ids[i] for i in dict.fromkeys(picks.tolist())]
            doc[field] = correlators
            llr = nprnd.lognormal(2.0, 1.0, len(correlators)) + 0.5
            doc[f"{field}_w"] = dict(zip(correlators, llr.round(3).tolist(), strict=True))
        doc["category"] = rnd.sample(categories, rnd.randint(1, 2))
        popular = float(rnd.randint(0, 1000))
        doc["popular"] = popular
        doc["trending"] = float(rnd.randint(-50, 50))
        doc["hot"] = float(rnd.randint(-10, 10))
        doc["prior"] = max(popular, 1.0) ** 0.5
        docs.append(doc)
    return docs, ids, weights


def write_model(docs: list[dict], root: Path) -> None:
    """The model directory whose documents (iter_documents) are `docs`: indicators with their
    scores, the category property, the rankings (the prior is the default Prior's), written
    as `cooccur train` writes them (indicators.parts.write_table's Parquet settings)."""
    import pyarrow as pa

    sys.path.insert(0, str(ROOT))
    from indicators.model import location
    from indicators.parts import write_table

    def write(table, path: Path) -> None:
        write_table(table, location(str(path)))

    for part in ("indicators", "rankings", "properties"):
        (root / part).mkdir(parents=True)
    write(pa.table({
        "indicator": [f for f, _ in FIELDS for _ in docs],
        "item": [d["id"] for _ in FIELDS for d in docs],
        "correlators": [d[f] for f, _ in FIELDS for d in docs],
        "scores": [[d[f + "_w"][c] for c in d[f]] for f, _ in FIELDS for d in docs],
    }), root / "indicators" / "part-0.parquet")
    write(pa.table({"item": [d["id"] for d in docs], "name": ["category"] * len(docs),
                             "values": [d["category"] for d in docs]}), root / "properties" / "part-0.parquet")
    write(pa.table({"item": [d["id"] for d in docs],
                             **{r: [d[r] for d in docs] for r in ("popular", "trending", "hot")}}),
                   root / "rankings" / "part-0.parquet")
    (root / "manifest.json").write_text(json.dumps({
        "format": "cooccur-model/1", "indicators": [f for f, _ in FIELDS], "properties": ["category"],
        "model_id": "bench"}))


def catalogue(n: int) -> tuple[list[str], list[float]]:
    """The ids and Zipf weights `documents` uses, without the documents."""
    return [f"item-{k:07d}" for k in range(n)], [1.0 / (rank + 1) ** 0.9 for rank in range(n)]


def bodies(n: int, count: int) -> dict[str, list[dict]]:
    """The search bodies of every case, made by this checkout's query builder with the
    shipped [query] settings (and the former ones): both code versions run the same bodies."""
    sys.path.insert(0, str(ROOT))
    from query.builder import build_query
    from query.request import parse_query
    from query.settings import QuerySettings

    ids, weights = catalogue(n)
    out = {}
    for name, kv in SETTINGS.items():
        s = QuerySettings(indicators=dict(FIELDS), **kv)
        weighted = [f for f, _ in FIELDS] if s.scoring == "weights" else []
        for length in HISTORIES:
            cases = []
            for history, category in histories(n, ids, weights, count, length, n):
                request = parse_query({"history": {f: history for f, _ in FIELDS},
                                       "fields": [{"name": "category", "values": [category], "bias": -1}],
                                       "num": 20})
                b = build_query(request, {f: history for f, _ in FIELDS}, {}, s, indicators=dict(FIELDS),
                                excluded=sorted(set(history)), now="2026-11-30T00:00:00Z", num=20,
                                weighted=weighted, prior=s.popularity_prior)
                b["_source"] = False
                cases.append(b)
            out[f"{name}/{length}"] = cases
    return out


def share_parameters(node):
    """One object per distinct rank_feature function parameters, as the builder makes them
    (bodies read from JSON have one per clause)."""
    shared: dict = {}

    def walk(x):
        if isinstance(x, dict):
            rf = x.get("rank_feature")
            if isinstance(rf, dict):
                for kind in ("linear", "saturation", "log"):
                    if isinstance(rf.get(kind), dict):
                        rf[kind] = shared.setdefault((kind, *sorted(rf[kind].items())), rf[kind])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(node)
    return node


def histories(n: int, ids: list[str], weights: list[float], count: int, length: int, seed: int):
    """`count` (history, category) pairs: Zipf-popular distinct items, a random category."""
    rnd = random.Random(seed * 1_000_003 + length)
    out = []
    for _ in range(count):
        history = list(dict.fromkeys(rnd.choices(ids, weights=weights, k=length)))
        out.append((history, f"cat-{rnd.randrange(50):02d}"))
    return out


# ----------------------------------------------------------------------------- child
def child(code: str, product: str | None = None, url: str | None = None) -> None:
    """Serve the parent's commands (JSON lines on stdin) with the code under `code`; with
    `product` and `url`, on that search server (bench/search_servers.py) instead of the
    embedded backend."""
    sys.path.insert(0, code)
    from indexer.documents import iter_documents, open_model, schema_for
    from indexer.embedded import EmbeddedBackend

    try:
        from indexer.embedded import tune_malloc  # as `cooccur serve` does (this code only)
    except ImportError:
        tune_malloc = None
    if tune_malloc is not None:
        tune_malloc()
    tmp = tempfile.TemporaryDirectory(prefix="cooccur-bench-index-")
    backend = model = schema = None
    cases: dict = {}

    def reply(obj) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "model":
            model = open_model(cmd["path"])
            schema = schema_for(model)
            reply({})
        elif op == "index":
            # as `cooccur index` does: the model's documents into a new version
            if product:
                from bench.search_servers import server_backend

                # one alias: each run's version replaces (and prunes) the one before
                backend = server_backend(product, url, f"bench_index_{os.getpid()}")
            else:
                # `threads` ([index] search_threads) only for this checkout's rows: older code lacks it
                threads = {"search_threads": cmd["threads"]} if cmd.get("threads") is not None else {}
                backend = EmbeddedBackend(Path(tmp.name) / str(cmd["run"]), "items", keep_versions=1, **threads)
            started = time.perf_counter()
            backend.create_version(schema, iter_documents(model, schema))
            reply({"seconds": time.perf_counter() - started})
        elif op == "prepare":
            # every body of the run (the parent's), read now so the timing is the search alone
            with open(cmd["bodies"]) as f:
                cases = {k: [share_parameters(b) for b in v] for k, v in json.load(f).items()}
            for v in cases.values():  # first calls map the version and compute cached arrays
                backend.search(v[0])
                backend.search(v[0])
            reply({})
        elif op == "queries":
            ms = []
            for i in range(cmd["start"], cmd["stop"]):
                b = cases[f"{cmd['settings']}/{cmd['history']}"][i]
                t0 = time.perf_counter()
                backend.search(b)
                ms.append((time.perf_counter() - t0) * 1000)
            reply({"ms": ms})
        elif op == "profile":
            reply({"steps": profile_searches(backend, cases[cmd["case"]])})
        elif op == "profile_index":
            import cProfile
            import pstats

            prof = cProfile.Profile()
            other = EmbeddedBackend(Path(tmp.name) / "profiled", "items", keep_versions=1)
            prof.enable()
            other.create_version(schema, iter_documents(model, schema))
            prof.disable()
            reply({"steps": grouped(pstats.Stats(prof).stats, INDEX_GROUPS, 1)})
        elif op == "check":
            # both versions must answer alike: the ids and scores of a few bodies
            out = []
            for key, bs in sorted(cases.items()):
                for b in bs[:5]:
                    hits = backend.search(b).hits
                    out.append([key, 0, [[h.id, h.score] for h in hits]])
            reply({"hits": out})
        elif op == "quit":
            if product and backend is not None:
                from bench.search_servers import drop

                drop(backend)
            backend = None
            tmp.cleanup()
            reply({})
            return


PROFILE_GROUPS = {
    "parse the body": ("parse_body", "_parse_sort", "_parse_source", "eval", "_split_terms", "_rank_feature_clause",
                       "_rank_function_of", "_rank_function", "_term_clause", "_boost", "_clause_list",
                       "_min_should_match", "_check_keys", "_one_field", "_strings", "_keyword_field"),
    "look up terms": ("find", "lookup", "<genexpr>", "hash_find", "_hash_find", "hash_table", "_hash_table",
                      "code_points"),
    "postings as runs": ("term_runs", "feature_runs", "_runs", "_hot", "_gathered", "term_postings", "positions",
                         "<listcomp>", "hot_rows", "dense_keyword", "dense_feature", "derived", "_used",
                         "value_codes", "_value_codes", "derived_table", "_keep"),
    "clause weights": ("_feature_runs", "rank_feature_apply", "rank_feature_pre", "rank_feature_scores",
                       "term_scores", "_feature_scores", "field_stats"),
    "score the postings (compiled kernels)": ("_batch", "add_runs", "add_feature_runs", "mark_runs", "add_code_row",
                                              "add_bool_row", "_add_runs", "_add_feature_runs", "_mark_runs",
                                              "_add_feature_codes",
                                              "_add_code_row", "_add_bool_row", "readonly", "_positions",
                                              "split", "_executor", "<lambda>", "search_threads"),
    "bool: masks, filters, sums": ("_q_bool", "_scored_clauses", "_q_terms", "_q_ids", "_const", "slots_of_ids",
                                   "_q_range", "_q_exists", "_q_match_all", "_q_constant_score", "_q_term",
                                   "_q_rank_feature", "run", "_compare"),
    "function_score (prior)": ("_q_function_score", "_field_value_factor", "numbers", "_column"),
    "top hits": ("top_hits",),
}


INDEX_GROUPS = {
    "read the model (Parquet, columns)": ("iter_documents", "_documents", "_read", "columns", "_columns", "_table",
                                          "of", "column", "_weights", "_check_strings", "chunk", "value"),
    "check documents": ("check_document", "check_features", "check_feature_value", "parse_date",
                        "_documents_segment"),
    "build columns (term dictionaries, postings, documents' arrays)": (
        "build_segment", "_list_column", "_csr", "csr", "quantize", "<listcomp>", "<dictcomp>", "segment_from_columns",
        "_column_csr", "_empty_column", "_date_column", "unicode_array", "readonly",
        # the fields are built in threads (cProfile sees the main thread): their wait
        "<method 'acquire' of '_thread.lock' objects>"),
    "write and fsync files": ("write_segment", "save_array", "_fsync_dir", "fsync", "link", "write", "dumps"),
    "verify, switch, prune": ("__init__", "_set_current", "_prune", "_remove_stale_temp_dirs", "load"),
}


def profile_searches(backend, bodies: list[dict]) -> dict[str, float]:
    """ms per search by step: cProfile's own time of the evaluator's functions, with the time
    of the numpy / builtin calls they make counted to them."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for b in bodies:
        backend.search(b)
    prof.disable()
    return grouped(pstats.Stats(prof).stats, PROFILE_GROUPS, len(bodies))


def grouped(stats: dict, groups: dict[str, tuple[str, ...]], runs: int) -> dict[str, float]:
    """ms per run by group of this project's functions (their own time, plus that of the
    numpy / builtin / library calls they make directly)."""
    group_of = {name: g for g, names in groups.items() for name in names}
    out = dict.fromkeys([*groups, "other"], 0.0)

    def ours(func) -> str | None:
        path, _, name = func
        return group_of.get(name, "other") if "indexer" in path or "/bench/" in path else None

    for func, (_, _, tt, _, callers) in stats.items():
        group = ours(func)
        if group is not None:
            out[group] += tt
            continue
        if func[2] in group_of and not callers:
            out[group_of[func[2]]] += tt
            continue
        for caller, c in callers.items():  # numpy / builtins: to the function calling them
            out[ours(caller) or group_of.get(func[2], "other")] += c[2]
        out["other"] += tt - sum(c[2] for c in callers.values())
    total = sum(v[2] for v in stats.values())
    scale = 1000 / runs
    return {"total": round(total * scale, 3), **{k: round(v * scale, 3) for k, v in out.items()}}


class Child:
    def __init__(self, label: str, code: str, server: tuple[str, str] | None = None,
                 threads: int | None = None) -> None:
        self.label = label
        self.threads = threads
        """[index] search_threads of its backend (None: the code's default)."""
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", code, *(server or ())], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=code,
        )

    def send(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def recv(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}: the child process ended (exit code {self.proc.wait()})")
        return json.loads(line)

    def call(self, **cmd):
        self.send(**cmd)
        return self.recv()

    def close(self) -> None:
        try:
            self.call(op="quit")
        finally:
            self.proc.wait(timeout=60)


def extract(rev: str, into: Path) -> str:
    """The packages of revision `rev` (indexer/, query/, indicators/, cli.py) under `into`."""
    data = subprocess.run(["git", "archive", rev, "indexer", "query", "indicators", "mappings", "cli.py"],
                          cwd=ROOT, check=True, capture_output=True).stdout
    archive = into / "baseline.tar"
    archive.write_bytes(data)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return str(into)


def percentiles(ms: list[float]) -> dict:
    import numpy as np

    p50, p99 = np.percentile(ms, [50, 99])
    return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3)}


def run(sizes: list[int], n_queries: int, baseline: str | None, index_repeats: int,
        profile: bool = True, servers: dict[str, dict] | None = None) -> dict:
    """The figures of every size: `after` (this checkout), `before` (the baseline) and one
    row per server of `servers` ({product: {"url", "version"}}, this checkout's backend),
    indexing the same model and answering the same bodies in alternating batches."""
    import numpy as np

    servers = servers or {}
    results: dict = {
        "benchmark": "embedded backend: indexing a model directory (as `cooccur index`) and backend.search "
                     "latency, in-process; search servers beside it (same documents and bodies)",
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                    "platform": platform.platform(), "load_average_before": list(os.getloadavg())},
        "baseline": baseline,
        "settings": {name: {"scoring": kv.get("scoring", "weights (log, scaling factor 1)"),
                            "popularity_prior": kv.get("popularity_prior", True)}
                     for name, kv in SETTINGS.items()},
        "queries_per_case": n_queries,
        "servers": servers,
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="cooccur-baseline-") as tmp:
        codes = [("after", str(ROOT))]
        if baseline:
            codes.insert(0, ("before", extract(baseline, Path(tmp))))
        # the default search_threads is 1: the same code with every core for one search
        # (search_threads = 0, auto) beside it shows what threads would add here
        all_cores = (os.cpu_count() or 1) > 1
        for n in sizes:
            docs, _, _ = documents(n)
            postings = sum(len(d[f]) for d in docs for f, _ in FIELDS)
            model_dir = Path(tmp) / f"model-{n}"
            write_model(docs, model_dir)
            del docs
            children = [Child(label, code) for label, code in codes]
            children += [Child(ALL_CORES, str(ROOT), threads=0)] if all_cores else []
            children += [Child(product, str(ROOT), (product, s["url"])) for product, s in servers.items()]
            try:
                for c in children:
                    c.call(op="model", path=str(model_dir))
                entry: dict = {"items": n, "indicator_postings": postings, "indexing": {}, "queries": []}
                seconds: dict[str, list[float]] = {c.label: [] for c in children}
                for run_no in range(index_repeats):
                    for c in (children if run_no % 2 == 0 else children[::-1]):
                        seconds[c.label].append(c.call(op="index", run=run_no, threads=c.threads)["seconds"])
                for label, s in seconds.items():
                    best = min(s)
                    entry["indexing"][label] = {"seconds": [round(x, 3) for x in s],
                                                "documents_per_second": round(n / best)}
                if servers:
                    entry["indexing_ratio_to_embedded"] = {
                        p: round(entry["indexing"][p]["documents_per_second"]
                                 / entry["indexing"]["after"]["documents_per_second"], 4) for p in servers}
                body_file = Path(tmp) / f"bodies-{n}.json"
                body_file.write_text(json.dumps(bodies(n, n_queries)))
                for c in children:
                    c.send(op="prepare", bodies=str(body_file))
                for c in children:
                    c.recv()
                checks = {c.label: c.call(op="check")["hits"] for c in children}
                if "before" in checks:
                    entry["same_results"] = _same(checks["before"], checks["after"])
                if servers:
                    entry["same_results_as_embedded"] = {p: _same(checks["after"], checks[p]) for p in servers}
                for name in SETTINGS:
                    for length in HISTORIES:
                        ms: dict[str, list[float]] = {c.label: [] for c in children}
                        for start in range(0, n_queries, BATCH):
                            turn = children if (start // BATCH) % 2 == 0 else children[::-1]
                            for c in turn:
                                got = c.call(op="queries", settings=name, history=length, start=start,
                                             stop=min(n_queries, start + BATCH))
                                ms[c.label].extend(got["ms"])
                        row = {"settings": name, "history": length, "fields": len(FIELDS),
                               "category_filter": True,
                               **{label: percentiles(v) for label, v in ms.items()}}
                        if "before" in ms:
                            row["ratio_after_before"] = {
                                k: round(row["after"][k] / row["before"][k], 3) for k in ("p50_ms", "p99_ms")}
                        if ALL_CORES in ms:
                            row["ratio_all_cores_after"] = {
                                k: round(row[ALL_CORES][k] / row["after"][k], 3) for k in ("p50_ms", "p99_ms")}
                        if servers:
                            row["ratio_to_embedded"] = {p: {
                                k: round(row[p][k] / row["after"][k], 2) for k in ("p50_ms", "p99_ms")}
                                for p in servers}
                        entry["queries"].append(row)
                if profile:
                    after = next(c for c in children if c.label == "after")
                    entry["indexing_profile_ms"] = after.call(op="profile_index")["steps"]
                    entry["profile_ms_per_search"] = {
                        f"{name}/{length}": after.call(op="profile", case=f"{name}/{length}")["steps"]
                        for name in SETTINGS for length in HISTORIES}
            finally:
                for c in children:
                    c.close()
            results["sizes"].append(entry)
            print_size(entry)
    results["machine"]["load_average_after"] = list(os.getloadavg())
    return results


def _same(a: list, b: list) -> bool:
    """Same ids in the same order and float32-equal scores."""
    if len(a) != len(b):
        return False
    for (na, la, ha), (nb, lb, hb) in zip(a, b, strict=True):
        if (na, la) != (nb, lb) or [h[0] for h in ha] != [h[0] for h in hb]:
            return False
        if any(abs(x[1] - y[1]) > 1e-6 * max(1.0, abs(x[1])) for x, y in zip(ha, hb, strict=True)):
            return False
    return True


def print_size(entry: dict) -> None:
    n = entry["items"]
    idx = entry["indexing"]
    line = "  ".join(f"{label} {v['documents_per_second']:>9,} docs/s" for label, v in idx.items())
    if "before" in idx:
        line += f"  (x{idx['after']['documents_per_second'] / idx['before']['documents_per_second']:.2f})"
    for product, r in entry.get("indexing_ratio_to_embedded", {}).items():
        line += f"  ({product} x{r:.4f} of after)"
    print(f"{n:>7} items, {entry['indicator_postings']:,} indicator postings: indexing {line}")
    if "indexing_profile_ms" in entry:
        print(f"{'':>7}  profile of indexing (ms, under cProfile): "
              + ", ".join(f"{k} {v:.0f}" for k, v in entry["indexing_profile_ms"].items()))
    for case, steps in entry.get("profile_ms_per_search", {}).items():
        print(f"{'':>7}  profile {case} (ms per search, under cProfile): "
              + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
    if "same_results" in entry:
        print(f"{'':>7}  same hits and scores before/after: {entry['same_results']}")
    for product, same in entry.get("same_results_as_embedded", {}).items():
        print(f"{'':>7}  same hits and scores {product}/after: {same}")
    servers = list(entry.get("same_results_as_embedded", {}))
    one = ALL_CORES in entry["queries"][0]
    print(f"{'':>7}  {'settings':<8} {'history':>7}  {'before p50':>10} {'p99':>7}  "
          f"{'after p50':>10} {'p99':>7}  {'ratio p50':>9} {'p99':>6}"
          + (f"  {'cores p50':>12} {'p99':>7}  {'x after p50':>11} {'p99':>6}" if one else "")
          + "".join(f"  {p + ' p50':>15} {'p99':>8}  {'x after p50':>11} {'p99':>6}" for p in servers))
    for q in entry["queries"]:
        b, a = q.get("before"), q["after"]
        r = q.get("ratio_after_before")
        print(f"{'':>7}  {q['settings']:<8} {q['history']:>7}  "
              + (f"{b['p50_ms']:>8.2f}ms {b['p99_ms']:>5.2f}ms  " if b else f"{'':>10} {'':>7}  ")
              + f"{a['p50_ms']:>8.2f}ms {a['p99_ms']:>5.2f}ms  "
              + (f"{r['p50_ms']:>9.2f} {r['p99_ms']:>6.2f}" if r else f"{'':>9} {'':>6}" if servers or one else "")
              + (f"  {q[ALL_CORES]['p50_ms']:>10.2f}ms {q[ALL_CORES]['p99_ms']:>5.2f}ms  "
                 f"{q['ratio_all_cores_after']['p50_ms']:>11.2f} {q['ratio_all_cores_after']['p99_ms']:>6.2f}"
                 if one else "")
              + "".join(f"  {q[p]['p50_ms']:>13.2f}ms {q[p]['p99_ms']:>6.2f}ms  "
                        f"{q['ratio_to_embedded'][p]['p50_ms']:>11.2f} {q['ratio_to_embedded'][p]['p99_ms']:>6.2f}"
                        for p in servers))
    sys.stdout.flush()


def main() -> None:
    if len(sys.argv) in (3, 5) and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--baseline", default=BASELINE, help="revision to compare with (default %(default)s)")
    parser.add_argument("--no-baseline", action="store_true", help="time this checkout only")
    parser.add_argument("--index-repeats", type=int, default=2, help="indexing runs per version (best counts)")
    parser.add_argument("--servers", nargs="+", default=["opensearch"], choices=["opensearch"],
                        help="search servers measured beside the embedded backend (default %(default)s): "
                             "a node of `make search-nodes`, or --opensearch-url; skipped when not built")
    parser.add_argument("--no-servers", action="store_true", help="the embedded backend only")
    parser.add_argument("--opensearch-url", help="an OpenSearch to use instead of starting a node")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "index.json"))
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        servers = {}
        if not args.no_servers:
            sys.path.insert(0, str(ROOT))
            from bench.search_servers import start_servers

            servers = start_servers(stack, args.servers, {"opensearch": args.opensearch_url})
        results = run(args.sizes, args.queries, None if args.no_baseline else args.baseline, args.index_repeats,
                      servers=servers)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"load average before {results['machine']['load_average_before']}, "
          f"after {results['machine']['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
