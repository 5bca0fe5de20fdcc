"""Every Universal Recommender query field, sent as the UR documents it, checked for its
semantics (docs/api.md, "The Universal Recommender's query fields").

Sources: actionml/docs.actionml.com ur_queries.md and h_ur_queries.md (Harness), and
actionml/universal-recommender src/main/scala/URAlgorithm.scala (buildQuery, getBiased*,
getFilteringDateRange)."""

from __future__ import annotations

import pytest

from indexer.backend import IndexSchema
from indexer.embedded import EmbeddedBackend
from query.errors import BadRequest
from query.eventstore import EventStore, parse_events
from query.recommender import Recommender
from query.settings import QuerySettings

NOW = 1767225600.0  # 2026-01-01T00:00:00Z
SCHEMA = IndexSchema(
    keyword_fields=("purchase", "view", "categories"),
    date_fields=("date", "availableDate", "expireDate"),
    number_fields=("popular", "trending", "hot"),
)
# A document's indicator fields hold its correlators: p1 is bought by users who bought h1 ...
DOCS = [
    {"id": "p1", "purchase": ["h1"], "view": ["v1"], "categories": ["Phones", "Samsung"], "popular": 10.0,
     "trending": 2.0, "hot": 1.0, "date": "2025-06-01T00:00:00Z"},
    {"id": "p2", "purchase": ["h1", "h2"], "categories": ["Phones", "Apple"], "popular": 8.0,
     "date": "2025-03-01T00:00:00Z"},
    {"id": "p3", "view": ["v1"], "categories": ["Tablets", "Apple"], "popular": 6.0},
    {"id": "p4", "view": ["v2"], "categories": ["Phones", "Samsung"], "popular": 30.0},
    {"id": "p5", "purchase": ["h3"], "categories": ["Tablets", "Samsung"], "popular": 4.0,
     "expireDate": "2025-01-01T00:00:00Z", "date": "2025-06-02T00:00:00Z"},
    {"id": "p6", "categories": ["Phones", "Apple"], "popular": 20.0, "availableDate": "2030-01-01T00:00:00Z"},
    {"id": "r", "purchase": ["h2", "h3"], "categories": ["Bundles"], "popular": 1.0},
    {"id": "h1", "categories": ["Accessories"], "popular": 2.0},
]


def ev(user, action, item, t="2025-06-01T00:00:00Z"):
    return {"event": action, "entityType": "user", "entityId": user, "targetEntityType": "item",
            "targetEntityId": item, "eventTime": t}


@pytest.fixture
def store(tmp_path):
    s = EventStore(tmp_path / "events.db")
    s.insert(parse_events([ev("u", "purchase", "h1"), ev("u", "view", "v1", "2025-06-02T00:00:00Z")]))
    yield s
    s.close()


@pytest.fixture
def backend(tmp_path):
    b = EmbeddedBackend(tmp_path / "index", "items")
    b.create_version(SCHEMA, [dict(d) for d in DOCS])
    return b


def make(backend, store, **settings):
    return Recommender(backend, store, QuerySettings(indicators={"purchase": 1.0, "view": 0.5}, **settings),
                       clock=lambda: NOW)


@pytest.fixture
def rec(backend, store):
    return make(backend, store)


def ids(resp):
    return [s.item for s in resp.item_scores]


def sources(resp):
    return ["personal" if "personal" in s.source else "backfill" for s in resp.item_scores]


def test_empty_query_returns_popular_items(rec):
    """`{}`: "This returns only popular items. All returned scores will be 0 but the order
    will be based on relative popularity." (ur_queries.md)"""
    resp = rec.recommend({})
    assert ids(resp) == ["p4", "p6", "p1", "p2", "p3", "p5", "h1", "r"]
    assert {s.score for s in resp.item_scores} == {0.0} and set(sources(resp)) == {"backfill"}
    assert ids(rec.recommend({"num": 4})) == ["p4", "p6", "p1", "p2"]
    # "Property-based biases for boosts and filters can also be applied as with any other query."
    resp = rec.recommend({"fields": [{"name": "categories", "values": ["Apple"], "bias": 2}], "num": 3})
    assert ids(resp) == ["p6", "p2", "p3"] and [s.score for s in resp.item_scores] == [2.0, 2.0, 2.0]


