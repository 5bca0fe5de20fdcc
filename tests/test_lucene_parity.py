"""Parity with the engine inside Elasticsearch: a real Lucene 8.7 (Debian's liblucene8-java,
driven through JPype) ranks the same documents for the same queries exactly like the
embedded backend: same ids, same order, scores within 1e-6 relative.

Lucene is set up the way Elasticsearch sets up a keyword field and its default similarity:
StringField (IndexOptions.DOCS, norms omitted) and LegacyBM25Similarity (k1 = 1.2, b = 0.75).
Documents are added in id order, so Lucene's tie-break (doc id) equals ours (id asc).

A `rank_features` field is what Elasticsearch's RankFeaturesFieldMapper indexes: one
FeatureField per feature; a `rank_feature` query is FeatureField.newLinearQuery /
newSaturationQuery / newLogQuery with weight 1 in a BoostQuery of the query's boost
(RankFeatureQueryBuilder). A `function_score` multiplying by a float field is Lucene's
FunctionScoreQuery.boostByValue on the float's doc values, which computes
(float) (score * value) like Elasticsearch's FunctionScoreQuery with CombineFunction.MULTIPLY;
Elasticsearch passes the function_score's boost down to its query, so the oracle boosts the
inner query.
"""

from __future__ import annotations

import copy
import glob
import os
import random

import numpy as np
import pytest

import indexer.embedded_store
from indexer.backend import IndexSchema
from indexer.embedded import EmbeddedBackend
from indexer.features import encode_feature

pytestmark = pytest.mark.lucene

JAR_DIR = "/usr/share/java"
FIELDS = ("purchase", "view")
N_DOCS = 300
N_QUERIES = 300


def _jars() -> list[str]:
    jars = []
    for name in ("lucene-core", "lucene-misc", "lucene-queries"):
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
        pytest.skip(f"liblucene8-java is not installed: no lucene-core / lucene-misc / lucene-queries jars "
                    f"in {JAR_DIR}")
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
    if kind == "rank_feature":
        FeatureField = J.JClass("org.apache.lucene.document.FeatureField")
        field, _, feature = spec["field"].rpartition(".")  # RankFeatureQueryBuilder: the last dot
        if "linear" in spec:
            q = FeatureField.newLinearQuery(field, feature, 1.0)
        elif "saturation" in spec:
            q = FeatureField.newSaturationQuery(field, feature, 1.0, float(spec["saturation"]["pivot"]))
        else:
            q = FeatureField.newLogQuery(field, feature, 1.0, float(spec["log"]["scaling_factor"]))
        return boosted(q, spec.get("boost", 1.0))
    if kind == "function_score":
        assert spec.get("boost_mode", "multiply") == "multiply" and set(spec["field_value_factor"]) <= {
            "field", "missing"} and spec["field_value_factor"].get("missing", 1.0) == 1.0, spec
        inner = boosted(_to_lucene(J, spec["query"]), spec.get("boost", 1.0))
        values = J.JClass("org.apache.lucene.search.DoubleValuesSource").fromFloatField(
            spec["field_value_factor"]["field"])
        # a document without the value counts 1.0 (DoubleValues.withDefault): `missing: 1.0`
        return J.JClass("org.apache.lucene.queries.function.FunctionScoreQuery").boostByValue(inner, values)
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


# --------------------------------------------------------------------------- rank_features, function_score
WEIGHTED = tuple(f"{f}_w" for f in FIELDS)
"""The rank_features field of each indicator: {encoded correlator id: weight}."""
N_FEATURE_QUERIES = 300
FEATURE_SCHEMA = IndexSchema(keyword_fields=(*FIELDS, "category"), number_fields=("prior",),
                             feature_fields=WEIGHTED)


def _feature_model(seed: int = 5):
    """Zipf-ish correlators with weights, some item ids with dots and '%' (encoded as feature
    names), a prior on most documents."""
    rnd = random.Random(seed)
    ids = [f"i.{k:04d}" if k % 7 == 0 else f"i%{k}.x" if k % 31 == 0 else f"i{k:04d}" for k in range(N_DOCS)]
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(N_DOCS)]
    categories = [f"c{k}" for k in range(8)]

    def weight() -> float:
        r = rnd.random()
        if r < 0.05:
            return float(rnd.randint(1, 4))  # equal values: ties
        if r < 0.07:
            return rnd.uniform(1e-20, 1e-18)  # tiny, still a normal float
        return rnd.lognormvariate(1.5, 1.5)  # LLR-like

    docs = []
    for doc_id in ids:
        doc: dict = {"id": doc_id}
        for field, wfield in zip(FIELDS, WEIGHTED, strict=True):
            if rnd.random() < 0.9:
                correlators = sorted(set(rnd.choices(ids, weights=weights, k=rnd.randint(1, 25))))
                doc[field] = correlators
                doc[wfield] = {encode_feature(c): weight() for c in correlators}
        if rnd.random() < 0.8:
            doc["category"] = rnd.sample(categories, rnd.randint(1, 2))
        if rnd.random() < 0.85:
            doc["prior"] = rnd.uniform(1.0, 60.0) ** 0.5
        docs.append(doc)
    return ids, weights, categories, docs


