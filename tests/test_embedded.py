"""The embedded backend: storage, versions, live changes, and Elasticsearch-exact scoring.

Expected scores are computed here, independently, from the formula in DESIGN.md (in
float64; the backend mirrors Lucene's float32, hence the 1e-6 relative tolerance).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from indexer.backend import IndexSchema
from indexer.embedded import EmbeddedBackend, IndexBusy, NoEarlierVersion
from indexer.embedded_query import ScoringError
from indexer.embedded_store import schema_from_json, schema_to_json
from indexer.errors import BackendUnavailable, DocumentsFailed, UnsupportedQuery
from indexer.features import decode_feature, encode_feature, quantize

K1, B = 1.2, 0.75

SCHEMA = IndexSchema(
    keyword_fields=("purchase", "view", "category"),
    date_fields=("availableDate",),
    number_fields=("popular",),
)

DOCS = [
    {"id": "a", "purchase": ["x", "y"], "view": ["x", "y", "z"], "category": ["books"],
     "availableDate": "2026-01-01T12:00:00Z", "popular": 10.0},
    {"id": "b", "purchase": ["x"], "view": ["z"], "category": ["books", "music"], "popular": 3.0},
    {"id": "c", "purchase": ["y", "z", "w"], "category": ["music"],
     "availableDate": "2026-03-01", "popular": 10.0},
    {"id": "d", "view": ["x", "w"], "popular": 0.5},
    {"id": "e", "purchase": ["w"], "view": ["x"], "category": ["film"]},
]


def bm25(docs, field, term, boost=1.0):
    """DESIGN.md: boost * (k1 + 1) * idf / (1 + k1 * (1 - b + b / avgdl)) on docs-only fields."""
    with_field = [d for d in docs if d.get(field)]
    doc_count = len(with_field)
    sum_doc_freq = sum(len(set(d[field])) for d in with_field)
    doc_freq = sum(1 for d in with_field if term in d[field])
    idf = math.log(1 + (doc_count - doc_freq + 0.5) / (doc_freq + 0.5))
    avgdl = sum_doc_freq / doc_count
    return boost * (K1 + 1) * idf / (1 + K1 * (1 - B + B / avgdl))


@pytest.fixture
def backend(tmp_path):
    b = EmbeddedBackend(tmp_path, "items", keep_versions=3)
    b.create_version(SCHEMA, DOCS)
    return b


def scores(backend, query, **body):
    result = backend.search({"query": query, "size": 100, **body})
    return {h.id: h.score for h in result.hits}


def ranked(backend, query, **body):
    return [h.id for h in backend.search({"query": query, "size": 100, **body}).hits]


# --------------------------------------------------------------------------- storage
def test_documents_round_trip(backend):
    assert backend.get(["c", "a", "nope"]) == {"c": DOCS[2], "a": DOCS[0]}
    hits = backend.search({"query": {"ids": {"values": ["e"]}}}).hits
    assert hits[0].source == DOCS[4]
    assert backend.search({"query": {"ids": {"values": ["e"]}}, "_source": False}).hits[0].source is None
    [info] = backend.versions()
    assert info.current and info.documents == 5


def test_documents_are_stored_in_any_input_order(tmp_path):
    b = EmbeddedBackend(tmp_path, "items")
    b.create_version(SCHEMA, list(reversed(DOCS)))
    assert ranked(b, {"match_all": {}}) == ["a", "b", "c", "d", "e"]
    assert scores(b, {"term": {"view": "z"}}) == pytest.approx(
        {"a": bm25(DOCS, "view", "z"), "b": bm25(DOCS, "view", "z")}, rel=1e-6)


def test_bad_documents_fail_the_run_and_keep_the_current_version(backend):
    before = backend.versions()
    bad = [*DOCS[:2], {"id": "f", "purchase": "x"}, {"id": "g", "color": ["red"]},
           {"id": "a"}, {"id": "h", "popular": "high"}, {"id": "i", "availableDate": "soon"}]
    with pytest.raises(DocumentsFailed) as err:
        backend.create_version(SCHEMA, bad)
    failed = dict(err.value.failed)
    assert set(failed) == {"f", "g", "a", "h", "i"}
    assert "duplicate" in failed["a"] and "color" in failed["g"]
    assert backend.versions() == before
    assert not list(backend.root.glob(".tmp-*"))


def test_no_current_version_is_a_clear_error(tmp_path):
    with pytest.raises(BackendUnavailable, match="no current version"):
        EmbeddedBackend(tmp_path, "items").search({})


# --------------------------------------------------------------------------- scoring
def test_known_case_from_the_design(tmp_path):
    b = EmbeddedBackend(tmp_path, "items")
    b.create_version(IndexSchema(("purchase",)), [
        {"id": "1", "purchase": ["a", "b", "c"]}, {"id": "2", "purchase": ["a"]},
        {"id": "3", "purchase": ["b", "c", "d", "e"]}])
    hits = b.search({"query": {"bool": {"should": [{"term": {"purchase": "a"}},
                                                     {"term": {"purchase": "c"}}]}}}).hits
    assert hits[0].id == "1" and hits[0].score == pytest.approx(1.2629106, rel=1e-6)


def test_boosted_should_terms_over_several_fields(backend):
    query = {"bool": {"should": [
        {"term": {"purchase": {"value": "x", "boost": 2.0}}},
        {"term": {"purchase": {"value": "y", "boost": 2.0}}},
        {"term": {"view": {"value": "x", "boost": 0.5}}},
        {"term": {"view": "z"}},
        {"term": {"view": "no-such-term"}},
        {"term": {"category": "film"}},
    ]}}
    expected = {}
    for doc in DOCS:
        s = 0.0
        for field, term, boost in (("purchase", "x", 2.0), ("purchase", "y", 2.0),
                                   ("view", "x", 0.5), ("view", "z", 1.0), ("category", "film", 1.0)):
            if term in doc.get(field, []):
                s += bm25(DOCS, field, term, boost)
        if s:
            expected[doc["id"]] = s
    got = scores(backend, query)
    assert got == pytest.approx(expected, rel=1e-6)
    assert ranked(backend, query) == sorted(expected, key=lambda i: (-got[i], i))


def test_filters_and_must_not_add_no_score(backend):
    query = {"bool": {
        "should": [{"term": {"view": "x"}}],
        "filter": [{"terms": {"category": ["books", "film"]}}],
        "must_not": [{"ids": {"values": ["e"]}}],
    }}
    # with a filter, should clauses become optional (minimum_should_match 0): b matches with 0
    assert scores(backend, query) == pytest.approx({"a": bm25(DOCS, "view", "x"), "b": 0.0}, rel=1e-6)
    query["bool"]["minimum_should_match"] = 1
    assert scores(backend, query) == pytest.approx({"a": bm25(DOCS, "view", "x")}, rel=1e-6)


def test_must_and_bool_boost(backend):
    query = {"bool": {"must": [{"term": {"purchase": "y"}}], "should": [{"term": {"view": "x"}}],
                      "boost": 3.0}}
    expected = {"a": 3 * (bm25(DOCS, "purchase", "y") + bm25(DOCS, "view", "x")),
                "c": 3 * bm25(DOCS, "purchase", "y")}
    assert scores(backend, query) == pytest.approx(expected, rel=1e-6)


def test_constant_scores(backend):
    assert scores(backend, {"terms": {"category": ["music", "film"], "boost": 2.5}}) == {
        "b": 2.5, "c": 2.5, "e": 2.5}
    assert scores(backend, {"ids": {"values": ["d", "zz"]}}) == {"d": 1.0}
    assert scores(backend, {"exists": {"field": "availableDate"}}) == {"a": 1.0, "c": 1.0}
    assert scores(backend, {"exists": {"field": "purchase", "boost": 0.5}}) == {
        "a": 0.5, "b": 0.5, "c": 0.5, "e": 0.5}
    assert scores(backend, {"match_all": {"boost": 2}}) == dict.fromkeys("abcde", 2.0)
    cs = {"constant_score": {"filter": {"term": {"view": "x"}}, "boost": 4.0}}
    assert scores(backend, cs) == {"a": 4.0, "d": 4.0, "e": 4.0}
    # a constant_score bias added to a BM25 should clause
    query = {"bool": {"should": [{"term": {"purchase": "w"}}, cs]}}
    w = bm25(DOCS, "purchase", "w")
    assert scores(backend, query) == pytest.approx({"a": 4.0, "c": w, "d": 4.0, "e": w + 4.0}, rel=1e-6)


def test_ranges_on_numbers_and_dates(backend):
    assert set(scores(backend, {"range": {"popular": {"gte": 3, "lt": 10}}})) == {"b"}
    assert set(scores(backend, {"range": {"popular": {"gt": 0.5}}})) == {"a", "b", "c"}
    dates = lambda r: set(scores(backend, {"range": {"availableDate": r}}))  # noqa: E731
    assert dates({"lte": "2026-01-01"}) == {"a"}  # lte rounds a day up to its last millisecond
    assert dates({"lt": "2026-01-01"}) == set()
    assert dates({"gt": "2026-01-01"}) == {"c"}  # gt rounds up as well
    assert dates({"gte": "2026-01-01T12:00:00Z"}) == {"a", "c"}
    assert dates({"gte": "2026-01-01T13:00:00+01:00", "lte": "now"}) == {"a", "c"}
    assert scores(backend, {"range": {"popular": {"gte": 10, "boost": 2}}}) == {"a": 2.0, "c": 2.0}


def test_sort_by_score_then_ranking_field_then_id(backend):
    query = {"bool": {"should": [{"terms": {"category": ["books", "music"]}}, {"ids": {"values": ["d"]}}]}}
    assert ranked(backend, query) == ["a", "b", "c", "d"]
    by_popular = [{"_score": "desc"}, {"popular": "desc"}]
    assert ranked(backend, query, sort=by_popular) == ["a", "c", "b", "d"]
    assert ranked(backend, {"match_all": {}}, sort=[{"popular": {"order": "asc"}}]) == ["d", "b", "a", "c", "e"]
    page = backend.search({"query": {"match_all": {}}, "sort": by_popular, "from": 1, "size": 2}).hits
    assert [h.id for h in page] == ["c", "b"]
    assert backend.search({"query": {"match_all": {}}, "size": 0}).hits == []


def test_minimum_should_match(backend):
    should = [{"term": {"view": "x"}}, {"term": {"view": "z"}}, {"term": {"purchase": "x"}}]
    assert set(scores(backend, {"bool": {"should": should, "minimum_should_match": 2}})) == {"a", "b"}
    assert set(scores(backend, {"bool": {"should": should, "minimum_should_match": 3}})) == {"a"}
    assert set(scores(backend, {"bool": {"should": should, "minimum_should_match": -2}})) == {"a", "b", "d", "e"}


def test_filter_only_and_empty_bools(backend):
    assert scores(backend, {"bool": {"filter": {"term": {"category": "books"}}}}) == {"a": 0.0, "b": 0.0}
    assert scores(backend, {"bool": {"must_not": [{"exists": {"field": "purchase"}}]}}) == {"d": 0.0}
    assert scores(backend, {"bool": {}}) == dict.fromkeys("abcde", 1.0)


@pytest.mark.parametrize(("query", "path"), [
    ({"bool": {"should": [{"term": {"view": "x"}}] * 3 + [{"match": {"view": "x"}}]}}, "query.bool.should[3].match"),
    ({"term": {"colour": "red"}}, "query.term.colour"),
    ({"term": {"view": 5}}, "query.term.view"),
    ({"term": {"view": {"value": "x", "boost": "high"}}}, "query.term.view.boost"),
    ({"bool": {"should": [{"term": {"view": "x"}}, {"term": {"view": {"value": "x", "boost": True}}}]}},
     "query.bool.should[1].term.view.boost"),
    ({"bool": {"must": [{"term": {"view": {"value": "x", "boost": -1}}}]}}, "query.bool.must[0].term.view.boost"),
    ({"bool": {"should": [{"term": {"view": {"value": 3, "boost": 1}}}]}}, "query.bool.should[0].term.view.value"),
    ({"terms": {"view": ["x", 1]}}, "query.terms.view[1]"),
    ({"range": {"category": {"gte": "a"}}}, "query.range.category"),
    ({"range": {"availableDate": {"gte": "next week"}}}, "query.range.availableDate.gte"),
    ({"bool": {"filter": [{"exists": {"field": "nope"}}]}}, "query.bool.filter[0].exists.field"),
    ({"constant_score": {"filter": {"wildcard": {}}}}, "query.constant_score.filter.wildcard"),
    ({"bool": {"should": [], "minimum_should_match": "50%"}}, "query.bool.minimum_should_match"),
])
def test_unsupported_queries_name_the_path(backend, query, path):
    with pytest.raises(UnsupportedQuery) as err:
        backend.search({"query": query})
    assert err.value.path == path
    assert path in str(err.value)


def test_unsupported_body_options(backend):
    with pytest.raises(UnsupportedQuery, match="aggs"):
        backend.search({"query": {"match_all": {}}, "aggs": {}})
    with pytest.raises(UnsupportedQuery, match=r"sort\[0\].category"):
        backend.search({"sort": [{"category": "asc"}]})
    with pytest.raises(UnsupportedQuery, match="10000"):
        backend.search({"size": 10_001})


def test_large_history_query(tmp_path):
    """500 history items over 2 fields: one batched pass over the posting lists."""
    docs = [{"id": f"i{k:03d}", "purchase": [f"i{(k * 7 + j) % 600:03d}" for j in range(5)],
             "view": [f"i{(k * 3 + j) % 600:03d}" for j in range(8)]} for k in range(600)]
    b = EmbeddedBackend(tmp_path, "items")
    b.create_version(IndexSchema(("purchase", "view")), docs)
    history = [f"i{k:03d}" for k in range(0, 1000, 2)]
    should = [{"term": {f: {"value": h, "boost": w}}} for f, w in (("purchase", 1.0), ("view", 0.3))
              for h in history]
    got = scores(b, {"bool": {"should": should}}, size=1000)
    expected = {}
    for d in docs:
        s = sum(bm25(docs, "purchase", t) for t in set(d["purchase"]) if t in history)
        s += sum(bm25(docs, "view", t, 0.3) for t in set(d["view"]) if t in history)
        if s:
            expected[d["id"]] = s
    assert got == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- versions
def versioned_docs(version: int, count: int):
    return [{"id": f"i{k:04d}", "category": [f"v{version}"], "popular": float(version)} for k in range(count)]


def test_version_switch_is_atomic_for_a_concurrent_reader(tmp_path):
    writer = EmbeddedBackend(tmp_path, "items", keep_versions=1)  # prune as early as possible
    schema = IndexSchema(("category",), number_fields=("popular",))
    sizes = {0: 40, 1: 120, 2: 80, 3: 200}
    writer.create_version(schema, versioned_docs(0, sizes[0]))
    reader = EmbeddedBackend(tmp_path, "items", keep_versions=1)  # as if in another process
    errors: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            try:
                hits = reader.search({"query": {"match_all": {}}, "size": 1000}).hits
                markers = {h.source["category"][0] for h in hits}
                assert len(markers) == 1, markers
                version = int(markers.pop()[1:])
                assert len(hits) == sizes[version], (version, len(hits))
                seen.add(version)
            except BaseException as e:  # noqa: BLE001 - the test counts every failure
                errors.append(e)

    thread = threading.Thread(target=read_loop)
    thread.start()
    try:
        for version in (1, 2, 3):
            writer.create_version(schema, versioned_docs(version, sizes[version]))
    finally:
        while 3 not in seen and not errors and thread.is_alive():
            threading.Event().wait(0.01)
        stop.set()
        thread.join()
    assert errors == []
    assert 3 in seen and len(writer.versions()) == 1


def test_failing_writer_leaves_the_previous_version_current(backend):
    before = backend.versions()

    def dying_documents():
        yield from DOCS[:3]
        raise RuntimeError("killed mid-version")

    with pytest.raises(RuntimeError, match="killed"):
        backend.create_version(SCHEMA, dying_documents())
    assert backend.versions() == before
    assert [p.name for p in backend.root.iterdir() if p.is_dir()] == [before[0].name]
    assert len(backend.search({"size": 100}).hits) == 5


def test_keep_versions_prunes_the_oldest(tmp_path):
    b = EmbeddedBackend(tmp_path, "items", keep_versions=2)
    names = [b.create_version(SCHEMA, DOCS[: k + 1]).version for k in range(4)]
    assert names == sorted(names) and len(set(names)) == 4
    assert [v.name for v in b.versions()] == names[2:]
    assert [v.current for v in b.versions()] == [False, True]


def test_rollback(tmp_path):
    b = EmbeddedBackend(tmp_path, "items", keep_versions=3)
    first = b.create_version(SCHEMA, DOCS[:2]).version
    second = b.create_version(SCHEMA, DOCS).version
    other = EmbeddedBackend(tmp_path, "items")
    assert other.search({"size": 10}).version == second
    info = b.rollback()
    assert info.name == first and info.current and info.documents == 2
    assert other.search({"size": 10}).version == first  # readers follow CURRENT on the next call
    with pytest.raises(NoEarlierVersion):
        b.rollback()
    # the newest version is kept; a new run makes it current again
    assert [v.name for v in b.versions()] == [first, second]


# --------------------------------------------------------------------------- live changes
def test_upsert_and_delete_are_seen_by_another_instance_with_live_statistics(backend, tmp_path):
    other = EmbeddedBackend(tmp_path, "items")
    assert set(scores(other, {"term": {"purchase": "x"}})) == {"a", "b"}
    new_b = {"id": "b", "purchase": ["w"], "category": ["film"]}
    new_f = {"id": "f", "purchase": ["x", "w"], "view": ["x"]}
    backend.upsert([new_b, new_f])
    backend.delete(["c", "nope"])
    live = [DOCS[0], new_b, DOCS[3], DOCS[4], new_f]
    assert other.get(["b", "c", "f"]) == {"b": new_b, "f": new_f}
    for term in ("x", "w"):
        expected = {d["id"]: bm25(live, "purchase", term) for d in live if term in d.get("purchase", [])}
        assert scores(other, {"term": {"purchase": term}}) == pytest.approx(expected, rel=1e-6)
    assert ranked(other, {"match_all": {}}) == ["a", "b", "d", "e", "f"]
    assert ranked(other, {"match_all": {}}, sort=[{"popular": "desc"}]) == ["a", "d", "b", "e", "f"]
    assert set(scores(other, {"terms": {"category": ["film"]}})) == {"b", "e"}
    backend.upsert([{"id": "c", "purchase": ["z"]}])  # re-create a deleted document
    assert other.get(["c"]) == {"c": {"id": "c", "purchase": ["z"]}}
    assert len(other.search({"size": 100}).hits) == 6


def test_upsert_validates_documents(backend):
    with pytest.raises(DocumentsFailed, match="colour"):
        backend.upsert([{"id": "z", "colour": ["red"]}])


def test_changes_made_by_another_process(backend, tmp_path):
    """A real second process upserts, deletes, then indexes a new version: this process's
    already-loaded backend sees each change on its next call."""
    repo = str(Path(__file__).resolve().parents[1])
    assert set(scores(backend, {"term": {"purchase": "x"}})) == {"a", "b"}  # loaded before

    def other_process(code: str) -> None:
        script = (f"import sys; sys.path.insert(0, {repo!r})\n"
                  "from indexer.embedded import EmbeddedBackend\n"
                  "from indexer.backend import IndexSchema\n"
                  f"b = EmbeddedBackend({str(tmp_path)!r}, 'items')\n" + code)
        subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)

    other_process("b.upsert([{'id': 'p', 'purchase': ['x']}]); b.delete(['a'])")
    assert set(scores(backend, {"term": {"purchase": "x"}})) == {"b", "p"}
    other_process("b.create_version(IndexSchema(('purchase',)), [{'id': 'q', 'purchase': ['x']}])")
    result = backend.search({"query": {"term": {"purchase": "x"}}})
    assert [h.id for h in result.hits] == ["q"] and result.version == backend.versions()[-1].name


def test_a_killed_run_leaves_a_temp_dir_that_the_next_run_removes(backend):
    stale = backend.root / ".tmp-v20000101T000000000000"
    stale.mkdir()
    (stale / "ids.npy").write_bytes(b"partial")
    assert len(backend.search({"size": 10}).hits) == 5  # invisible to readers
    backend.create_version(SCHEMA, DOCS[:1])
    assert not stale.exists()


def test_one_writer_at_a_time(backend, tmp_path):
    other = EmbeddedBackend(tmp_path, "items")
    with backend._writer_lock(), pytest.raises(IndexBusy):
        other.create_version(SCHEMA, DOCS)
    with backend._writer_lock(), pytest.raises(IndexBusy):
        other.rollback()
    other.create_version(SCHEMA, DOCS)  # released


# --------------------------------------------------------------------------- feature names and values
@pytest.mark.parametrize(("name", "encoded"), [
    ("i0042", "i0042"),  # ordinary ids are their own feature names
    ("", ""),
    ("a.b", "a%2Eb"),
    ("v1.2.3", "v1%2E2%2E3"),
    ("100%", "100%25"),
    ("%2E", "%252E"),  # an id that looks encoded stays distinct
    ("x.%.y%25", "x%2E%25%2Ey%2525"),
    ("été.ß/日本", "été%2Eß/日本"),
])
def test_feature_names_round_trip(name, encoded):
    assert encode_feature(name) == encoded
    assert "." not in encoded
    assert decode_feature(encoded) == name


@pytest.mark.parametrize("bad", ["a%2", "%zz", "a%2e", "a.b"])
def test_decode_refuses_what_encode_never_makes(bad):
    with pytest.raises(ValueError):
        decode_feature(bad)


def test_quantize_keeps_nine_significant_bits_truncated():
    """FeatureField indexes Float.floatToIntBits(v) >>> 15 and scores intBitsToFloat(freq << 15)."""
    cases = [
        (1.0, 0x3F800000, 1.0),
        (3.0, 0x40400000, 3.0),
        (0.1, 0x3DCCCCCD, 0.099853515625),  # 0x3DCC8000 = 1.59765625 * 2**-4 = 409 / 4096
        (1000.7, 0x447A2CCD, 1000.0),  # 0x447A0000: above 512 the step is 2
        (1 + 2**-8, 0x3F808000, 1 + 2**-8),  # the smallest step above 1 survives
        (1 + 2**-8 - 2**-20, 0x3F807FF8, 1.0),  # just below it: truncated, not rounded up
        (1 + 1.5 * 2**-8, 0x3F80C000, 1 + 2**-8),  # halfway: truncated, not rounded to even
        (2.0**-126, 0x00800000, 2.0**-126),  # Float.MIN_NORMAL
        (float(np.finfo(np.float32).max), 0x7F7FFFFF, float(np.uint32(0x7F7F8000).view(np.float32))),
    ]
    values = np.array([v for v, _, _ in cases])
    assert np.array(values, np.float32).view(np.uint32).tolist() == [b for _, b, _ in cases]
    got = quantize(values)
    assert got.dtype == np.float32
    assert got.tolist() == [q for _, _, q in cases]
    assert (got.view(np.uint32) & 0x7FFF).tolist() == [0] * len(cases)
    assert quantize(np.zeros(0)).shape == (0,)


# --------------------------------------------------------------------------- rank_feature, function_score
FSCHEMA = IndexSchema(("purchase",), number_fields=("prior",), feature_fields=("purchase_w",))
FDOCS = [
    # purchase_w holds each correlator's weight; "y.z" is encoded as the feature name "y%2Ez"
    {"id": "a", "purchase": ["x", "y.z"], "purchase_w": {"x": 0.1, "y%2Ez": 3.0}, "prior": 2.0},
    {"id": "b", "purchase": ["x"], "purchase_w": {"x": 1000.7}},
    {"id": "c", "purchase": ["y.z"], "purchase_w": {"y%2Ez": 5.0}, "prior": 0.5},
    {"id": "d", "purchase": ["w"], "prior": 4.0},
]
X_A = 409 / 4096  # doc a's x = 0.1, as FeatureField keeps it (test above): 0.099853515625
X_B = 1000.0  # doc b's x = 1000.7, likewise


@pytest.fixture
def fbackend(tmp_path):
    b = EmbeddedBackend(tmp_path, "items", keep_versions=3)
    b.create_version(FSCHEMA, FDOCS)
    return b


def rf(feature, boost=None, **function):
    spec = {"field": f"purchase_w.{feature}", **(function or {"linear": {}})}
    if boost is not None:
        spec["boost"] = boost
    return {"rank_feature": spec}


def test_rank_feature_linear_scores_the_quantized_value(fbackend):
    assert scores(fbackend, rf("x")) == {"b": X_B, "a": X_A}  # exact: float32 of those values
    assert scores(fbackend, rf("x", 3)) == {"b": 3000.0, "a": 3 * X_A}  # 1227 / 4096, exact
    assert scores(fbackend, rf("y%2Ez")) == {"c": 5.0, "a": 3.0}
    assert scores(fbackend, rf("nope")) == {}


def test_rank_feature_saturation_and_log(fbackend):
    # saturation: w * (1 - pivot / (S + pivot)); Lucene's float32 arithmetic gives the numbers
    # asserted exactly (tests/test_lucene_parity.py reads the same ones from Lucene)
    got = scores(fbackend, rf("x", 2, saturation={"pivot": 1}))
    assert got == pytest.approx({"b": 2 * 1000 / 1001, "a": 2 * 409 / (409 + 4096)}, rel=1e-6)
    assert got == {"b": float(np.float32(1.998002052307129)), "a": float(np.float32(0.18157601356506348))}
    # log: w * ln(scaling_factor + S)
    assert scores(fbackend, rf("y%2Ez", log={"scaling_factor": 1})) == pytest.approx(
        {"c": math.log(6), "a": math.log(4)}, rel=1e-6)
    assert scores(fbackend, rf("y%2Ez", 0.5, log={"scaling_factor": 2.0})) == pytest.approx(
        {"c": 0.5 * math.log(7), "a": 0.5 * math.log(5)}, rel=1e-6)


def test_feature_values_as_codes_and_their_fallback(fbackend, tmp_path, monkeypatch):
    """A version's 9-bit feature values are read as uint16 codes into a table of the distinct
    values (BaseVersion.value_codes); values that are not 9-bit (never written by `quantize`)
    take the float arrays, with the same scores."""
    import indexer.embedded_store

    base = fbackend.snapshot().base
    codes, table = base.value_codes("purchase_w")
    assert table.tolist() == [X_A, 3.0, 5.0, X_B]  # ascending, distinct
    assert table[codes].tolist() == base.segment.features["purchase_w"][3].tolist()
    query = {"bool": {"should": [rf("x", 2, log={"scaling_factor": 1}), rf("y%2Ez", log={"scaling_factor": 3})]}}
    coded = scores(fbackend, query)
    assert coded == pytest.approx({"a": 2 * math.log(1 + X_A) + math.log(6), "b": 2 * math.log(1 + X_B),
                                   "c": math.log(8)}, rel=1e-6)

    monkeypatch.setattr(indexer.embedded_store, "quantize", lambda v: np.asarray(v, np.float32))
    unquantized = EmbeddedBackend(tmp_path / "unquantized", "items")
    unquantized.create_version(FSCHEMA, FDOCS)
    assert unquantized.snapshot().base.value_codes("purchase_w") is None
    assert scores(unquantized, query) == pytest.approx({"a": 2 * math.log(1.1) + math.log(6),
                                                        "b": 2 * math.log(1001.7), "c": math.log(8)}, rel=1e-6)


def test_rank_feature_clauses_in_a_bool_count_for_minimum_should_match(fbackend):
    should = [rf("x"), {"term": {"purchase": "x"}}, rf("y%2Ez", 2)]
    bm25_x = bm25(FDOCS, "purchase", "x")
    assert scores(fbackend, {"bool": {"should": should}}) == pytest.approx(
        {"a": X_A + bm25_x + 6.0, "b": X_B + bm25_x, "c": 10.0}, rel=1e-6)
    # a matches 3 clauses, b 2, c 1
    assert set(scores(fbackend, {"bool": {"should": should, "minimum_should_match": 2}})) == {"a", "b"}
    assert set(scores(fbackend, {"bool": {"should": should, "minimum_should_match": 3}})) == {"a"}
    # in must: every rank_feature clause must match; the scores add up
    assert scores(fbackend, {"bool": {"must": [rf("x"), rf("y%2Ez")]}}) == {"a": pytest.approx(X_A + 3.0)}
    # filter context: a mask, no score
    assert scores(fbackend, {"bool": {"filter": [rf("y%2Ez")]}}) == {"a": 0.0, "c": 0.0}
    # the same feature twice counts twice, as two Lucene clauses do
    assert scores(fbackend, {"bool": {"should": [rf("x"), rf("x", 2)], "minimum_should_match": 2}}) == {
        "b": 3000.0, "a": pytest.approx(3 * X_A)}


def test_rank_feature_mixed_functions_in_one_bool(fbackend):
    should = [rf("x", log={"scaling_factor": 1}), rf("y%2Ez", 2), rf("x", saturation={"pivot": 5})]
    assert scores(fbackend, {"bool": {"should": should}}) == pytest.approx({
        "a": math.log(1 + X_A) + 6.0 + X_A / (X_A + 5),
        "b": math.log(1 + X_B) + X_B / (X_B + 5),
        "c": 10.0,
    }, rel=1e-6)


def fs(query, boost=None, boost_mode=None, **fvf):
    """function_score of `query` with field_value_factor {"field": "prior", **fvf}."""
    spec = {"query": query, "field_value_factor": {"field": "prior", **fvf}}
    if boost_mode is not None:
        spec["boost_mode"] = boost_mode
    if boost is not None:
        spec["boost"] = boost
    return {"function_score": spec}


def test_function_score_multiplies_by_the_prior(fbackend):
    # a: 409/4096 * prior 2; b has no prior: `missing` 1
    assert scores(fbackend, fs(rf("x"), missing=1.0)) == {"b": 1000.0, "a": 2 * X_A}
    assert scores(fbackend, fs(rf("x"), missing=0.25)) == {"b": 250.0, "a": 2 * X_A}
    # factor and modifier apply to the value (in double), then the product is rounded to float
    assert scores(fbackend, fs(rf("x"), missing=1, factor=2, modifier="sqrt")) == pytest.approx(
        {"b": 1000 * math.sqrt(2), "a": X_A * 2}, rel=1e-6)
    assert scores(fbackend, fs(rf("x"), missing=3, modifier="log1p")) == pytest.approx(
        {"b": 1000 * math.log10(4), "a": X_A * math.log10(3)}, rel=1e-6)
    assert scores(fbackend, fs(rf("x"), missing=3, modifier="reciprocal")) == pytest.approx(
        {"b": 1000 / 3, "a": X_A / 2}, rel=1e-6)
    # BM25 terms around, with boosts, as the query builder sends them
    personal = {"bool": {"should": [{"term": {"purchase": {"value": "x", "boost": 2.0}}}], "minimum_should_match": 1}}
    body = {"bool": {"must": [fs(personal, missing=1.0)], "should": [{"terms": {"purchase": ["y.z"], "boost": 5}}],
                     "must_not": [{"ids": {"values": ["d"]}}]}}
    bm25_x = bm25(FDOCS, "purchase", "x", 2.0)
    assert scores(fbackend, body) == pytest.approx({"a": 2 * bm25_x + 5, "b": bm25_x}, rel=1e-6)


def test_function_score_boost_modes_and_boost(fbackend):
    """Elasticsearch passes the function_score's boost to its query: multiply and sum see a
    boosted query score, replace ignores it."""
    q = rf("x")
    got = {mode: scores(fbackend, fs(q, missing=1.0, boost_mode=mode)) for mode in
           ("multiply", "replace", "sum", "avg", "max", "min")}
    assert got == {
        "multiply": {"b": 1000.0, "a": 2 * X_A},
        "replace": {"a": 2.0, "b": 1.0},
        "sum": {"b": 1001.0, "a": pytest.approx(2 + X_A)},
        "avg": {"b": 500.5, "a": pytest.approx((2 + X_A) / 2)},
        "max": {"b": 1000.0, "a": 2.0},
        "min": {"b": 1.0, "a": X_A},
    }
    assert scores(fbackend, fs(q, 3, missing=1.0)) == {"b": 3000.0, "a": 6 * X_A}
    assert scores(fbackend, fs(q, 3, missing=1.0, boost_mode="sum")) == pytest.approx(
        {"b": 3001.0, "a": 3 * X_A + 2}, rel=1e-7)
    assert scores(fbackend, fs(q, 3, missing=1.0, boost_mode="replace")) == {"a": 2.0, "b": 1.0}
    # max_boost caps the function's value
    spec = fs(q, missing=1.0)
    spec["function_score"]["max_boost"] = 1.5
    assert scores(fbackend, spec) == {"b": 1000.0, "a": 1.5 * X_A}
    # an outer boost reaches the inner query too
    assert scores(fbackend, {"bool": {"must": [fs(q, missing=1.0)], "boost": 2}}) == {"b": 2000.0, "a": 4 * X_A}


def test_function_score_errors_like_elasticsearch_only_for_scored_documents(fbackend):
    # b has no prior and no `missing` is given
    with pytest.raises(ScoringError, match=r"Missing value for field \[prior\]") as err:
        fbackend.search({"query": fs(rf("x"))})
    assert err.value.path == "query.function_score.field_value_factor"
    # ... but Elasticsearch never scores b when the bool excludes it, nor in filter context
    assert scores(fbackend, {"bool": {"must": [fs(rf("x"))], "must_not": [{"ids": {"values": ["b"]}}]}}) == {
        "a": 2 * X_A}
    assert scores(fbackend, {"bool": {"filter": [fs(rf("x"))]}}) == {"a": 0.0, "b": 0.0}
    # ln of c's prior 0.5 is negative
    with pytest.raises(ScoringError, match=r"must not produce negative scores.*0\.5.*ln1p"):
        fbackend.search({"query": fs(rf("y%2Ez"), modifier="ln")})
    assert scores(fbackend, fs(rf("y%2Ez"), modifier="ln2p")) == pytest.approx(
        {"a": 3 * math.log(4), "c": 5 * math.log(2.5)}, rel=1e-6)
    # sqrt of a negative value: NaN, which Elasticsearch refuses as a score
    with pytest.raises(ScoringError, match="invalid score: nan") as err:
        fbackend.search({"query": fs(rf("y%2Ez"), factor=-1, modifier="sqrt")})
    assert err.value.path == "query.function_score"


@pytest.mark.parametrize(("query", "path", "problem"), [
    ({"rank_feature": {"field": "purchase_w.x"}}, "query.rank_feature", "default"),
    ({"rank_feature": {"field": "nope.x", "linear": {}}}, "query.rank_feature.field", "not a feature"),
    ({"rank_feature": {"field": "purchase.x", "linear": {}}}, "query.rank_feature.field", "not a feature"),
    ({"rank_feature": {"field": "purchase_w", "linear": {}}}, "query.rank_feature.field", "name one of its"),
    ({"rank_feature": {"field": "purchase_w.x", "saturation": {}}}, "query.rank_feature.saturation", "pivot"),
    ({"rank_feature": {"field": "purchase_w.x", "linear": {}, "log": {"scaling_factor": 2}}},
     "query.rank_feature", "only specify one"),
    ({"rank_feature": {"field": "purchase_w.x", "sigmoid": {"pivot": 1, "exponent": 2}}},
     "query.rank_feature.sigmoid", "not supported"),
    (rf("x", saturation={"pivot": 0}), "query.rank_feature.saturation.pivot", "must be > 0"),
    (rf("x", log={"scaling_factor": 0.5}), "query.rank_feature.log.scaling_factor", "must be >= 1"),
    (rf("x", log={}), "query.rank_feature.log", "scaling_factor"),
    (rf("x", linear={"factor": 2}), "query.rank_feature.linear.factor", "unsupported option"),
    (rf("x", -1), "query.rank_feature.boost", "non-negative"),
    ({"bool": {"should": [rf("x"), {"rank_feature": {"field": "purchase_w.x"}}]}},
     "query.bool.should[1].rank_feature", "default"),
    ({"bool": {"must": [rf("x"), rf("y", True)]}}, "query.bool.must[1].rank_feature.boost", "non-negative"),
    ({"exists": {"field": "purchase_w"}}, "query.exists.field", "do not support [exists]"),
    ({"term": {"purchase_w": "x"}}, "query.term.purchase_w", "not a keyword field"),
    (fs(rf("x"), field="nope"), "query.function_score.field_value_factor.field", "not a number field"),
    (fs(rf("x"), field="purchase"), "query.function_score.field_value_factor.field", "not a number field"),
    (fs(rf("x"), modifier="cube"), "query.function_score.field_value_factor.modifier", "expected one of"),
    (fs(rf("x"), factor="2"), "query.function_score.field_value_factor.factor", "number"),
    (fs(rf("x"), boost_mode="first"), "query.function_score.boost_mode", "expected one of"),
    ({"function_score": {"query": rf("x"), "functions": []}}, "query.function_score.functions", "unsupported"),
    ({"function_score": {"query": rf("x")}}, "query.function_score", "field_value_factor"),
])
def test_rank_feature_and_function_score_errors_name_the_path(fbackend, query, path, problem):
    with pytest.raises(UnsupportedQuery) as err:
        fbackend.search({"query": query})
    assert err.value.path == path
    assert problem in str(err.value)


@pytest.mark.parametrize(("value", "problem"), [
    ({"x": 0}, "positive normal float"),
    ({"x": -1.5}, "positive normal float"),
    ({"x": 1e-39}, "positive normal float"),  # a float32 subnormal
    ({"x": float("inf")}, "must be finite"),
    ({"x": 1e39}, "must be finite"),  # beyond float32
    ({"x": float("nan")}, "must be finite"),
    ({"x": "1"}, "strictly positive float"),
    ({"x": True}, "strictly positive float"),
    ({"x.y": 1.0}, "do not support dots in feature names but found [x.y]"),
    (["x"], "must be json objects"),
])
def test_feature_values_are_checked_like_lucene(tmp_path, value, problem):
    b = EmbeddedBackend(tmp_path, "items")
    with pytest.raises(DocumentsFailed, match="purchase_w") as err:
        b.create_version(FSCHEMA, [{"id": "z", "purchase_w": value}])
    assert problem in str(err.value)


def test_feature_fields_stored_and_changed_live(fbackend, tmp_path):
    # a null feature is skipped, as Elasticsearch does; the smallest normal float is accepted
    fbackend.upsert([{"id": "e", "purchase_w": {"x": None, "y%2Ez": 2.0**-126}}])
    fbackend.upsert([{"id": "b", "purchase_w": {"x": 7.0}}, {"id": "d", "purchase_w": {"x": 2.5, "w": 1.0}}])
    fbackend.delete(["a"])
    other = EmbeddedBackend(tmp_path, "items")
    assert scores(other, rf("x")) == {"b": 7.0, "d": 2.5}
    assert scores(other, rf("y%2Ez")) == {"c": 5.0, "e": 2.0**-126}
    assert scores(other, {"bool": {"should": [rf("x"), rf("w", 2)]}}) == {"b": 7.0, "d": 4.5}
    # after the overlay is compacted by a new version, the same
    other.create_version(FSCHEMA, [FDOCS[2], {"id": "b", "purchase_w": {"x": 7.0}},
                                   {"id": "d", "purchase_w": {"x": 2.5, "w": 1.0}}])
    assert scores(other, {"bool": {"should": [rf("x"), rf("w", 2)]}}) == {"b": 7.0, "d": 4.5}


def test_schema_without_feature_fields_keeps_the_older_format(tmp_path):
    schema = IndexSchema(("purchase",), number_fields=("prior",))
    assert schema_to_json(schema) == {"keyword_fields": ["purchase"], "date_fields": [], "number_fields": ["prior"]}
    assert schema_from_json(schema_to_json(schema)) == schema  # meta.json written before: no key
    assert schema_from_json(schema_to_json(FSCHEMA)) == FSCHEMA
    assert FSCHEMA.all_fields() == ("id", "purchase", "prior", "purchase_w")
    b = EmbeddedBackend(tmp_path, "items")
    b.create_version(schema, [{"id": "a", "purchase": ["x"]}])
    meta = json.loads((tmp_path / "items" / b.versions()[0].name / "meta.json").read_text())
    assert "feature" not in meta["files"] and "feature_fields" not in meta["schema"]
    with pytest.raises(UnsupportedQuery, match="not a feature"):
        b.search({"query": rf("x")})


def test_large_weighted_history_query(tmp_path):
    """500 history items over 2 weighted fields, mixed with term clauses: one batched pass."""
    rnd = np.random.default_rng(3)
    docs = []
    for k in range(600):
        doc = {"id": f"i{k:03d}", "purchase": [f"i{(k * 7 + j) % 600:03d}" for j in range(5)]}
        doc["purchase_w"] = {c: float(rnd.uniform(0.5, 50)) for c in doc["purchase"]}
        docs.append(doc)
    schema = IndexSchema(("purchase",), feature_fields=("purchase_w",))
    b = EmbeddedBackend(tmp_path, "items")
    b.create_version(schema, docs)
    history = [f"i{k:03d}" for k in range(0, 1000, 2)]
    should = [{"rank_feature": {"field": f"purchase_w.{h}", "saturation": {"pivot": 10.0}, "boost": 1.5}}
              for h in history] + [{"term": {"purchase": {"value": h, "boost": 0.3}}} for h in history]
    got = scores(b, {"bool": {"should": should, "minimum_should_match": 1}}, size=1000)
    expected = {}
    for d in docs:
        weights = quantize(np.array([d["purchase_w"][t] for t in d["purchase"] if t in history])).astype(float)
        s = float(sum(1.5 * w / (w + 10) for w in weights))
        s += sum(bm25(docs, "purchase", t, 0.3) for t in set(d["purchase"]) if t in history)
        if s:
            expected[d["id"]] = s
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_hits_of_many_candidates_equal_a_full_sort(seed):
    """With far more matches than the page (the block-maxima bound of top_hits), the page is
    that of a full sort by score desc, then id asc, ties included."""
    from types import SimpleNamespace

    from indexer.embedded_query import ParsedBody, SortKey, top_hits

    rng = np.random.default_rng(seed)
    n = 50_000
    score = rng.integers(0, 400, n).astype(np.float32) / 7  # many ties
    mask = rng.random(n) < 0.9
    view = SimpleNamespace(id_rank=rng.permutation(n), schema=IndexSchema(keyword_fields=()))
    for start, size in ((0, 20), (5, 10), (0, 1), (100, 30)):
        body = ParsedBody({}, size, start, (SortKey("_score", True), SortKey("id", False)), False)
        slots, scores = top_hits(view, body, mask, score)
        cand = np.flatnonzero(mask)
        expected = cand[np.lexsort((view.id_rank[cand], -score[cand].astype(np.float64)))][start:start + size]
        assert slots.tolist() == expected.tolist()
        assert scores.tolist() == score[expected].tolist()


SOURCE_SCHEMA = IndexSchema(keyword_fields=("purchase", "category"), number_fields=("prior",),
                            feature_fields=("purchase_w",))
SOURCE_DOCS = [
    {"purchase_w": {"x": 2.0, "y%2Ez": 3.5}, "id": "a", "purchase": ["x", "y.z"], "prior": 2.0},  # features first
    {"id": "b", "category": ["c1"], "prior": 1.0},  # no features
    {"id": "c", "purchase": ["x"], "purchase_w": None, "category": ["c2"]},  # a null feature field
    {"id": "d\"q", "purchase": ["purchase_w", ",\"purchase_w\":"], "purchase_w": {"purchase_w": 1.0}},
]


def _hits(backend, source):
    return {h.id: h.source for h in backend.search({"query": {"match_all": {}}, "size": 10, "_source": source}).hits}


@pytest.mark.parametrize("copied", [False, True])
def test_source_filtering_and_lean_documents(tmp_path, copied):
    """`_source` includes / excludes as Elasticsearch filters it, on documents rendered from
    the version's arrays (and a document they cannot hold exactly, kept as JSON)."""
    from indexer.backend import ChangeSet

    backend = EmbeddedBackend(tmp_path, "items", 2)
    backend.create_version(SOURCE_SCHEMA, [dict(d) for d in SOURCE_DOCS], model_id="m1")
    if copied:  # a --changed-only version: documents copied, one replaced
        backend.update_version(SOURCE_SCHEMA, ChangeSet("m1", "m2", [dict(SOURCE_DOCS[1], prior=5.0)], []))
    expected = {d["id"]: dict(d, prior=5.0) if copied and d["id"] == "b" else d for d in SOURCE_DOCS}
    assert _hits(backend, True) == expected
    lean = {i: {k: v for k, v in d.items() if k != "purchase_w"} for i, d in expected.items()}
    assert _hits(backend, {"excludes": ["purchase_w"]}) == lean
    assert _hits(backend, {"excludes": ["*_w", "cat*"]}) == {
        i: {k: v for k, v in d.items() if k not in ("category",)} for i, d in lean.items()}
    assert _hits(backend, ["category"]) == {i: {k: v for k, v in d.items() if k in ("id", "category")}
                                            for i, d in expected.items()}
    assert _hits(backend, "purchase*") == {i: {k: v for k, v in d.items() if k.startswith("purchase") or k == "id"}
                                           for i, d in expected.items()}
    snap = backend.snapshot()
    assert snap.base.irregular.tolist() == [2]  # c (a null field) is kept as JSON, the others as arrays


