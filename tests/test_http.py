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


# --------------------------------------------------------------------------- PredictionIO clients
# As PredictionIO's event server answers them (apache/predictionio EventServer.scala and
# docs/manual/source/datacollection/eventapi.html.md): POST /events.json -> 201 {"eventId"};
# POST /batch/events.json (at most 50) -> 200 with one {"status", "eventId" | "message"} per
# event; GET /events.json and /events/<id>.json with the access key.
KEY = "?accessKey=" + TOKEN


def test_pio_single_event_then_read_it_back(client):
    status, body, _ = client.call("POST", "/events.json" + KEY, event("u1", "view", "a", "2025-06-01T10:00:00.5Z"))
    assert status == 201 and isinstance(body["eventId"], str) and body["stored"] == 1
    status, got, _ = client.call("GET", f"/events/{body['eventId']}.json" + KEY)
    assert status == 200 and got == {
        "eventId": body["eventId"], "event": "view", "entityType": "user", "entityId": "u1",
        "targetEntityType": "item", "targetEntityId": "a", "eventTime": "2025-06-01T10:00:00.500Z"}
    status, body, _ = client.call("POST", "/events.json" + KEY, {
        "event": "$set", "entityType": "item", "entityId": "n1", "properties": {"category": ["x"]},
        "eventTime": "2025-06-01T00:00:00Z"})
    assert status == 201 and len(body["eventId"]) == 32 and body["itemChanges"] == 1
    status, got, _ = client.call("GET", f"/events/{body['eventId']}.json" + KEY)
    assert status == 200 and got["event"] == "$set" and got["properties"] == {"category": ["x"]}
    assert client.call("GET", "/events/999.json" + KEY)[0] == 404
    # ids are unique and never reused
    ids = {client.call("POST", "/events.json" + KEY, event("u1", "view", "b"))[1]["eventId"] for _ in range(3)}
    assert len(ids) == 3


def test_pio_batch_stores_the_good_events_and_reports_each(client, server):
    _, app = server
    batch = [
        event("u2", "purchase", "a", "2025-06-01T00:00:00Z"),
        {"eve": "view", "entityType": "user", "entityId": "u2", "eventTime": "2015-12-13T21:39:45.618Z"},
        event("u2", "view", "b", "2025-06-02T00:00:00Z"),
        {"event": "$set", "entityType": "item", "entityId": "i1", "properties": {"popular": 3}},
        {"event": "view", "entityType": "user", "entityId": "u2"},
    ]
    status, body, _ = client.call("POST", "/batch/events.json" + KEY, batch)
    assert status == 200 and [r["status"] for r in body] == [201, 400, 201, 400, 400]
    assert body[0]["eventId"] != body[2]["eventId"]
    assert body[1]["field"] == "eve" and body[1]["message"].startswith("eve: unknown field")
    assert body[3]["field"] == "properties.popular" and "reserved" in body[3]["message"]
    assert body[4]["field"] == "targetEntityId"
    assert app.rec.events.history("u2", None, 10) == {"purchase": ["a"], "view": ["b"]}
    status, found, _ = client.call("GET", "/events.json" + KEY + "&entityType=user&entityId=u2")
    assert status == 200 and [e["eventId"] for e in found] == [body[0]["eventId"], body[2]["eventId"]]
    # the good ones count at the next query: u2 bought a -> i1, i2
    assert [s["item"] for s in client.call("POST", "/queries.json", {"user": "u2", "num": 2})[1]["itemScores"]] == [
        "i2", "i1"]


def test_pio_batch_limits(client):
    small = {"event": "v", "entityType": "user", "entityId": "u", "targetEntityId": "a"}
    status, body, _ = client.call("POST", "/batch/events.json" + KEY, [small] * 51)
    assert status == 400 and "less than or equal to 50" in body["error"]
    assert client.call("POST", "/batch/events.json" + KEY, event("u", "view", "a"))[0] == 400
    assert client.call("POST", "/batch/events.json" + KEY, [])[:2] == (200, [])
    assert client.call("POST", "/batch/events.json", [event("u", "view", "a")])[0] == 401


def test_array_on_events_json_stays_all_or_nothing(client, server):
    _, app = server
    status, body, _ = client.call("POST", "/events.json" + KEY, [event("u3", "view", "a"), {"event": "view"}])
    assert status == 400 and body["field"] == "[1].entityType"
    assert app.rec.events.history("u3", None, 10) == {}


def test_pio_get_events_filters(client):
    for n, (action, item) in enumerate([("view", "a"), ("view", "b"), ("purchase", "a"), ("view", "c")]):
        client.call("POST", "/events.json" + KEY, event("u4", action, item, f"2025-06-0{n + 1}T00:00:00Z"))
    client.call("POST", "/events.json" + KEY, event("other", "view", "a", "2025-06-01T00:00:00Z"))
    client.call("POST", "/events.json" + KEY, {"event": "$set", "entityType": "item", "entityId": "n2",
                                               "properties": {"category": "x"}, "eventTime": "2025-06-03T00:00:00Z"})

    def find(params):
        status, body, _ = client.call("GET", "/events.json" + KEY + params)
        assert status == 200, body
        return [(e["entityId"], e["event"], e.get("targetEntityId")) for e in body]

    assert find("&entityType=user&entityId=u4&event=view") == [("u4", "view", "a"), ("u4", "view", "b"),
                                                                ("u4", "view", "c")]
    assert find("&entityType=user&entityId=u4&limit=2&reversed=true") == [("u4", "view", "c"),
                                                                         ("u4", "purchase", "a")]
    assert find("&entityId=u4&startTime=2025-06-02T00:00:00Z&untilTime=2025-06-04T00:00:00Z") == [
        ("u4", "view", "b"), ("u4", "purchase", "a")]
    assert find("&targetEntityId=a&limit=-1") == [("u4", "view", "a"), ("other", "view", "a"),
                                                  ("u4", "purchase", "a")]
    assert find("&entityType=item&entityId=n2") == [("n2", "$set", None)]
    assert len(find("")) == 6 and find("&entityType=shop") == []
    for params, field in [("&limit=x", "limit"), ("&limit=-2", "limit"), ("&reversed=maybe", "reversed"),
                          ("&startTime=soon", "startTime"), ("&channel=web", "channel"), ("&entity=u", "entity")]:
        status, body, _ = client.call("GET", "/events.json" + KEY + params)
        assert status == 400 and body["field"] == field


def test_pio_reads_need_the_key_too(client):
    import base64

    assert client.call("GET", "/events.json")[0] == 401
    assert client.call("GET", "/events/1.json")[0] == 401
    assert client.call("GET", "/events.json?accessKey=wrong")[0] == 401
    assert client.call("GET", "/events.json", headers=AUTH)[0] == 200
    # PredictionIO's other form: the key as the Basic-auth user name
    basic = {"Authorization": "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()}
    assert client.call("GET", "/events.json", headers=basic)[0] == 200
    assert client.call("POST", "/events.json", event("u", "view", "a"), headers=basic)[0] == 201
    bad = {"Authorization": "Basic !!!"}
    assert client.call("GET", "/events.json", headers=bad)[0] == 401
    status, _, headers = client.call("DELETE", "/events/1.json" + KEY)
    assert status == 405 and headers["Allow"] == "GET"