def _function(rnd: random.Random) -> tuple[str, dict]:
    kind = rnd.choice(["linear", "saturation", "log"])
    if kind == "linear":
        return kind, {}
    if kind == "saturation":
        return kind, {"pivot": rnd.choice([1.0, 5.0, round(rnd.uniform(0.1, 100.0), 3)])}
    return kind, {"scaling_factor": rnd.choice([1.0, 2.0, round(rnd.uniform(1.0, 50.0), 3)])}


def _feature_queries(ids, weights, categories, seed: int = 13):
    """The builder's shapes (query/builder.py build_query): personal clauses (BM25 `term`
    and / or `rank_feature`) in a bool should with minimum_should_match 1, maybe inside a
    function_score multiplying by the prior, in an outer bool with rule boosts, filters and
    excluded ids."""
    rnd = random.Random(seed)
    for q in range(N_FEATURE_QUERIES):
        shape = q % 4  # 0: terms in a function_score, 1: rank_features, 2: mixed, 3: 1 or 2 in a function_score
        history = list(dict.fromkeys(rnd.choices(ids, weights=weights, k=rnd.choice([1, 3, 10, 40]))))
        kind, params = _function(rnd)
        mixed_functions = rnd.random() < 0.15
        decay = rnd.choice([1.0, 0.9])
        clauses = []
        for field, wfield in zip(FIELDS, WEIGHTED, strict=True):
            base = rnd.choice([1.0, 0.5, 2.0, 100.0, round(rnd.uniform(0.1, 3.0), 3)])
            as_features = shape in (1, 3) or (shape == 2 and field == "purchase")
            if shape == 3 and q % 8 == 7:
                as_features = field == "view"
            for k, item in enumerate(history):
                boost = base * decay**k
                if not as_features:
                    clauses.append({"term": {field: {"value": item, "boost": boost}}})
                    continue
                if mixed_functions:
                    kind, params = _function(rnd)
                clause = {"field": f"{wfield}.{encode_feature(item)}", kind: params}
                if boost != 1.0 or rnd.random() < 0.5:
                    clause["boost"] = boost
                clauses.append({"rank_feature": clause})
        personal: dict = {"bool": {"should": clauses, "minimum_should_match": 1}}
        if shape in (0, 3):
            personal = {"function_score": {"query": personal, "field_value_factor": {"field": "prior", "missing": 1.0},
                                           "boost_mode": "multiply"}}
            if rnd.random() < 0.2:
                personal["function_score"]["boost"] = round(rnd.uniform(0.2, 4.0), 2)
        if rnd.random() < 0.1:
            yield personal
            continue
        outer: dict = {"must": [personal]}
        if rnd.random() < 0.5:
            picked = rnd.sample(categories, 2)  # before the boost: keeps the seeded draw order
            outer["should"] = [{"terms": {"category": picked, "boost": round(rnd.uniform(0.5, 5.0), 2)}}]
        if rnd.random() < 0.2:
            outer["filter"] = [{"terms": {"category": rnd.sample(categories, rnd.randint(1, 4))}}]
        if rnd.random() < 0.7:
            outer["must_not"] = [{"ids": {"values": history[: rnd.randint(1, len(history))]}}]
        yield {"bool": outer}


def _lucene_feature_index(J, docs):
    Store = J.JClass("org.apache.lucene.document.Field$Store")
    StringField = J.JClass("org.apache.lucene.document.StringField")
    FeatureField = J.JClass("org.apache.lucene.document.FeatureField")
    FloatDocValuesField = J.JClass("org.apache.lucene.document.FloatDocValuesField")
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
        for field in WEIGHTED:
            for feature, value in doc.get(field, {}).items():
                ldoc.add(FeatureField(field, feature, float(value)))
        if "prior" in doc:
            ldoc.add(FloatDocValuesField("prior", float(doc["prior"])))
        writer.addDocument(ldoc)
    writer.close()
    reader = J.JClass("org.apache.lucene.index.DirectoryReader").open(directory)
    assert reader.leaves().size() == 1, "one segment, so doc ids are in insertion (id) order"
    searcher = J.JClass("org.apache.lucene.search.IndexSearcher")(reader)
    searcher.setSimilarity(Similarity())
    return reader, searcher


