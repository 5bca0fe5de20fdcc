"""The Elasticsearch backend against a real cluster (COOCCUR_ES_URL; skipped without one).

Each test uses its own alias (`cooccur_test_<random>`) and deletes its indices afterwards.
Search parity: the same documents and the same generated queries give the same ids in the
same order, with scores within 1e-5 relative, on Elasticsearch and the embedded backend.
"""

from __future__ import annotations

import random
import uuid

import pytest

from indexer.backend import IndexSchema
from indexer.elasticsearch import ElasticsearchBackend
from indexer.errors import DocumentsFailed
from indexer.settings import ElasticsearchSettings

pytestmark = pytest.mark.elasticsearch

SCHEMA = IndexSchema(
    keyword_fields=("purchase", "view", "category"),
    date_fields=("availableDate",),
    number_fields=("popular", "trending", "hot"),
)


def make_docs(n: int = 80, seed: int = 7) -> list[dict]:
    """Generated item documents (ids in order, as both backends index them)."""
    rng = random.Random(seed)
    items = [f"i{k:03d}" for k in range(n)]
    docs = []
    for item in items:
        d: dict = {"id": item}
        for field, maxlen in (("purchase", 8), ("view", 12)):
            if rng.random() < 0.85:
                d[field] = rng.sample(items, rng.randint(1, maxlen))
        if rng.random() < 0.9:
            d["category"] = rng.sample(["books", "music", "film", "games", "toys"], rng.randint(1, 2))
        if rng.random() < 0.5:
            d["availableDate"] = f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T00:00:00Z"
        d["popular"] = float(rng.randint(0, 50))
        d["trending"] = float(rng.randint(-5, 5))
        d["hot"] = float(rng.randint(-3, 3))
        docs.append(d)
    return docs


def make_queries(docs: list[dict], n: int = 60, seed: int = 11) -> list[dict]:
    """Queries of the design's shapes: should terms per (field, history item) with boosts,
    category boosts, filters, must_not ids, date / number ranges, score-then-id sort."""
    rng = random.Random(seed)
    ids = [d["id"] for d in docs]
    queries = []
    for _ in range(n):
        history = rng.sample(ids, rng.randint(1, 10))
        should: list[dict] = [
            {"term": {field: {"value": h, "boost": boost}}}
            for field, boost in (("purchase", 1.0), ("view", rng.choice([0.5, 1.0, 2.0])))
            for h in history
        ]
        if rng.random() < 0.4:
            should.append({"terms": {"category": ["books", "film"], "boost": 1.5}})
        body: dict = {
            "query": {"bool": {"should": should, "must_not": [{"ids": {"values": history}}]}},
            "size": 20,
            "sort": [{"_score": {"order": "desc"}}, {"id": {"order": "asc"}}],
        }
        if rng.random() < 0.3:
            body["query"]["bool"]["filter"] = [{"terms": {"category": [rng.choice(["music", "games"])]}}]
        if rng.random() < 0.3:
            body["query"]["bool"].setdefault("filter", []).append(
                {"range": {"availableDate": {"lte": "2026-06-01T00:00:00Z"}}})
        if rng.random() < 0.2:
            body["query"]["bool"]["must"] = [{"range": {"popular": {"gte": 10}}}]
        queries.append(body)
    return queries


@pytest.fixture
def es(es_url):
    """A backend on its own alias; its indices are deleted afterwards."""
    alias = f"cooccur_test_{uuid.uuid4().hex[:8]}"
    settings = ElasticsearchSettings(urls=[u.strip() for u in es_url.split(",")], replicas=0, chunk_size=25)
    backend = ElasticsearchBackend(alias, settings, keep_versions=2)
    yield backend
    # By name: wildcard deletes are refused by default (action.destructive_requires_name).
    names = list(backend.client.indices.get(index=f"{alias}_*").body)
    if names:
        backend.client.options(ignore_status=404).indices.delete(index=",".join(names))


def test_create_switch_prune_rollback(es):
    docs = make_docs(30)
    seen: list[int] = []
    r1 = es.create_version(SCHEMA, docs[:10])
    r2 = es.create_version(SCHEMA, docs[:20], progress=seen.append)
    assert r2.documents == 20 and sum(seen) == 20
    r3 = es.create_version(SCHEMA, docs)
    assert r3.removed_versions == [r1.version]
    versions = es.versions()
    assert [(v.name, v.documents, v.current) for v in versions] == [
        (r2.version, 20, False), (r3.version, 30, True)]
    assert es.search({"query": {"match_all": {}}, "size": 1}).version == r3.version
    back = es.rollback()
    assert (back.name, back.documents) == (r2.version, 20)
    assert es.search({"query": {"match_all": {}}, "size": 1}).version == r2.version
    assert [c.ok for c in es.checks()] == [True, True]


def test_failed_documents_leave_the_alias(es):
    docs = make_docs(10)
    first = es.create_version(SCHEMA, docs)
    bad = [*docs, {"id": "zz", "colour": ["red"]}]  # not in the strict mapping
    with pytest.raises(DocumentsFailed) as err:
        es.create_version(SCHEMA, bad)
    assert [f[0] for f in err.value.failed] == ["zz"]
    assert "strict_dynamic_mapping_exception" in err.value.failed[0][1]
    assert [v.name for v in es.versions()] == [first.version]


def test_get_upsert_delete(es):
    docs = make_docs(10)
    es.create_version(SCHEMA, docs)
    assert es.get(["i001", "nope"]) == {"i001": docs[1]}
    es.upsert([{"id": "new", "category": ["books"]}])
    hits = es.search({"query": {"term": {"category": "books"}}, "size": 50}).hits
    assert "new" in [h.id for h in hits]
    es.delete(["new", "never-existed"])
    assert es.get(["new"]) == {}


def test_search_parity_with_the_embedded_backend(es, tmp_path):
    from indexer.embedded import EmbeddedBackend

    docs = make_docs()
    es.create_version(SCHEMA, docs)
    embedded = EmbeddedBackend(tmp_path, "items", 2)
    embedded.create_version(SCHEMA, docs)
    for n, body in enumerate(make_queries(docs)):
        want = es.search(body).hits
        got = embedded.search(body).hits
        assert [h.id for h in got] == [h.id for h in want], f"query #{n}: {body}"
        for g, w in zip(got, want, strict=True):
            assert g.score == pytest.approx(w.score, rel=1e-5), f"query #{n} id {g.id}"