ODD_SCHEMA = IndexSchema(keyword_fields=("purchase", "category"), date_fields=("expires",),
                         number_fields=("popular",), feature_fields=("purchase_w",))
ODD_DOCS = [
    {"id": "a", "purchase": ["x", "y", "x"], "category": [], "expires": "2026-01-02", "popular": 2.5,
     "purchase_w": {"x": 1.5, "y": 2.0}},  # a repeated value, an empty list: kept as given
    {"id": "b", "purchase": None, "popular": 3},  # a null field, an integer number
    {"id": "c", "expires": 1767225600000, "purchase_w": {"x": 2, "z": None}},  # epoch ms, an integer weight, a null
    {"id": "d", "purchase_w": {}},
]


def test_documents_come_back_as_given(tmp_path):
    """Documents are rendered from the version's arrays, value for value and type for type;
    those the arrays cannot hold exactly (b, c) are kept as JSON."""
    backend = EmbeddedBackend(tmp_path, "items", 1)
    backend.create_version(ODD_SCHEMA, [dict(d) for d in ODD_DOCS])
    got = backend.get(["a", "b", "c", "d"])
    assert got == {d["id"]: d for d in ODD_DOCS}
    assert [type(got[i].get("popular")) for i in "abcd"] == [float, int, type(None), type(None)]
    assert backend.snapshot().base.irregular.tolist() == [1, 2]
    hits = backend.search({"query": {"term": {"purchase": "x"}}, "_source": {"excludes": ["purchase_w"]}}).hits
    assert [h.source for h in hits] == [{k: v for k, v in ODD_DOCS[0].items() if k != "purchase_w"}]
    dated = backend.search({"query": {"range": {"expires": {"gte": "2026-01-01T00:00:00Z"}}}}).hits
    assert [h.id for h in dated] == ["a", "c"]  # c's epoch ms is 2026-01-01T00:00:00Z


