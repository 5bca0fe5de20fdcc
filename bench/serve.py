"""HTTP throughput and latency of `cooccur serve` on the embedded backend, events mixed in,
this code against a baseline revision in one run; and the request path's profile.

For each catalogue size: build a synthetic index (Zipf-popular correlators with their LLR
weights as `<indicator>_w` rank_features, popularity rankings, the `prior`), load user
histories into the event store, and start four `cooccur serve` processes over the same index
and store: {this code, `--baseline REV`} x {the shipped default scoring, the former figures'
settings (scoring = "terms", popularity_prior = false)}, each with its code's defaults for
processes and threads (one worker process per core, one thread). Keep-alive clients then
drive the servers in turn, a few seconds at a time, round after round, so a shared, noisy
machine slows all alike: 90% queries for known users (5 purchase + 5 view items), 10% event
writes. Then, with the default scoring on this code, the same load while new index versions
are switched in (errors must stay 0). The load average is recorded.

The load: `--clients` connections, each sending its next request when the last response is
complete (a closed loop), requests pre-encoded. Since issue 14's second round it runs in a
child process of its own, one thread over one selector (before: one thread per client in
the bench process, whose GIL hand-offs took CPU from the servers on the same 2 cores); it
drives every server of a run alike, so the ratios stay comparable. Each row also gives the
server's CPU per request (its processes' user + system time over the requests answered;
less sensitive to the machine's other load than req/s) and the load's own.

Search servers in the same run (`--servers opensearch`, the default): the same documents
are indexed into the server (this checkout's backend, no replicas), and two more `cooccur
serve` processes of this code ([index] backend = "opensearch", both settings) over it and the
same event store take their turns in the same rounds; their rows carry ratios to the
embedded server of this code with the same settings. The server is the node of `make
search-nodes` (tests/search_nodes.py starts it: one JVM, 512 MB heap, HTTP on loopback) or
--opensearch-url; without a built node the rows are skipped with one line (--no-servers).

    python bench/serve.py [--sizes 10000,100000] [--seconds 15] [--slice 3] [--clients 8]
                          [--baseline REV | --no-baseline] [--switches 3]
                          [--servers opensearch | --no-servers] [--opensearch-url URL]
    python bench/serve.py --profile [--sizes 100000] [--requests 400]   # the request path, in-process
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import random
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.index import extract  # noqa: E402
from indexer.backend import IndexSchema  # noqa: E402
from indexer.embedded import EmbeddedBackend  # noqa: E402
from query.eventstore import Event, EventStore  # noqa: E402

USERS = 5000
BASELINE = "6c73041"
"""main before issue 14's fourth round (connections spread over the workers, the one-statement
history, the per-run code tables); the earlier rounds' baseline was 9683efa."""
SETTINGS = {
    "default": "",
    "former": 'scoring = "terms"\npopularity_prior = false\n',
}
SCHEMA = IndexSchema(("purchase", "view", "category"), (), ("popular", "trending", "hot", "prior"),
                     ("purchase_w", "view_w"))


def zipf_items(rng: np.random.Generator, n_items: int, k: int) -> list[str]:
    picks = np.minimum(rng.zipf(1.3, size=k * 2), n_items) - 1
    return [f"i{x}" for x in dict.fromkeys(picks.tolist())][:k]


