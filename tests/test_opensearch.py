"""indexer/opensearch.py without a server: opensearch-py's pluggable `connection_class`
records every request and answers from a script of (method, path regex, (status, body)).
The live node's tests are tests/test_search_live.py; the code both products share is
tested through the Elasticsearch client in tests/test_elasticsearch.py."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from opensearchpy import Connection, ConnectionError, ConnectionTimeout, SSLError, TransportError

from indexer.backend import IndexSchema
from indexer.errors import BackendUnavailable, DocumentsFailed, IndexerError
from indexer.opensearch import OpenSearchBackend, translate_error
from indexer.search_server import SearchServerError
from indexer.settings import OpenSearchSettings

URL = "http://os.test:9200"
NOW = datetime(2026, 11, 25, 13, 0, 0, 123000, tzinfo=UTC)
NEW = "items_20261125t130000123z"
SCHEMA = IndexSchema(keyword_fields=("purchase",), number_fields=("prior",))
DOCS = [{"id": "a", "purchase": ["b"], "prior": 2.0}, {"id": "b", "purchase": ["a"]}]


def recorder(script: list[tuple[str, str, tuple[int, Any]]]):
    """A connection class answering the script in order; `calls` records (method, path, body)."""
    calls: list[tuple[str, str, Any]] = []

    class Recorder(Connection):
        def perform_request(self, method, url, params=None, body=None, timeout=None, ignore=(), headers=None):
            path = url.split("?")[0]
            if isinstance(body, bytes):
                body = body.decode()
            parsed = [json.loads(line) for line in body.splitlines()] if body else None
            calls.append((method, path, parsed[0] if parsed and len(parsed) == 1 else parsed))
            want_method, pattern, (status, answer) = script.pop(0)
            assert (method, re.fullmatch(pattern, path) is not None) == (want_method, True), (method, path)
            raw = json.dumps(answer)
            if not 200 <= status < 300 and status not in ignore:
                self._raise_error(status, raw, "application/json")
            return status, {"content-type": "application/json"}, raw

    return Recorder, calls


def backend(connection_class, **settings) -> OpenSearchBackend:
    return OpenSearchBackend("items", OpenSearchSettings(urls=[URL], chunk_size=10, max_retries=0, **settings), 2,
                             client_options={"connection_class": connection_class}, clock=lambda: NOW)


def info(number: str) -> tuple[int, dict]:
    return 200, {"version": {"distribution": "opensearch", "number": number}, "cluster_name": "c1"}


def bulk_ok(n: int) -> tuple[int, dict]:
    return 200, {"errors": False, "items": [{"index": {"_id": d["id"], "status": 201}} for d in DOCS[:n]]}


def create_script(number: str) -> list:
    listing = {NEW: {"aliases": {}, "mappings": {"_meta": {"cooccur": {"complete": True}}}}}
    return [
        ("GET", "/", info(number)),
        ("PUT", f"/{NEW}", (200, {"acknowledged": True})),
        ("POST", "/_bulk", bulk_ok(2)),
        ("POST", f"/{NEW}/_refresh", (200, {})),
        ("POST", f"/{NEW}/_count", (200, {"count": 2})),
        ("PUT", f"/{NEW}/_mapping", (200, {"acknowledged": True})),
        ("GET", "/items_\\*", (200, listing)),
        ("POST", "/_aliases", (200, {"acknowledged": True})),
        ("GET", "/items_\\*", (200, listing)),
    ]


def test_create_version_request_sequence_and_bodies():
    conn, calls = recorder(create_script("2.19.6"))
    report = backend(conn).create_version(SCHEMA, DOCS, model_id="m1")
    assert (report.version, report.documents) == (NEW, 2)
    assert [(m, p) for m, p, _ in calls] == [(m, p.replace("\\", "")) for m, p, _ in create_script("2.19.6")]
    create = calls[1][2]
    assert create["settings"] == {"index": {"number_of_shards": 1, "number_of_replicas": 1}}
    assert create["mappings"]["properties"]["purchase"] == {"type": "keyword", "doc_values": False}
    assert calls[2][2] == [{"index": {"_index": NEW, "_id": "a"}}, DOCS[0],
                           {"index": {"_index": NEW, "_id": "b"}}, DOCS[1]]
    meta = calls[5][2]["_meta"]["cooccur"]
    assert (meta["complete"], meta["documents"], meta["model_id"]) == (True, 2, "m1")
    assert calls[7][2] == {"actions": [{"add": {"index": NEW, "alias": "items"}}]}


def test_opensearch_3_indices_score_as_before():
    """3.0 made BM25Similarity the default and keyword `term` queries constant-score: new
    indices name LegacyBM25 and set use_similarity on keyword fields, as 2.x scored."""
    conn, calls = recorder(create_script("3.1.0"))
    backend(conn).create_version(SCHEMA, DOCS)
    create = calls[1][2]
    assert create["settings"]["index"] == {
        "number_of_shards": 1, "number_of_replicas": 1, "similarity": {"default": {"type": "LegacyBM25"}}}
    assert create["mappings"]["properties"]["purchase"] == {
        "use_similarity": True, "type": "keyword", "doc_values": False}
    assert create["mappings"]["properties"]["prior"] == {"type": "float", "doc_values": True}


def test_refused_documents_are_listed_and_the_new_index_deleted():
    failed = {"errors": True, "items": [
        {"index": {"_id": "a", "status": 201}},
        {"index": {"_id": "b", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad prior"}}},
    ]}
    conn, calls = recorder([("GET", "/", info("2.19.6")), ("PUT", f"/{NEW}", (200, {})),
                            ("POST", "/_bulk", (200, failed)), ("DELETE", f"/{NEW}", (200, {}))])
    with pytest.raises(DocumentsFailed) as err:
        backend(conn).create_version(SCHEMA, DOCS)
    assert err.value.failed == [("b", "mapper_parsing_exception: bad prior")]
    assert calls[-1][:2] == ("DELETE", f"/{NEW}")


def test_mapping_refusal_names_product_action_and_hint():
    error = {"error": {"type": "mapper_parsing_exception", "reason": "No handler for type [rank_features]"},
             "status": 400}
    conn, _ = recorder([("GET", "/", info("2.19.6")), ("PUT", f"/{NEW}", (400, error))])
    with pytest.raises(SearchServerError) as err:
        backend(conn).create_version(SCHEMA, DOCS)
    assert str(err.value) == (f"OpenSearch refused to create index {NEW}: 400 mapper_parsing_exception: "
                              "No handler for type [rank_features]")
    assert "[index.opensearch]" in err.value.hint


@pytest.mark.parametrize(("exc", "message", "hint"), [
    (ConnectionError("N/A", "refused", None), "cannot reach OpenSearch at http://os.test:9200 (search items)",
     "COOCCUR_OPENSEARCH_URL"),
    (ConnectionTimeout("TIMEOUT", "timed out", None), "OpenSearch at http://os.test:9200 did not answer in time",
     "[index.opensearch] request_timeout"),
    (SSLError("N/A", "bad certificate", None), "TLS connection to OpenSearch at http://os.test:9200 failed",
     "[index.opensearch] ca_certs"),
])
def test_transport_failures(exc, message, hint):
    err = translate_error(exc, "search items", [URL])
    assert isinstance(err, BackendUnavailable)
    assert str(err).startswith(message) and hint in err.hint


def test_missing_index_is_backend_unavailable():
    body = {"error": {"type": "index_not_found_exception", "reason": "no such index [items]"}, "status": 404}
    err = translate_error(TransportError(404, "index_not_found_exception", body), "search items", [URL])
    assert isinstance(err, BackendUnavailable)
    assert str(err) == "OpenSearch at http://os.test:9200 (search items): no such index [items]"
    assert "cooccur index" in err.hint


def test_checks_name_product_and_version():
    listing = {NEW: {"aliases": {"items": {}}, "mappings": {}}}
    conn, _ = recorder([("GET", "/", info("2.19.6")), ("GET", "/items_\\*", (200, listing)),
                        ("POST", f"/{NEW}/_count", (200, {"count": 7}))])
    checks = list(backend(conn).checks())
    assert [c.ok for c in checks] == [True, True]
    assert checks[0].name == "opensearch"
    assert checks[0].detail.startswith(f"{URL}: OpenSearch 2.19.6 (cluster c1, client ")
    assert checks[1].detail == f"alias items -> {NEW} (7 documents; 1 versions kept)"


def test_unsupported_major_fails_the_check():
    conn, _ = recorder([("GET", "/", info("7.10.2"))])
    checks = list(backend(conn).checks())
    assert [c.ok for c in checks] == [False] and checks[0].hint == "cooccur supports OpenSearch 1.x, 2.x and 3.x"


def test_api_key_is_refused():
    with pytest.raises(IndexerError, match="OpenSearch has no API keys"):
        backend(Connection, api_key="abc")


def test_a_forked_process_does_not_share_the_parents_connections():
    """A keep-alive connection shared by two processes mixes their responses (`cooccur
    serve`'s forked workers did): after a fork the child connects anew, the parent keeps its
    own connection. A local HTTP/1.1 server tells the connections apart by client port."""
    import http.server
    import os
    import threading

    ports: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_GET(self):
            ports.append(self.client_address[1])
            raw = json.dumps(info("2.19.6")[1]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        b = OpenSearchBackend("items", OpenSearchSettings(urls=[f"http://127.0.0.1:{server.server_port}"],
                                                          max_retries=0), 2)
        b.client.info()
        b._info()  # the never-retrying client (_once) has a connection too
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: both clients through new connections
            try:
                b.client.info()
                b._info()
                os.write(write, b"ok")
            finally:
                os._exit(0)
        os.close(write)
        assert os.read(read, 2) == b"ok"
        os.waitpid(pid, 0)
        b.client.info()
        b._info()
    finally:
        server.shutdown()
    parent, child, again = ports[:2], ports[2:4], ports[4:]
    assert not set(child) & set(parent), ports
    assert again == parent, ports  # the parent's keep-alive connections are still its own