def _as_format_1(directory: Path, docs: list[dict]) -> None:
    """Rewrite a version directory as format 1 wrote it: documents as JSON lines, no arrays of them."""
    lines = [json.dumps(d, separators=(",", ":")).encode() + b"\n" for d in sorted(docs, key=lambda d: d["id"])]
    (directory / "docs.jsonl").write_bytes(b"".join(lines))
    np.save(directory / "docs.off.npy", np.concatenate([[0], np.cumsum([len(line) for line in lines])]))
    for p in directory.iterdir():
        if ".src" in p.name or p.name.startswith("src."):
            p.unlink()
    meta = json.loads((directory / "meta.json").read_text())
    (directory / "meta.json").write_text(json.dumps(dict(meta, format="cooccur-embedded/1")))


def test_format_1_versions_are_still_read_and_updated(tmp_path):
    from indexer.backend import ChangeSet

    backend = EmbeddedBackend(tmp_path, "items", 3)
    report = backend.create_version(SOURCE_SCHEMA, [dict(d) for d in SOURCE_DOCS], model_id="m1")
    _as_format_1(tmp_path / "items" / report.version, SOURCE_DOCS)
    reader = EmbeddedBackend(tmp_path, "items")
    assert reader.get(["a", "c"]) == {"a": SOURCE_DOCS[0], "c": SOURCE_DOCS[2]}
    assert _hits(reader, True) == {d["id"]: d for d in SOURCE_DOCS}
    assert reader.snapshot().base.segment.source is None
    # a --changed-only update copies its documents into a version of the current format
    update = reader.update_version(SOURCE_SCHEMA, ChangeSet("m1", "m2", [dict(SOURCE_DOCS[1], prior=5.0)], []))
    assert json.loads((tmp_path / "items" / update.version / "meta.json").read_text())["format"] == \
        "cooccur-embedded/2"
    assert _hits(reader, True) == {d["id"]: dict(d, prior=5.0) if d["id"] == "b" else d for d in SOURCE_DOCS}


