"""The HTTP service (`cooccur serve`): a plain WSGI application served by waitress.

    POST /queries.json        a recommendation request (docs/api.md) -> {"itemScores": [...]}
    POST /events.json         one PredictionIO event -> 201 {"eventId"}, or a JSON array of them
                              (all or nothing)
    POST /batch/events.json   PredictionIO's batch: up to 50 events -> 200 with one
                              {"status", "eventId" | "message"} per event
    GET  /events.json         PredictionIO's event query (entityType, entityId, event, limit ...)
    GET  /events/<id>.json    one stored event
    GET  /health              200 with the index version, 503 without a usable index
    GET  /stats               request counts, query latency percentiles, event store counts
    GET  /metrics             the same in the Prometheus text format (query/metrics.py)

Every error is JSON {"error": ..., "field": ...} with a 4xx/5xx status, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import logging
import os
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from indexer.errors import BackendUnavailable, IndexerError, UnsupportedQuery

from .errors import BadRequest, QueryError
from .eventstore import parse_event, parse_events
from .recommender import Recommender
from .refresh import Refresher
from .request import parse_time
from .settings import EventSettings, ServeSettings

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
ROUTES = {
    "/queries.json": ("POST",),
    "/events.json": ("POST", "GET"),
    "/batch/events.json": ("POST",),
    "/health": ("GET", "HEAD"),
    "/stats": ("GET",),
    "/metrics": ("GET",),
}
EVENT_PATH = re.compile(r"^/events/([^/]+)\.json$")
MAX_BATCH = 50
"""Events per POST /batch/events.json at most (PredictionIO's limit)."""
FIND_PARAMS = ("accessKey", "entityType", "entityId", "event", "targetEntityType", "targetEntityId",
               "startTime", "untilTime", "limit", "reversed")
"""The query parameters of GET /events.json (PredictionIO's, less `channel`)."""


def _no_constant(name: str) -> Any:
    """Strict JSON in: NaN, Infinity and -Infinity are not JSON (Python's parser takes them)."""
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)
"""One decoder for every request (json.loads with an argument builds one per call)."""


class HttpError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers: list | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or []


_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required", 413: "Payload Too Large",
            415: "Unsupported Media Type", 500: "Internal Server Error", 503: "Service Unavailable"}


