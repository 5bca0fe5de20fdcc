"""The live-server checks of tests/test_search_live.py, run against OpenSearch and
Elasticsearch: one function per behaviour, called with a backend on its own alias of a real
node (tests/search_nodes.py) and the embedded backend where they are compared.

Parity: documents and the query bodies query/builder.py emits (personal `term` and
`rank_feature` clauses, the prior's function_score, rule boosts, filters, part filters,
date ranges, exclusions, backfill) give the same ids in the same order with scores within
1e-6 relative on the server and on the embedded backend.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from indexer.backend import IndexSchema
from indexer.documents import weights_field
from indexer.embedded import EmbeddedBackend
from indexer.errors import DocumentsFailed
from indexer.features import encode_feature
from indexer.search_server import SearchServerBackend
from indexer.settings import ElasticsearchSettings
from query.builder import build_backfill, build_query, excluded_ids, part_biases, part_filters
from query.request import DateRange, QueryRequest, Rule
from query.settings import QuerySettings

FIELDS = ("purchase", "view")
CATEGORIES = tuple(f"c{k}" for k in range(6))
NOW = "2026-06-01T00:00:00Z"


def schema(features: bool) -> IndexSchema:
    """The model's fields: indicators, a category, a date, the prior and rankings, and the
    correlator weights' rank_features when the server has them."""
    return IndexSchema(
        keyword_fields=(*FIELDS, "category"), date_fields=("availableDate",),
        number_fields=("prior", "popular"),
        feature_fields=tuple(weights_field(f) for f in FIELDS) if features else (),
    )


def make_docs(n: int = 200, *, features: bool = True, seed: int = 5, tag: str = "") -> list[dict]:
    """Zipf-ish correlators (ids with dots and '%', encoded as feature names) with LLR-like
    weights, categories, dates, a prior and a popularity on most documents. `tag` is put in
    every document's category, so a search can tell which version answered."""
    rnd = random.Random(seed)
    ids = [f"i.{k:03d}" if k % 7 == 0 else f"i%{k}.x" if k % 31 == 0 else f"i{k:03d}" for k in range(n)]
    zipf = [1.0 / (rank + 1) ** 1.1 for rank in range(n)]
    docs = []
    for doc_id in ids:
        doc: dict[str, Any] = {"id": doc_id}
        for field in FIELDS:
            if rnd.random() < 0.9:
                correlators = sorted(set(rnd.choices(ids, weights=zipf, k=rnd.randint(1, 20))))
                doc[field] = correlators
                if features:
                    doc[weights_field(field)] = {encode_feature(c): rnd.lognormvariate(1.5, 1.5) for c in correlators}
        if rnd.random() < 0.8:
            doc["category"] = rnd.sample(CATEGORIES, rnd.randint(1, 2))
        if tag:
            doc["category"] = [*doc.get("category", []), tag]
        if rnd.random() < 0.4:
            doc["availableDate"] = f"2026-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}T00:00:00Z"
        if rnd.random() < 0.85:
            doc["prior"] = rnd.uniform(1.0, 60.0) ** 0.5
        if rnd.random() < 0.9:
            doc["popular"] = float(rnd.randint(0, 40))
        docs.append(doc)
    return docs


