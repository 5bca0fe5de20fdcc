"""Offline tests of the Elasticsearch backend.

The real client, its transport, the real bulk helper and the backend's error mapping run
end to end; only the network is replaced, by `Recorder`: an elastic_transport BaseNode
subclass (the client's pluggable `node_class=`) that records every request and answers
with a scripted status + body. The unreachable-cluster test uses the real urllib3 node
against a closed localhost port.
"""

from __future__ import annotations

import json
import re
import socket
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from elastic_transport import ApiResponseMeta, BaseNode, HttpHeaders
from elastic_transport._node import NodeApiResponse

from indexer.backend import IndexSchema
from indexer.documents import iter_documents, open_model, schema_for
from indexer.elasticsearch import ElasticsearchBackend
from indexer.errors import BackendUnavailable, DocumentsFailed, IndexerError
from indexer.mapping import MappingError, build_index_body, load_template
from indexer.search_server import (
    IndexState,
    SearchServerError,
    _schema_from_meta,
    _schema_to_meta,
    alias_actions,
    bulk_actions,
    prune_choices,
    version_name,
    version_time,
)
from indexer.settings import ElasticsearchSettings

NOW = datetime(2026, 11, 25, 13, 0, 0, 123456, tzinfo=UTC)
NEW = "items_20261125t130000123z"
OLD1 = "items_20261101t080000000z"
OLD2 = "items_20261110t080000000z"
URL = "http://es.test:9200"


# --------------------------------------------------------------------------- recorder
@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: Any
    headers: dict[str, str]


class Recorder:
    """Scripted answers for the client's transport, and the requests it was sent.

    Each script entry is (method, path regex, answer); answer is (status, body),
    a callable(Request) -> (status, body), or an exception to raise (e.g. a
    ConnectionError). Requests must arrive in script order."""

    def __init__(self, script: list[tuple[str, str, Any]]):
        self.script = deque(script)
        self.requests: list[Request] = []

    def node_class(self) -> type[BaseNode]:
        recorder = self

        class RecorderNode(BaseNode):
            def perform_request(self, method, target, body=None, headers=None, request_timeout=None):
                return recorder.answer(self, method, target, body, headers)

        return RecorderNode

    def answer(self, node, method, target, body, headers) -> NodeApiResponse:
        url = urlsplit(target)
        parsed: Any = None
        if body:
            text = body.decode()
            if "x-ndjson" in (headers or {}).get("content-type", ""):
                parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                parsed = json.loads(text)
        req = Request(method, url.path, dict(parse_qsl(url.query)), parsed, dict(headers or {}))
        self.requests.append(req)
        if not self.script:
            raise AssertionError(f"unexpected request {method} {target}")
        want_method, want_path, answer = self.script.popleft()
        if method != want_method or not re.fullmatch(want_path, url.path):
            raise AssertionError(f"expected {want_method} {want_path}, got {method} {target}")
        if isinstance(answer, Exception):
            raise answer
        status, resp = answer(req) if callable(answer) else answer
        meta = ApiResponseMeta(
            status=status,
            http_version="1.1",
            headers=HttpHeaders(
                {"content-type": "application/json", "x-elastic-product": "Elasticsearch"}
            ),
            duration=0.0,
            node=node.config,
        )
        return NodeApiResponse(meta, json.dumps(resp).encode())

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]


def bulk_ok(failures: dict[str, tuple[int, dict]] | None = None):
    """A _bulk answer: every action succeeds except the ids in `failures`."""
    failures = failures or {}

    def answer(req: Request):
        items = []
        lines = list(req.body)
        while lines:
            action = lines.pop(0)
            op, meta = next(iter(action.items()))
            if op != "delete":
                lines.pop(0)
            status, error = failures.get(meta["_id"], (201 if op == "index" else 200, None))
            item = {"_index": meta["_index"], "_id": meta["_id"], "status": status}
            if error:
                item["error"] = error
            items.append({op: item})
        return 200, {"took": 1, "errors": bool(failures), "items": items}

    return answer


def es_error(status: int, etype: str, reason: str) -> tuple[int, dict]:
    return status, {
        "error": {"root_cause": [{"type": etype, "reason": reason}], "type": etype, "reason": reason},
        "status": status,
    }


