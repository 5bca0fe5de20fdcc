"""`cooccur index --changed-only`: an updated model (manifest base_model_id + changed/) applied
to the current index version gives the same index as a full index of that model.

Fixtures are hand-written model directories (docs/model-format.md), small enough to check
by eye. The base model m1 has items a..e; the update m2 (base m1) changes b (purchase),
e (category), drops d entirely and adds f; a and c are unchanged:

    changed/ = b, d, e, f  ->  2 copied (a, c), 2 replaced (b, e), 1 added (f), 1 deleted (d)
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_elasticsearch import NEW, NOW, OLD2, URL, Recorder, bulk_ok

from cli import main
from indexer.backend import IndexSchema
from indexer.documents import iter_documents, open_model, read_changes, schema_for
from indexer.elasticsearch import ElasticsearchBackend
from indexer.embedded import EmbeddedBackend
from indexer.errors import ChangedOnlyRefused, IndexerError, ModelDirError
from indexer.run import index_model
from indexer.settings import ElasticsearchSettings, IndexSettings

# --------------------------------------------------------------------------- models
BASE = {
    "indicators": [  # (indicator, item, correlators)
        ("purchase", "a", ["b", "c"]), ("purchase", "b", ["a"]), ("purchase", "c", ["a"]),
        ("view", "a", ["c"]), ("view", "d", ["a", "b"]),
    ],
    "properties": [  # (item, name, values)
        ("a", "category", ["books"]), ("b", "category", ["film"]),
        ("c", "availableDate", ["2026-01-01T00:00:00Z"]), ("e", "category", ["toys"]),
    ],
    "rankings": [("a", 5.0), ("b", 2.0), ("c", 9.0), ("d", 1.0)],  # (item, popular)
}
UPDATE = {
    "indicators": [
        ("purchase", "a", ["b", "c"]), ("purchase", "b", ["a", "c"]), ("purchase", "c", ["a"]),
        ("view", "a", ["c"]), ("purchase", "f", ["a"]),
    ],
    "properties": [
        ("a", "category", ["books"]), ("b", "category", ["film"]),
        ("c", "availableDate", ["2026-01-01T00:00:00Z"]), ("e", "category", ["games"]),
    ],
    "rankings": [("a", 5.0), ("b", 2.0), ("c", 9.0), ("f", 3.0)],
}
CHANGED = ["b", "d", "e", "f"]

QUERIES = [
    {"query": {"bool": {"should": [{"term": {"purchase": "a"}}, {"term": {"view": "c"}}]}}},
    {"query": {"bool": {"should": [{"term": {"purchase": {"value": "c", "boost": 2.0}}},
                                   {"terms": {"category": ["games", "film"], "boost": 0.5}}]}}},
    {"query": {"bool": {"must_not": [{"ids": {"values": ["a"]}}]}},
     "sort": [{"popular": "desc"}], "size": 3},
    {"query": {"match_all": {}}, "size": 50},
]


def write_model(root: Path, spec: dict, *, model_id: str | None = None, base: str | None = None,
                changed: list[str] | None = None, extra_property: str | None = None) -> Path:
    """A model directory from a spec; `changed` writes changed/ (as `cooccur update` does)."""
    for part in ("indicators", "rankings", "properties"):
        (root / part).mkdir(parents=True)
    ind = spec["indicators"]
    pq.write_table(pa.table({
        "indicator": [r[0] for r in ind], "item": [r[1] for r in ind],
        "correlators": [r[2] for r in ind], "scores": [[1.0] * len(r[2]) for r in ind],
    }), root / "indicators" / "part-0.parquet")
    props = list(spec["properties"]) + ([("a", extra_property, ["red"])] if extra_property else [])
    pq.write_table(pa.table({
        "item": [r[0] for r in props], "name": [r[1] for r in props],
        "values": pa.array([r[2] for r in props], pa.list_(pa.string())),
    }), root / "properties" / "part-0.parquet")
    ranks = spec["rankings"]
    pq.write_table(pa.table({
        "item": [r[0] for r in ranks], "popular": [r[1] for r in ranks],
        "trending": [0.0] * len(ranks), "hot": [0.0] * len(ranks),
    }), root / "rankings" / "part-0.parquet")
    if changed is not None:
        (root / "changed").mkdir()
        pq.write_table(pa.table({"item": pa.array(changed, pa.string())}), root / "changed" / "part-0.parquet")
    manifest = {
        "format": "cooccur-model/1", "created": "2026-11-25T13:00:00Z", "cooccur_version": "0.1.0",
        "primary": "purchase", "indicators": ["purchase", "view"],
        "properties": ["category", "availableDate"] + ([extra_property] if extra_property else []),
        "newest_event": "2026-11-20T10:11:12Z", "settings": {}, "counts": {}, "timings": {},
    }
    if model_id is not None:
        manifest["model_id"] = model_id
    if base is not None:
        manifest["base_model_id"] = base
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def models(tmp_path):
    """(base m1, update m2 of m1)."""
    return (write_model(tmp_path / "m1", BASE, model_id="m1"),
            write_model(tmp_path / "m2", UPDATE, model_id="m2", base="m1", changed=CHANGED))


def embedded(data: Path, **kw) -> IndexSettings:
    return IndexSettings(backend="embedded", data_dir=str(data), **kw)


def all_documents(backend) -> dict[str, dict]:
    hits = backend.search({"query": {"match_all": {}}, "size": 100, "_source": True}).hits
    return {h.id: h.source for h in hits}


def results(backend) -> list[list[tuple[str, float]]]:
    """Hits of QUERIES; ties end by id, as the query builder always asks (docs/search.md)."""
    out = []
    for q in QUERIES:
        body = {**q, "sort": [*q.get("sort", [{"_score": "desc"}]), {"id": "asc"}]}
        out.append([(h.id, h.score) for h in backend.search(body).hits])
    return out


# --------------------------------------------------------------------------- reading
def test_changes_of_the_update_model(models):
    model = open_model(models[1])
    schema = schema_for(model, ("availableDate",))
    changes = read_changes(model, schema)
    assert (changes.base_model_id, changes.model_id) == ("m1", "m2")
    assert changes.documents == [
        {"id": "b", "purchase": ["a", "c"], "purchase_w": {"a": 1.0, "c": 1.0}, "category": ["film"],
         "popular": 2.0, "trending": 0.0, "hot": 0.0, "prior": pytest.approx(2 ** 0.5)},
        {"id": "e", "category": ["games"], "prior": 1.0},
        {"id": "f", "purchase": ["a"], "purchase_w": {"a": 1.0}, "popular": 3.0, "trending": 0.0, "hot": 0.0,
         "prior": pytest.approx(3 ** 0.5)},
    ]
    assert changes.deleted == ["d"]
    # `only` yields exactly the full documents of those items
    full = {d["id"]: d for d in iter_documents(model, schema)}
    assert list(iter_documents(model, schema, only={"a", "zz"})) == [full["a"]]


def test_bad_model_ids_and_changed_dataset_are_named(tmp_path):
    m = write_model(tmp_path / "m", UPDATE, model_id="m2", base="m1", changed=CHANGED)
    manifest = json.loads((m / "manifest.json").read_text())
    (m / "manifest.json").write_text(json.dumps({**manifest, "base_model_id": 7}))
    with pytest.raises(ModelDirError, match="base_model_id"):
        open_model(m)
    (m / "manifest.json").write_text(json.dumps(manifest))
    pq.write_table(pa.table({"id": ["b"]}), m / "changed" / "part-0.parquet")
    model = open_model(m)
    with pytest.raises(ModelDirError, match="no `item` column") as err:
        read_changes(model, schema_for(model))
    assert err.value.path.endswith("changed")


# --------------------------------------------------------------------------- embedded
def test_changed_only_equals_a_full_index(models, tmp_path):
    m1, m2 = models
    first = index_model(m1, embedded(tmp_path / "inc"))
    inc = EmbeddedBackend(tmp_path / "inc")
    # a live change on the base version: like a full index, the new version starts without it
    inc.upsert([{"id": "z", "category": ["books"]}])
    seen: list[int] = []
    report = index_model(m2, embedded(tmp_path / "inc"), progress=seen.append, changed_only=True)
    full = EmbeddedBackend(tmp_path / "full")
    index_model(m2, embedded(tmp_path / "full"))

    assert (report.copied, report.replaced, report.added, report.deleted) == (2, 2, 1, 1)
    assert report.documents == 5 and sum(seen) == 5
    assert all_documents(inc) == all_documents(full)
    assert sorted(all_documents(inc)) == ["a", "b", "c", "e", "f"]
    # byte for byte the files of a full index
    full_dir = tmp_path / "full" / "items" / full.versions()[-1].name
    inc_dir = tmp_path / "inc" / "items" / report.version
    files = sorted(p.name for p in full_dir.iterdir() if p.name != "meta.json")
    assert files == sorted(p.name for p in inc_dir.iterdir() if p.name != "meta.json")
    for f in files:
        assert (inc_dir / f).read_bytes() == (full_dir / f).read_bytes(), f
    assert inc.get(["d", "z"]) == {}
    assert results(inc) == results(full)
    assert [(v.name, v.model_id, v.current) for v in inc.versions()] == [
        (first.version, "m1", False), (report.version, "m2", True)]
    meta = json.loads((tmp_path / "inc" / "items" / report.version / "meta.json").read_text())
    assert (meta["base_model_id"], meta["base_version"]) == ("m1", first.version)
    with pytest.raises(ChangedOnlyRefused, match=f"current version {report.version} is already built from model m2"):
        index_model(m2, embedded(tmp_path / "inc"), changed_only=True)
    # rollback returns to the base version, live change and deleted item included
    inc.rollback()
    assert sorted(all_documents(inc)) == ["a", "b", "c", "d", "e", "z"]


def test_updates_chain(models, tmp_path):
    """m1 -> m2 -> m3 (m3 changes c only): each update applies to the previous one."""
    m1, m2 = models
    spec3 = dict(UPDATE, rankings=[("a", 5.0), ("b", 2.0), ("c", 1.0), ("f", 3.0)])
    m3 = write_model(tmp_path / "m3", spec3, model_id="m3", base="m2", changed=["c"])
    index_model(m1, embedded(tmp_path / "d"))
    index_model(m2, embedded(tmp_path / "d"), changed_only=True)
    r3 = index_model(m3, embedded(tmp_path / "d"), changed_only=True)
    assert (r3.copied, r3.replaced, r3.added, r3.deleted) == (4, 1, 0, 0)
    index_model(m3, embedded(tmp_path / "full"))
    assert all_documents(EmbeddedBackend(tmp_path / "d")) == all_documents(EmbeddedBackend(tmp_path / "full"))


def _no_changed(tmp_path, m1, m2):
    import shutil

    shutil.rmtree(m2 / "changed")


def _other_base(tmp_path, m1, m2):
    index_model(write_model(tmp_path / "other", BASE, model_id="m0"), embedded(tmp_path / "data"))


def _old_base(tmp_path, m1, m2):
    index_model(write_model(tmp_path / "old", BASE), embedded(tmp_path / "data"))  # no model_id


def _other_schema(tmp_path, m1, m2):
    import shutil

    shutil.rmtree(m2)
    write_model(m2, UPDATE, model_id="m2", base="m1", changed=CHANGED, extra_property="colour")


@pytest.mark.parametrize("setup, reason, message", [
    (None, "no-base-model", r"m1/manifest.json has no base_model_id"),
    (_no_changed, "no-changed", r"m2 has no changed/ dataset"),
    ("empty", "no-current-version", r"the index has no current version"),
    (_other_base, "other-base", r"built from model m0, but the model was updated from model m1"),
    (_old_base, "other-base", r"built from a model without a model_id"),
    (_other_schema, "schema", r"fields differ .*: keyword fields \+colour"),
])
def test_refusals(models, tmp_path, setup, reason, message):
    m1, m2 = models
    data = tmp_path / "data"
    if setup != "empty":
        index_model(m1, embedded(data))
    if callable(setup):
        setup(tmp_path, m1, m2)
    before = [(v.name, v.current) for v in EmbeddedBackend(data).versions()]
    target = m1 if setup is None else m2
    with pytest.raises(ChangedOnlyRefused, match=message) as err:
        index_model(target, embedded(data), changed_only=True)
    assert err.value.reason == reason
    assert "run a full `cooccur index MODEL`" in err.value.hint
    assert [(v.name, v.current) for v in EmbeddedBackend(data).versions()] == before


# --------------------------------------------------------------------------- CLI
def test_cli_flag(models, tmp_path):
    m1, m2 = models
    runner = CliRunner()
    data = str(tmp_path / "data")
    refused = runner.invoke(main, ["index", str(m2), "--data-dir", data, "--changed-only"])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: cannot index only the changed items: the index has no current version")
    assert "Hint: run a full `cooccur index MODEL`" in refused.stderr
    assert "Traceback" not in refused.output
    assert runner.invoke(main, ["index", str(m1), "--data-dir", data]).exit_code == 0
    r = runner.invoke(main, ["index", str(m2), "--data-dir", data, "--changed-only"])
    assert r.exit_code == 0, r.output
    assert "indexed 5 documents" in r.stdout
    assert "changed only: 2 copied, 2 replaced, 1 added, 1 deleted" in r.stdout
    listing = runner.invoke(main, ["indexes", "--data-dir", data]).stdout.splitlines()
    assert listing[0].endswith("5 documents  model m1") and listing[0].startswith(" ")
    assert listing[1].endswith("5 documents  model m2") and listing[1].startswith("*")


# --------------------------------------------------------------------------- Elasticsearch (offline)
SCHEMA_META = {"keyword_fields": ["purchase", "view", "category"], "date_fields": ["availableDate"],
               "number_fields": ["popular", "trending", "hot", "prior"],
               "feature_fields": ["purchase_w", "view_w"]}
TASK = "node1:42"


def listing(*indices: tuple[str, bool, str | None]) -> tuple[int, dict]:
    """GET /items_* answer: (name, has the alias, model_id) of complete indices."""
    return 200, {
        name: {
            "aliases": {"items": {}} if aliased else {},
            "mappings": {"_meta": {"cooccur": {"complete": True, **(
                {"model_id": model_id, "schema": SCHEMA_META} if model_id else {})}}},
        }
        for name, aliased, model_id in indices
    }


def es_backend(rec: Recorder) -> ElasticsearchBackend:
    settings = ElasticsearchSettings(urls=[URL], api_key=None, chunk_size=2, max_retries=2,
                                     initial_backoff=0.5, max_backoff=0.75, request_timeout=5.0)
    return ElasticsearchBackend("items", settings, 2, client_options={"node_class": rec.node_class()},
                                clock=lambda: NOW)


def es_changes(models):
    model = open_model(models[1])
    schema = schema_for(model, ("availableDate",))
    return schema, read_changes(model, schema)


def test_es_exact_request_sequence(models, sleeps):
    task_path = "/_tasks/node1(:|%3A)42"
    rec = Recorder([
        ("GET", "/items_\\*", listing((OLD2, True, "m1"))),
        ("POST", f"/{OLD2}/_count", (200, {"count": 2})),  # b, e of b, e, f
        ("POST", f"/{OLD2}/_count", (200, {"count": 1})),  # d
        ("PUT", f"/{NEW}", (200, {"acknowledged": True, "index": NEW})),
        ("POST", "/_reindex", (200, {"task": TASK})),
        ("GET", task_path, (200, {"completed": False, "task": {}})),
        ("GET", task_path, (200, {"completed": True, "task": {}, "response": {
            "total": 2, "created": 2, "updated": 0, "failures": [], "timed_out": False}})),
        ("PUT", "/_bulk", bulk_ok()),
        ("PUT", "/_bulk", bulk_ok()),
        ("POST", f"/{NEW}/_refresh", (200, {"_shards": {"total": 1, "successful": 1, "failed": 0}})),
        ("POST", f"/{NEW}/_count", (200, {"count": 5})),
        ("PUT", f"/{NEW}/_mapping", (200, {"acknowledged": True})),
        ("POST", "/_aliases", (200, {"acknowledged": True})),
        ("GET", "/items_\\*", listing((OLD2, False, "m1"), (NEW, True, "m2"))),
    ])
    schema, changes = es_changes(models)
    seen: list[int] = []
    report = es_backend(rec).update_version(schema, changes, progress=seen.append)

    assert [c[0] + " " + c[1].replace("%3A", ":") for c in rec.calls()] == [
        "GET /items_*", f"POST /{OLD2}/_count", f"POST /{OLD2}/_count", f"PUT /{NEW}", "POST /_reindex",
        f"GET /_tasks/{TASK}", f"GET /_tasks/{TASK}", "PUT /_bulk", "PUT /_bulk", f"POST /{NEW}/_refresh",
        f"POST /{NEW}/_count", f"PUT /{NEW}/_mapping", "POST /_aliases", "GET /items_*",
    ]
    assert rec.requests[1].body == {"query": {"ids": {"values": ["b", "e", "f"]}}}
    assert rec.requests[2].body == {"query": {"ids": {"values": ["d"]}}}
    create = rec.requests[3].body["mappings"]["_meta"]["cooccur"]
    assert (create["model_id"], create["base_model_id"], create["base_index"]) == ("m2", "m1", OLD2)
    assert create["schema"] == SCHEMA_META and create["complete"] is False
    assert (create["primary"], create["indicators"]) == ("purchase", ["purchase", "view"])
    # the copy leaves every changed item out: no deleted documents skew the new index's statistics
    reindex = rec.requests[4]
    assert reindex.params == {"wait_for_completion": "false"}
    assert reindex.body == {
        "source": {"index": OLD2, "query": {"bool": {"must_not": [{"ids": {"values": CHANGED}}]}}},
        "dest": {"index": NEW},
    }
    assert sleeps == [0.5]  # one poll interval before the task was complete
    # chunk_size 2: the three changed documents in id order; d is simply not copied
    assert rec.requests[7].body == [
        {"index": {"_index": NEW, "_id": "b"}}, changes.documents[0],
        {"index": {"_index": NEW, "_id": "e"}}, changes.documents[1],
    ]
    assert rec.requests[8].body == [{"index": {"_index": NEW, "_id": "f"}}, changes.documents[2]]
    assert rec.requests[11].body["_meta"]["cooccur"]["complete"] is True
    # the switch names the index that was copied
    assert rec.requests[12].body == {"actions": [
        {"remove": {"index": OLD2, "alias": "items"}}, {"add": {"index": NEW, "alias": "items"}}]}
    assert (report.version, report.documents) == (NEW, 5)
    assert (report.copied, report.replaced, report.added, report.deleted) == (2, 2, 1, 1)
    assert seen == [1, 1, 1]


def test_es_count_mismatch_keeps_the_alias(models, sleeps):
    """A copy that holds a changed item anyway (another writer) fails the count check."""
    rec = Recorder([
        ("GET", "/items_\\*", listing((OLD2, True, "m1"))),
        ("POST", f"/{OLD2}/_count", (200, {"count": 2})),
        ("POST", f"/{OLD2}/_count", (200, {"count": 1})),
        ("PUT", f"/{NEW}", (200, {"acknowledged": True, "index": NEW})),
        ("POST", "/_reindex", (200, {"task": TASK})),
        ("GET", "/_tasks/.*", (200, {"completed": True, "response": {"total": 2, "created": 2, "failures": []}})),
        ("PUT", "/_bulk", bulk_ok()),
        ("PUT", "/_bulk", bulk_ok()),
        ("POST", f"/{NEW}/_refresh", (200, {})),
        ("POST", f"/{NEW}/_count", (200, {"count": 6})),
        ("DELETE", f"/{NEW}", (200, {"acknowledged": True})),
    ])
    schema, changes = es_changes(models)
    with pytest.raises(IndexerError, match=r"holds 6 documents but 5 were expected \(2 copied \+ 3 changed\)"):
        es_backend(rec).update_version(schema, changes)
    assert "POST /_aliases" not in [f"{m} {p}" for m, p in rec.calls()]


@pytest.mark.parametrize("states, reason", [
    (listing((OLD2, True, "m0")), "other-base"),
    (listing((OLD2, True, None)), "other-base"),
    (listing((OLD2, False, "m1")), "no-current-version"),
])
def test_es_refusals_touch_nothing(models, states, reason):
    rec = Recorder([("GET", "/items_\\*", states)])
    schema, changes = es_changes(models)
    with pytest.raises(ChangedOnlyRefused) as err:
        es_backend(rec).update_version(schema, changes)
    assert err.value.reason == reason
    assert rec.calls() == [("GET", "/items_*")]


def test_es_schema_refusal(models):
    rec = Recorder([("GET", "/items_\\*", listing((OLD2, True, "m1")))])
    _, changes = es_changes(models)
    other = IndexSchema(("purchase", "view", "category", "colour"), ("availableDate",), ("popular", "trending", "hot"))
    with pytest.raises(ChangedOnlyRefused, match=r"\+colour") as err:
        es_backend(rec).update_version(other, changes)
    assert err.value.reason == "schema"


def test_es_copy_failures_drop_the_new_index(models, sleeps):
    rec = Recorder([
        ("GET", "/items_\\*", listing((OLD2, True, "m1"))),
        ("POST", f"/{OLD2}/_count", (200, {"count": 2})),
        ("POST", f"/{OLD2}/_count", (200, {"count": 1})),
        ("PUT", f"/{NEW}", (200, {"acknowledged": True, "index": NEW})),
        ("POST", "/_reindex", (200, {"task": TASK})),
        ("GET", "/_tasks/.*", (200, {"completed": True, "response": {
            "total": 2, "created": 1, "timed_out": False, "failures": [
                {"index": NEW, "id": "c", "status": 400,
                 "cause": {"type": "mapper_parsing_exception", "reason": "bad date"}}]}})),
        ("DELETE", f"/{NEW}", (200, {"acknowledged": True})),
    ])
    schema, changes = es_changes(models)
    with pytest.raises(IndexerError, match=r"1 document\(s\) failed to copy \(first: c: mapper_parsing_exception"):
        es_backend(rec).update_version(schema, changes)
    assert rec.calls()[-1] == ("DELETE", f"/{NEW}")


def test_es_failure_while_waiting_cancels_the_task(models, sleeps):
    rec = Recorder([
        ("GET", "/items_\\*", listing((OLD2, True, "m1"))),
        ("POST", f"/{OLD2}/_count", (200, {"count": 2})),
        ("POST", f"/{OLD2}/_count", (200, {"count": 1})),
        ("PUT", f"/{NEW}", (200, {"acknowledged": True, "index": NEW})),
        ("POST", "/_reindex", (200, {"task": TASK})),
        ("GET", "/_tasks/.*", (500, {"error": {"type": "exception", "reason": "node left"}, "status": 500})),
        ("POST", "/_tasks/.*/_cancel", (200, {"nodes": {}})),
        ("DELETE", f"/{NEW}", (200, {"acknowledged": True})),
    ])
    schema, changes = es_changes(models)
    with pytest.raises(IndexerError, match=f"copy {OLD2} into {NEW}: 500 exception: node left"):
        es_backend(rec).update_version(schema, changes)
    assert [m for m, _ in rec.calls()][-2:] == ["POST", "DELETE"]


def test_es_many_changes_index_the_whole_model(models, monkeypatch):
    """Past MAX_ES_CHANGED ids the copy's exclusion query would hit max_terms_count."""
    import indexer.run as run

    calls = []

    class Backend:
        def create_version(self, schema, documents, progress=None, model_id=None, model=None):
            calls.append(("full", sorted(d["id"] for d in documents), model_id, model))

        def update_version(self, schema, changes, progress=None):
            calls.append(("changed only", changes.model))

    monkeypatch.setattr(run, "open_backend", lambda settings: Backend())
    for limit, want in ((1, "full"), (1000, "changed only")):
        monkeypatch.setattr(run, "MAX_ES_CHANGED", limit)
        run.index_model(models[1], IndexSettings(backend="elasticsearch"), changed_only=True)
        assert calls[-1][0] == want
    assert calls[0][2] == "m2" and len(calls[0][1]) > 3
    # both paths record the model's primary and indicators, so serving knows its model
    assert calls[0][3] == calls[1][1] == {"primary": "purchase", "indicators": ["purchase", "view"]}