def test_a_version_of_an_unknown_format_is_refused_with_a_hint(tmp_path):
    backend = EmbeddedBackend(tmp_path, "items", 1)
    report = backend.create_version(SOURCE_SCHEMA, [dict(d) for d in SOURCE_DOCS])
    meta_path = tmp_path / "items" / report.version / "meta.json"
    meta_path.write_text(json.dumps(dict(json.loads(meta_path.read_text()), format="cooccur-embedded/9")))
    with pytest.raises(BackendUnavailable, match="format 'cooccur-embedded/9'") as e:
        EmbeddedBackend(tmp_path, "items").get(["a"])
    assert "cooccur index" in (e.value.hint or "")


@pytest.mark.parametrize("source, path", [
    ({"include": ["a"]}, "_source.include"), ({"includes": [1]}, "_source.includes"), (5, "_source"),
])
def test_bad_source_filters(tmp_path, source, path):
    backend = EmbeddedBackend(tmp_path, "items", 1)
    backend.create_version(SOURCE_SCHEMA, [dict(d) for d in SOURCE_DOCS])
    with pytest.raises(UnsupportedQuery) as e:
        backend.search({"query": {"match_all": {}}, "_source": source})
    assert e.value.path == path


# ----------------------------------------------------------------------------- the columnar path
def _model(root, indicators, properties=(), rankings=()):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for part, rows in (("indicators", indicators), ("properties", properties), ("rankings", rankings)):
        (root / part).mkdir(parents=True)
        if rows:
            pq.write_table(pa.Table.from_pylist(list(rows)), root / part / "part-0.parquet")
    (root / "manifest.json").write_text(json.dumps({"format": "cooccur-model/1", "indicators": ["buy", "view"],
                                                    "properties": ["category", "expireDate"]}))
    return root