def index_listing(*indices: tuple[str, bool, bool]) -> tuple[int, dict]:
    """GET /items_* answer: (name, has alias, complete)."""
    return 200, {
        name: {
            "aliases": {"items": {}} if aliased else {},
            "mappings": {"_meta": {"cooccur": {"complete": complete}}},
            "settings": {"index": {"number_of_shards": "1"}},
        }
        for name, aliased, complete in indices
    }


def settings(**kw) -> ElasticsearchSettings:
    base = dict(urls=[URL], api_key=None, chunk_size=2, max_retries=2,
                initial_backoff=0.5, max_backoff=0.75, request_timeout=5.0)
    base.update(kw)
    return ElasticsearchSettings(**base)


def backend(rec: Recorder, keep: int = 2, **kw) -> ElasticsearchBackend:
    return ElasticsearchBackend(
        "items", settings(**kw), keep, client_options={"node_class": rec.node_class()},
        clock=lambda: NOW,
    )


SCHEMA = IndexSchema(
    keyword_fields=("purchase", "view", "category"),
    date_fields=("availableDate",),
    number_fields=("popular", "trending", "hot"),
)
DOCS = [
    {"id": "a", "purchase": ["b", "c"], "popular": 3.0},
    {"id": "b", "purchase": ["a"], "category": ["x"]},
    {"id": "c", "view": ["a"], "availableDate": "2026-01-01T00:00:00Z"},
]


# --------------------------------------------------------------------------- mapping
def test_mapping_and_settings_for_a_small_schema():
    body = build_index_body(SCHEMA, settings(shards=1, replicas=0))
    assert body == {
        "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "id": {"type": "keyword", "doc_values": True},
                "purchase": {"type": "keyword", "doc_values": False},
                "view": {"type": "keyword", "doc_values": False},
                "category": {"type": "keyword", "doc_values": False},
                "availableDate": {"type": "date"},
                "popular": {"type": "float", "doc_values": True},
                "trending": {"type": "float", "doc_values": True},
                "hot": {"type": "float", "doc_values": True},
            },
        },
    }
    # BM25 stays Elasticsearch's default: nothing configures a similarity.
    assert "similarity" not in json.dumps(body)


def test_mapping_meta_and_shards_from_settings():
    body = build_index_body(IndexSchema(("purchase",)), settings(shards=3, replicas=2), meta={"x": 1})
    assert body["settings"]["index"] == {"number_of_shards": 3, "number_of_replicas": 2}
    assert body["mappings"]["_meta"] == {"x": 1}
    assert set(body["mappings"]["properties"]) == {"id", "purchase"}


@pytest.mark.parametrize(
    "schema, problem",
    [
        (IndexSchema(("_source",)), "not allowed"),
        (IndexSchema(("category",), date_fields=("category",)), "also in keyword_fields"),
        (IndexSchema(("id",)), "also in id"),
    ],
)
def test_mapping_rejects_bad_field_names(schema, problem):
    with pytest.raises(MappingError, match=problem):
        build_index_body(schema, settings())


def test_mapping_of_rank_features_fields():
    schema = IndexSchema(("purchase",), number_fields=("prior",), feature_fields=("purchase_w", "view_w"))
    props = build_index_body(schema, settings())["mappings"]["properties"]
    assert props == {
        "id": {"type": "keyword", "doc_values": True},
        "purchase": {"type": "keyword", "doc_values": False},
        "prior": {"type": "float", "doc_values": True},
        "purchase_w": {"type": "rank_features"},
        "view_w": {"type": "rank_features"},
    }
    # without feature fields, the template adds nothing
    assert "rank_features" not in json.dumps(build_index_body(SCHEMA, settings()))
    with pytest.raises(MappingError, match="also in keyword_fields"):
        build_index_body(IndexSchema(("purchase",), feature_fields=("purchase",)), settings())
    tpl = load_template()
    del tpl["mappings"]["properties"]["{{feature_fields}}"]
    with pytest.raises(MappingError, match=r"no \{\{feature_fields\}\} template for fields \['purchase_w', 'view_w'\]"):
        build_index_body(schema, settings(), tpl)
    build_index_body(IndexSchema(("purchase",)), settings(), tpl)  # not needed without feature fields


def test_mapping_meta_schema_with_feature_fields():
    schema = IndexSchema(("purchase",), number_fields=("prior",), feature_fields=("purchase_w",))
    assert _schema_from_meta(_schema_to_meta(schema)) == schema
    # indices written before feature fields existed: the same _meta as then, read back without any
    assert _schema_to_meta(SCHEMA) == {"keyword_fields": ["purchase", "view", "category"],
                                       "date_fields": ["availableDate"],
                                       "number_fields": ["popular", "trending", "hot"]}
    assert _schema_from_meta(_schema_to_meta(SCHEMA)) == SCHEMA