def test_user_query_personal_first_then_backfill(rec):
    resp = rec.recommend({"user": "u", "num": 5})
    # p1 matches purchase:h1 and view:v1, p2 purchase:h1, p3 view:v1; h1 (bought) never comes back
    assert ids(resp) == ["p1", "p2", "p3", "p4", "p6"]
    assert sources(resp) == ["personal"] * 3 + ["backfill"] * 2


def test_num_caps_the_results(rec):
    assert len(rec.recommend({"user": "u", "num": 2}).item_scores) == 2
    assert len(rec.recommend({"user": "u"}).item_scores) == 7  # [query] num 20; h1 is bought


def test_from_paginates_across_personal_results_and_backfill(rec):
    """`from`: "rank/position to start returning recommendations from. Used in pagination.
    The rank/position is 0 based" (h_ur_queries.md); the UR sends it as Elasticsearch's
    `from` of its one query, which holds the personal part and the popularity backfill."""
    everything = ids(rec.recommend({"user": "u", "num": 20}))
    pages = [ids(rec.recommend({"user": "u", "from": start, "num": 2})) for start in range(0, 8, 2)]
    assert [i for page in pages for i in page] == everything
    assert pages[1] == ["p3", "p4"]  # one personal result, then backfill
    assert rec.recommend({"user": "u", "from": 100, "num": 2}).item_scores == []
    with pytest.raises(BadRequest, match="from"):
        rec.recommend({"user": "u", "from": 9990, "num": 20})  # past 10,000 (with [query] num)


def test_same_field_twice_is_two_rules(rec):
    """Each entry of `fields` is its own rule: exclude Tablets, exclude Samsung, keep only
    Phones (bias 0 excludes, a negative bias includes only, as h_ur_queries.md says)."""
    resp = rec.recommend({"user": "u", "fields": [
        {"name": "categories", "values": ["Tablets"], "bias": 0},
        {"name": "categories", "values": ["Samsung"], "bias": 0},
        {"name": "categories", "values": ["Phones"], "bias": -1},
    ]})
    assert ids(resp) == ["p2", "p6"] and sources(resp) == ["personal", "backfill"]
    # two boosts on one field add up on an item matching both
    plain = {s.item: s.score for s in rec.recommend({"user": "u"}).item_scores}
    boosted = rec.recommend({"user": "u", "fields": [
        {"name": "categories", "values": ["Apple"], "bias": 2},
        {"name": "categories", "values": ["Phones"], "bias": 3},
    ]})
    scores = {s.item: s.score for s in boosted.item_scores}
    assert scores["p2"] == pytest.approx(plain["p2"] + 5, rel=1e-6)
    assert scores["p1"] == pytest.approx(plain["p1"] + 3, rel=1e-6)
    assert ids(boosted)[0] == "p2"


def test_harness_rules_is_fields(rec):
    rules = [{"name": "categories", "values": ["series-like", "Apple"], "bias": -1}]
    assert ids(rec.recommend({"user": "u", "rules": rules})) == ids(rec.recommend({"user": "u", "fields": rules}))
    with pytest.raises(BadRequest) as e:
        rec.recommend({"user": "u", "rules": [{"name": "colour", "values": ["x"], "bias": 1}]})
    assert e.value.field == "rules[0].name"