def builder_bodies(docs: list[dict], *, features: bool, n: int = 120, seed: int = 11) -> Iterator[dict]:
    """Bodies of query/builder.py for random requests: inline histories, an item, an item
    set, rules of each bias sign, date ranges, blacklists, negative part biases, with and
    without the prior and the correlator weights (each weight function); and the backfill
    body of every fifth request."""
    rnd = random.Random(seed)
    ids = [d["id"] for d in docs]
    by_id = {d["id"]: d for d in docs}
    for q in range(n):
        settings = QuerySettings(
            weight_function=rnd.choice(["linear", "saturation", "log"]),
            weight_parameter=rnd.choice([1.0, 2.5, 20.0]),
            history_decay=rnd.choice([1.0, 0.95, 0.8]),
            available_date_field="availableDate" if rnd.random() < 0.25 else None,
        )
        rules = []
        for bias in rnd.sample([2.0, -1.0, 0.0, 0.5], rnd.randint(0, 2)):
            rules.append(Rule("category", tuple(rnd.sample(CATEGORIES, rnd.randint(1, 2))), bias))
        history = {f: tuple(rnd.sample(ids, rnd.choice([1, 3, 10]))) for f in FIELDS if rnd.random() < 0.8}
        request = QueryRequest(
            history=history,
            item=rnd.choice(ids) if rnd.random() < 0.3 else None,
            item_set=tuple(rnd.sample(ids, 3)) if rnd.random() < 0.2 else (),
            rules=tuple(rules),
            date_range=DateRange("availableDate", before="2026-08-01T00:00:00Z") if rnd.random() < 0.15 else None,
            blacklist_items=tuple(rnd.sample(ids, 2)) if rnd.random() < 0.3 else (),
            user_bias=rnd.choice([None, None, 2.0, -1.0]),
            item_bias=rnd.choice([None, 0.5]),
        )
        indicators = {"purchase": 1.0, "view": rnd.choice([0.5, 1.0])}
        weighted = [f for f in FIELDS if features and rnd.random() < 0.6]
        excluded = excluded_ids(request, list(history.get("purchase", ()))[:2], settings)
        extra = part_filters(request, history, by_id, indicators, part_biases(request, settings))
        body = build_query(request, history, by_id, settings, indicators=indicators, excluded=excluded,
                           now=NOW, num=30, weighted=weighted, prior=rnd.random() < 0.7, extra_filters=extra)
        if body is not None:
            yield body
        if q % 5 == 0:
            yield build_backfill(request, settings, ranking="popular", excluded=excluded, now=NOW, size=30,
                                 extra_filters=extra)


def hits(backend: Any, body: dict) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in backend.search(body).hits]


def assert_same_results(server: Any, embedded: EmbeddedBackend, bodies: list[dict]) -> int:
    """Every body gives the same ids, order and scores (1e-6 relative) on both backends;
    returns the number of hits compared."""
    compared = 0
    for n, body in enumerate(bodies):
        want, got = hits(server, body), hits(embedded, body)
        assert [i for i, _ in got] == [i for i, _ in want], f"body #{n}: {body}"
        for (i, g), (_, w) in zip(got, want, strict=True):
            assert g == pytest.approx(w, rel=1e-6, abs=1e-12), f"body #{n} id {i}: {body}"
        compared += len(want)
    return compared


@contextmanager
def backend_on(cls: type[SearchServerBackend], url: str, keep_versions: int = 2, **settings: Any):
    """A backend of `cls` on its own alias of the server at `url`; its indices are deleted
    afterwards."""
    alias = f"cooccur_test_{uuid.uuid4().hex[:8]}"
    backend = cls(alias, ElasticsearchSettings(urls=[url], replicas=0, chunk_size=50, **settings), keep_versions)
    try:
        yield backend
    finally:
        states = backend._states()
        if states:
            backend._delete_indices([s.name for s in states], missing_ok=True)


def has_rank_features(backend: SearchServerBackend) -> bool:
    """Whether the server maps `rank_features` (Elasticsearch's and OpenSearch's mapper-extras
    module: the live-test Elasticsearch node lacks it, see docs/elasticsearch.md)."""
    name = f"{backend.alias}_probe"
    try:
        backend._create_index(name, {"settings": {}, "mappings": {"properties": {"f": {"type": "rank_features"}}}})
    except backend.client_errors as e:
        if "rank_features" in str(backend._error(e, "probe")):
            return False
        raise
    backend._delete_indices([name])
    return True


def has_reindex(backend: SearchServerBackend) -> bool:
    """Whether the server has `_reindex` (the reindex module: the live-test Elasticsearch node
    lacks it). A copy from a missing index is refused with 404 where it exists, 405 where not."""
    try:
        backend._start_reindex({"index": f"{backend.alias}_missing"}, {"index": f"{backend.alias}_probe"})
    except backend.client_errors as e:
        return "405" not in str(backend._error(e, "probe"))
    return True


