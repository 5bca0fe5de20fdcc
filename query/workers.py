"""`cooccur serve` with several worker processes: the WSGI app under gunicorn's pre-fork
server (docs/search.md, "Serving").

The master process loads everything once (config, the served index's snapshot, the event
store's schema, the served model check), binds the socket, and forks `workers` processes
(default: one per core) that inherit it; gunicorn restarts a worker that dies and stops
them all on SIGINT / SIGTERM. Each worker runs the same `App` with `threads` threads
(gunicorn's gthread worker: keep-alive connections wait in a poller, requests run in the
thread pool).

What the workers share, and how a change reaches all of them:

- the index: each worker memory-maps the current version's files (the page cache holds
  them once for every process) and re-reads `CURRENT` on every search, so a version switch
  (`cooccur index`, `rollback`, the refresher) reaches every worker at its next request;
  item changes go to the version's overlay file, which every worker re-reads when it grows;
- the event store: one SQLite file in WAL mode, a connection per thread in every worker, so
  an event stored by one worker is in the next history any worker reads.

Housekeeping (the event store's scheduled prune, `--refresh-every`) must run once, not once
per worker: every worker starts it behind an exclusive `flock` on a file beside the event
store (prune) or the model (refresh); the worker holding the lock runs it, and when that
worker dies its lock is released and another worker's waiting thread takes over. So one
refresher per model holds across several `serve` processes too.

Request counts and latency in `GET /stats` are the answering worker's (its `pid` says which).

`--workers 1` runs no gunicorn: the app is served by waitress in this process, which reads
requests asynchronously (slow clients hold connections, not threads; query/service.py
`make_server`). Under gunicorn a request not received within `[serve] request_timeout` is
dropped; docs/api.md, "Deployment", puts a buffering reverse proxy in front.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK_POLL_SECONDS = 1.0


class Singleton(threading.Thread):
    """Starts `start()` of a background job in the one process holding an exclusive flock
    on `lock_path`; waits (polling) while another process holds it."""

    def __init__(self, lock_path: Path, job: Callable[[], Any], name: str) -> None:
        super().__init__(name=f"cooccur-{name}-lock", daemon=True)
        self.lock_path = lock_path
        self.job = job
        self.stopped = threading.Event()
        self.holding = False
        self._fd: int | None = None

    def run(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._fd = fd
        while not self.stopped.is_set():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.stopped.wait(LOCK_POLL_SECONDS)
                continue
            self.holding = True
            log.info("pid %d runs %s", os.getpid(), self.name)
            self.job()
            return  # the lock is held until this process exits

    def stop(self) -> None:
        self.stopped.set()


def _check_bind(host: str, port: int) -> None:
    """Raise OSError now when host:port cannot be bound (gunicorn would retry, log and exit)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))


BALANCE_HOLD_SECONDS = 0.02
"""How long a worker holding more connections than another leaves new ones to the others."""
BALANCE_GIVE_UP_SECONDS = 0.5
"""A worker takes a new connection anyway once it has left them to the others this long
(the least loaded one may be dead and not yet replaced, or stuck)."""


