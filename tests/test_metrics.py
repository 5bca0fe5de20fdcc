"""query/metrics.py: GET /metrics gives what /stats shows, in the Prometheus text format."""

from __future__ import annotations

import io
import json

from prometheus_client.parser import text_string_to_metric_families
from query_testdata import make_backend

from query.eventstore import EventStore, parse_events
from query.recommender import Recommender
from query.service import App
from query.settings import QuerySettings, ServeSettings


def call(app, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data), "QUERY_STRING": ""}
    got = {}
    body = b"".join(app(environ, lambda status, headers: got.update(status=status, headers=dict(headers))))
    return got["status"], got["headers"], body.decode()


def samples(text):
    """{(name, frozen labels): value} of every sample."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_show_requests_latency_events_and_index_version(tmp_path):
    backend = make_backend(tmp_path / "index")
    store = EventStore(tmp_path / "events.db")
    store.insert(parse_events([
        {"event": e, "entityType": "user", "entityId": "u", "targetEntityType": "item", "targetEntityId": i}
        for e, i in [("purchase", "a"), ("view", "b"), ("view", "a")]]))
    app = App(Recommender(backend, store, QuerySettings(indicators={"purchase": 1.0})), ServeSettings(token=None))
    for _ in range(3):
        assert call(app, "POST", "/queries.json", {"user": "u", "num": 2})[0].startswith("200")
    assert call(app, "POST", "/queries.json", {"num": 0})[0].startswith("400")

    status, headers, text = call(app, "GET", "/metrics")
    assert status == "200 OK" and headers["Content-Type"].startswith("text/plain; version=")
    got = samples(text)
    pid = str(app.stats()["pid"])
    queries = {"pid": pid, "route": "/queries.json"}
    assert got[("cooccur_requests_total", frozenset({**queries, "status": "200"}.items()))] == 3
    assert got[("cooccur_requests_total", frozenset({**queries, "status": "400"}.items()))] == 1
    assert got[("cooccur_events_stored", frozenset({"action": "purchase"}.items()))] == 1
    assert got[("cooccur_events_stored", frozenset({"action": "view"}.items()))] == 2
    assert got[("cooccur_queries_timed", frozenset({"pid": pid}.items()))] == 3
    p50 = app.stats()["query_latency_ms"]["p50"]
    assert got[("cooccur_query_latency_ms", frozenset({"pid": pid, "quantile": "0.5"}.items()))] == p50
    version = backend.versions()[0].name
    assert got[("cooccur_index_version_info", frozenset({"version": version}.items()))] == 1
    assert got[("cooccur_index_documents", frozenset())] == 7
    store.close()


def test_metrics_without_an_index_version_or_store(tmp_path):
    from indexer.embedded import EmbeddedBackend

    app = App(Recommender(EmbeddedBackend(tmp_path, "items"), None), ServeSettings(token=None))
    status, _, text = call(app, "GET", "/metrics")
    names = {f.name for f in text_string_to_metric_families(text)}
    assert status == "200 OK" and "cooccur_requests" in names and "cooccur_events_stored" not in names
    assert not [k for k in samples(text) if k[0] == "cooccur_index_version_info"]