# --------------------------------------------------------------------------- checks
def check_versions(backend: SearchServerBackend) -> None:
    """Create, switch, prune, roll back; the doctor checks name the product and version."""
    s = schema(False)
    docs = make_docs(30, features=False)
    seen: list[int] = []
    r1 = backend.create_version(s, docs[:10])
    r2 = backend.create_version(s, docs[:20], progress=seen.append, model_id="m2",
                                model={"primary": "purchase", "indicators": list(FIELDS)})
    assert r2.documents == 20 and sum(seen) == 20
    r3 = backend.create_version(s, docs)
    assert r3.removed_versions == [r1.version]
    versions = backend.versions()
    assert [(v.name, v.documents, v.current) for v in versions] == [
        (r2.version, 20, False), (r3.version, 30, True)]
    assert (versions[0].model_id, versions[0].primary, versions[0].indicators, versions[0].schema) == (
        "m2", "purchase", FIELDS, s)
    assert backend.search({"query": {"match_all": {}}, "size": 1}).version == r3.version
    back = backend.rollback()
    assert (back.name, back.documents) == (r2.version, 20)
    assert backend.search({"query": {"match_all": {}}, "size": 1}).version == r2.version
    checks = list(backend.checks())
    assert [c.ok for c in checks] == [True, True], checks
    assert checks[1].detail == f"alias {backend.alias} -> {r2.version} (20 documents; 2 versions kept)"


def check_failed_documents(backend: SearchServerBackend) -> None:
    """A document the strict mapping refuses fails the run, names the document, and leaves
    the alias where it was."""
    s = schema(False)
    docs = make_docs(10, features=False)
    first = backend.create_version(s, docs)
    with pytest.raises(DocumentsFailed) as err:
        backend.create_version(s, [*docs, {"id": "zz", "colour": ["red"]}])
    assert [f[0] for f in err.value.failed] == ["zz"]
    assert "strict_dynamic_mapping_exception" in err.value.failed[0][1]
    assert [v.name for v in backend.versions()] == [first.version]


def check_get_upsert_delete(backend: SearchServerBackend) -> None:
    docs = make_docs(10, features=False)
    backend.create_version(schema(False), docs)
    assert backend.get([docs[1]["id"], "nope"]) == {docs[1]["id"]: docs[1]}
    backend.upsert([{"id": "new", "category": ["books"]}])
    assert [h.id for h in backend.search({"query": {"term": {"category": "books"}}, "size": 50}).hits] == ["new"]
    backend.delete(["new", "never-existed"])
    assert backend.get(["new"]) == {}


def check_switch_under_queries(backend: SearchServerBackend, rounds: int = 2) -> None:
    """Searches running while versions are created and rolled back each see one whole
    version (every hit carries the same version tag), never an error or a mix."""
    s = schema(False)
    backend.create_version(s, make_docs(40, features=False, tag="v0"))
    errors: list[BaseException] = []
    seen: list[set[str]] = []
    stop = threading.Event()
    body = {"query": {"terms": {"category": [f"v{k}" for k in range(rounds + 1)]}}, "size": 100}

    def search() -> None:
        while not stop.is_set():
            try:
                found = backend.search(body).hits
                seen.append({t for h in found for t in h.source["category"] if t.startswith("v")})
                assert len(found) == 40
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    thread = threading.Thread(target=search)
    thread.start()
    try:
        for k in range(1, rounds + 1):
            backend.create_version(s, make_docs(40, features=False, tag=f"v{k}", seed=k))
        backend.rollback()
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[0]
    assert seen and all(len(tags) == 1 for tags in seen)
    assert len(set().union(*seen)) >= 2, "the searches saw no switch"
    assert backend.search(body).hits[0].source["category"][-1] == f"v{rounds - 1}"