class App:
    """The WSGI application; thread-safe (waitress calls it from its worker threads)."""

    def __init__(self, recommender: Recommender, settings: ServeSettings | None = None) -> None:
        self.rec = recommender
        self.settings = settings or ServeSettings(token=None)
        self.started = time.time()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._latency_ms: deque[float] = deque(maxlen=10_000)
        self.last_prune: dict[str, Any] | None = None
        self.refresher: Refresher | None = None
        self._health_checked: tuple[str, list] | None = None
        """(version, failed checks) of the last version /health checked."""

    # ------------------------------------------------------------------ WSGI
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics" and method == "GET":  # /stats in the Prometheus text format
            from .metrics import render

            body, content_type = render(self)
            start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            return [body]
        started = time.perf_counter()
        try:
            status, payload = self._dispatch(path, method, environ)
            headers: list[tuple[str, str]] = []
        except HttpError as e:
            status, payload, headers = e.status, {"error": e.message}, e.headers
            if e.field:
                payload["field"] = e.field
        except BadRequest as e:
            status, payload, headers = 400, {"error": str(e), "field": e.field}, []
        except UnsupportedQuery as e:
            status, payload, headers = 400, {"error": str(e), "field": e.path}, []
        except BackendUnavailable as e:
            status, payload, headers = 503, {"error": str(e)}, []
        except (QueryError, IndexerError) as e:
            status, payload, headers = 400, {"error": str(e)}, []
        except Exception:  # never leak a traceback to the client; log it for the operator
            log.exception("internal error on %s %s", method, path)
            status, payload, headers = 500, {"error": "internal error (see the server log)"}, []
        elapsed = (time.perf_counter() - started) * 1000
        route = path if path in ROUTES else "/events/{id}.json" if EVENT_PATH.match(path) else "(other)"
        with self._lock:
            self._counts[f"{route} {status}"] += 1
            if path == "/queries.json" and status == 200:
                self._latency_ms.append(elapsed)
        try:
            body = json.dumps(payload, allow_nan=False).encode()
        except ValueError:  # strict JSON out: a non-finite number is the server's fault
            log.error("response to %s %s holds a non-finite number: %r", method, path, payload)
            status, headers = 500, []
            body = b'{"error": "internal error (see the server log)"}'
        start_response(f"{status} {_REASONS.get(status, '')}".strip(), [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers,
        ])
        return [b"" if method == "HEAD" else body]

    def _dispatch(self, path: str, method: str, environ: dict[str, Any]) -> tuple[int, Any]:
        allowed = ROUTES.get(path) or (("GET",) if EVENT_PATH.match(path) else None)
        if allowed is None:
            raise HttpError(404, f"no such endpoint {path} (see docs/api.md)")
        if method not in allowed:
            raise HttpError(405, f"{path} takes {' or '.join(allowed)}, not {method}",
                            headers=[("Allow", ", ".join(allowed))])
        if path == "/queries.json":
            request = self._json(environ)
            return 200, self.rec.recommend(request).to_json()
        if path == "/events.json" and method == "POST":
            self._authorize(environ)
            body = self._json(environ)
            events = parse_events(body)
            report = self.rec.ingest(events, with_ids=True)
            counts = {"stored": report.stored, "itemChanges": len(report.item_changes), "ignored": report.ignored}
            if isinstance(body, list):  # cooccur's all-or-nothing batch
                return 201, {"eventIds": report.event_ids, **counts}
            return 201, {"eventId": report.event_ids[0], **counts}
        if path == "/batch/events.json":
            self._authorize(environ)
            return 200, self._batch(self._json(environ))
        if path == "/events.json":
            self._authorize(environ)
            return 200, self._find(environ)
        m = EVENT_PATH.match(path)
        if m:
            self._authorize(environ)
            found = self._store().get_event(m.group(1))
            if found is None:
                raise HttpError(404, f"no event {m.group(1)!r} (pruned, superseded, or never stored)", "eventId")
            return 200, found
        if path == "/health":
            return self._health()
        return 200, self.stats()

    def _batch(self, body: Any) -> list[dict[str, Any]]:
        """PredictionIO's batch: each event stored or refused on its own (200 with one
        {"status": 201, "eventId"} or {"status": 400, "message", "field"} per event, in order)."""
        if not isinstance(body, list):
            raise HttpError(400, "a batch is a JSON array of events", "(body)")
        if len(body) > MAX_BATCH:
            raise HttpError(400, f"Batch request must have less than or equal to {MAX_BATCH} events "
                                 f"(got {len(body)})", "(body)")
        results: list[dict[str, Any]] = [{} for _ in body]
        good, slots = [], []
        for i, obj in enumerate(body):
            try:
                event = parse_event(obj)
                self.rec.check_events([event])
            except BadRequest as e:
                results[i] = {"status": 400, "message": str(e), "field": e.field}
                continue
            good.append(event)
            slots.append(i)
        if good:
            report = self.rec.ingest(good, with_ids=True)
            for i, event_id in zip(slots, report.event_ids, strict=True):
                results[i] = {"status": 201, "eventId": event_id}
        return results

    def _store(self):
        if self.rec.events is None:
            raise HttpError(404, "this service has no event store", "(path)")
        return self.rec.events

    def _find(self, environ: dict[str, Any]) -> list[dict[str, Any]]:
        """GET /events.json: PredictionIO's event query over the store."""
        params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        for name in params:
            if name == "channel":
                raise BadRequest("channel", "channels are not supported (one event store per service)")
            if name not in FIND_PARAMS:
                raise BadRequest(name, f"unknown parameter (supported: {', '.join(FIND_PARAMS)})")
        one = {name: values[-1] for name, values in params.items()}
        limit: int | None = 20
        if "limit" in one:
            try:
                limit = int(one["limit"])
            except ValueError:
                raise BadRequest("limit", f"must be an integer (-1 = all), not {one['limit']!r}") from None
            if limit < -1:
                raise BadRequest("limit", f"must be >= -1 (-1 = all), not {limit}")
            limit = None if limit == -1 else limit
        reverse = one.get("reversed", "false").lower()
        if reverse not in ("true", "false"):
            raise BadRequest("reversed", f"must be true or false, not {one['reversed']!r}")
        times = {k: int(parse_time(one[k], k).timestamp() * 1000) if k in one else None
                 for k in ("startTime", "untilTime")}
        return self._store().find(
            entity_type=one.get("entityType"), entity_id=one.get("entityId"), event=one.get("event"),
            target_entity_type=one.get("targetEntityType"), target_entity_id=one.get("targetEntityId"),
            start_ms=times["startTime"], until_ms=times["untilTime"], limit=limit, reverse=reverse == "true")

    # ------------------------------------------------------------------ helpers
    def _json(self, environ: dict[str, Any]) -> Any:
        limit = self.settings.max_body_bytes
        raw_length = environ.get("CONTENT_LENGTH") or ""
        try:
            length = int(raw_length) if raw_length else None
        except ValueError:
            raise HttpError(400, "Content-Length is not a number", "Content-Length") from None
        if length is not None and length > limit:
            raise HttpError(413, f"request body of {length} bytes exceeds the limit of {limit}", "(body)")
        try:
            data = environ["wsgi.input"].read(limit + 1 if length is None else length)
        except OSError:  # the server's request_timeout, or the client went away
            raise HttpError(408, "the request body did not arrive in time", "(body)") from None
        if len(data) > limit:
            raise HttpError(413, f"request body exceeds the limit of {limit} bytes", "(body)")
        if not data:
            raise HttpError(400, "empty body: send a JSON object", "(body)")
        ctype = environ.get("CONTENT_TYPE", "")
        if ctype and "json" not in ctype and not ctype.startswith("text/plain"):
            raise HttpError(415, f"Content-Type {ctype!r}: send application/json", "Content-Type")
        try:
            # json.loads's own steps for bytes (UTF-8, -16 or -32), with the shared decoder
            return _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
        except UnicodeDecodeError:
            raise HttpError(400, "body is not UTF-8", "(body)") from None
        except json.JSONDecodeError as e:
            raise HttpError(400, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}", "(body)") from None
        except RecursionError:
            raise HttpError(400, "JSON nested too deeply", "(body)") from None
        except ValueError as e:  # e.g. an integer of more than 4,300 digits (int_max_str_digits)
            raise HttpError(400, f"invalid JSON: {e}", "(body)") from None

    def _authorize(self, environ: dict[str, Any]) -> None:
        token = self.settings.token
        if not token:
            return
        given = ""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):].strip()
        elif auth.startswith("Basic "):
            # PredictionIO's other form: the access key as the Basic-auth user name
            try:
                given = base64.b64decode(auth[len("Basic "):].strip(), validate=True).decode().split(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                given = ""
        else:
            # PredictionIO clients send the key as ?accessKey=...
            given = (parse_qs(environ.get("QUERY_STRING", "")).get("accessKey") or [""])[0]
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise HttpError(401, "events need a valid token: Authorization: Bearer <token> or ?accessKey=<token>",
                            "Authorization", headers=[("WWW-Authenticate", "Bearer")])

    def _health(self) -> tuple[int, Any]:
        """200 when the current version loads and answers a query (the backend's checks,
        which `cooccur doctor` runs too; once per version), else 503 with the reason."""
        try:
            current = [v for v in self.rec.backend.versions() if v.current]
        except IndexerError as e:
            return 503, {"status": "unavailable", "error": str(e), "hint": e.hint}
        if not current:
            return 503, {"status": "unavailable", "error": "no index version yet: run `cooccur index`"}
        version = current[0].name
        cached = self._health_checked
        if cached is None or cached[0] != version:
            failed = [c for c in self.rec.backend.checks() if not c.ok]
            cached = self._health_checked = (version, failed)
        if cached[1]:
            check = cached[1][0]
            return 503, {"status": "unavailable", "version": version, "error": check.detail, "hint": check.hint}
        return 200, {"status": "ok", "version": version, "documents": current[0].documents}

    def stats(self) -> dict[str, Any]:
        """Counters since start; latency percentiles over the last 10,000 queries."""
        with self._lock:
            counts = dict(sorted(self._counts.items()))
            lat = sorted(self._latency_ms)
        out: dict[str, Any] = {
            "uptime_seconds": round(time.time() - self.started, 1),
            "requests": counts,
            "query_latency_ms": {
                "count": len(lat),
                "p50": round(lat[len(lat) // 2], 3) if lat else None,
                "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3) if lat else None,
            },
            "pid": os.getpid(),  # with several worker processes, the counts are this worker's
            "workers": self.settings.processes,
            "threads": self.settings.threads,
        }
        if self.rec.events is not None:
            out["events"] = self.rec.events.stats()
        if self.last_prune is not None:
            out["last_prune"] = self.last_prune
        if self.refresher is not None:
            out["refresh"] = self.refresher.as_json()
        return out

    def prune(self, retention: dict[str, float]) -> dict[str, int]:
        """Apply the retention window now (called on the service's schedule)."""
        if self.rec.events is None or not retention:
            return {}
        removed = self.rec.events.prune(retention)
        self.last_prune = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "removed": removed}
        log.info("pruned events: %s", removed)
        return removed


class Pruner(threading.Thread):
    """Prunes the event store every `interval` seconds until stopped."""

    def __init__(self, app: App, events: EventSettings) -> None:
        super().__init__(name="cooccur-pruner", daemon=True)
        self.app = app
        self.events = events
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.events.prune_interval):
            try:
                self.app.prune(self.events.retention)
            except Exception:  # a failed prune must not stop the service; it retries next time
                log.exception("scheduled prune failed")

    def stop(self) -> None:
        self.stopped.set()


BUSY_BODY = json.dumps({"error": "too many open connections: try again shortly"}).encode()
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                 b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
                 + str(len(BUSY_BODY)).encode() + b"\r\n\r\n" + BUSY_BODY)


