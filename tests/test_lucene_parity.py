"""Parity with the engine inside Elasticsearch: a real Lucene 8.7 (Debian's liblucene8-java,
driven through JPype) ranks the same documents for the same queries exactly like the
embedded backend: same ids, same order, scores within 1e-6 relative.

Lucene is set up the way Elasticsearch sets up a keyword field and its default similarity:
StringField (IndexOptions.DOCS, norms omitted) and LegacyBM25Similarity (k1 = 1.2, b = 0.75).
Documents are added in id order, so Lucene's tie-break (doc id) equals ours (id asc).
"""

from __future__ import annotations

import glob
import os
import random

import pytest

from indexer.backend import IndexSchema
from indexer.embedded import EmbeddedBackend

pytestmark = pytest.mark.lucene

JAR_DIR = "/usr/share/java"
FIELDS = ("purchase", "view")
N_DOCS = 300
N_QUERIES = 300


def _jars() -> list[str]:
    jars = []
    for name in ("lucene-core", "lucene-misc"):
        found = sorted(glob.glob(os.path.join(JAR_DIR, f"{name}-8*.jar")) or
                       glob.glob(os.path.join(JAR_DIR, f"{name}.jar")))
        if not found:
            return []
        jars.append(found[-1])
    return jars


@pytest.fixture(scope="session")
def lucene():
    """The JVM with Lucene on the class path, started once per test session (JPype can
    start only one JVM per process; Spark's JVM is a separate process, so no conflict)."""
    jpype = pytest.importorskip("jpype", reason="jpype1 is not installed (pip install jpype1)")
    jars = _jars()
    if not jars:
        pytest.skip(f"liblucene8-java is not installed: no lucene-core / lucene-misc jars in {JAR_DIR}")
    if not jpype.isJVMStarted():
        jpype.startJVM(classpath=jars, convertStrings=False)
    return jpype


def _model(seed: int = 7):
    """A generated model: zipf-ish popularity of correlators, categories, a popularity ranking."""
    rnd = random.Random(seed)
    ids = [f"i{k:04d}" for k in range(N_DOCS)]
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(N_DOCS)]
    categories = [f"c{k}" for k in range(8)]
    docs = []
    for doc_id in ids:
        doc: dict = {"id": doc_id}
        for field in FIELDS:
            if rnd.random() < 0.9:  # some documents lack a field: docCount < number of docs
                k = rnd.randint(1, 25)
                doc[field] = sorted(set(rnd.choices(ids, weights=weights, k=k)))
        if rnd.random() < 0.8:
            doc["category"] = rnd.sample(categories, rnd.randint(1, 2))
        if rnd.random() < 0.85:
            doc["popular"] = float(rnd.randint(0, 50))
        docs.append(doc)
    return ids, weights, categories, docs


def _queries(ids, weights, categories, seed: int = 11):
    """Query bodies of the design's shapes, in the Elasticsearch JSON the embedded backend takes."""
    rnd = random.Random(seed)
    for q in range(N_QUERIES):
        history = rnd.choices(ids, weights=weights, k=rnd.choice([1, 3, 10, 40]))
        should = []
        for field in FIELDS:
            boost = rnd.choice([1.0, 0.5, 2.0, round(rnd.uniform(0.1, 3.0), 3)])
            for item in history:
                if boost == 1.0 and rnd.random() < 0.5:
                    should.append({"term": {field: item}})
                else:
                    should.append({"term": {field: {"value": item, "boost": boost}}})
        if rnd.random() < 0.1:
            should.append({"term": {"purchase": "no-such-item"}})
        if rnd.random() < 0.4:
            should.append({"constant_score": {"filter": {"terms": {"category": rnd.sample(categories, 2)}},
                                              "boost": round(rnd.uniform(0.5, 5.0), 2)}})
        clauses: dict = {"should": should}
        if rnd.random() < 0.4:
            clauses["filter"] = [{"terms": {"category": rnd.sample(categories, rnd.randint(1, 4))}}]
        if rnd.random() < 0.2:
            clauses.setdefault("filter", []).append({"range": {"popular": {"gte": rnd.randint(0, 20)}}})
        if rnd.random() < 0.7:
            clauses["must_not"] = [{"ids": {"values": history[: rnd.randint(1, len(history))]}}]
        if rnd.random() < 0.1:
            clauses["must"] = [{"term": {"view": rnd.choice(history)}}]
        if rnd.random() < 0.15:
            clauses["minimum_should_match"] = rnd.randint(1, 3)
        if rnd.random() < 0.2:
            clauses["boost"] = round(rnd.uniform(0.2, 4.0), 2)
        query = {"bool": clauses}
        if q % 25 == 0:
            # nested bools, as a builder composing rule sub-queries would send
            query = {"bool": {"should": [query, {"bool": {"should": [{"term": {"id": rnd.choice(ids)}}]}}]}}
        yield query