def test_mapping_template_errors(tmp_path):
    tpl = load_template()
    tpl["mappings"]["properties"]["{{nonsense}}"] = {"type": "keyword"}
    with pytest.raises(MappingError, match="unknown placeholder"):
        build_index_body(SCHEMA, settings(), tpl)
    bad = tmp_path / "m.json"
    bad.write_text('{"mappings": {\n  "dynamic": strict}}')
    with pytest.raises(MappingError, match=r"m.json:2"):
        load_template(bad)


# --------------------------------------------------------------------------- documents -> actions
def write_model(root) -> None:
    """A tiny model dir (docs/model-format.md): item d appears only in properties, e only
    in rankings."""
    (root / "indicators").mkdir(parents=True)
    (root / "rankings").mkdir()
    (root / "properties").mkdir()
    pq.write_table(pa.table({
        "indicator": ["purchase", "purchase", "view"],
        "item": ["a", "b", "a"],
        "correlators": [["b", "c"], ["a"], ["c"]],
        "scores": [[2.5, 1.0], [2.5], [0.7]],
    }), root / "indicators" / "part-0.parquet")
    pq.write_table(pa.table({
        "item": ["a", "e"], "popular": [3.0, 1.0], "trending": [1.0, 0.0], "hot": [0.0, -1.0],
    }), root / "rankings" / "part-0.parquet")
    pq.write_table(pa.table({
        "item": ["a", "d", "d"],
        "name": ["category", "category", "availableDate"],
        "values": [["x", "y"], ["z"], ["2026-01-02T00:00:00Z"]],
    }), root / "properties" / "part-0.parquet")
    (root / "manifest.json").write_text(json.dumps({
        "format": "cooccur-model/1", "primary": "purchase",
        "indicators": ["purchase", "view"], "properties": ["category", "availableDate"],
    }))


def test_bulk_actions_for_a_small_model(tmp_path):
    write_model(tmp_path)
    model = open_model(tmp_path)
    schema = schema_for(model, ("availableDate",))
    actions = list(bulk_actions("items_v", iter_documents(model, schema)))
    zero = {"popular": 0.0, "trending": 0.0, "hot": 0.0}
    # correlator weights (LLR) as rank_features; prior = max(popular, 1) ** 0.5
    assert actions == [
        {"_op_type": "index", "_index": "items_v", "_id": "a", "_source": {
            "id": "a", "purchase": ["b", "c"], "purchase_w": {"b": 2.5, "c": 1.0}, "view": ["c"],
            "view_w": {"c": 0.7}, "category": ["x", "y"], "popular": 3.0, "trending": 1.0, "hot": 0.0,
            "prior": pytest.approx(3 ** 0.5)}},
        {"_op_type": "index", "_index": "items_v", "_id": "b", "_source": {
            "id": "b", "purchase": ["a"], "purchase_w": {"a": 2.5}, "prior": 1.0}},
        {"_op_type": "index", "_index": "items_v", "_id": "d", "_source": {
            "id": "d", "category": ["z"], "availableDate": "2026-01-02T00:00:00Z", "prior": 1.0}},
        {"_op_type": "index", "_index": "items_v", "_id": "e", "_source": {
            "id": "e", **zero, "popular": 1.0, "hot": -1.0, "prior": 1.0}},
    ]
    # Every field of every document is in the strict mapping.
    props = build_index_body(schema, settings())["mappings"]["properties"]
    assert all(set(a["_source"]) <= set(props) for a in actions)


def test_bulk_actions_reject_documents_without_id():
    with pytest.raises(IndexerError, match="#2 has no string id"):
        list(bulk_actions("i", [{"id": "a"}, {"purchase": ["a"]}]))


# --------------------------------------------------------------------------- pure choices
def test_version_names_sort_by_time_and_parse_back():
    assert version_name("items", NOW) == NEW
    assert version_time("items", NEW) == NOW.replace(microsecond=123000)
    assert version_time("items", "items_foo_20261125t130000123z") is None
    assert version_time("items_foo", "items_foo_20261125t130000123z") is not None
    later = version_name("items", datetime(2026, 11, 25, 13, 0, 1, tzinfo=UTC))
    assert sorted([later, NEW]) == [NEW, later]


