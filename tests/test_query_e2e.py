"""End to end on the bundled sample: train (Spark) -> index (embedded) -> recommend."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from cli import build_settings
from indexer.run import index_model
from indexer.settings import IndexSettings
from query.eventstore import EventStore, parse_events
from query.recommender import Recommender
from query.settings import QuerySettings

pytestmark = [pytest.mark.spark, pytest.mark.slow]
SAMPLE = Path(__file__).resolve().parents[1] / "sample"


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    from indicators.job import train
    from indicators.settings import TrainSettings

    tmp = tmp_path_factory.mktemp("e2e")
    config = tomllib.loads((SAMPLE / "cooccur.toml").read_text())
    settings = build_settings(TrainSettings, config["train"], "train")
    train(spark, [str(SAMPLE / "events.jsonl")], settings, tmp / "model")
    index = IndexSettings(data_dir=str(tmp / "data"))
    report = index_model(tmp / "model", index)
    return tmp, index, report.version


@pytest.fixture
def rec(trained, tmp_path):
    _, index, _ = trained
    from indexer.backends import open_backend

    store = EventStore(tmp_path / "events.db")
    # The sample's own events are the live history of its users.
    store.insert(parse_events([json.loads(x) for x in (SAMPLE / "events.jsonl").read_text().splitlines()]))
    r = Recommender(open_backend(index), store,
                    QuerySettings(indicators={"purchase": 1.0, "view": 0.5, "cart": 0.5}),
                    date_fields=index.date_fields)
    yield r
    store.close()


def sample_events():
    return [json.loads(x) for x in (SAMPLE / "events.jsonl").read_text().splitlines()]


def user_items(user, action):
    return {e["targetEntityId"] for e in sample_events() if e["entityId"] == user and e["event"] == action}


def a_buyer():
    counts = {}
    for e in sample_events():
        if e["event"] == "purchase":
            counts[e["entityId"]] = counts.get(e["entityId"], 0) + 1
    return max(sorted(counts), key=counts.get)


def personal(resp):
    return [s.item for s in resp.item_scores if "personal" in s.source]


def test_known_user(rec, trained):
    user = a_buyer()
    resp = rec.recommend({"user": user, "num": 10})
    assert resp.version == trained[2]
    assert len(resp.item_scores) == 10 and personal(resp)
    bought = user_items(user, "purchase")
    assert not bought & {s.item for s in resp.item_scores}  # seen (purchased) items never appear
    scores = [s.score for s in resp.item_scores if "personal" in s.source]
    assert scores == sorted(scores, reverse=True)


def test_new_user_three_events_then_one_more(rec):
    top = [s.item for s in rec.recommend({"user": "nobody-yet", "num": 5}).item_scores]
    assert all(s.source == {"backfill": "popular"} for s in rec.recommend({"user": "nobody-yet"}).item_scores)
    views = top[:3]
    rec.ingest(parse_events([{"event": "view", "entityType": "user", "entityId": "fresh",
                              "targetEntityType": "item", "targetEntityId": i} for i in views]))
    first = rec.recommend({"user": "fresh", "num": 10})
    assert personal(first), "three views give personal recommendations at once"
    rec.ingest(parse_events({"event": "purchase", "entityType": "user", "entityId": "fresh",
                             "targetEntityType": "item", "targetEntityId": personal(first)[0]}))
    second = rec.recommend({"user": "fresh", "num": 10})
    assert [s.item for s in second.item_scores] != [s.item for s in first.item_scores]
    assert personal(first)[0] not in {s.item for s in second.item_scores}  # bought: excluded now


def test_category_bias_and_filter(rec):
    user = a_buyer()
    base = rec.recommend({"user": user, "num": 20})
    items = personal(base)
    docs = rec.backend.get(items)
    # The lowest-ranked personal item with a category moves up when that category is boosted.
    last = next(i for i in reversed(items) if docs[i].get("category"))
    category = docs[last]["category"][0]
    boosted = rec.recommend({"user": user, "num": 20,
                             "fields": [{"name": "category", "values": [category], "bias": 100}]})
    assert personal(boosted).index(last) < items.index(last)
    filtered = rec.recommend({"user": user, "num": 20,
                              "fields": [{"name": "category", "values": [category], "bias": -1}]})
    got = rec.backend.get([s.item for s in filtered.item_scores])
    assert filtered.item_scores and all(category in got[s.item]["category"] for s in filtered.item_scores)
    excluded = rec.recommend({"user": user, "num": 20,
                              "fields": [{"name": "category", "values": [category], "bias": 0}]})
    got = rec.backend.get([s.item for s in excluded.item_scores])
    assert all(category not in got[s.item].get("category", []) for s in excluded.item_scores)


def test_blacklist_and_expire_dates(rec):
    user = a_buyer()
    first = rec.recommend({"user": user, "num": 5})
    black = [s.item for s in first.item_scores[:2]]
    again = rec.recommend({"user": user, "num": 5, "blacklistItems": black})
    assert not set(black) & {s.item for s in again.item_scores}
    expiring = {d for d, doc in rec.backend.get([f"i{n}" for n in range(200)]).items() if doc.get("expireDate")}
    assert expiring
    dated = Recommender(rec.backend, rec.events, QuerySettings(indicators=["purchase", "view", "cart"],
                                                               expire_date_field="expireDate"))
    late = dated.recommend({"user": user, "num": 200, "currentDate": "2100-01-01"})
    assert late.item_scores and not expiring & {s.item for s in late.item_scores}
    in_range = rec.recommend({"user": user, "num": 200,
                              "dateRange": {"name": "expireDate", "after": "2000-01-01"}})
    assert {s.item for s in in_range.item_scores} <= expiring


def test_backfill_fills_to_num(rec):
    resp = rec.recommend({"user": "nobody", "num": 50})
    assert len(resp.item_scores) == 50
    pops = [rec.backend.get([s.item])[s.item].get("popular", 0.0) for s in resp.item_scores]
    assert pops == sorted(pops, reverse=True)


def test_item_and_item_set_and_return_self(rec):
    user = a_buyer()
    item = personal(rec.recommend({"user": user, "num": 1}))[0]
    similar = rec.recommend({"item": item, "num": 10})
    assert personal(similar) and item not in {s.item for s in similar.item_scores}
    with_self = rec.recommend({"item": item, "num": 10, "returnSelf": True})
    assert item in personal(with_self)
    pair = personal(similar)[:1] + [item]
    cart = rec.recommend({"itemSet": pair, "num": 10})
    assert personal(cart) and not set(pair) & {s.item for s in cart.item_scores}
