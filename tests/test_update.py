"""`cooccur update` equals a full retrain: train(base) + update(deltas...) == train(all).

Generated PIO events with caps small enough that users and items cross them; random
splits into a base and 1, 2 or 5 delta batches (new users, new items, evictions),
one split whose deltas bring no new user (N unchanged: only touched rows re-scored).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from indicators.job import train
from indicators.model import location, model_data, read_manifest_at
from indicators.parts import read_table
from indicators.settings import IndicatorSettings, TrainSettings
from indicators.state import StateError
from indicators.update import update

pytestmark = pytest.mark.spark

SETTINGS = dict(
    primary="buy",
    indicators=[IndicatorSettings("buy", max_correlators=6), IndicatorSettings("view", max_correlators=8),
                IndicatorSettings("cart", max_correlators=5, min_llr=0.5)],
    max_interactions_per_user=7,
    max_users_per_item=9,
    seed=5,
    rankings={"window": "20 days"},
)


def settings(**changes) -> TrainSettings:
    s = {**SETTINGS, **changes}
    from indicators.settings import RankingSettings

    s["rankings"] = RankingSettings(**s["rankings"])
    return TrainSettings(**s)


def generate(seed: int = 0, n: int = 1500) -> list[dict]:
    """Skewed users and items, so caps bite; item $set/$unset/$delete events; distinct times."""
    rng = random.Random(seed)
    events = []
    for k in range(n):
        user = f"u{int(rng.paretovariate(1.2)) % 70}"
        item = f"i{int(rng.paretovariate(1.0)) % 45}"
        event = rng.choices(["buy", "view", "cart", "other"], [3, 6, 2, 1])[0]
        events.append({"event": event, "entityType": "user", "entityId": user,
                       "targetEntityType": "item", "targetEntityId": item})
        if k % 15 == 0:
            target = f"i{rng.randrange(45)}"
            kind = rng.choices(["$set", "$unset", "$delete"], [6, 1, 1])[0]
            props = {"category": [rng.choice("abc")], "color": rng.choice(["red", "blue"])}
            e = {"event": kind, "entityType": "item", "entityId": target}
            if kind != "$delete":
                e["properties"] = props if kind == "$set" else {"color": None}
            events.append(e)
    for k, e in enumerate(events):  # one second apart: no ties
        e["eventTime"] = f"2026-03-{1 + k // 86400:02d}T{(k // 3600) % 24:02d}:{(k // 60) % 60:02d}:{k % 60:02d}Z"
    return events


def write(path: Path, events: list[dict]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def read_model(model: Path | str) -> dict:
    """Everything a model says about items, in comparable form (a path or a URI)."""
    data = model_data(model)
    ind = read_table(data / "indicators").to_pylist()
    rank = read_table(data / "rankings").to_pylist()
    props = read_table(data / "properties").to_pylist()
    manifest = read_manifest_at(location(model))
    return {
        "indicators": {(r["indicator"], r["item"]): (r["correlators"], r["scores"]) for r in ind},
        "rankings": {r["item"]: (r["popular"], r["trending"], r["hot"]) for r in rank},
        "properties": {(r["item"], r["name"]): r["values"] for r in props},
        "users": manifest["counts"]["users"],
        "users_left_out": manifest["counts"].get("users_left_out", 0),
        "actions": {a: {k: v for k, v in s.items()} for a, s in manifest["counts"]["actions"].items()},
        "newest": manifest["newest_event"],
    }


def assert_same_model(got: dict, want: dict) -> None:
    assert got["indicators"].keys() == want["indicators"].keys()
    for key, (ids, scores) in want["indicators"].items():
        g_ids, g_scores = got["indicators"][key]
        assert g_ids == ids, key
        np.testing.assert_allclose(g_scores, scores, rtol=0, atol=1e-9, err_msg=str(key))
    for part in ("rankings", "properties", "users", "users_left_out", "actions", "newest"):
        assert got[part] == want[part], part


@pytest.fixture(scope="module")
def events():
    return generate()


@pytest.fixture(scope="module")
def full(spark, events, tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    train(spark, [write(d / "all.jsonl", events)], settings(), d / "model")
    return read_model(d / "model")


def split(events: list[dict], batches: int, seed: int, base_share: float = 0.6) -> list[list[dict]]:
    """Random split: base first, then `batches` deltas, each event in exactly one part."""
    rng = random.Random(seed)
    part = [0 if rng.random() < base_share else 1 + rng.randrange(batches) for _ in events]
    return [[e for e, p in zip(events, part, strict=True) if p == k] for k in range(batches + 1)]


@pytest.mark.parametrize("batches,seed", [(1, 1), (2, 2), (5, 3)])
def test_update_equals_full_retrain(spark, events, full, tmp_path, batches, seed):
    parts = split(events, batches, seed)
    model = tmp_path / "model"
    train(spark, [write(tmp_path / "p0.jsonl", parts[0])], settings(), model)
    base = read_model(model)
    assert base["users"] < full["users"]  # the deltas bring new users
    reports = []
    for k, delta in enumerate(parts[1:], start=1):
        reports.append(update(spark, model, [write(tmp_path / f"p{k}.jsonl", delta)]))
    assert_same_model(read_model(model), full)
    # The splits exercised what they should: new users and items, evictions by both caps.
    assert sum(r.new_users for r in reports) == full["users"] - base["users"]
    assert any(full["actions"][a]["users_capped"] > base["actions"][a]["users_capped"] for a in full["actions"])
    assert any(full["actions"][a]["items_capped"] > base["actions"][a]["items_capped"] for a in full["actions"])
    assert any(full["actions"][a]["items"] > base["actions"][a]["items"] for a in full["actions"])


def test_update_without_new_users_rescores_only_touched_rows(spark, events, tmp_path):
    """Deltas of known users keep N: only rows whose counts moved are re-scored."""
    rng = random.Random(9)
    users = sorted({e["entityId"] for e in events if e["entityType"] == "user" and e["event"] != "other"})
    seen = {(e["entityId"], e["event"], e.get("targetEntityId")) for e in events}
    deltas = [[], []]
    for k in range(60):  # new (user, item) pairs of light users, some with new items
        user, event = rng.choice(users[:20]), rng.choice(["buy", "view", "cart"])
        item = f"i{rng.randrange(60)}"
        if (user, event, item) not in seen:
            seen.add((user, event, item))
            deltas[k % 2].append({"event": event, "entityType": "user", "entityId": user,
                                  "targetEntityType": "item", "targetEntityId": item,
                                  "eventTime": f"2026-04-01T00:00:{k:02d}Z"})
    model, full = tmp_path / "model", tmp_path / "full"
    train(spark, [write(tmp_path / "base.jsonl", events)], settings(), model)
    train(spark, [write(tmp_path / "all.jsonl", events + deltas[0] + deltas[1])], settings(), full)
    reports = [update(spark, model, [write(tmp_path / f"d{k}.jsonl", d)]) for k, d in enumerate(deltas)]
    assert [r.new_users for r in reports] == [0, 0]
    assert_same_model(read_model(model), read_model(full))
    n_rows = {a: v["items"] for a, v in reports[-1].indicators.items()}
    rescored = [(r.rescored[a], n_rows[a]) for r in reports for a in r.rescored]
    assert max(n for n, _ in rescored) > 0 and all(n < rows for n, rows in rescored)


def test_update_writes_a_new_model_beside_the_base(spark, events, tmp_path):
    parts = split(events, 1, 4)
    base = tmp_path / "base"
    train(spark, [write(tmp_path / "p0.jsonl", parts[0])], settings(), base)
    before = json.loads((base / "manifest.json").read_text())
    report = update(spark, base, [write(tmp_path / "p1.jsonl", parts[1])], tmp_path / "next")
    after = json.loads((tmp_path / "next" / "manifest.json").read_text())
    assert json.loads((base / "manifest.json").read_text()) == before  # the base is untouched
    assert after["base_model_id"] == before["model_id"] != after["model_id"] == report.model_id
    assert after["state"]["generation"] == 1
    changed = set(read_table(model_data(tmp_path / "next") / "changed").column("item").to_pylist())
    assert report.changed_items == len(changed) > 0
    # Every item outside `changed` has the same document in both models.
    old, new = read_model(base), read_model(tmp_path / "next")
    for part in ("indicators", "properties"):
        for key in old[part].keys() | new[part].keys():
            item = key[1] if part == "indicators" else key[0]
            if item not in changed:
                assert (old[part].get(key) or [None])[0] == (new[part].get(key) or [None])[0], key
    for item in old["rankings"].keys() | new["rankings"].keys():
        if item not in changed:
            assert old["rankings"].get(item) == new["rankings"].get(item)


def test_model_without_state_is_refused(spark, events, tmp_path):
    s = settings()
    s.save_state = False
    train(spark, [write(tmp_path / "p0.jsonl", events[:300])], s, tmp_path / "model")
    with pytest.raises(StateError, match="without its counting state"):
        update(spark, tmp_path / "model", [write(tmp_path / "p1.jsonl", events[300:400])])


def test_update_from_the_store_equals_the_spark_path_and_a_retrain(spark, events, tmp_path):
    """The event store's events skip Spark (hashes and property values made in Python);
    the model equals updating from the same events as a file, and training on them all."""
    from query.eventstore import EventStore, parse_events
    from query.refresh import update_from_store

    odd_values = [{"category": ["a", 1, True, 2.5]}, {"size": 3.5}, {"count": 10},
                  {"label": "[not json"}, {"label": "[\"x\", 2]"}, {"tags": []}, {"flag": False}]
    extra = [{"event": "$set", "entityType": "item", "entityId": f"i{k}", "properties": props,
              "eventTime": f"2026-05-01T00:00:{k:02d}Z"} for k, props in enumerate(odd_values)]
    store = EventStore(str(tmp_path / "events.db"))
    store.insert(parse_events(events[:900] + extra[:3]))

    def export(path: Path, after_ms=None) -> str:
        with open(path, "w") as f:
            store.export_since(f, None, after_ms)
        return str(path)

    train(spark, [export(tmp_path / "t1.jsonl")], settings(), tmp_path / "base")
    store.insert(parse_events(events[900:] + extra[3:]))
    newest = json.loads((tmp_path / "base" / "manifest.json").read_text())["newest_event"]
    newest_ms = int(__import__("datetime").datetime.fromisoformat(newest.replace("Z", "+00:00")).timestamp() * 1000)

    report = update_from_store(tmp_path / "base", tmp_path / "events.db", tmp_path / "by_store")
    update(spark, tmp_path / "base", [export(tmp_path / "delta.jsonl", newest_ms)], tmp_path / "by_spark")
    train(spark, [export(tmp_path / "t2.jsonl")], settings(), tmp_path / "full")
    by_store, by_spark, full = (read_model(tmp_path / m) for m in ("by_store", "by_spark", "full"))
    assert_same_model(by_store, by_spark)
    assert_same_model(by_store, full)
    assert report.new_users > 0 and ("i1", "size") in full["properties"]
    assert full["properties"][("i0", "category")] == ["a", "1", "true", "2.5"]
    assert update_from_store(tmp_path / "by_store", tmp_path / "events.db") is None  # watermark: nothing new


def test_python_hashes_equal_spark_xxhash64(spark):
    """The store path's downsampling hash is Spark's, for any id (unicode, long, empty)."""

    from indicators.downsample import sample_hash, sample_hashes

    rng = random.Random(3)
    alphabet = "ab9_-é€😀 "
    ids = ["", "x", "é", "😀" * 9] + ["".join(rng.choice(alphabet) for _ in range(rng.randrange(70)))
                                       for _ in range(200)]
    pairs = list(zip(ids, reversed(ids), strict=True))
    for seed in (0, -7, 2**40):
        df = spark.createDataFrame(pairs, "user string, item string")
        want = [r.h for r in df.select(sample_hash(seed).alias("h")).collect()]
        got = sample_hashes(seed, [u for u, _ in pairs], [i for _, i in pairs])
        assert got.tolist() == want


def test_min_events_per_user_update_equals_full_retrain(spark, events, full, tmp_path):
    """With min_events_per_user, users below it are left out of the counting; an update
    admits those who reach it with all their earlier interactions, so base + deltas == a
    retrain on everything. (The deltas take the path without Spark; min_events_per_user
    works on the read events, whichever path read them.)"""
    from datetime import datetime

    from indicators.update import update_from_events

    s = settings(min_events_per_user=3)
    parts = split(events, 2, 11)
    # Item events go to the base (times are distinct: properties come out the same).
    parts[0] += [e for p in parts[1:] for e in p if e["entityType"] == "item"]
    everything, model = tmp_path / "full", tmp_path / "model"
    train(spark, [write(tmp_path / "all.jsonl", events)], s, everything)
    train(spark, [write(tmp_path / "p0.jsonl", parts[0])], s, model)
    base = read_model(model)

    def us(t: str) -> int:
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1_000_000)

    reports = [update_from_events(model, [(e["event"], e["entityId"], e["targetEntityId"], us(e["eventTime"]))
                                          for e in part if e["entityType"] == "user"], [], source="store")
               for part in parts[1:]]
    want = read_model(everything)
    assert_same_model(read_model(model), want)
    # Users crossed the threshold in the updates, others stayed below it throughout.
    assert all(r.admitted_users > 0 for r in reports)
    assert want["users_left_out"] > 0 and base["users_left_out"] > 0
    assert reports[-1].users_left_out == want["users_left_out"]
    # Without the minimum every user with an indicator event counts.
    assert want["users"] + want["users_left_out"] == full["users"]


def test_update_reads_and_publishes_on_a_store_without_rename(spark, events, tmp_path):
    """A model on another file system (pyarrow's in-memory mock://, like an object store:
    no atomic rename): an update writes it there, a second update reads it from there in
    place, the indexer reads it; each is what the same updates give on a local disk. The
    manifest is the one object that switches; older versions are removed."""
    from indexer.documents import iter_documents, open_model, schema_for

    parts = split(events, 2, 6)
    base = tmp_path / "base"
    train(spark, [write(tmp_path / "p0.jsonl", parts[0])], settings(), base)
    deltas = [write(tmp_path / f"p{k}.jsonl", p) for k, p in enumerate(parts[1:], start=1)]
    remote = "mock:///bucket/models/m"
    update(spark, base, deltas[:1], remote)
    first = model_data(remote)
    update(spark, remote, deltas[1:])
    update(spark, base, deltas[:1], tmp_path / "local")
    update(spark, tmp_path / "local", deltas[1:])
    assert_same_model(read_model(remote), read_model(tmp_path / "local"))

    root = location(remote)
    assert root.fs.type_name == "mock"
    assert sorted(root.children()) == ["manifest.json", "versions"]  # nothing written aside
    assert len((root / "versions").children()) == 2 and first.name in (root / "versions").children()
    schema = schema_for(open_model(remote))
    assert list(iter_documents(open_model(remote), schema)) == list(
        iter_documents(open_model(tmp_path / "local"), schema))


def test_update_from_the_store_imports_no_pyspark(spark, tmp_path):
    """The store path and the serving refresher run in small processes: no pyspark there."""
    code = ("import sys, indicators.update, query.refresh; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))")
    out = __import__("subprocess").run([__import__("sys").executable, "-c", code], capture_output=True,
                                       text=True, cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "[]"