def test_alias_actions_remove_old_and_add_new_in_one_request():
    assert alias_actions("items", [OLD2, OLD1], NEW) == [
        {"remove": {"index": OLD1, "alias": "items"}},
        {"remove": {"index": OLD2, "alias": "items"}},
        {"add": {"index": NEW, "alias": "items"}},
    ]
    assert alias_actions("items", [], NEW) == [{"add": {"index": NEW, "alias": "items"}}]


def test_prune_choices():
    v = [f"items_2026110{d}t000000000z" for d in range(1, 7)]
    states = [IndexState(v[0], False, True), IndexState(v[1], False, False),
              IndexState(v[2], False, True), IndexState(v[3], False, True),
              IndexState(v[4], True, True), IndexState(v[5], False, False)]
    # keep 3 = current v4 + the two newest complete older ones (v3, v2); the incomplete
    # leftover v1 goes; v5 is newer than current (maybe a running indexer): untouched.
    assert prune_choices(states, v[4], 3) == [v[0], v[1]]
    assert prune_choices(states, v[4], 1) == [v[0], v[1], v[2], v[3]]
    assert prune_choices(states, v[4], 10) == [v[1]]


# --------------------------------------------------------------------------- create_version
def test_happy_path_exact_request_sequence():
    progress: list[int] = []
    rec = Recorder([
        ("PUT", f"/{NEW}", (200, {"acknowledged": True, "index": NEW})),
        ("PUT", "/_bulk", bulk_ok()),
        ("PUT", "/_bulk", bulk_ok()),
        ("POST", f"/{NEW}/_refresh", (200, {"_shards": {"total": 1, "successful": 1, "failed": 0}})),
        ("POST", f"/{NEW}/_count", (200, {"count": 3})),
        ("PUT", f"/{NEW}/_mapping", (200, {"acknowledged": True})),
        ("GET", "/items_\\*", index_listing((OLD1, False, True), (OLD2, True, True), (NEW, False, True))),
        ("POST", "/_aliases", (200, {"acknowledged": True})),
        ("GET", "/items_\\*", index_listing((OLD1, False, True), (OLD2, False, True), (NEW, True, True))),
        ("DELETE", f"/{OLD1}", (200, {"acknowledged": True})),
    ])
    report = backend(rec).create_version(SCHEMA, iter(DOCS), progress=progress.append)

    assert rec.calls() == [
        ("PUT", f"/{NEW}"), ("PUT", "/_bulk"), ("PUT", "/_bulk"), ("POST", f"/{NEW}/_refresh"),
        ("POST", f"/{NEW}/_count"), ("PUT", f"/{NEW}/_mapping"), ("GET", "/items_*"),
        ("POST", "/_aliases"), ("GET", "/items_*"), ("DELETE", f"/{OLD1}"),
    ]
    create = rec.requests[0].body
    assert create["settings"] == {"index": {"number_of_shards": 1, "number_of_replicas": 1}}
    assert create["mappings"]["dynamic"] == "strict"
    assert create["mappings"]["_meta"]["cooccur"]["complete"] is False
    # chunk_size 2: documents a, b then c; action line + source line each.
    assert rec.requests[1].body == [
        {"index": {"_index": NEW, "_id": "a"}}, DOCS[0], {"index": {"_index": NEW, "_id": "b"}}, DOCS[1],
    ]
    assert rec.requests[2].body == [{"index": {"_index": NEW, "_id": "c"}}, DOCS[2]]
    assert rec.requests[5].body["_meta"]["cooccur"] == {
        "alias": "items", "created": "2026-11-25T13:00:00.123456Z", "complete": True, "documents": 3,
        "schema": _schema_to_meta(SCHEMA),  # recorded without a model_id too: serving reads it
    }
    assert rec.requests[7].body == {"actions": [
        {"remove": {"index": OLD2, "alias": "items"}}, {"add": {"index": NEW, "alias": "items"}},
    ]}
    assert progress == [1, 1, 1]
    assert (report.version, report.documents, report.failed, report.removed_versions) == (NEW, 3, [], [OLD1])
    # One client for 8.x and 9.x servers: REST compatibility pinned to 8.
    assert rec.requests[0].headers["accept"] == "application/vnd.elasticsearch+json; compatible-with=8"
    assert rec.requests[1].headers["content-type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=8"


def test_mapping_rejected_leaves_alias_untouched():
    rec = Recorder([
        ("PUT", f"/{NEW}",
         es_error(400, "mapper_parsing_exception", "Failed to parse mapping: unknown parameter [doc_valuez]")),
    ])
    with pytest.raises(SearchServerError) as err:
        backend(rec).create_version(SCHEMA, iter(DOCS))
    assert err.value.status == 400
    assert "unknown parameter [doc_valuez]" in str(err.value)
    assert "mappings/items.json" in err.value.hint
    # The index was never created: no bulk, no alias change, nothing to delete.
    assert rec.calls() == [("PUT", f"/{NEW}")]


def test_failed_documents_are_listed_and_the_new_index_deleted():
    strict = {"type": "strict_dynamic_mapping_exception",
              "reason": "mapping set to strict, dynamic introduction of [colour] within [_doc] is not allowed"}
    rec = Recorder([
        ("PUT", f"/{NEW}", (200, {"acknowledged": True})),
        ("PUT", "/_bulk", bulk_ok({"b": (400, strict)})),
        ("PUT", "/_bulk", bulk_ok()),
        ("DELETE", f"/{NEW}", (200, {"acknowledged": True})),
    ])
    with pytest.raises(DocumentsFailed) as err:
        backend(rec).create_version(SCHEMA, iter(DOCS))
    assert err.value.total == 3
    assert err.value.failed == [("b", "strict_dynamic_mapping_exception: " + strict["reason"])]
    assert "1 of 3 documents failed (b: strict_dynamic" in str(err.value)
    assert ("POST", "/_aliases") not in rec.calls()
    assert rec.calls()[-1] == ("DELETE", f"/{NEW}")


def test_429_and_503_are_retried_with_backoff(sleeps):
    rejected = {"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}
    rec = Recorder([
        ("PUT", f"/{NEW}", (200, {"acknowledged": True})),
        ("PUT", "/_bulk", es_error(503, "unavailable_shards_exception", "primary shard is not active")),
        ("PUT", "/_bulk", bulk_ok({"b": (429, rejected)})),
        ("PUT", "/_bulk", bulk_ok()),
        ("PUT", "/_bulk", bulk_ok()),
        ("POST", f"/{NEW}/_refresh", (200, {})),
        ("POST", f"/{NEW}/_count", (200, {"count": 3})),
        ("PUT", f"/{NEW}/_mapping", (200, {"acknowledged": True})),
        ("GET", "/items_\\*", index_listing((NEW, False, True))),
        ("POST", "/_aliases", (200, {"acknowledged": True})),
        ("GET", "/items_\\*", index_listing((NEW, True, True))),
    ])
    report = backend(rec).create_version(SCHEMA, iter(DOCS))
    assert report.documents == 3 and report.failed == []
    # Whole chunk re-sent after the 503, then only the rejected document b.
    assert [len(r.body) for r in rec.requests[1:5]] == [4, 4, 2, 2]
    assert rec.requests[3].body == [{"index": {"_index": NEW, "_id": "b"}}, DOCS[1]]
    # initial_backoff 0.5, doubled, capped at max_backoff 0.75.
    assert sleeps == [0.5, 0.75]


def test_retries_exhausted_fail_and_delete_the_new_index(sleeps):
    rec = Recorder([
        ("PUT", f"/{NEW}", (200, {"acknowledged": True})),
        *[("PUT", "/_bulk", es_error(429, "es_rejected_execution_exception", "queue full"))] * 3,
        ("DELETE", f"/{NEW}", (200, {"acknowledged": True})),
    ])
    with pytest.raises(SearchServerError) as err:
        backend(rec).create_version(SCHEMA, iter(DOCS))
    assert err.value.status == 429 and "overloaded" in err.value.hint
    assert sleeps == [0.5, 0.75]
    assert rec.calls()[-1] == ("DELETE", f"/{NEW}") and ("POST", "/_aliases") not in rec.calls()


def test_count_mismatch_keeps_the_previous_version():
    rec = Recorder([
        ("PUT", f"/{NEW}", (200, {"acknowledged": True})),
        ("PUT", "/_bulk", bulk_ok()),
        ("POST", f"/{NEW}/_refresh", (200, {})),
        ("POST", f"/{NEW}/_count", (200, {"count": 1})),
        ("DELETE", f"/{NEW}", (200, {"acknowledged": True})),
    ])
    docs = [{"id": "a"}, {"id": "a"}]
    with pytest.raises(IndexerError, match="holds 1 documents but 2 were written"):
        backend(rec).create_version(SCHEMA, iter(docs))
    assert ("POST", "/_aliases") not in rec.calls()


def test_model_error_mid_stream_deletes_the_new_index():
    def documents():
        yield from DOCS  # the first chunk (a, b) is sent once c arrives
        raise IndexerError("model.parquet: truncated file")

    rec = Recorder([
        ("PUT", f"/{NEW}", (200, {"acknowledged": True})),
        ("PUT", "/_bulk", bulk_ok()),
        ("DELETE", f"/{NEW}", (200, {"acknowledged": True})),
    ])
    with pytest.raises(IndexerError, match="truncated file"):
        backend(rec).create_version(SCHEMA, documents())
    assert rec.calls() == [("PUT", f"/{NEW}"), ("PUT", "/_bulk"), ("DELETE", f"/{NEW}")]


def test_unreachable_cluster_names_the_url(sleeps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"  # closed: connection refused, through the real urllib3 node
    b = ElasticsearchBackend("items", settings(urls=[url], max_retries=1, initial_backoff=0.01, max_backoff=0.01), 2)
    with pytest.raises(BackendUnavailable) as err:
        b.create_version(SCHEMA, iter(DOCS))
    assert url in str(err.value) and "create index" in str(err.value)
    assert "COOCCUR_ES_URL" in err.value.hint
    checks = list(b.checks())
    assert [c.ok for c in checks] == [False] and url in checks[0].detail


def test_authentication_error_has_a_hint():
    rec = Recorder([("PUT", f"/{NEW}", es_error(401, "security_exception", "missing authentication credentials"))])
    with pytest.raises(SearchServerError) as err:
        backend(rec).create_version(SCHEMA, iter(DOCS))
    assert err.value.status == 401 and "COOCCUR_ES_API_KEY" in err.value.hint


def test_api_key_and_basic_auth_headers():
    rec = Recorder([("GET", "/", (200, {"version": {"number": "8.15.0"}, "cluster_name": "c"}))] * 2)
    backend(rec, api_key="c2VjcmV0").client.info()
    assert rec.requests[0].headers["authorization"] == "ApiKey c2VjcmV0"
    backend(rec, username="u", password="p").client.info()
    assert rec.requests[1].headers["authorization"] == "Basic dTpw"


# --------------------------------------------------------------------------- read side
def test_search_passes_the_body_and_maps_hits():
    body = {"query": {"bool": {"should": [{"term": {"purchase": "a"}}]}}, "size": 2,
            "sort": [{"_score": "desc"}, {"id": "asc"}]}
    hits = {"_shards": {"total": 1}, "hits": {"hits": [
        {"_index": OLD2, "_id": "b", "_score": 1.5, "_source": {"id": "b"}},
        {"_index": OLD2, "_id": "c", "_score": 0.5},
    ]}}
    rec = Recorder([("POST", "/items/_search", (200, hits))])
    result = backend(rec).search(body)
    assert rec.requests[0].body == body and "search_type" not in rec.requests[0].params
    assert result.version == OLD2
    assert [(h.id, h.score, h.source) for h in result.hits] == [("b", 1.5, {"id": "b"}), ("c", 0.5, None)]


def test_search_uses_dfs_with_several_shards():
    empty = {"_shards": {"total": 2}, "hits": {"hits": []}}
    rec = Recorder([
        ("POST", "/items/_search", (200, empty)),
        ("GET", "/items_\\*", index_listing((NEW, True, True))),
    ])
    assert backend(rec, shards=2).search({"query": {"match_all": {}}}).version == NEW
    assert rec.requests[0].params["search_type"] == "dfs_query_then_fetch"
    # Configured with one shard but the index has two: learnt from the answer, re-run with dfs.
    search, listing = ("POST", "/items/_search", (200, empty)), ("GET", "/items_\\*", index_listing((NEW, True, True)))
    rec = Recorder([search, search, listing, search, listing])
    b = backend(rec, shards=1)
    b.search({"size": 1})
    b.search({"size": 1})
    assert [r.params.get("search_type") for r in rec.requests if r.path.endswith("_search")] == [
        None, "dfs_query_then_fetch", "dfs_query_then_fetch"]


def test_search_without_an_index_is_backend_unavailable():
    rec = Recorder([("POST", "/items/_search", es_error(404, "index_not_found_exception", "no such index [items]"))])
    with pytest.raises(BackendUnavailable, match=r"no such index \[items\]") as err:
        backend(rec).search({"size": 1})
    assert URL in str(err.value) and "cooccur index" in err.value.hint


def test_get_upsert_delete():
    rec = Recorder([
        ("POST", "/items/_mget", (200, {"docs": [{"_id": "a", "found": True, "_source": {"id": "a"}},
                                                  {"_id": "zz", "found": False}]})),
        ("PUT", "/_bulk", bulk_ok()),
        ("PUT", "/_bulk", bulk_ok({"zz": (404, None)})),
    ])
    b = backend(rec)
    assert b.get(["a", "zz", "a"]) == {"a": {"id": "a"}}
    assert rec.requests[0].body == {"ids": ["a", "zz"]}
    b.upsert([{"id": "n", "category": ["x"]}])
    assert rec.requests[1].params == {"refresh": "wait_for"}
    assert rec.requests[1].body == [{"index": {"_index": "items", "_id": "n"}}, {"id": "n", "category": ["x"]}]
    b.delete(["a", "zz"])  # zz does not exist: not an error
    assert rec.requests[2].body == [{"delete": {"_index": "items", "_id": "a"}},
                                    {"delete": {"_index": "items", "_id": "zz"}}]
    assert b.get([]) == {} and len(rec.requests) == 3


def test_versions_and_rollback():
    listing = index_listing((OLD1, False, False), (OLD2, False, True), (NEW, True, True))
    stats = {"indices": {n: {"primaries": {"docs": {"count": c}}} for n, c in ((OLD1, 5), (OLD2, 7), (NEW, 9))}}
    rec = Recorder([
        ("GET", "/items_\\*", listing),
        ("GET", f"/{OLD1},{OLD2},{NEW}/_stats/docs", (200, stats)),
        ("GET", "/items_\\*", listing),
        ("POST", "/_aliases", (200, {"acknowledged": True})),
        ("POST", f"/{OLD2}/_count", (200, {"count": 7})),
        ("GET", "/items_\\*", index_listing((OLD1, False, False), (OLD2, True, True), (NEW, False, True))),
    ])
    b = backend(rec)
    vs = b.versions()
    assert [(v.name, v.documents, v.current) for v in vs] == [(OLD1, 5, False), (OLD2, 7, False), (NEW, 9, True)]
    assert vs[2].created == "2026-11-25T13:00:00.123000Z"
    back = b.rollback()
    assert (back.name, back.documents, back.current) == (OLD2, 7, True)
    assert rec.requests[3].body == {"actions": [
        {"remove": {"index": NEW, "alias": "items"}}, {"add": {"index": OLD2, "alias": "items"}}]}
    # OLD1 is incomplete (a killed run): never a rollback target.
    with pytest.raises(IndexerError, match="no earlier complete version"):
        b.rollback()


def test_checks():
    info = {"version": {"number": "9.1.2"}, "cluster_name": "prod"}
    rec = Recorder([
        ("GET", "/", (200, info)),
        ("GET", "/items_\\*", index_listing((OLD2, False, True), (NEW, True, True))),
        ("POST", f"/{NEW}/_count", (200, {"count": 9})),
        ("GET", "/", (200, info)),
        ("GET", "/items_\\*", (200, {})),
        ("GET", "/", (200, {"version": {"number": "7.17.0"}})),
    ])
    b = backend(rec)
    ok = list(b.checks())
    assert [c.ok for c in ok] == [True, True]
    assert "Elasticsearch 9.1.2" in ok[0].detail
    assert ok[1].detail == f"alias items -> {NEW} (9 documents; 2 versions kept)"
    missing = list(b.checks())
    assert [c.ok for c in missing] == [True, False] and "cooccur index" in missing[1].hint
    old = list(b.checks())
    assert [c.ok for c in old] == [False] and "8.x and 9.x" in old[0].hint


def test_bad_alias_and_url():
    with pytest.raises(IndexerError, match="not a valid Elasticsearch alias"):
        ElasticsearchBackend("Items*", settings(), 2)
    with pytest.raises(IndexerError, match=r"\[index.elasticsearch\]"):
        ElasticsearchBackend("items", settings(urls=["es.test:9200:x"]), 2)