EDGE_MODEL = {
    "indicators": [
        # a repeated correlator (once in the postings; its last weight), a weight of 0 (no feature),
        # ids with dots and '%' (encoded feature names), non-ASCII, an empty list, a weight below
        # Float.MIN_NORMAL (no feature, so no weights field at all)
        {"indicator": "buy", "item": "a", "correlators": ["b.1", "c", "z", "c"], "scores": [3.5, 1.25, 0.0, 7.0]},
        {"indicator": "view", "item": "b.1", "correlators": ["a%", "é"], "scores": [2.0, 12.537]},
        {"indicator": "view", "item": "a", "correlators": [], "scores": []},
        {"indicator": "buy", "item": "é", "correlators": ["a"], "scores": [1e-300]},
    ],
    "properties": [
        {"item": "p", "name": "category", "values": ["c1", "c2", "c1"]},
        {"item": "a", "name": "expireDate", "values": ["2026-01-01T00:00:00Z", "not a date, never read"]},
        {"item": "zz", "name": "category", "values": []},  # no value: no document
    ],
    "rankings": [{"item": "a", "popular": 9.0, "trending": -3.0, "hot": 0.0},
                 {"item": "q", "popular": 0.0, "trending": 8.5, "hot": 1e20}],
}


def _index_both(tmp_path, model_rows):
    """The model indexed column by column (ModelDocuments) and document by document (a list)."""
    from indexer.documents import Prior, iter_documents, open_model, schema_for

    model = open_model(_model(tmp_path / "model", **model_rows))
    schema = schema_for(model, ("expireDate",))
    documents = iter_documents(model, schema, prior=Prior("popular", 0.5, 1.0))
    columnar = EmbeddedBackend(tmp_path / "col", "items", 1)
    per_document = EmbeddedBackend(tmp_path / "doc", "items", 1)
    columnar.create_version(schema, documents)
    per_document.create_version(schema, list(documents))
    return schema, documents, columnar.snapshot().base, per_document.snapshot().base