def test_event_names_choose_the_history_actions(rec):
    """`eventNames` in the query take precedence over the model's for the user's history
    (URAlgorithm.predict: queryEventNames = query.eventNames.getOrElse(modelEventNames))."""
    resp = rec.recommend({"user": "u", "eventNames": ["view"], "num": 4, "explain": True})
    assert resp.explain["history"] == {"view": ["v1"]}
    assert ids(resp)[:2] == ["p1", "p3"] and sources(resp)[:2] == ["personal", "personal"]
    assert "h1" not in ids(resp)  # the blacklist (purchases) still applies: cooccur keeps it
    assert resp.item_scores[0].source == {"personal": ["view"]}
    with pytest.raises(BadRequest) as e:
        rec.recommend({"user": "u", "eventNames": ["view", "cart"]})
    assert e.value.field == "eventNames[1]"
    # inline history too
    inline = rec.recommend({"history": {"purchase": ["h1"], "view": ["v1"]}, "eventNames": ["purchase"]})
    assert ids(inline)[:2] == ["p1", "p2"]


def test_with_ranks_adds_the_ranking_values(rec):
    """`withRanks`: "Add to ItemScore rank fields values" (ItemScore(item, score, ranks))."""
    resp = rec.recommend({"user": "u", "num": 4, "withRanks": True}).to_json()
    first, backfill = resp["itemScores"][0], resp["itemScores"][3]
    assert first["item"] == "p1" and first["ranks"] == {"popular": 10.0, "trending": 2.0, "hot": 1.0}
    assert backfill["item"] == "p4" and backfill["ranks"] == {"popular": 30.0, "trending": 0.0, "hot": 0.0}
    assert list(first) == ["item", "score", "ranks", "source"]
    assert "ranks" not in rec.recommend({"user": "u", "num": 1}).to_json()["itemScores"][0]


def test_negative_user_bias_makes_the_history_a_filter(rec, store):
    """A negative userBias: the user's history no longer scores, it filters: only items it
    points to, scored by the rest of the query (URAlgorithm.buildQueryMust: userBias < 0 ->
    the history's correlators become `must` terms); "no results will be returned if the
    user has no usable history"."""
    # r's correlators point to p2 (purchase:h2) and p5 (purchase:h3); u's history to p1, p2, p3.
    assert ids(rec.recommend({"item": "r"}))[:2] == ["p2", "p5"]
    resp = rec.recommend({"user": "u", "userBias": -1, "item": "r"})
    assert ids(resp) == ["p2", "p1", "p3"]
    assert sources(resp) == ["personal", "backfill", "backfill"]  # p1, p3: the history's, by popularity
    # the user's history alone: the items it points to, by popularity (scores 0)
    alone = rec.recommend({"user": "u", "userBias": -1})
    assert ids(alone) == ["p1", "p2", "p3"] and {s.score for s in alone.item_scores} == {0.0}
    assert rec.recommend({"user": "nobody", "userBias": -1}).item_scores == []
    # [query] user_bias is the default, a request's userBias overrides it
    filtering = make(rec.backend, store, user_bias=-1.0)
    assert ids(filtering.recommend({"user": "u", "item": "r"})) == ["p2", "p1", "p3"]
    assert ids(filtering.recommend({"user": "u", "item": "r", "userBias": 1}))[:4] == ["p2", "p1", "p5", "p3"]


def test_negative_item_bias_makes_the_item_a_filter(rec):
    resp = rec.recommend({"user": "u", "item": "r", "itemBias": -1})
    # scored by u's history, only items r's correlators point to (p2, p5; r itself is the query)
    assert ids(resp) == ["p2", "p5"] and sources(resp) == ["personal", "backfill"]
    plain = {s.item: s.score for s in rec.recommend({"user": "u"}).item_scores}
    assert resp.item_scores[0].score == pytest.approx(plain["p2"], rel=1e-6)
    assert ids(rec.recommend({"item": "p3", "itemSetBias": -1, "itemSet": ["p4"]})) == []  # p4 has no correlators


def test_zero_bias_leaves_that_part_out(rec):
    """bias 0 on a part: it neither scores nor filters (cooccur's meaning; see docs/api.md)."""
    without_user = rec.recommend({"user": "u", "item": "r", "userBias": 0})
    item_only = rec.recommend({"item": "r", "blacklistItems": ["h1"]})
    assert [(s.item, s.score) for s in without_user.item_scores] == [(s.item, s.score) for s in item_only.item_scores]