def _embedded(path, docs) -> EmbeddedBackend:
    backend = EmbeddedBackend(path, "items", 1)
    backend.create_version(FEATURE_SCHEMA, docs)
    return backend


def _ours(backend, query) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in backend.search({"query": query, "size": N_DOCS, "_source": False}).hits]


def _agree(ours, theirs) -> bool:
    return [i for i, _ in ours] == [i for i, _ in theirs] and all(
        s1 == pytest.approx(s2, rel=1e-6, abs=1e-9) for (_, s1), (_, s2) in zip(ours, theirs, strict=True))


@pytest.fixture(scope="module")
def feature_indexes(lucene, tmp_path_factory):
    """(embedded backend, the model's documents, queries, Lucene's answer to each query)."""
    ids, weights, categories, docs = _feature_model()
    backend = _embedded(tmp_path_factory.mktemp("features"), docs)
    reader, searcher = _lucene_feature_index(lucene, docs)
    queries = list(_feature_queries(ids, weights, categories))
    answers = [_lucene_hits(lucene, searcher, q) for q in queries]
    reader.close()
    return backend, docs, queries, answers


def test_known_feature_case_matches_lucene(lucene, tmp_path):
    """The hand-worked values of tests/test_embedded.py, straight from Lucene: feature values
    keep 9 significant bits (truncated), each function's float arithmetic, the prior."""
    J = lucene
    docs = [{"id": "a", "purchase_w": {"x": 0.1, "y%2Ez": 3.0}, "prior": 2.0},
            {"id": "b", "purchase_w": {"x": 1000.7}},
            {"id": "c", "purchase_w": {"y%2Ez": 5.0}, "prior": 0.5}]
    reader, searcher = _lucene_feature_index(J, [
        {"id": d["id"], "view_w": {}, **{k: v for k, v in d.items() if k != "id"}} for d in docs])
    backend = _embedded(tmp_path, docs)
    cases = [
        ({"rank_feature": {"field": "purchase_w.x", "linear": {}}}, [("b", 1000.0), ("a", 0.0998535156)]),
        ({"rank_feature": {"field": "purchase_w.x", "saturation": {"pivot": 1.0}, "boost": 2.0}},
         [("b", 1.998002052), ("a", 0.1815760136)]),  # float: 2 * (1 - 1 / 1001)
        ({"rank_feature": {"field": "purchase_w.y%2Ez", "log": {"scaling_factor": 1.0}}},
         [("c", 1.791759469), ("a", 1.386294361)]),
        ({"function_score": {"query": {"rank_feature": {"field": "purchase_w.x", "linear": {}}},
                             "field_value_factor": {"field": "prior", "missing": 1.0}}},
         [("b", 1000.0), ("a", 0.1997070312)]),
    ]
    for query, expected in cases:
        theirs = _lucene_hits(J, searcher, query)
        assert [i for i, _ in theirs] == [i for i, _ in expected], query
        assert [s for _, s in theirs] == pytest.approx([s for _, s in expected], rel=1e-7), query
        assert _agree(_ours(backend, query), theirs), query
    reader.close()


def test_feature_queries_rank_like_lucene(feature_indexes):
    backend, _, queries, answers = feature_indexes
    assert len(queries) == N_FEATURE_QUERIES
    compared = 0
    shapes = {"rank_feature": 0, "function_score": 0, "term": 0}
    # Twice: the second pass gathers the functions' values that the evaluator computed once
    # per version over the fields' distinct values (BaseVersion.derived_table).
    for n, (query, theirs) in enumerate([*zip(queries, answers, strict=True)] * 2):
        ours = _ours(backend, query)
        assert [i for i, _ in ours] == [i for i, _ in theirs], f"query {n}: {query}"
        for (doc_id, s1), (_, s2) in zip(ours, theirs, strict=True):
            assert s1 == pytest.approx(s2, rel=1e-6, abs=1e-9), f"query {n}, doc {doc_id}: {query}"
        compared += len(theirs) if n < len(queries) else 0
        text = repr(query)
        for shape in shapes:
            shapes[shape] += f"'{shape}'" in text
    assert compared > N_FEATURE_QUERIES * 10  # the queries really match documents
    assert min(shapes.values()) > N_FEATURE_QUERIES * 2 / 5, shapes
    derived = {(key[0], key[2]) for key in backend.snapshot().base._derived}
    assert derived == {("table", "pre")}, derived  # the cached path was compared