def _to_lucene(J, node):
    """The Lucene query Elasticsearch builds for a node of our subset."""
    kind, spec = next(iter(node.items()))
    BytesRef = J.JClass("org.apache.lucene.util.BytesRef")
    Term = J.JClass("org.apache.lucene.index.Term")
    BoostQuery = J.JClass("org.apache.lucene.search.BoostQuery")

    def boosted(q, boost):
        return BoostQuery(q, float(boost)) if boost != 1.0 else q

    def term_set(field, values):
        refs = J.JClass("java.util.ArrayList")()
        for v in values:
            refs.add(BytesRef(v))
        return J.JClass("org.apache.lucene.search.TermInSetQuery")(field, refs)

    if kind == "term":
        field, value = next(iter(spec.items()))
        boost = 1.0
        if isinstance(value, dict):
            value, boost = value["value"], value.get("boost", 1.0)
        return boosted(J.JClass("org.apache.lucene.search.TermQuery")(Term(field, value)), boost)
    if kind == "terms":
        field = next(k for k in spec if k != "boost")
        return boosted(term_set(field, spec[field]), spec.get("boost", 1.0))
    if kind == "ids":
        return boosted(term_set("id", spec["values"]), spec.get("boost", 1.0))
    if kind == "constant_score":
        inner = J.JClass("org.apache.lucene.search.ConstantScoreQuery")(_to_lucene(J, spec["filter"]))
        return boosted(inner, spec.get("boost", 1.0))
    if kind == "range":
        field, bounds = next(iter(spec.items()))
        FloatPoint = J.JClass("org.apache.lucene.document.FloatPoint")
        return FloatPoint.newRangeQuery(field, float(bounds["gte"]), float("inf"))
    assert kind == "bool", kind
    Occur = J.JClass("org.apache.lucene.search.BooleanClause$Occur")
    builder = J.JClass("org.apache.lucene.search.BooleanQuery$Builder")()
    for occur_name, occur in (("should", Occur.SHOULD), ("must", Occur.MUST),
                              ("filter", Occur.FILTER), ("must_not", Occur.MUST_NOT)):
        for clause in spec.get(occur_name, []):
            builder.add(_to_lucene(J, clause), occur)
    if "minimum_should_match" in spec:
        builder.setMinimumNumberShouldMatch(spec["minimum_should_match"])
    return boosted(builder.build(), spec.get("boost", 1.0))