def make_server(app: App, host: str, port: int, threads: int, max_body_bytes: int):
    """A waitress server bound to host:port (port 0 = any free port: see `.effective_port`),
    bounded against slow and idle clients by `app.settings` (docs/api.md, "Deployment"):

    - waitress reads requests asynchronously and hands only complete ones to the threads,
      so a slow client holds a connection, never a thread: queries go on;
    - a request not received whole within `request_timeout` seconds (headers and body), or
      a keep-alive connection idle for `idle_timeout`, is closed;
    - past `max_connections` open connections a new one gets a JSON 503 and is closed
      (waitress itself would stop accepting, and every client would wait);
    - waitress's own errors (a body over the limit, a malformed request) are JSON too."""
    from waitress.channel import HTTPChannel
    from waitress.server import TcpWSGIServer
    from waitress.task import ErrorTask

    settings = app.settings

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            e = self.request.error
            body = json.dumps({"error": f"{e.reason}: {e.body}"}).encode()
            self.status = f"{e.code} {e.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class Channel(HTTPChannel):
        error_task_class = JsonErrorTask
        request_started: float | None = None
        """When the first byte of the request being received came (None between requests)."""

        def received(self, data: bytes) -> bool:
            out = super().received(data)
            if self.request is None:
                self.request_started = None
            elif self.request_started is None:
                self.request_started = time.time()
            return out

    class Server(TcpWSGIServer):
        channel_class = Channel

        def handle_accept(self) -> None:
            if len(self.active_channels) < settings.max_connections:
                return super().handle_accept()
            try:
                accepted = self.accept()
            except OSError:
                return
            if accepted is None:
                return
            conn = accepted[0]
            try:  # read what the client sent, so closing does not reset the connection first
                conn.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    conn.recv(65536)
                conn.send(BUSY_RESPONSE)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            finally:
                conn.close()

        def maintenance(self, now: float) -> None:
            super().maintenance(now)  # idle keep-alive connections (channel_timeout)
            cutoff = now - settings.request_timeout
            for channel in self.active_channels.values():
                started = getattr(channel, "request_started", None)
                if started is not None and started < cutoff and not channel.requests:
                    channel.will_close = True

    return Server(
        app, host=host, port=port, threads=threads,
        # waitress answers 413 itself past this (as JSON, above); the app checks a tighter
        # limit with a message of its own.
        max_request_body_size=max_body_bytes + 1024,
        expose_tracebacks=False, ident="cooccur",
        # Over max_connections the server answers 503 itself; waitress's limit (it stops
        # accepting) stays out of the way.
        connection_limit=settings.max_connections + 100,
        channel_timeout=max(1, round(settings.idle_timeout)),
        cleanup_interval=1,
    )


def serve(recommender: Recommender, settings: ServeSettings, events: EventSettings | None = None,
          on_ready: Callable[[str, int], None] | None = None, refresher: Refresher | None = None) -> None:
    """Run the service until interrupted (with `refresher`, also keep the model and the
    index fresh from the event store)."""
    app = App(recommender, settings)
    app.refresher = refresher
    server = make_server(app, settings.host, settings.port, settings.threads, settings.max_body_bytes)
    pruner = None
    if events is not None and events.retention and events.prune_interval > 0 and recommender.events is not None:
        app.prune(events.retention)
        pruner = Pruner(app, events)
        pruner.start()
    if on_ready is not None:
        on_ready(server.effective_host, server.effective_port)
    if refresher is not None:
        refresher.start()
    try:
        server.run()
    finally:
        if refresher is not None:
            refresher.stop()
        if pruner is not None:
            pruner.stop()
        server.close()
