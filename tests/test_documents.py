"""indexer.documents: a model directory becomes one document per item."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer.documents import Prior, iter_documents, open_model, schema_for
from indexer.errors import ModelDirError


def write_model(root, manifest=None, indicators=(), rankings=(), properties=()):
    root.mkdir(parents=True, exist_ok=True)
    for part in ("indicators", "rankings", "properties"):
        (root / part).mkdir(exist_ok=True)
    if indicators:
        pq.write_table(pa.Table.from_pylist(list(indicators)), root / "indicators" / "part-0.parquet")
    if rankings:
        pq.write_table(pa.Table.from_pylist(list(rankings)), root / "rankings" / "part-0.parquet")
    if properties:
        pq.write_table(pa.Table.from_pylist(list(properties)), root / "properties" / "part-0.parquet")
    manifest = manifest or {"format": "cooccur-model/1", "indicators": ["buy", "view"],
                            "properties": ["category", "expireDate"]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_every_item_gets_one_document(tmp_path):
    root = write_model(
        tmp_path / "m",
        indicators=[
            {"indicator": "buy", "item": "a", "correlators": ["b", "c"], "scores": [3.0, 1.0]},
            {"indicator": "view", "item": "a", "correlators": ["x"], "scores": [2.0]},
        ],
        rankings=[{"item": "r", "popular": 4.0, "trending": 1.0, "hot": -1.0}],
        properties=[
            {"item": "p", "name": "category", "values": ["c1", "c2"]},
            {"item": "a", "name": "expireDate", "values": ["2026-01-01T00:00:00Z"]},
        ],
    )
    model = open_model(root)
    schema = schema_for(model, ("expireDate", "availableDate"), weights=False)
    assert schema.keyword_fields == ("buy", "view", "category")
    assert schema.date_fields == ("expireDate",)
    assert schema.number_fields == ("popular", "trending", "hot", "prior")
    assert schema.feature_fields == ()
    # prior = max(popular, 1) ** 0.5: 1 for items without a ranking
    assert list(iter_documents(model, schema, prior=Prior("popular", 0.5, 1.0))) == [
        {"id": "a", "buy": ["b", "c"], "view": ["x"], "expireDate": "2026-01-01T00:00:00Z", "prior": 1.0},
        {"id": "p", "category": ["c1", "c2"], "prior": 1.0},
        {"id": "r", "popular": 4.0, "trending": 1.0, "hot": -1.0, "prior": 2.0},
    ]


def test_correlator_weights_and_prior_known_answer(tmp_path):
    root = write_model(
        tmp_path / "m",
        indicators=[
            # a correlator scoring 0 has no weight (rank_features values must be positive);
            # ids with dots are encoded as feature names
            {"indicator": "buy", "item": "a", "correlators": ["b.1", "c", "z"], "scores": [3.5, 1.25, 0.0]},
            {"indicator": "view", "item": "b.1", "correlators": ["a%"], "scores": [2.0]},
        ],
        rankings=[{"item": "a", "popular": 9.0, "trending": -3.0, "hot": 0.0},
                  {"item": "b.1", "popular": 0.0, "trending": 8.0, "hot": 0.0}],
    )
    model = open_model(root)
    schema = schema_for(model)
    assert schema.feature_fields == ("buy_w", "view_w")
    docs = list(iter_documents(model, schema, prior=Prior("popular", 0.5, 1.0)))
    assert docs[0]["buy"] == ["b.1", "c", "z"]
    assert docs[0]["buy_w"] == {"b%2E1": 3.5, "c": 1.25}
    assert docs[1]["view_w"] == {"a%25": 2.0}
    assert [d["prior"] for d in docs] == [3.0, 1.0]  # sqrt(9); popular 0 counts as the floor 1
    # trending ** 1 with floor 2: -3 -> 2, 8 -> 8; exponent 0 gives every item 1
    assert [d["prior"] for d in iter_documents(model, schema, prior=Prior("trending", 1.0, 2.0))] == [2.0, 8.0]
    assert [d["prior"] for d in iter_documents(model, schema, prior=Prior("popular", 0.0, 1.0))] == [1.0, 1.0]


def test_weights_field_clashing_with_a_property_is_named(tmp_path):
    manifest = {"format": "cooccur-model/1", "indicators": ["buy"], "properties": ["buy_w"]}
    with pytest.raises(ModelDirError, match="used twice"):
        open_model(write_model(tmp_path / "m", manifest=manifest))


@pytest.mark.parametrize(
    "manifest, problem",
    [
        ({"format": "other/1", "indicators": ["buy"]}, "format 'other/1'"),
        ({"format": "cooccur-model/1"}, "no `indicators` list"),
        ({"format": "cooccur-model/1", "indicators": ["buy"], "properties": ["buy"]}, "used twice"),
        ({"format": "cooccur-model/1", "indicators": ["popular"]}, "used twice"),
        ({"format": "cooccur-model/1", "indicators": ["prior"]}, "used twice"),
    ],
)
def test_bad_manifests_are_named(tmp_path, manifest, problem):
    root = write_model(tmp_path / "m", manifest=manifest)
    with pytest.raises(ModelDirError, match=problem):
        open_model(root)


def test_missing_and_corrupt_model_dirs(tmp_path):
    with pytest.raises(ModelDirError, match="not a directory"):
        open_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="no manifest.json"):
        open_model(tmp_path / "empty")
    root = write_model(tmp_path / "m")
    (root / "manifest.json").write_text("{oops")
    with pytest.raises(ModelDirError, match="invalid JSON at line 1"):
        open_model(root)
    root = write_model(tmp_path / "m2")
    (root / "indicators" / "part-0.parquet").write_bytes(b"not parquet at all")
    model = open_model(root)
    with pytest.raises(ModelDirError, match="unreadable Parquet"):
        list(iter_documents(model, schema_for(model)))


def _lists(column, n, values=False):
    """Per document: the list a ListColumn holds (None where absent), or with `values` the
    dict of its names and values."""
    words = column.dictionary.to_pylist()
    out = []
    for d in range(n):
        if not column.present[d]:
            out.append(None)
            continue
        span = range(column.offsets[d], column.offsets[d + 1])
        names = [words[column.codes[p]] for p in span]
        out.append(dict(zip(names, column.values[span].tolist(), strict=True)) if values else names)
    return out


def test_columns_hold_the_documents(tmp_path):
    """The columnar form of a model's documents (what the embedded backend indexes) holds
    exactly the documents that iteration yields."""
    root = write_model(
        tmp_path / "m",
        indicators=[
            {"indicator": "buy", "item": "a", "correlators": ["b.1", "c", "z"], "scores": [3.5, 1.25, 0.0]},
            {"indicator": "view", "item": "b.1", "correlators": ["a%"], "scores": [2.0]},
        ],
        rankings=[{"item": "a", "popular": 9.0, "trending": -3.0, "hot": 0.0},
                  {"item": "r", "popular": 0.0, "trending": 8.0, "hot": 0.0}],
        properties=[{"item": "p", "name": "category", "values": ["c2", "c1"]},
                    {"item": "a", "name": "expireDate", "values": ["2026-01-01T00:00:00Z"]}],
    )
    model = open_model(root)
    schema = schema_for(model, ("expireDate",))
    documents = iter_documents(model, schema, prior=Prior("popular", 0.5, 1.0))
    columns = documents.columns()
    docs = list(documents)
    n = len(docs)
    assert columns.ids.to_pylist() == [d["id"] for d in docs] == ["a", "b.1", "p", "r"]
    for field in ("buy", "view", "category"):
        assert _lists(columns.keyword[field], n) == [d.get(field) for d in docs], field
    for field in ("buy_w", "view_w"):
        assert _lists(columns.features[field], n, values=True) == [d.get(field) for d in docs], field
    assert columns.dates["expireDate"].to_pylist() == [d.get("expireDate") for d in docs]
    for field in schema.number_fields:
        assert [None if v != v else v for v in columns.numbers[field].tolist()] == [d.get(field) for d in docs]
    assert columns.numbers["prior"].tolist() == [3.0, 1.0, 1.0, 1.0]
    assert iter_documents(model, schema, only={"a"}).columns() is None  # a subset: documents one by one


def test_columns_of_a_model_in_several_parts(tmp_path):
    """Lists of strings are read dictionary-encoded; parts with different dictionaries (and
    the Spark-style `list.element` layout or pyarrow's) give the same documents."""
    root = write_model(tmp_path / "m", manifest={"format": "cooccur-model/1", "indicators": ["buy"],
                                                 "properties": ["category"]},
                       rankings=[{"item": "a", "popular": 1.0, "trending": 0.0, "hot": 0.0}])
    rows = [{"indicator": "buy", "item": "a", "correlators": ["x", "y"], "scores": [1.5, 2.5]},
            {"indicator": "buy", "item": "b", "correlators": ["y", "z"], "scores": [3.0, 4.0]},
            {"indicator": "buy", "item": "c", "correlators": ["z", "a"], "scores": [5.0, 6.0]}]
    pq.write_table(pa.Table.from_pylist(rows[:1]), root / "indicators" / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[1:]), root / "indicators" / "part-1.parquet",
                   use_compliant_nested_type=False)  # elements named `item`: read as plain strings
    props = [{"item": "b", "name": "category", "values": ["k2", "k1"]}, {"item": "c", "name": "category",
                                                                         "values": ["k1"]}]
    pq.write_table(pa.Table.from_pylist(props[:1]), root / "properties" / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(props[1:]), root / "properties" / "part-1.parquet")
    model = open_model(root)
    documents = iter_documents(model, schema_for(model))
    columns = documents.columns()
    assert columns is not None
    docs = list(documents)
    assert [d.get("buy") for d in docs] == [["x", "y"], ["y", "z"], ["z", "a"]]
    assert _lists(columns.keyword["buy"], 3) == [d.get("buy") for d in docs]
    assert _lists(columns.features["buy_w"], 3, values=True) == [d.get("buy_w") for d in docs]
    assert _lists(columns.keyword["category"], 3) == [None, ["k2", "k1"], ["k1"]]