def test_columnar_indexing_writes_what_the_documents_path_writes(tmp_path):
    schema, documents, col, doc = _index_both(tmp_path, EDGE_MODEL)
    assert documents.columns() is not None  # the columnar path was taken
    a, b = col.segment, doc.segment
    assert a.ids.tolist() == b.ids.tolist() == ["a", "b.1", "p", "q", "é"]
    for kind in ("keyword", "features"):
        for field in getattr(schema, f"{kind[:-1] if kind == 'features' else kind}_fields"):
            for x, y in zip(getattr(a, kind)[field], getattr(b, kind)[field], strict=True):
                assert x.dtype == y.dtype and x.tolist() == y.tolist(), (field, x, y)
    for field in schema.number_fields:
        assert np.array_equal(a.numbers[field], b.numbers[field], equal_nan=True)
    assert a.dates["expireDate"].tolist() == b.dates["expireDate"].tolist()
    for slot in range(a.n):
        full, lean = col.document(slot), col.document(slot, lean=True)
        assert full == doc.document(slot) and lean == doc.document(slot, lean=True)
        assert [type(v) for v in full.values()] == [type(doc.document(slot)[k]) for k in full]
    assert col.document(0)["buy_w"] == {"b%2E1": 3.5, "c": 7.0}
    assert col.document(0, lean=True) == {"id": "a", "buy": ["b.1", "c", "z", "c"], "view": [],
                                          "expireDate": "2026-01-01T00:00:00Z", "popular": 9.0, "trending": -3.0,
                                          "hot": 0.0, "prior": 3.0}
    differ = sorted(p.name for p in col.directory.iterdir()
                    if p.name != "meta.json" and p.read_bytes() != (doc.directory / p.name).read_bytes())
    # only a's buy_w: the columnar path keeps the repeated "c" twice (it renders as one key, its last weight)
    assert differ == ["f0.src.codes.npy", "f0.src.offsets.npy", "f0.src.values.npy"]