def check_live_set(backend: SearchServerBackend, tmp_path: Any) -> None:
    """Item `$set` / `$unset` / `$delete` events through the Recommender change the current
    version's documents at once; a property the index lacks is left to the next training."""
    from query.eventstore import Event, EventStore
    from query.recommender import Recommender
    from query.request import normalize_date

    docs = make_docs(20, features=False)
    backend.create_version(schema(False), docs)
    rec = Recommender(backend, EventStore(tmp_path / "events.db"), QuerySettings(indicators=["purchase"]))
    item = docs[3]["id"]
    events = [
        Event("$set", "item", item, 1_000, properties={"category": ["sale"], "colour": ["red"]}),
        Event("$set", "item", "brand-new", 2_000, properties={"category": ["sale"],
                                                             "availableDate": "2026-02-03T04:05:06Z"}),
        Event("$delete", "item", docs[4]["id"], 3_000),
    ]
    rec.ingest(events)
    sale = backend.search({"query": {"term": {"category": "sale"}}, "size": 10,
                           "sort": [{"id": {"order": "asc"}}]}).hits
    assert [h.id for h in sale] == sorted(["brand-new", item])
    got = backend.get([item, "brand-new", docs[4]["id"]])
    assert got[item] == {**docs[3], "category": ["sale"]}
    assert got["brand-new"] == {"id": "brand-new", "category": ["sale"],
                                "availableDate": normalize_date("2026-02-03T04:05:06Z", "test")}
    assert docs[4]["id"] not in got
    rec.ingest([Event("$unset", "item", item, 4_000, properties={"category": None})])
    assert "category" not in backend.get([item])[item]


def check_parity(backend: SearchServerBackend, tmp_path: Any, *, features: bool) -> int:
    """The builder's bodies on the server and on the embedded backend (same documents):
    same ids, order and scores. Returns the number of hits compared."""
    docs = make_docs(features=features)
    backend.create_version(schema(features), docs)
    embedded = EmbeddedBackend(tmp_path, "items", 1)
    embedded.create_version(schema(features), docs)
    bodies = list(builder_bodies(docs, features=features))
    shapes = {shape for b in bodies for shape in body_shapes(b)}
    want = {"term", "function_score", "terms", "range", "ids", "bool", "match_all"}
    if features:
        want |= {"rank_feature"}
    assert want <= shapes, want - shapes
    compared = assert_same_results(backend, embedded, bodies)
    assert compared > 1000
    return compared


def body_shapes(node: Any) -> Iterator[str]:
    """The query clause names in a body."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("term", "terms", "range", "ids", "bool", "match_all", "function_score", "rank_feature"):
                yield key
            yield from body_shapes(value)
    elif isinstance(node, list):
        for value in node:
            yield from body_shapes(value)


def check_changed_only(backend_name: str, url: str, models: tuple[Any, Any]) -> None:
    """`cooccur index --changed-only` of an updated model gives the documents and scores of a
    full index of it (the fixtures of tests/test_index_changed.py)."""
    from collections import Counter

    from test_index_changed import all_documents, results

    from indexer.backends import open_backend
    from indexer.errors import ChangedOnlyRefused
    from indexer.run import index_model
    from indexer.settings import IndexSettings

    m1, m2 = models
    server = ElasticsearchSettings(urls=[url], replicas=0)
    settings = [IndexSettings(backend=backend_name, name=f"cooccur_test_{uuid.uuid4().hex[:8]}", keep_versions=2,
                              **{backend_name: server}) for _ in range(2)]
    backends = [open_backend(s) for s in settings]
    try:
        index_model(m1, settings[0])
        report = index_model(m2, settings[0], changed_only=True)
        index_model(m2, settings[1])
        inc, full = backends
        assert (report.copied, report.replaced, report.added, report.deleted) == (2, 2, 1, 1)
        assert all_documents(inc) == all_documents(full)
        assert inc.get(["d"]) == {}
        for got, want in zip(results(inc), results(full), strict=True):
            assert [g[0] for g in got] == [w[0] for w in want]
            assert [g[1] for g in got] == pytest.approx([w[1] for w in want], rel=1e-6)
        assert Counter(v.model_id for v in inc.versions()) == Counter({"m1": 1, "m2": 1})
        with pytest.raises(ChangedOnlyRefused, match="already built from model m2"):
            index_model(m2, settings[0], changed_only=True)
    finally:
        for b in backends:
            names = [st.name for st in b._states()]
            if names:
                b._delete_indices(names, missing_ok=True)
