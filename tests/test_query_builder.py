"""The query body is a pure function of request, history, item documents and settings."""

from __future__ import annotations

from query.builder import build_backfill, build_query, effective_rules, excluded_ids
from query.request import parse_query
from query.settings import QuerySettings

NOW = "2026-01-10T00:00:00.000Z"
# Ties break by popularity (the backfill ranking), then id, as in the Universal Recommender.
SORT = [{"_score": {"order": "desc"}}, {"popular": {"order": "desc"}}, {"id": {"order": "asc"}}]


def term(field, value, boost):
    return {"term": {field: {"value": value, "boost": boost}}}


def test_user_history_body_known_answer():
    settings = QuerySettings(indicators={"purchase": 1.0, "view": 0.5})
    req = parse_query({"user": "u1", "num": 4, "blacklistItems": ["z"]})
    history = {"purchase": ["a", "b"], "view": ["c", "a"], "rate": ["x"]}
    body = build_query(req, history, {}, settings, indicators=settings.indicators,
                       excluded=["a", "b", "z"], now=NOW, num=4)
    # Newest first; the default history_decay 0.98 weighs the k-th newest 0.98 ** k.
    assert body == {
        "size": 4,
        "query": {"bool": {
            "must": [{"bool": {"should": [
                term("purchase", "a", 1.0), term("purchase", "b", 0.98),
                term("view", "c", 0.5), term("view", "a", 0.49),
            ], "minimum_should_match": 1}}],
            "must_not": [{"ids": {"values": ["a", "b", "z"]}}],
        }},
        "sort": SORT,
    }


def test_rules_dates_and_item_context():
    settings = QuerySettings(
        indicators=["purchase"],
        rules=[{"name": "category", "values": ["tools"], "bias": -1}, {"name": "brand", "values": ["x"], "bias": 3}],
        available_date_field="availableDate", expire_date_field="expireDate",
    )
    req = parse_query({
        "item": "i1",
        "fields": [{"name": "category", "values": ["books", "music"], "bias": 2},
                   {"name": "color", "values": ["red"], "bias": 0}],
        "dateRange": {"name": "date", "after": "2026-01-01", "before": "2026-02-01T00:00:00+01:00"},
        "itemBias": 2,
    })
    docs = {"i1": {"id": "i1", "purchase": ["p1", "p2"], "view": ["v1"]}}
    exc = excluded_ids(req, [], settings)
    assert exc == ["i1"]  # the query item, since returnSelf is false
    body = build_query(req, {}, docs, settings, indicators=settings.indicators, excluded=exc, now=NOW, num=20)
    b = body["query"]["bool"]
    assert b["must"] == [{"bool": {"should": [term("purchase", "p1", 2.0), term("purchase", "p2", 2.0)],
                                   "minimum_should_match": 1}}]
    # The request's category rule replaced the config's; brand (config only) stays.
    assert b["should"] == [{"terms": {"brand": ["x"], "boost": 3.0}},
                           {"terms": {"category": ["books", "music"], "boost": 2.0}}]
    assert b["filter"] == [
        {"range": {"date": {"gt": "2026-01-01T00:00:00.000Z", "lt": "2026-01-31T23:00:00.000Z"}}},
        {"bool": {"should": [{"range": {"availableDate": {"lte": NOW}}},
                             {"bool": {"must_not": [{"exists": {"field": "availableDate"}}]}}]}},
        {"bool": {"should": [{"range": {"expireDate": {"gt": NOW}}},
                             {"bool": {"must_not": [{"exists": {"field": "expireDate"}}]}}]}},
    ]
    assert b["must_not"] == [{"ids": {"values": ["i1"]}}, {"terms": {"color": ["red"]}}]


def test_current_date_overrides_now_and_return_self_keeps_item():
    settings = QuerySettings(indicators=["purchase"], expire_date_field="expireDate")
    req = parse_query({"itemSet": ["a", "b"], "returnSelf": True, "currentDate": "2025-05-05T10:00:00Z"})
    assert excluded_ids(req, ["c"], settings) == ["c"]
    docs = {"a": {"purchase": ["x", "y"]}, "b": {"purchase": ["y", "z"]}}
    body = build_query(req, {}, docs, settings, indicators={"purchase": 1.0}, excluded=["c"], now=NOW, num=3)
    should = body["query"]["bool"]["must"][0]["bool"]["should"]
    assert [c["term"]["purchase"]["value"] for c in should] == ["x", "y", "z"]  # y once
    assert body["query"]["bool"]["filter"][0]["bool"]["should"][0] == {
        "range": {"expireDate": {"gt": "2025-05-05T10:00:00.000Z"}}}


def test_nothing_personal_gives_no_personal_body():
    settings = QuerySettings(indicators=["purchase"])
    req = parse_query({"user": "new"})
    assert build_query(req, {}, {}, settings, indicators={"purchase": 1.0}, excluded=[], now=NOW, num=5) is None
    # History of an action that is not an indicator asks nothing either.
    assert build_query(req, {"rate": ["a"]}, {}, settings, indicators={"purchase": 1.0},
                       excluded=[], now=NOW, num=5) is None