def test_fields_built_in_threads_give_the_same_files(tmp_path, monkeypatch):
    import indexer.embedded_store as store

    _, _, serial, _ = _index_both(tmp_path / "serial", EDGE_MODEL)
    monkeypatch.setattr(store, "PARALLEL_FROM", 0)  # (a model this small is built serially)
    monkeypatch.setattr(store.os, "cpu_count", lambda: 2)
    _, _, threaded, _ = _index_both(tmp_path / "threaded", EDGE_MODEL)
    names = sorted(p.name for p in serial.directory.iterdir() if p.name != "meta.json")
    assert names == sorted(p.name for p in threaded.directory.iterdir() if p.name != "meta.json")
    assert all((serial.directory / n).read_bytes() == (threaded.directory / n).read_bytes() for n in names)


@pytest.mark.parametrize("change", [
    {"indicators": [{"indicator": "buy", "item": "a", "correlators": ["b", None], "scores": [1.0, 2.0]}]},
    {"indicators": [{"indicator": "buy", "item": 'a"', "correlators": ["b"], "scores": [1.0]}]},
    {"indicators": [{"indicator": "buy", "item": "a", "correlators": ["b", "c"], "scores": [1.0]}]},
    {"indicators": [{"indicator": "buy", "item": "a", "correlators": ["b"], "scores": [1e39]}]},
    {"rankings": [{"item": "a", "popular": float("nan"), "trending": 0.0, "hot": 0.0}]},
])
def test_irregular_models_take_the_documents_path(tmp_path, change):
    """A null, a string JSON must escape, mismatched lists, a weight beyond float32, a
    non-finite number: no columns, so the per-document path judges the model as it always
    did (here, a non-finite ranking fails its document by name)."""
    from indexer.documents import iter_documents, open_model, schema_for

    model = open_model(_model(tmp_path / "model", **{**EDGE_MODEL, **change}))
    schema = schema_for(model, ("expireDate",))
    documents = iter_documents(model, schema)
    assert documents.columns() is None
    if "rankings" in change:
        with pytest.raises(DocumentsFailed) as e:
            EmbeddedBackend(tmp_path / "idx", "items", 1).create_version(schema, documents)
        assert [i for i, _ in e.value.failed] == ["a"]


