"""HTTP QPS and p50/p99 latency of `cooccur serve` on the embedded backend, events mixed in.

For each catalogue size: build a synthetic index (Zipf-popular correlators), load user
histories into the event store, start `cooccur serve` as its own process, and drive it
from client threads with keep-alive connections for a fixed time: 90% queries for known
users (10 history items over two indicators), 10% event writes. Prints the figures and
writes bench/results/serve.json.

    python bench/serve.py [--sizes 10000,100000] [--seconds 15] [--clients 8] [--workers 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.backend import IndexSchema  # noqa: E402
from indexer.embedded import EmbeddedBackend  # noqa: E402
from query.eventstore import Event, EventStore  # noqa: E402

USERS = 5000


def zipf_items(rng: np.random.Generator, n_items: int, k: int) -> list[str]:
    picks = np.minimum(rng.zipf(1.3, size=k * 2), n_items) - 1
    return [f"i{x}" for x in dict.fromkeys(picks.tolist())][:k]


def build(data_dir: Path, n_items: int, correlators: int, seed: int = 7) -> float:
    rng = np.random.default_rng(seed)
    schema = IndexSchema(("purchase", "view", "category"), (), ("popular", "trending", "hot"))
    cats = [f"c{i}" for i in range(50)]

    def docs():
        for i in range(n_items):
            yield {"id": f"i{i}", "purchase": zipf_items(rng, n_items, correlators),
                   "view": zipf_items(rng, n_items, correlators), "category": [cats[i % 50]],
                   "popular": float(n_items - i)}

    started = time.perf_counter()
    EmbeddedBackend(data_dir).create_version(schema, docs())
    index_s = time.perf_counter() - started
    store = EventStore(data_dir / "events.db")
    events = []
    for u in range(USERS):
        for action in ("purchase", "view"):
            for item in zipf_items(rng, n_items, 5):
                events.append(Event(action, "user", f"u{u}", 1_700_000_000_000 + len(events), "item", item))
    store.insert(events)
    store.close()
    return index_s


def run_load(port: int, seconds: float, clients: int, write_share: float) -> dict:
    lat: dict[str, list[float]] = {"query": [], "event": []}
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(n: int) -> None:
        rng = random.Random(n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = {"query": [], "event": []}
        while time.perf_counter() < stop:
            user = f"u{rng.randrange(USERS)}"
            if rng.random() < write_share:
                kind, path = "event", "/events.json"
                body = {"event": "view", "entityType": "user", "entityId": user,
                        "targetEntityType": "item", "targetEntityId": f"i{rng.randrange(1000)}"}
            else:
                kind, path, body = "query", "/queries.json", {"user": user, "num": 20}
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"HTTP {resp.status}")
            except Exception as e:  # counted, reported
                with lock:
                    errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            mine[kind].append((time.perf_counter() - t0) * 1000)
        conn.close()
        with lock:
            for k, v in mine.items():
                lat[k].extend(v)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started

    def pct(v, q):
        return round(float(np.percentile(v, q)), 2) if v else None

    total = len(lat["query"]) + len(lat["event"])
    return {
        "seconds": round(wall, 2), "requests": total, "errors": len(errors), "first_errors": errors[:3],
        "qps_total": round(total / wall, 1),
        "queries": {"count": len(lat["query"]), "qps": round(len(lat["query"]) / wall, 1),
                    "p50_ms": pct(lat["query"], 50), "p99_ms": pct(lat["query"], 99)},
        "events": {"count": len(lat["event"]), "qps": round(len(lat["event"]) / wall, 1),
                   "p50_ms": pct(lat["event"], 50), "p99_ms": pct(lat["event"], 99)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--correlators", type=int, default=50)
    ap.add_argument("--write-share", type=float, default=0.1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve.json"))
    args = ap.parse_args()
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="cooccur-bench-") as tmp:
            data = Path(tmp)
            index_s = build(data, n, args.correlators)
            cfg = data / "cooccur.toml"
            cfg.write_text('[query]\nindicators = {purchase = 1.0, view = 0.5}\n')
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "cli.py"), "-c", str(cfg), "serve", "--port", "0",
                 "--workers", str(args.workers), "--data-dir", str(data)],
                stderr=subprocess.PIPE, text=True, env={**os.environ, "COOCCUR_TOKEN": ""},
            )
            try:
                line = proc.stderr.readline()
                port = int(re.search(r":(\d+) with", line).group(1))
                run_load(port, 2, args.clients, args.write_share)  # warm-up
                res = run_load(port, args.seconds, args.clients, args.write_share)
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)
            res.update({"items": n, "index_seconds": round(index_s, 1)})
            results.append(res)
            q = res["queries"]
            print(f"{n:>7} items: {res['qps_total']:7.1f} req/s  queries p50 {q['p50_ms']} ms  "
                  f"p99 {q['p99_ms']} ms  events p50 {res['events']['p50_ms']} ms  errors {res['errors']}")
    out = {
        "benchmark": "cooccur serve, embedded backend, HTTP keep-alive clients on the same machine",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"clients": args.clients, "server_threads": args.workers, "write_share": args.write_share,
                     "correlators_per_indicator": args.correlators, "users": USERS,
                     "history_per_user": "5 purchase + 5 view", "num": 20},
        "results": results,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
