"""The HTTP service against a real waitress server on a free localhost port."""

from __future__ import annotations

import http.client
import json
import threading

import pytest
from query_testdata import DOCS, SCHEMA, make_backend

from query.eventstore import EventStore
from query.recommender import Recommender
from query.service import App, make_server
from query.settings import QuerySettings, ServeSettings

TOKEN = "s3cret"


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None, headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        self.conn.request(method, path, body=data, headers=hdrs)
        resp = self.conn.getresponse()
        text = resp.read()
        return resp.status, json.loads(text), resp.headers  # case-insensitive

    def close(self):
        self.conn.close()


@pytest.fixture
def server(tmp_path):
    store = EventStore(tmp_path / "events.db")
    rec = Recommender(make_backend(tmp_path / "index"), store, QuerySettings(indicators={"purchase": 1.0, "view": 0.5}))
    app = App(rec, ServeSettings(token=TOKEN, workers=8, max_body_bytes=4096))
    srv = make_server(app, "127.0.0.1", 0, 8, 4096)
    closing = threading.Event()

    def run():
        try:
            srv.run()
        except OSError:
            # waitress has no cross-thread shutdown: closing its sockets ends the loop this way
            if not closing.is_set():
                raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield srv.effective_port, app
    closing.set()
    srv.close()
    thread.join(timeout=10)
    store.close()


@pytest.fixture
def client(server):
    c = Client(server[0])
    yield c
    c.close()