def test_long_terms_and_ids_are_looked_up_without_matching(backend):
    """Terms longer than every term of the field (and ids longer than every id) match
    nothing, in a large batch looked up through the version's hash table too."""
    long = "x" * 10_000
    few = {"bool": {"should": [{"term": {"purchase": long}}, {"term": {"purchase": "y"}}]}}
    many = {"bool": {"should": [{"term": {"purchase": long + str(k)}} for k in range(100)]
                     + [{"term": {"purchase": "y"}}]}}
    assert set(scores(backend, few)) == set(scores(backend, many)) == {"a", "c"}
    assert scores(backend, {"ids": {"values": [long, *[f"u{k}" for k in range(100)]]}}) == {}
    assert set(scores(backend, {"ids": {"values": [long, "b", *[f"u{k}" for k in range(100)]]}})) == {"b"}


def test_search_threads_give_the_same_scores(tmp_path, monkeypatch):
    """[index] search_threads splits the posting scans by document range: the scores are
    the same bits with 1, 2 or 3 threads; auto (0) shares the cores among the searches a
    server runs at once."""
    from indexer import embedded, kernels

    monkeypatch.setattr(kernels, "SPLIT_MIN", 0)
    docs = [{"id": f"i{k:03d}", "purchase": [f"i{(k * 7 + j) % 300:03d}" for j in range(6)],
             "category": [f"c{k % 3}"]} for k in range(300)]
    b = EmbeddedBackend(tmp_path, "items")
    b.create_version(IndexSchema(("purchase", "category")), docs)
    should = [{"term": {"purchase": {"value": f"i{h:03d}", "boost": 1 + h / 7}}} for h in range(0, 300, 3)]
    query = {"bool": {"should": should, "filter": [{"terms": {"category": ["c1", "c2"]}}]}}
    got = []
    for threads in (1, 2, 3):
        b.search_threads = threads
        got.append([(h.id, h.score) for h in b.search({"query": query, "size": 300, "_source": False}).hits])
    assert got[0] and got[0] == got[1] == got[2]
    assert embedded.search_threads(3) == 3
    monkeypatch.setattr(embedded.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert embedded.search_threads(0) == 4
    assert embedded.search_threads(0, searches_at_once=2) == 2
    assert embedded.search_threads(0, searches_at_once=8) == 1
    assert embedded.search_threads(3, searches_at_once=8) == 3
    with pytest.raises(ValueError, match="search_threads"):
        EmbeddedBackend(tmp_path, "items", search_threads=-1)