def documents(n_items: int, correlators: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    cats = [f"c{i}" for i in range(50)]
    for i in range(n_items):
        doc = {"id": f"i{i}", "category": [cats[i % 50]], "popular": float(n_items - i),
               "prior": float(n_items - i) ** 0.5}
        for field in ("purchase", "view"):
            items = zipf_items(rng, n_items, correlators)
            doc[field] = items
            doc[f"{field}_w"] = dict(zip(items, (rng.lognormal(2.0, 1.0, len(items)) + 0.5).round(3).tolist(),
                                         strict=True))
        yield doc


_INDEX_WITH = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from indexer.embedded import EmbeddedBackend
sys.path.insert(1, sys.argv[2])
from bench.serve import SCHEMA, documents
EmbeddedBackend(Path(sys.argv[3])).create_version(SCHEMA, documents(int(sys.argv[4]), int(sys.argv[5])))
"""


def index_with(code: str, data_dir: Path, n_items: int, correlators: int) -> None:
    """The same documents as `build`'s, indexed by the code under `code` (a baseline revision
    may not read this code's version format)."""
    subprocess.run([sys.executable, "-c", _INDEX_WITH, code, str(ROOT), str(data_dir), str(n_items),
                    str(correlators)], check=True, cwd=code)


def build(data_dir: Path, n_items: int, correlators: int, seed: int = 7) -> float:
    started = time.perf_counter()
    EmbeddedBackend(data_dir).create_version(SCHEMA, documents(n_items, correlators, seed))
    index_s = time.perf_counter() - started
    rng = np.random.default_rng(seed + 1)
    store = EventStore(data_dir / "events.db")
    events = []
    for u in range(USERS):
        for action in ("purchase", "view"):
            for item in zipf_items(rng, n_items, 5):
                events.append(Event(action, "user", f"u{u}", 1_700_000_000_000 + len(events), "item", item))
    store.insert(events)
    store.close()
    return index_s


def config(data: Path, name: str, server: tuple[str, str, str] | None = None) -> Path:
    """The config of one `cooccur serve`: the settings `name`; with `server` (product, url,
    alias), its index on that search server instead of the embedded one."""
    path = data / (f"{server[0]}-{name}.toml" if server else f"{name}.toml")
    index = ""
    if server:
        product, url, alias = server
        index = (f'[index]\nbackend = "{product}"\nname = "{alias}"\n'
                 f'[index.{product}]\nurls = ["{url}"]\n')
    path.write_text(index + "[query]\nindicators = {purchase = 1.0, view = 0.5}\n" + SETTINGS[name])
    return path


# ----------------------------------------------------------------------------- load
def requests_of(seed: int, count: int, write_share: float) -> list[tuple[str, bytes]]:
    """`count` pre-encoded requests (kind, bytes): 90% queries for known users, the rest
    view events, in a random order of its own per seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        user = f"u{rng.randrange(USERS)}"
        if rng.random() < write_share:
            kind, path = "event", b"/events.json"
            body = json.dumps({"event": "view", "entityType": "user", "entityId": user,
                               "targetEntityType": "item", "targetEntityId": f"i{rng.randrange(1000)}"}).encode()
        else:
            kind, path, body = "query", b"/queries.json", json.dumps({"user": user, "num": 20}).encode()
        out.append((kind, b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)))
    return out


class Conn:
    """One keep-alive connection of the load (like wrk's): pre-encoded requests, the response
    read by Content-Length. http.client parses every response's headers with the email
    package, which on a 2-core machine takes CPU from the server it measures."""

    def __init__(self, port: int, requests: list[tuple[str, bytes]]) -> None:
        self.port = port
        self.requests = requests
        self.next = 0
        self.sock: socket.socket | None = None
        self.buf = b""
        self.kind = ""
        self.t0 = 0.0

    def send(self) -> socket.socket:
        """Send the next request (connecting first when not connected); returns the socket."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buf = b""
        self.kind, raw = self.requests[self.next % len(self.requests)]
        self.next += 1
        self.t0 = time.perf_counter()
        self.sock.sendall(raw)
        return self.sock

    def received(self) -> int | None:
        """Read what arrived: the status once the response is complete, else None."""
        assert self.sock is not None
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("connection closed by the server")
        self.buf += data
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return None
        length = int(_CONTENT_LENGTH.search(head).group(1))
        if len(rest) < length:
            return None
        self.buf = rest[length:]
        if _CLOSE.search(head):
            self.close()
        return int(head[9:12])

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""


_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
_CLOSE = re.compile(rb"(?i)\r\nconnection:\s*close")


def drive(port: int, seconds: float, clients: int, write_share: float, seed: int) -> dict:
    """`clients` keep-alive connections, each sending its next request as soon as the last
    one's response is complete (a closed loop, as client threads would), for `seconds`, from
    one thread over one selector. Returns the latencies (ms) per kind, the errors, the wall
    time and this process's CPU seconds."""
    conns = [Conn(port, requests_of(seed * 1000 + n, 2000, write_share)) for n in range(clients)]
    sel = selectors.DefaultSelector()
    lat: dict[str, list[float]] = {"query": [], "event": []}
    errors: list[str] = []
    cpu0, started = time.process_time(), time.perf_counter()
    stop = started + seconds

    def send(conn: Conn) -> None:
        while True:
            try:
                sel.register(conn.send(), selectors.EVENT_READ, conn)
                return
            except OSError as e:  # refused, reset: counted, and the client connects again
                errors.append(repr(e))
                conn.close()
                if time.perf_counter() >= stop:
                    return

    for conn in conns:
        send(conn)
    while sel.get_map():
        for key, _ in sel.select(timeout=60) or [(None, None)]:
            if key is None:
                raise RuntimeError("no response within 60 s")
            conn = key.data
            try:
                status = conn.received()
            except OSError as e:
                status = None
                errors.append(repr(e))
                sel.unregister(key.fileobj)
                conn.close()
            else:
                if status is None:
                    continue
                sel.unregister(key.fileobj)
                if status >= 300:
                    errors.append(f"HTTP {status}")
                else:
                    lat[conn.kind].append((time.perf_counter() - conn.t0) * 1000)
            if time.perf_counter() < stop:
                send(conn)
    for conn in conns:
        conn.close()
    return {"lat": lat, "errors": errors, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu0}


def _drive_into(pipe, *args) -> None:
    pipe.send(drive(*args))
    pipe.close()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` and its living descendants (gunicorn's
    workers), from /proc."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # after the name: state, ppid, ... utime (14th field of the line), stime (15th)
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree, total = {pid}, 0.0
    changed = True
    while changed:
        changed = False
        for p, (ppid, _) in stats.items():
            if ppid in tree and p not in tree:
                tree.add(p)
                changed = True
    for p in tree:
        total += stats.get(p, (0, 0.0))[1]
    return total


class Load:
    """Latencies, errors and CPU of one server, accumulated over its time slices. The load
    runs in a child process of its own (one thread, one selector over the `clients`
    connections): its CPU is measured, and no thread of the bench competes with it."""

    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = {"query": [], "event": []}
        self.errors: list[str] = []
        self.seconds = 0.0
        self.client_cpu = 0.0
        self.server_cpu = 0.0

    def run(self, port: int, seconds: float, clients: int, write_share: float, seed: int,
            server_pid: int | None = None) -> None:
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe(duplex=False)
        cpu0 = process_cpu(server_pid) if server_pid else 0.0
        proc = ctx.Process(target=_drive_into, args=(child, port, seconds, clients, write_share, seed))
        proc.start()
        child.close()
        out = parent.recv()
        proc.join()
        if server_pid:
            self.server_cpu += process_cpu(server_pid) - cpu0
        for k, v in out["lat"].items():
            self.lat[k].extend(v)
        self.errors.extend(out["errors"])
        self.seconds += out["seconds"]
        self.client_cpu += out["cpu_seconds"]

    def summary(self) -> dict:
        def pct(v, q):
            return round(float(np.percentile(v, q)), 2) if v else None

        q, e = self.lat["query"], self.lat["event"]
        total = len(q) + len(e)
        return {
            "seconds": round(self.seconds, 2), "requests": total, "errors": len(self.errors),
            "first_errors": self.errors[:3], "qps_total": round(total / self.seconds, 1) if self.seconds else None,
            "queries": {"count": len(q), "qps": round(len(q) / self.seconds, 1) if self.seconds else None,
                        "p50_ms": pct(q, 50), "p99_ms": pct(q, 99)},
            "events": {"count": len(e), "p50_ms": pct(e, 50), "p99_ms": pct(e, 99)},
            # CPU per request, less sensitive than req/s to what else runs on the machine
            "server_cpu_ms_per_request": round(self.server_cpu / total * 1000, 3) if total and self.server_cpu
            else None,
            "client_cpu_ms_per_request": round(self.client_cpu / total * 1000, 3) if total else None,
            "client_cpu_share": round(self.client_cpu / (self.seconds * (os.cpu_count() or 1)), 3)
            if self.seconds else None,
        }


class Server:
    def __init__(self, label: str, code: str, cfg: Path, data: Path, events: Path) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(code) / "cli.py"), "-c", str(cfg), "serve", "--port", "0",
             "--data-dir", str(data), "--events", str(events)],
            stderr=subprocess.PIPE, text=True, cwd=code,
            env={**os.environ, "COOCCUR_TOKEN": "", "PYTHONPATH": code},
        )
        lines = []
        for _ in range(20):
            lines.append(self.proc.stderr.readline())
            m = re.search(r":(\d+) with (.*)$", lines[-1])
            if m:
                break
        else:
            raise RuntimeError(f"{label}: no ready line: {lines}")
        self.port = int(m.group(1))
        # "2 threads (auth): 2 worker processes x 1 thread" (this code), "8 threads (auth)" (before)
        text = m.group(2).strip()
        self.description = text.split("): ", 1)[1] if "): " in text else "1 process x " + text.split(" (")[0]
        # keep reading stderr so a chatty server never blocks on a full pipe
        self.log: list[str] = []
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(args, baseline_code: str | None, search_servers: dict[str, dict]) -> list[dict]:
    """The figures of every size: the embedded servers ({after, before} x settings) and, for
    each of `search_servers` ({product: {"url", ...}}), this code's servers on that backend."""
    from bench.search_servers import drop, server_backend

    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="cooccur-bench-") as tmp:
            data = Path(tmp)
            index_s = build(data, n, args.correlators)
            codes = [("after", str(ROOT))] + ([("before", baseline_code)] if baseline_code else [])
            servers = {}
            remote = {}
            try:
                for product, info in search_servers.items():
                    alias = f"bench_serve_{os.getpid()}_{n}"
                    remote[product] = server_backend(product, info["url"], alias)
                    started = time.perf_counter()
                    remote[product].create_version(SCHEMA, documents(n, args.correlators))
                    print(f"{n:>7} items indexed into {product} in {time.perf_counter() - started:.1f} s",
                          flush=True)
                for label, code in codes:
                    index_dir = data
                    if label != "after":  # its own index, by its own code; the same event store
                        index_dir = data / label
                        index_with(code, index_dir, n, args.correlators)
                    for name in SETTINGS:
                        servers[(label, name)] = Server(f"{label}/{name}", code, config(data, name), index_dir,
                                                        data / "events.db")
                for product, backend in remote.items():
                    for name in SETTINGS:
                        cfg = config(data, name, (product, search_servers[product]["url"], backend.alias))
                        servers[(product, name)] = Server(f"{product}/{name}", str(ROOT), cfg, data,
                                                          data / "events.db")
                loads = {key: Load() for key in servers}
                order = list(servers)
                for key in order:  # warm-up: first queries map the version, compute cached arrays
                    Load().run(servers[key].port, 1.5, args.clients, args.write_share, seed=0)
                rounds = max(1, round(args.seconds / args.slice))
                for r in range(rounds):
                    for key in order[r % len(order):] + order[:r % len(order)]:
                        loads[key].run(servers[key].port, args.slice, args.clients, args.write_share, seed=r + 1,
                                       server_pid=servers[key].proc.pid)
                entry = {"items": n, "index_seconds": round(index_s, 1), "servers": {}}
                for (label, name), load in loads.items():
                    backend = label if label in remote else "embedded"
                    entry["servers"][f"{label}/{name}"] = {"code": "after" if label in remote else label,
                                                           "backend": backend, "settings": name,
                                                           "server": servers[(label, name)].description,
                                                           **load.summary()}
                if "before" in {c for c, _ in codes}:
                    entry["ratio_after_before"] = {
                        name: _ratios(entry["servers"][f"after/{name}"], entry["servers"][f"before/{name}"])
                        for name in SETTINGS}
                if remote:
                    entry["ratio_to_embedded"] = {
                        f"{product}/{name}": _ratios(entry["servers"][f"{product}/{name}"],
                                                     entry["servers"][f"after/{name}"])
                        for product in remote for name in SETTINGS}
                if args.switches:
                    entry["switching"] = switching(servers[("after", "default")], data, n, args)
            finally:
                for s in servers.values():
                    s.stop()
                for backend in remote.values():
                    drop(backend)
            results.append(entry)
            print_entry(entry)
    return results


def switching(server: Server, data: Path, n: int, args) -> dict:
    """The load on one server while `args.switches` new versions are indexed and switched in."""
    load = Load()
    done = threading.Event()
    versions = []

    def reindex() -> None:
        backend = EmbeddedBackend(data)
        for _ in range(args.switches):
            versions.append(backend.create_version(SCHEMA, documents(n, args.correlators)).version)
        done.set()

    t = threading.Thread(target=reindex)
    t.start()
    r = 0
    while not done.is_set():
        r += 1
        load.run(server.port, 1.0, args.clients, args.write_share, seed=100 + r, server_pid=server.proc.pid)
    t.join()
    return {"server": "after/default", "versions_switched": len(versions), **load.summary()}


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def _ratios(a: dict, b: dict) -> dict:
    """req/s, query p50 / p99 and server CPU per request of server summary `a` over those of `b`."""
    return {"qps_total": _ratio(a["qps_total"], b["qps_total"]),
            "server_cpu_per_request": _ratio(a["server_cpu_ms_per_request"], b["server_cpu_ms_per_request"]),
            "query_p50": _ratio(a["queries"]["p50_ms"], b["queries"]["p50_ms"]),
            "query_p99": _ratio(a["queries"]["p99_ms"], b["queries"]["p99_ms"])}


def print_entry(entry: dict) -> None:
    print(f"{entry['items']:>7} items (indexed in {entry['index_seconds']} s):")
    print(f"  {'server':<18} {'processes x threads':<28} {'req/s':>7} {'query p50':>10} {'p99':>8} "
          f"{'event p50':>10} {'errors':>6} {'server CPU/req':>14} {'client CPU/req':>14}")
    for key, s in entry["servers"].items():
        q = s["queries"]
        print(f"  {key:<18} {s['server'][:28]:<28} {s['qps_total']:>7} {q['p50_ms']:>8}ms {q['p99_ms']:>6}ms "
              f"{s['events']['p50_ms']:>8}ms {s['errors']:>6} {s['server_cpu_ms_per_request']:>12}ms "
              f"{s['client_cpu_ms_per_request']:>12}ms")
    for name, r in entry.get("ratio_after_before", {}).items():
        print(f"  after/before, {name}: req/s x{r['qps_total']}, query p50 x{r['query_p50']}, p99 x{r['query_p99']}, "
              f"server CPU per request x{r['server_cpu_per_request']}")
    for key, r in entry.get("ratio_to_embedded", {}).items():
        name = key.split("/")[1]
        print(f"  {key} / after/{name}: req/s x{r['qps_total']}, query p50 x{r['query_p50']}, "
              f"p99 x{r['query_p99']}")
    if "switching" in entry:
        s = entry["switching"]
        print(f"  while {s['versions_switched']} versions were switched in: {s['qps_total']} req/s, "
              f"query p99 {s['queries']['p99_ms']} ms, errors {s['errors']}")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- profile
STEPS = ("parse", "history read", "build", "search", "backfill", "documents", "response", "other")


def profile(args) -> dict:
    """The request path in-process (one thread, no HTTP): the time of each step per request,
    through the WSGI app as `cooccur serve` runs it, for both settings."""
    out = {}
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="cooccur-profile-") as tmp:
            data = Path(tmp)
            build(data, n, args.correlators)
            for name, extra in SETTINGS.items():
                kv = {"scoring": "terms", "popularity_prior": False} if extra else {}
                total, per = _profile_one(data, kv, args.requests)
                out[f"{n}/{name}"] = {"items": n, "settings": name, "requests": args.requests,
                                      "ms_per_request": round(total, 3), "steps_ms": per}
                print(f"{n:>7} items, {name}: {total:.2f} ms per request: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in per.items()))
    return out


def _profile_one(data: Path, kv: dict, requests: int) -> tuple[float, dict[str, float]]:
    import io

    import query.recommender as recmod
    import query.service as svc
    from indexer.embedded import tune_malloc
    from query.recommender import Recommender
    from query.service import App
    from query.settings import QuerySettings, ServeSettings

    tune_malloc()  # as `cooccur serve` does in its workers
    rec = Recommender(EmbeddedBackend(data), EventStore(data / "events.db"),
                      QuerySettings(indicators={"purchase": 1.0, "view": 0.5}, **kv))
    rec.backend.share_cores(os.cpu_count() or 1)  # as in a worker of `cooccur serve`'s defaults
    app = App(rec, ServeSettings(token=None))
    spent: dict[str, float] = dict.fromkeys(STEPS, 0.0)

    def timed(step, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[step] += time.perf_counter() - t0
        return wrapper

    def search(body, _fn=rec.backend.search):
        step = "search" if "must" in body["query"]["bool"] else "backfill"
        t0 = time.perf_counter()
        try:
            return _fn(body)
        finally:
            spent[step] += time.perf_counter() - t0

    saved = {k: getattr(recmod, k) for k in ("parse_query", "build_query", "build_backfill")}
    real_dumps = svc.json.dumps
    recmod.parse_query = timed("parse", saved["parse_query"])
    recmod.build_query = timed("build", saved["build_query"])
    recmod.build_backfill = timed("backfill", saved["build_backfill"])
    rec.backend.search = search
    rec.events.histories = timed("history read", rec.events.histories)  # (history() reads through it)
    rec._docs_of = timed("documents", rec._docs_of)
    svc.json.dumps = timed("response", real_dumps)
    import indexer.embedded_store as store_mod

    real_document = store_mod.Snapshot.documents_at
    store_mod.Snapshot.documents_at = timed("documents", real_document)  # the hits' sources, read in search
    try:
        rng = random.Random(1)
        bodies = [json.dumps({"user": f"u{rng.randrange(USERS)}", "num": 20}).encode()
                  for _ in range(requests + 50)]

        def call(raw: bytes) -> None:
            environ = {"PATH_INFO": "/queries.json", "REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(raw)),
                       "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(raw)}
            app(environ, lambda status, headers: None)

        for raw in bodies[:50]:  # warm-up
            call(raw)
        for k in spent:
            spent[k] = 0.0
        t0 = time.perf_counter()
        for raw in bodies[50:]:
            call(raw)
        total = time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            setattr(recmod, k, v)
        svc.json.dumps = real_dumps
        store_mod.Snapshot.documents_at = real_document
        rec.events.close()
    spent["search"] -= spent["documents"]  # (the documents are read inside the search)
    spent["other"] = total - sum(v for k, v in spent.items() if k != "other")
    return total / requests * 1000, {k: round(v / requests * 1000, 3) for k, v in spent.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--seconds", type=float, default=15, help="load per server, in slices of --slice")
    ap.add_argument("--slice", type=float, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--correlators", type=int, default=50)
    ap.add_argument("--write-share", type=float, default=0.1)
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--switches", type=int, default=3, help="versions switched in under load (0: skip)")
    ap.add_argument("--profile", action="store_true", help="profile the request path in-process instead")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--servers", nargs="+", default=["opensearch"], choices=["opensearch"],
                    help="search servers served beside the embedded backend (default %(default)s): a node "
                         "of `make search-nodes`, or --opensearch-url; skipped when not built")
    ap.add_argument("--no-servers", action="store_true", help="the embedded backend only")
    ap.add_argument("--opensearch-url", help="an OpenSearch to use instead of starting a node")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "load_average_before": list(os.getloadavg())}
    if args.profile:
        results = profile(args)
        out = {"benchmark": "cooccur request path in-process (WSGI app, one thread), ms per request by step",
               "machine": machine, "settings": {"correlators_per_indicator": args.correlators, "users": USERS,
                                                "history_per_user": "5 purchase + 5 view", "num": 20},
               "results": results}
        path = args.out or str(ROOT / "bench" / "results" / "serve-profile.json")
    else:
        from bench.search_servers import start_servers

        with tempfile.TemporaryDirectory(prefix="cooccur-baseline-") as tmp, contextlib.ExitStack() as stack:
            search_servers = {} if args.no_servers else start_servers(
                stack, args.servers, {"opensearch": args.opensearch_url})
            baseline_code = None if args.no_baseline else extract(args.baseline, Path(tmp))
            results = measure(args, baseline_code, search_servers)
        out = {
            "benchmark": "cooccur serve, embedded backend (and search servers beside it), HTTP keep-alive "
                         "clients on the same machine",
            "machine": machine,
            "baseline": None if args.no_baseline else args.baseline,
            "search_servers": search_servers,
            "settings": {"clients": args.clients, "write_share": args.write_share,
                         "seconds_per_server": args.seconds, "slice_seconds": args.slice,
                         "correlators_per_indicator": args.correlators, "users": USERS,
                         "history_per_user": "5 purchase + 5 view", "num": 20,
                         "scoring": {"default": "shipped [query] defaults (weights, log; prior)",
                                     "former": "scoring = terms, popularity_prior = false"}},
            "results": results,
        }
        path = args.out or str(ROOT / "bench" / "results" / "serve.json")
    out["machine"]["load_average_after"] = list(os.getloadavg())
    Path(path).write_text(json.dumps(out, indent=2) + "\n")
    print(f"load average before {machine['load_average_before']}, after {out['machine']['load_average_after']}; "
          f"wrote {path}")


if __name__ == "__main__":
    main()