def _deadline_worker(request_timeout: float, connections: Any = None):
    """gunicorn's gthread worker, with a deadline on receiving each request.

    gthread reads a request in a pool thread from a blocking socket: a client that sends
    half a request would hold the thread for as long as it likes. Here every read waits at
    most until `request_timeout` seconds after the request's first read, then the
    connection is dropped and the thread is free. Slow clients still hold threads for up
    to that long: in production put a buffering reverse proxy in front (docs/api.md,
    "Deployment"), or serve with `--workers 1` (waitress reads requests asynchronously).

    With `connections` (a shared array, one slot per worker: `worker.slot`), each worker
    publishes its open connections there and leaves a new connection to the others while
    it holds more than the least loaded one. Keep-alive connections stay with the worker
    that accepted them, and whichever worker woke first used to take them: 8 connections
    opened at once often all went to one worker, and the other core idled (bench/serve.py
    measured 222 / 0 requests per worker in a slice)."""
    import socket
    import time

    from gunicorn.workers.gthread import ThreadWorker

    class DeadlineSocket(socket.socket):
        __slots__ = ()
        deadlines: dict[int, float] = {}
        """fd -> when the request being received must be complete (none between requests)."""

        def setblocking(self, flag: bool) -> None:
            super().setblocking(flag)
            if flag:
                self.deadlines.pop(self.fileno(), None)  # a new request starts on this connection

        def _wait(self) -> None:
            if self.gettimeout() == 0.0:  # the worker's own non-blocking reads
                return
            deadline = self.deadlines.setdefault(self.fileno(), time.monotonic() + request_timeout)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"request not received within {request_timeout:g} s")
            self.settimeout(left)

        def recv(self, *args):  # type: ignore[override]
            self._wait()
            return super().recv(*args)

        def recv_into(self, *args):  # type: ignore[override]
            self._wait()
            return super().recv_into(*args)

        def close(self) -> None:
            self.deadlines.pop(self.fileno(), None)
            super().close()

    class DeadlineWorker(ThreadWorker):
        slot: int | None = None
        _hold_until = 0.0
        _leaving_since: float | None = None

        def enqueue_req(self, conn) -> None:
            if type(conn.sock) is socket.socket:
                conn.sock.__class__ = DeadlineSocket
            super().enqueue_req(conn)

        def _publish(self) -> None:
            if connections is not None and self.slot is not None:
                connections[self.slot] = self.nr_conns

        def accept(self, listener) -> None:
            if connections is not None and self.slot is not None and self.nr_conns > min(connections):
                now = time.monotonic()
                if self._leaving_since is None:
                    self._leaving_since = now
                if now - self._leaving_since < BALANCE_GIVE_UP_SECONDS:
                    # stop polling the listener a moment: a less loaded worker takes it
                    self._hold_until = now + BALANCE_HOLD_SECONDS
                    self.set_accept_enabled(False)
                    return
            self._leaving_since = None
            super().accept(listener)
            self._publish()

        def set_accept_enabled(self, enabled: bool) -> None:
            if enabled and time.monotonic() < self._hold_until:
                return
            super().set_accept_enabled(enabled)

        def finish_request(self, conn, fs) -> None:
            super().finish_request(conn, fs)
            self._publish()

        def murder_keepalived(self, force: bool = False) -> None:
            super().murder_keepalived(force)
            self._publish()

        def murder_pending(self) -> None:
            super().murder_pending()
            self._publish()

    return DeadlineWorker


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    on_ready: Callable[[str, int], None] | None = None,
    on_worker: Callable[[], object] | None = None,
    before_fork: Callable[[], None] | None = None,
    request_timeout: float = 10.0,
    max_connections: int = 1000,
    idle_timeout: float = 5.0,
) -> None:
    """Run `app` (a WSGI callable, loaded in this process) in `workers` forked processes of
    `threads` threads each, until SIGINT / SIGTERM. `on_ready(host, port)`: once bound (port
    0 = a free port); `on_worker()`: in each worker after it started (housekeeping);
    `before_fork()`: in the master, before the first worker is forked (close what a child
    must not inherit, e.g. SQLite connections)."""
    from gunicorn.app.base import BaseApplication

    _check_bind(host, port)
    from multiprocessing.sharedctypes import RawArray

    # open connections per worker slot, in memory shared with every forked worker
    connections = RawArray("i", workers)

    def pre_fork(server, worker) -> None:
        # the replaced worker's slot (a restart); none while gunicorn runs more workers than
        # `workers` (a reload's overlap): that worker then accepts as gthread does
        taken = {getattr(w, "slot", None) for w in server.WORKERS.values()}
        worker.slot = next((i for i in range(workers) if i not in taken), None)
        if worker.slot is not None:
            connections[worker.slot] = 0

    def when_ready(server) -> None:
        if before_fork is not None:
            before_fork()
        if on_ready is not None:
            h, p = server.LISTENERS[0].sock.getsockname()[:2]
            on_ready(h, p)

    def post_worker_init(worker) -> None:
        if on_worker is not None:
            on_worker()

    options: dict[str, Any] = {
        "bind": [bind_address(host, port)],
        "workers": workers,
        "threads": threads,
        "worker_class": _deadline_worker(request_timeout, connections),
        "pre_fork": pre_fork,
        "preload_app": True,
        "keepalive": max(1, round(idle_timeout)),
        "timeout": 120,
        "graceful_timeout": 10,
        "loglevel": "warning",
        "errorlog": "-",
        "accesslog": None,
        "proc_name": "cooccur",
        "worker_connections": max_connections,
        "when_ready": when_ready,
        "post_worker_init": post_worker_init,
    }

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 24: no control socket file
                self.cfg.set("control_socket_disable", True)

        def load(self):
            return app

    Server().run()