def test_backfill_body():
    settings = QuerySettings(indicators=["purchase"])
    req = parse_query({"user": "u", "fields": [{"name": "category", "values": ["c1"], "bias": 1.5}]})
    body = build_backfill(req, settings, ranking="trending", excluded=["a", "b"], now=NOW, size=3)
    assert body == {
        "size": 3,
        "query": {"bool": {
            "should": [{"terms": {"category": ["c1"], "boost": 1.5}}],
            "filter": [{"match_all": {}}],
            "must_not": [{"ids": {"values": ["a", "b"]}}],
        }},
        "sort": [{"_score": {"order": "desc"}}, {"trending": {"order": "desc"}}, {"id": {"order": "asc"}}],
    }
    plain = build_backfill(parse_query({"user": "u"}), settings, ranking="popular", excluded=[], now=NOW, size=2)
    # a filter-only bool: every backfill score is 0, as the UR's (an empty bool would score 1)
    assert plain["query"] == {"bool": {"filter": [{"match_all": {}}]}}


def test_user_bias_and_request_rules_win():
    rules = effective_rules(parse_query({"user": "u", "fields": [{"name": "a", "values": ["1"], "bias": -1}]}).rules,
                            [{"name": "a", "values": ["2"], "bias": 5}, {"name": "b", "values": ["3"], "bias": 0}])
    assert [(r.name, r.values, r.kind) for r in rules] == [("b", ("3",), "exclude"), ("a", ("1",), "filter")]
    req = parse_query({"user": "u", "userBias": 3})
    body = build_query(req, {"view": ["v"]}, {}, QuerySettings(), indicators={"view": 0.5},
                       excluded=[], now=NOW, num=1)
    assert body["query"]["bool"]["must"][0]["bool"]["should"] == [term("view", "v", 1.5)]


def test_history_decay_weighs_recent_events_more():
    settings = QuerySettings(indicators={"purchase": 1.0, "view": 0.5}, history_decay=0.5)
    req = parse_query({"user": "u1", "item": "i", "num": 2})
    history = {"purchase": ["a", "b", "c"], "view": ["d"]}
    docs = {"i": {"purchase": ["e"]}}
    body = build_query(req, history, docs, settings, indicators=settings.indicators,
                       excluded=[], now=NOW, num=2)
    # k-th newest: boost * 0.5 ** k per action; item context keeps its full boost.
    assert body["query"]["bool"]["must"][0]["bool"]["should"] == [
        term("purchase", "a", 1.0), term("purchase", "b", 0.5), term("purchase", "c", 0.25),
        term("view", "d", 0.5), term("purchase", "e", 1.0),
    ]


def test_history_decay_must_be_in_unit_interval():
    import pytest

    from query.errors import SettingsError

    for bad in (0, 1.5, -0.1, True):
        with pytest.raises(SettingsError, match="history_decay"):
            QuerySettings(history_decay=bad)


def test_weighted_fields_query_rank_features_and_the_prior_wraps_the_personal_part():
    settings = QuerySettings(indicators={"purchase": 1.0, "view": 0.5}, history_decay=0.5,
                             scoring={"purchase": "weights"}, weight_function="saturation", weight_parameter=4.0,
                             backfill="trending")
    req = parse_query({"user": "u1", "fields": [{"name": "category", "values": ["c"], "bias": 2}]})
    history = {"purchase": ["a.1", "b%"], "view": ["c"]}
    body = build_query(req, history, {}, settings, indicators=settings.indicators, excluded=["a.1"], now=NOW,
                       num=3, weighted=["purchase"], prior=True)
    assert body == {
        "size": 3,
        "query": {"bool": {
            "must": [{"function_score": {
                "query": {"bool": {"should": [
                    # feature names encode '.' and '%' (Elasticsearch splits the field at the last dot)
                    {"rank_feature": {"field": "purchase_w.a%2E1", "saturation": {"pivot": 4.0}, "boost": 1.0}},
                    {"rank_feature": {"field": "purchase_w.b%25", "saturation": {"pivot": 4.0}, "boost": 0.5}},
                    term("view", "c", 0.5),
                ], "minimum_should_match": 1}},
                "field_value_factor": {"field": "prior", "missing": 1.0},
                "boost_mode": "multiply"}}],
            # the rule boost stays outside the prior: additive, as in the UR
            "should": [{"terms": {"category": ["c"], "boost": 2.0}}],
            "must_not": [{"ids": {"values": ["a.1"]}}],
        }},
        "sort": [{"_score": {"order": "desc"}}, {"trending": {"order": "desc"}}, {"id": {"order": "asc"}}],
    }


def test_weight_functions_render_as_rank_feature_functions():
    from query.builder import personal_clauses

    terms = [("like", "x", 2.0)]
    for function, param, expected in (("linear", 1.0, {}), ("log", 3.0, {"scaling_factor": 3.0}),
                                      ("saturation", 7.0, {"pivot": 7.0})):
        settings = QuerySettings(weight_function=function, weight_parameter=param)
        assert personal_clauses(terms, settings, ["like"]) == [
            {"rank_feature": {"field": "like_w.x", function: expected, "boost": 2.0}}]
        assert personal_clauses(terms, settings) == [term("like", "x", 2.0)]


def test_scoring_settings_are_checked():
    import pytest

    from query.errors import SettingsError

    assert QuerySettings(scoring={"a": "weights"}).scoring_of("a") == "weights"
    assert QuerySettings(scoring={"a": "weights"}).scoring_of("b") == "terms"
    for bad in ({"scoring": "bm25"}, {"scoring": {"a": "x"}}, {"weight_function": "exp"},
                {"weight_function": "log", "weight_parameter": 0.5}, {"weight_parameter": 0},
                {"weight_parameter": float("inf")}):
        with pytest.raises(SettingsError):
            QuerySettings(**bad)