def event(user, action, item, t="2025-06-01T00:00:00Z"):
    return {"event": action, "entityType": "user", "entityId": user, "targetEntityType": "item",
            "targetEntityId": item, "eventTime": t}


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_happy_paths(client):
    status, body, _ = client.call("GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["documents"] == len(DOCS)
    status, body, _ = client.call("POST", "/events.json", [event("u", "purchase", "a"), event("u", "view", "a")],
                                  headers=AUTH)
    # cooccur's all-or-nothing array form: the ids are the store's row ids
    assert (status, body) == (201, {"eventIds": ["1", "2"], "stored": 2, "itemChanges": 0, "ignored": 0})
    status, body, _ = client.call("POST", "/queries.json", {"user": "u", "num": 3})
    assert status == 200
    assert [s["item"] for s in body["itemScores"]] == ["i1", "i2", "i4"]
    assert body["itemScores"][0]["source"] == {"personal": ["purchase", "view"]}
    assert body["itemScores"][2]["source"] == {"backfill": "popular"}
    assert body["version"].startswith("v")
    status, body, _ = client.call("POST", "/events.json?accessKey=" + TOKEN,
                                  {"event": "$set", "entityType": "item", "entityId": "n1",
                                   "properties": {"category": ["x"]}})
    assert (status, body["itemChanges"]) == (201, 1)
    status, body, _ = client.call("POST", "/queries.json",
                                  {"fields": [{"name": "category", "values": ["x"], "bias": -1}], "num": 10})
    assert "n1" in [s["item"] for s in body["itemScores"]]
    status, body, _ = client.call("GET", "/stats")
    assert status == 200 and body["requests"]["/queries.json 200"] == 2 and body["events"]["events"] == 2
    assert body["query_latency_ms"]["count"] == 2


@pytest.mark.parametrize("method, path, kwargs, status, field", [
    ("POST", "/queries.json", {"raw": b"{not json"}, 400, "(body)"),
    ("POST", "/queries.json", {"raw": b""}, 400, "(body)"),
    ("POST", "/queries.json", {"raw": b"\xff\xfe"}, 400, "(body)"),
    ("POST", "/queries.json", {"raw": b"[1]"}, 400, "(body)"),
    ("POST", "/queries.json", {"body": {"user": "u", "num": -1}}, 400, "num"),
    ("POST", "/queries.json", {"body": {"user": "u", "fields": [{"name": "category", "values": "x", "bias": 1}]}},
     400, "fields[0].values"),
    ("POST", "/queries.json", {"body": {"user": "u", "fields": [{"name": "nope", "values": ["x"], "bias": 1}]}},
     400, "fields[0].name"),
    ("POST", "/queries.json", {"body": {"user": "u", "dateRange": {"name": "date", "after": "soon"}}},
     400, "dateRange.after"),
    ("POST", "/queries.json", {"body": {"user": "u", "pretty": True}}, 400, "pretty"),
    ("POST", "/queries.json", {"body": {"user": "u" * 5000}}, 413, "(body)"),
    ("POST", "/queries.json", {"body": {"user": "u"}, "headers": {"Content-Type": "text/xml"}}, 415, "Content-Type"),
    ("POST", "/events.json", {"body": {"event": "view", "entityType": "user", "entityId": "u"}, "headers": AUTH},
     400, "targetEntityId"),
    ("POST", "/events.json", {"body": [event("u", "view", "a"), {"event": "view"}], "headers": AUTH},
     400, "[1].entityType"),
    ("POST", "/events.json", {"body": {"event": "$set", "entityType": "item", "entityId": "i1",
                                       "properties": {"popular": 5}}, "headers": AUTH}, 400, "properties.popular"),
    ("POST", "/events.json", {"body": {"event": "$set", "entityType": "item", "entityId": "i1",
                                       "properties": {"date": "someday"}}, "headers": AUTH}, 400, "properties.date"),
])
def test_validation_errors_name_the_field(client, method, path, kwargs, status, field):
    got, body, headers = client.call(method, path, **kwargs)
    assert got == status
    assert body["field"] == field
    assert "Traceback" not in body["error"] and headers["Content-Type"] == "application/json"


def test_routing_errors(client):
    status, body, _ = client.call("GET", "/nope")
    assert status == 404
    status, body, headers = client.call("GET", "/queries.json")
    assert status == 405 and headers["Allow"] == "POST"


def test_writes_need_the_token(client):
    ok = event("u", "view", "a")
    assert client.call("POST", "/events.json", ok)[0] == 401
    status, body, headers = client.call("POST", "/events.json", ok, headers={"Authorization": "Bearer wrong"})
    assert status == 401 and body["field"] == "Authorization" and headers["WWW-Authenticate"] == "Bearer"
    assert client.call("POST", "/events.json?accessKey=wrong", ok)[0] == 401
    assert client.call("POST", "/events.json", ok, headers=AUTH)[0] == 201
    assert client.call("POST", "/queries.json", {"user": "u"})[0] == 200  # reads need no token


def test_internal_errors_leak_no_traceback(server, client):
    _, app = server

    class Broken:
        def get(self, ids):
            raise RuntimeError("secret internals")

    real = app.rec.backend
    app.rec.backend = Broken()
    try:
        status, body, _ = client.call("POST", "/queries.json", {"item": "i1"})
    finally:
        app.rec.backend = real
    assert status == 500 and body == {"error": "internal error (see the server log)"}


def test_concurrent_clients_and_version_switch(server, tmp_path):
    port, app = server
    errors: list[str] = []
    versions: set[str] = set()
    lock = threading.Lock()

    def work(n: int) -> None:
        c = Client(port)
        try:
            for i in range(200):
                if i % 10 == 0:
                    status, body, _ = c.call("POST", "/events.json", event(f"u{n}", "view", "b"), headers=AUTH)
                    ok = status == 201
                else:
                    status, body, _ = c.call("POST", "/queries.json", {"user": f"u{n}", "num": 4})
                    ok = status == 200 and len(body["itemScores"]) == 4
                    with lock:
                        versions.add(body.get("version"))
                if not ok:
                    with lock:
                        errors.append(f"{status} {body}")
        except Exception as e:  # a dropped connection counts as an error
            with lock:
                errors.append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    # Switch index versions (as `cooccur index` does) while the clients run.
    for _ in range(3):
        app.rec.backend.create_version(SCHEMA, [dict(d) for d in DOCS])
    for t in threads:
        t.join()
    assert errors == []
    assert len(versions) >= 2
    stats = Client(port).call("GET", "/stats")[1]
    assert stats["requests"]["/queries.json 200"] == 8 * 180


def test_deeply_nested_json_is_a_bad_request(client):
    status, body, _ = client.call("POST", "/queries.json", raw=b"[" * 3000,
                                  headers={"Content-Type": "application/json"})
    assert status == 400 and body["field"] == "(body)"
