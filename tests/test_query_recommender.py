"""Recommender end to end on a real embedded index: personal, rules, dates, backfill, live events."""

from __future__ import annotations

import pytest
from query_testdata import PURCHASE_A, PURCHASE_B, VIEW_A, make_backend

from query.errors import BadRequest
from query.eventstore import EventStore, parse_events
from query.recommender import Recommender
from query.request import parse_query
from query.settings import QuerySettings

NOW = 1767225600.0  # 2026-01-01T00:00:00Z


def ev(user, action, item, t="2025-06-01T00:00:00Z"):
    return {"event": action, "entityType": "user", "entityId": user, "targetEntityType": "item",
            "targetEntityId": item, "eventTime": t}


@pytest.fixture
def rec(tmp_path):
    store = EventStore(tmp_path / "events.db")
    r = Recommender(make_backend(tmp_path / "index"), store,
                    QuerySettings(indicators={"purchase": 1.0, "view": 0.5}), clock=lambda: NOW)
    yield r
    store.close()


def items(resp):
    return [s.item for s in resp.item_scores]


def test_known_user_personal_then_backfill(rec):
    rec.ingest(parse_events([ev("u", "purchase", "a")]))
    resp = rec.recommend({"user": "u", "num": 5})
    # i1 and i2 both hold purchase:a -> equal scores, popularity breaks the tie (i2 9 > i1 5),
    # as in the UR; then popular backfill without the purchased "a".
    assert items(resp) == ["i2", "i1", "i4", "b", "i3"]
    assert resp.item_scores[0].score == pytest.approx(PURCHASE_A, rel=1e-6)
    assert resp.item_scores[1].score == pytest.approx(PURCHASE_A, rel=1e-6)
    assert [s.source for s in resp.item_scores] == [
        {"personal": ["purchase"]}, {"personal": ["purchase"]},
        {"backfill": "popular"}, {"backfill": "popular"}, {"backfill": "popular"},
    ]
    assert resp.version and resp.version.startswith("v")
    assert resp.to_json()["itemScores"][0] == {"item": "i2", "score": resp.item_scores[0].score,
                                               "source": {"personal": ["purchase"]}}


def test_new_user_and_new_event_change_the_next_response(rec):
    assert [s.source for s in rec.recommend({"user": "new", "num": 2}).item_scores] == [
        {"backfill": "popular"}] * 2
    rec.ingest(parse_events([ev("new", "view", "x1"), ev("new", "view", "b", "2025-06-02T00:00:00Z"),
                             ev("new", "view", "zz")]))
    resp = rec.recommend({"user": "new", "num": 1})
    assert items(resp) == ["i3"] and resp.item_scores[0].source == {"personal": ["view"]}
    rec.ingest(parse_events([ev("new", "purchase", "b", "2025-06-03T00:00:00Z")]))
    resp = rec.recommend({"user": "new", "num": 2, "explain": True})
    # purchase:b matches i1 (boost 1.0); view:b matches i3 (boost 0.5).
    assert items(resp) == ["i1", "i3"]
    assert resp.item_scores[0].score == pytest.approx(PURCHASE_B, rel=1e-6)
    assert resp.item_scores[0].explain["matched"] == {"purchase": ["b"]}
    assert resp.explain["history"] == {"purchase": ["b"], "view": ["b", "x1", "zz"]}  # same time: by id
    assert "b" in resp.explain["excluded"]  # purchased items are never recommended


def test_history_and_blacklist_each_keep_their_own_cap(tmp_path):
    """One read of the store gives the history (max_query_events per action) and the
    blacklisted items (max_excluded per blacklisted action), whichever cap is larger."""
    store = EventStore(tmp_path / "events.db")
    store.insert(parse_events([ev("u", "purchase", x, f"2025-06-0{d}T00:00:00Z")
                               for d, x in enumerate(["a", "b", "c"], start=1)]
                              + [ev("u", "view", x) for x in ("b", "x1")]))
    for cap, excluded, history, black in [
        (1, 3, {"purchase": ["c"], "view": ["b"]}, ["c", "b", "a"]),
        (3, 1, {"purchase": ["c", "b", "a"], "view": ["b", "x1"]}, ["c"]),
    ]:
        r = Recommender(make_backend(tmp_path / "index"), store, QuerySettings(
            indicators={"purchase": 1.0, "view": 0.5}, max_query_events=cap, max_excluded=excluded))
        request = parse_query({"user": "u"})
        assert r.user_history(request) == (history, black)
    r = Recommender(make_backend(tmp_path / "index2"), store, QuerySettings(
        indicators={"purchase": 1.0, "view": 0.5}, blacklist_actions=["view"], max_excluded=1))
    assert r.user_history(parse_query({"user": "u", "eventNames": ["purchase"]})) == (
        {"purchase": ["c", "b", "a"]}, ["b"])
    store.close()


def test_inline_history_and_blacklist(rec):
    resp = rec.recommend({"history": {"purchase": ["a"], "view": ["a"]}, "num": 3, "blacklistItems": ["i2"],
                          "fields": [{"name": "category", "values": ["z"], "bias": 0}]})
    # i1 matches purchase:a and view:a; i2 blacklisted; "a"/"b" (category z) excluded.
    assert items(resp) == ["i1", "i4", "i3"]
    assert resp.item_scores[0].score == pytest.approx(PURCHASE_A + VIEW_A * 0.5, rel=1e-6)
    assert resp.item_scores[0].source == {"personal": ["purchase", "view"]}