def test_positive_biases_weigh_the_parts(rec):
    both = rec.recommend({"user": "u", "item": "r", "userBias": 2, "explain": True})
    assert both.explain["biases"] == {"userBias": 2.0, "itemBias": 1.0, "itemSetBias": 1.0}
    only_user = {s.item: s.score for s in rec.recommend({"user": "u", "userBias": 2}).item_scores}
    plain = {s.item: s.score for s in rec.recommend({"user": "u"}).item_scores}
    assert only_user["p3"] == pytest.approx(2 * plain["p3"], rel=1e-6)


def test_blacklist_items_never_come_back(rec):
    resp = rec.recommend({"user": "u", "blacklistItems": ["p1", "p4"]})
    assert "p1" not in ids(resp) and "p4" not in ids(resp) and ids(resp)[0] == "p2"


def test_return_self(rec, backend, store):
    """"returnSelf: optional boolean asking to include the item that was part of the query
    (if there was one) as part of the results. Defaults to false." r lists h1, and so
    does its own purchase field."""
    assert "r" not in ids(rec.recommend({"item": "r"}))
    assert "r" in ids(rec.recommend({"item": "r", "returnSelf": True}))
    assert "r" in ids(make(backend, store, return_self=True).recommend({"item": "r"}))


def test_date_range_filters_every_result(rec):
    """"The query will return only those recommendations where the date field is in range.
    Either date bound can be omitted ... The range applies to all returned recommendations,
    even those for popular items." (ur_queries.md)"""
    resp = rec.recommend({"user": "u", "dateRange": {"name": "date", "after": "2025-05-01T00:00:00Z"}})
    assert ids(resp) == ["p1", "p5"] and sources(resp) == ["personal", "backfill"]
    resp = rec.recommend({"dateRange": {"name": "date", "before": "2025-06-01T12:00:00Z",
                                        "after": "2015-08-20T11:28:45.114-07:00"}})
    assert ids(resp) == ["p1", "p2"]


def test_current_date_with_available_and_expire_dates(backend, store):
    """available <= currentDate < expire ("the UR will check that the current date is before
    the expire date, and after or equal to the available date"); without currentDate, the
    server's clock. cooccur: an item without one of the dates is not filtered by it."""
    rec = make(backend, store, available_date_field="availableDate", expire_date_field="expireDate")
    now = ids(rec.recommend({}))
    assert "p6" not in now and "p5" not in now and "p4" in now  # p6 not yet available, p5 expired
    later = ids(rec.recommend({"currentDate": "2031-01-01T00:00:00Z"}))
    assert "p6" in later and "p5" not in later
    earlier = ids(rec.recommend({"currentDate": "2024-06-01T00:00:00Z"}))
    assert "p5" in earlier and "p6" not in earlier
    # cooccur keeps the available/expire filter when a dateRange is given too (the UR drops
    # it): an expired item is never returned
    ranged = ids(rec.recommend({"dateRange": {"name": "date", "after": "2025-05-01T00:00:00Z"}}))
    assert ranged == ["p1"]


def test_ur_documented_full_query(rec):
    """The "Full Query Parameters" example of ur_queries.md, with this index's names."""
    resp = rec.recommend({
        "user": "u", "userBias": 1.5, "item": "r", "itemBias": 0.5, "num": 4,
        "fields": [{"name": "categories", "values": ["Phones"], "bias": -1},
                   {"name": "categories", "values": ["Apple"], "bias": 1.02}],
        "dateRange": {"name": "date", "before": "2030-09-15T11:28:45.114-07:00"},
        "currentDate": "2025-08-15T11:28:45.114-07:00",
        "blacklistItems": ["p6"], "returnSelf": False,
    })
    assert ids(resp) == ["p2", "p1"]
    assert resp.to_json()["itemScores"][0]["item"] == "p2"