def _nudged(queries, kind: str, factor: float):
    """Copies of the queries with one parameter of every clause of `kind` times `factor`."""
    def walk(node):
        if isinstance(node, dict):
            if kind == "pivot" and "saturation" in node:
                node["saturation"]["pivot"] *= factor
            if kind == "scaling_factor" and "log" in node:
                node["log"]["scaling_factor"] *= factor
            if kind == "boost" and "rank_feature" in node:
                node["rank_feature"]["boost"] = node["rank_feature"].get("boost", 1.0) * factor
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    out = copy.deepcopy(queries)
    walk(out)
    return out


@pytest.mark.parametrize("kind", ["pivot", "scaling_factor", "boost"])
def test_parity_fails_when_a_parameter_is_nudged(feature_indexes, kind):
    """The comparison is sharp: a parameter 0.1% off breaks it."""
    backend, _, queries, answers = feature_indexes
    nudged = _nudged(queries, kind, 1.001)
    assert nudged != queries
    broken = sum(not _agree(_ours(backend, q), theirs) for q, theirs in zip(nudged, answers, strict=True))
    assert broken > 10, f"{kind}: only {broken} queries disagree"


def test_parity_fails_with_a_nudged_prior_or_without_quantization(feature_indexes, tmp_path, monkeypatch):
    """Documents with prior ** 1.001, or feature values kept at full float32 precision instead
    of FeatureField's 9 bits, rank and score differently from Lucene."""
    _, docs, queries, answers = feature_indexes
    with_prior = [i for i, q in enumerate(queries) if "function_score" in repr(q)]
    nudged_docs = [{**d, "prior": d["prior"] ** 1.001} if "prior" in d else d for d in docs]
    backend = _embedded(tmp_path / "prior", nudged_docs)
    broken = sum(not _agree(_ours(backend, queries[i]), answers[i]) for i in with_prior)
    assert broken > 10, f"prior: only {broken} queries disagree"

    monkeypatch.setattr(indexer.embedded_store, "quantize", lambda v: np.asarray(v, np.float32))
    backend = _embedded(tmp_path / "full", docs)
    with_features = [i for i, q in enumerate(queries) if "rank_feature" in repr(q)]
    broken = sum(not _agree(_ours(backend, queries[i]), answers[i]) for i in with_features)
    assert broken > 10, f"quantization: only {broken} queries disagree"


def test_dense_hot_lists_rank_like_lucene(lucene, indexes, feature_indexes, tmp_path, monkeypatch):
    """The evaluator adds the longest posting lists as dense rows (BaseVersion.hot_rows: lists
    of over 1/8 of the documents and 4096 postings): forced here on the small parity indexes,
    the same scores as Lucene, bit for bit, for term and rank_feature clauses."""
    from indexer.embedded_store import BaseVersion

    monkeypatch.setattr(BaseVersion, "HOT_MIN", 0)
    monkeypatch.setattr(BaseVersion, "HOT_SHARE", 25)
    _, searcher, queries = indexes
    ids, weights, categories, docs = _model()
    backend = EmbeddedBackend(tmp_path / "terms", "items", 1)
    backend.create_version(IndexSchema(keyword_fields=(*FIELDS, "category"), number_fields=("popular",)), docs)
    for n, query in enumerate(queries):
        theirs = _lucene_hits(lucene, searcher, query)
        ours = [(h.id, h.score) for h in backend.search({"query": query, "size": N_DOCS, "_source": False}).hits]
        assert [i for i, _ in ours] == [i for i, _ in theirs], f"query {n}: {query}"
        assert [s for _, s in ours] == [pytest.approx(s, rel=1e-6, abs=1e-9) for _, s in theirs], f"query {n}"
    base = backend.snapshot().base
    assert any(k[:2] == ("dense", "k") for k in base._derived), "no dense keyword rows were used"

    _, fdocs, fqueries, answers = feature_indexes
    fbackend = _embedded(tmp_path / "features", fdocs)
    used = {"dense_keyword": 0, "dense_feature": 0}

    def spy(name):
        real = getattr(BaseVersion, name)

        def counted(self, *args):
            used[name] += 1
            return real(self, *args)
        return counted

    for name in used:
        monkeypatch.setattr(BaseVersion, name, spy(name))
    for n, (query, theirs) in enumerate([*zip(fqueries, answers, strict=True)] * 2):
        assert _agree(_ours(fbackend, query), theirs), f"query {n}: {query}"
    assert min(used.values()) > N_FEATURE_QUERIES / 5, used