def test_category_bias_moves_items_up_and_filter_keeps_only_it(rec):
    hist = {"purchase": ["a"]}
    boosted = rec.recommend({"history": hist, "num": 2, "fields": [{"name": "category", "values": ["y"], "bias": 3}]})
    assert items(boosted) == ["i2", "i1"]
    assert boosted.item_scores[0].score == pytest.approx(PURCHASE_A + 3, rel=1e-6)
    # A boost alone never makes an item "personal": i4 (category y, no history match) is backfill.
    more = rec.recommend({"history": hist, "num": 3, "fields": [{"name": "category", "values": ["y"], "bias": 3}]})
    assert more.item_scores[2].item == "i4" and more.item_scores[2].source == {"backfill": "popular"}
    filtered = rec.recommend({"history": hist, "num": 5, "fields": [{"name": "category", "values": ["x"], "bias": -1}]})
    assert items(filtered) == ["i1", "i3", "i5"]  # backfill respects the filter too
    assert [s.source.get("backfill") for s in filtered.item_scores] == [None, "popular", "popular"]


def test_date_filters(tmp_path):
    r = Recommender(make_backend(tmp_path / "index"), None,
                    QuerySettings(indicators=["purchase"], backfill="none"), clock=lambda: NOW)
    hist = {"purchase": ["a"]}
    assert items(r.recommend({"history": hist, "dateRange": {"name": "date", "after": "2025-02-01"}})) == ["i2"]
    assert items(r.recommend({"history": hist, "dateRange": {"name": "date", "before": "2025-02-01"}})) == ["i1"]
    # expire date: i1 has expired at 2025-01-20, i2 (2025-02-10) has not.
    r2 = Recommender(r.backend, None, QuerySettings(indicators=["purchase"], expire_date_field="date",
                                                  backfill="none"))
    assert items(r2.recommend({"history": hist, "currentDate": "2025-01-20"})) == ["i2"]
    # Items without the date never expire: backfill returns them ("a" is purchased, i1/i2 expired).
    r3 = Recommender(r.backend, None, QuerySettings(indicators=["purchase"], expire_date_field="date"))
    assert items(r3.recommend({"history": hist, "currentDate": "2025-03-01", "num": 7})) == [
        "i4", "b", "i3", "i5"]
    with pytest.raises(BadRequest, match="dateRange.name"):
        r.recommend({"history": hist, "dateRange": {"name": "category", "after": "2025-02-01"}})
    with pytest.raises(BadRequest, match=r"fields\[0\].name"):
        r.recommend({"history": hist, "fields": [{"name": "colour", "values": ["x"], "bias": 1}]})


def test_backfill_rankings_fill_to_num(rec):
    resp = rec.recommend({"user": "nobody", "num": 7})
    assert items(resp) == ["i4", "i2", "i1", "a", "b", "i3", "i5"]  # popular desc, missing last
    rec2 = Recommender(rec.backend, None, QuerySettings(backfill="none"))
    assert rec2.recommend({"user": "nobody"}).item_scores == []


def test_item_and_item_set_queries_and_return_self(rec):
    # i1's correlators: purchase [a, b], view [a] -> matches i1 itself (excluded) and i2 (purchase:a).
    resp = rec.recommend({"item": "i1", "num": 1})
    assert items(resp) == ["i2"] and resp.item_scores[0].source == {"personal": ["purchase"]}
    resp = rec.recommend({"item": "i1", "num": 2, "returnSelf": True})
    assert items(resp) == ["i1", "i2"]
    assert resp.item_scores[0].score == pytest.approx(PURCHASE_A + PURCHASE_B + 0.5 * VIEW_A, rel=1e-6)
    resp = rec.recommend({"itemSet": ["i2", "i3"], "num": 3})
    # i2 -> purchase:a (i1); i3 -> purchase:c (i3, excluded), view:b (i3, excluded)
    assert items(resp)[0] == "i1" and "i2" not in items(resp) and "i3" not in items(resp)


def test_live_item_changes(rec):
    rec.ingest(parse_events([
        {"event": "$set", "entityType": "item", "entityId": "new1", "properties": {"category": "x", "shape": "round"},
         "eventTime": "2025-06-01T00:00:00Z"},
        {"event": "$set", "entityType": "item", "entityId": "i2", "properties": {"category": ["x"]},
         "eventTime": "2025-06-01T00:00:00Z"},
        {"event": "$delete", "entityType": "item", "entityId": "i3", "eventTime": "2025-06-01T00:00:00Z"},
    ]))
    # The new item has a document at once ("shape" waits for the next training run).
    assert rec.backend.get(["new1"]) == {"new1": {"id": "new1", "category": ["x"]}}
    resp = rec.recommend({"history": {"purchase": ["a"]}, "num": 10,
                          "fields": [{"name": "category", "values": ["x"], "bias": -1}]})
    assert items(resp) == ["i2", "i1", "i5", "new1"]  # i1 and i2 tie: popularity first
    assert rec.events.item_properties("new1") == {"category": "x", "shape": "round"}
    with pytest.raises(BadRequest, match="properties.purchase"):
        rec.ingest(parse_events({"event": "$set", "entityType": "item", "entityId": "i1",
                                 "properties": {"purchase": ["a"]}}))