@pytest.fixture(scope="module")
def indexes(lucene, tmp_path_factory):
    J = lucene
    ids, weights, categories, docs = _model()
    schema = IndexSchema(keyword_fields=(*FIELDS, "category"), number_fields=("popular",))
    backend = EmbeddedBackend(tmp_path_factory.mktemp("parity"), "items", 1)
    backend.create_version(schema, docs)

    Store = J.JClass("org.apache.lucene.document.Field$Store")
    StringField = J.JClass("org.apache.lucene.document.StringField")
    FloatPoint = J.JClass("org.apache.lucene.document.FloatPoint")
    IndexOptions = J.JClass("org.apache.lucene.index.IndexOptions")
    for ftype in (StringField.TYPE_NOT_STORED, StringField.TYPE_STORED):
        assert ftype.indexOptions() == IndexOptions.DOCS and ftype.omitNorms()
    Similarity = J.JClass("org.apache.lucene.search.similarity.LegacyBM25Similarity")
    directory = J.JClass("org.apache.lucene.store.ByteBuffersDirectory")()
    config = J.JClass("org.apache.lucene.index.IndexWriterConfig")()
    config.setSimilarity(Similarity())
    writer = J.JClass("org.apache.lucene.index.IndexWriter")(directory, config)
    for doc in sorted(docs, key=lambda d: d["id"]):  # id order = Lucene doc order
        ldoc = J.JClass("org.apache.lucene.document.Document")()
        ldoc.add(StringField("id", doc["id"], Store.YES))
        for field in (*FIELDS, "category"):
            for value in doc.get(field, []):
                ldoc.add(StringField(field, value, Store.NO))
        if "popular" in doc:
            ldoc.add(FloatPoint("popular", float(doc["popular"])))
        writer.addDocument(ldoc)
    writer.close()
    reader = J.JClass("org.apache.lucene.index.DirectoryReader").open(directory)
    assert reader.leaves().size() == 1, "one segment, so doc ids are in insertion (id) order"
    searcher = J.JClass("org.apache.lucene.search.IndexSearcher")(reader)
    searcher.setSimilarity(Similarity())
    yield backend, searcher, list(_queries(ids, weights, categories))
    reader.close()


def _lucene_hits(J, searcher, query) -> list[tuple[str, float]]:
    top = searcher.search(_to_lucene(J, query), N_DOCS)
    return [(str(searcher.doc(sd.doc).get("id")), float(sd.score)) for sd in top.scoreDocs]


def test_known_case_matches_lucene(lucene, tmp_path):
    """DESIGN.md's hand-checked case through both engines."""
    J = lucene
    schema = IndexSchema(keyword_fields=("purchase",))
    docs = [{"id": "1", "purchase": ["a", "b", "c"]}, {"id": "2", "purchase": ["a"]},
            {"id": "3", "purchase": ["b", "c", "d", "e"]}]
    backend = EmbeddedBackend(tmp_path, "items", 1)
    backend.create_version(schema, docs)
    Store = J.JClass("org.apache.lucene.document.Field$Store")
    StringField = J.JClass("org.apache.lucene.document.StringField")
    Similarity = J.JClass("org.apache.lucene.search.similarity.LegacyBM25Similarity")
    directory = J.JClass("org.apache.lucene.store.ByteBuffersDirectory")()
    writer = J.JClass("org.apache.lucene.index.IndexWriter")(
        directory, J.JClass("org.apache.lucene.index.IndexWriterConfig")())
    for doc in docs:
        ldoc = J.JClass("org.apache.lucene.document.Document")()
        ldoc.add(StringField("id", doc["id"], Store.YES))
        for v in doc["purchase"]:
            ldoc.add(StringField("purchase", v, Store.NO))
        writer.addDocument(ldoc)
    writer.close()
    reader = J.JClass("org.apache.lucene.index.DirectoryReader").open(directory)
    searcher = J.JClass("org.apache.lucene.search.IndexSearcher")(reader)
    searcher.setSimilarity(Similarity())
    query = {"bool": {"should": [{"term": {"purchase": "a"}}, {"term": {"purchase": "c"}}]}}
    theirs = _lucene_hits(J, searcher, query)
    ours = [(h.id, h.score) for h in backend.search({"query": query}).hits]
    assert theirs[0] == ("1", pytest.approx(1.2629106, rel=1e-6))
    assert [i for i, _ in ours] == [i for i, _ in theirs]
    assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], rel=1e-6)
    reader.close()


def test_generated_queries_rank_like_lucene(lucene, indexes):
    backend, searcher, queries = indexes
    assert len(queries) == N_QUERIES
    compared = 0
    for n, query in enumerate(queries):
        theirs = _lucene_hits(lucene, searcher, query)
        ours = [(h.id, h.score) for h in
                backend.search({"query": query, "size": N_DOCS, "_source": False}).hits]
        assert [i for i, _ in ours] == [i for i, _ in theirs], f"query {n}: {query}"
        for (doc_id, s1), (_, s2) in zip(ours, theirs, strict=True):
            assert s1 == pytest.approx(s2, rel=1e-6, abs=1e-9), f"query {n}, doc {doc_id}: {query}"
        compared += len(theirs)
    assert compared > N_QUERIES * 10  # the queries really match documents