def housekeeping(jobs: list[tuple[Path, str, Callable[[], Any]]]) -> list[Singleton]:
    """Start one Singleton per (lock file, name, job start)."""
    started = []
    for lock_path, name, job in jobs:
        with contextlib.suppress(OSError):
            lock_path.parent.mkdir(parents=True, exist_ok=True)
        s = Singleton(lock_path, job, name)
        s.start()
        started.append(s)
    return started


def _lock_file(kind: str, path: str | os.PathLike) -> Path:
    """A lock file per (job, file it works on), in the temporary directory: one holder per
    machine, whatever process or `serve` command."""
    import hashlib
    import tempfile

    digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"cooccur-{kind}-{digest}.lock"


def run(recommender, settings, events=None, on_ready: Callable[[str, int], None] | None = None,
        refresher=None) -> None:
    """`cooccur serve`: the App over `recommender` in settings.processes worker processes of
    settings.threads threads, with the scheduled prune (`events`) and the `refresher` each
    running in one worker (see the module's docstring)."""
    from .service import App, Pruner

    share_cores = getattr(recommender.backend, "share_cores", None)
    if share_cores is not None:  # the embedded backend: its searches split the cores
        share_cores(settings.processes * settings.threads)
    app = App(recommender, settings)
    app.refresher = refresher
    jobs: list[tuple[Path, str, Callable[[], Any]]] = []
    store = recommender.events
    if events is not None and events.retention and events.prune_interval > 0 and store is not None:
        def start_pruner() -> None:
            try:
                app.prune(events.retention)
            except Exception:  # retried at the next interval, as the Pruner does
                log.exception("prune at start failed")
            Pruner(app, events).start()

        jobs.append((_lock_file("prune", store.path), "pruner", start_pruner))
    if refresher is not None:
        jobs.append((_lock_file("refresh", refresher.model_dir), "refresher", refresher.start))

    if settings.processes == 1:
        _serve_one(app, settings, jobs, on_ready)
        return

    def before_fork() -> None:
        from indexer.embedded import tune_malloc

        tune_malloc()  # inherited by every worker
        if store is not None:
            store.close()  # SQLite connections must not cross a fork: each worker opens its own

    serve(app, host=settings.host, port=settings.port, workers=settings.processes, threads=settings.threads,
          on_ready=on_ready, on_worker=lambda: housekeeping(jobs), before_fork=before_fork,
          request_timeout=settings.request_timeout, max_connections=settings.max_connections,
          idle_timeout=settings.idle_timeout)


def _serve_one(app: Any, settings: Any, jobs: list, on_ready: Callable[[str, int], None] | None) -> None:
    """One process (`--workers 1`): waitress, which reads requests asynchronously, so slow
    clients hold connections, never threads (query/service.py `make_server`)."""
    from .service import make_server

    server = make_server(app, settings.host, settings.port, settings.threads, settings.max_body_bytes)
    if on_ready is not None:
        on_ready(server.effective_host, server.effective_port)
    housekeeping(jobs)
    try:
        server.run()
    finally:
        server.close()
