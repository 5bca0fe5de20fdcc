"""Request validation: every bad field is named."""

from __future__ import annotations

import pytest

from query.errors import BadRequest, SettingsError
from query.request import parse_query
from query.settings import QuerySettings


def test_full_request_parses():
    req = parse_query({
        "user": "u1", "item": "i1", "itemSet": ["a", "b"], "num": 5, "returnSelf": True,
        "fields": [{"name": "category", "values": ["x"], "bias": -1}],
        "dateRange": {"name": "date", "after": "2025-01-01"}, "currentDate": "2025-06-01T12:00:00+02:00",
        "blacklistItems": ["z"], "history": {"view": ["a", "b"]}, "explain": True,
    })
    assert req.user == "u1" and req.item_set == ("a", "b") and req.num == 5 and req.return_self
    assert req.rules[0].kind == "filter"
    assert req.date_range.after == "2025-01-01T00:00:00.000Z" and req.date_range.before is None
    assert req.current_date == "2025-06-01T10:00:00.000Z"
    assert req.history == {"view": ("a", "b")}


@pytest.mark.parametrize("body, field", [
    ([], "(body)"),
    ({"usr": "u"}, "usr"),
    ({"user": 5}, "user"),
    ({"user": ""}, "user"),
    ({"item": ["i"]}, "item"),
    ({"itemSet": "a"}, "itemSet"),
    ({"itemSet": ["a", 3]}, "itemSet[1]"),
    ({"user": "u", "num": 0}, "num"),
    ({"user": "u", "num": "5"}, "num"),
    ({"user": "u", "num": 100000}, "num"),
    ({"user": "u", "num": True}, "num"),
    ({"user": "u", "fields": {}}, "fields"),
    ({"user": "u", "fields": [{"name": "c", "values": ["x"]}]}, "fields[0].bias"),
    ({"user": "u", "fields": [{"name": "c", "values": [], "bias": 1}]}, "fields[0].values"),
    ({"user": "u", "fields": [{"name": "c", "values": ["x"], "bias": "high"}]}, "fields[0].bias"),
    ({"user": "u", "fields": [{"name": "c", "values": ["x"], "bias": 1, "boost": 2}]}, "fields[0].boost"),
    ({"user": "u", "fields": [], "rules": []}, "rules"),
    ({"user": "u", "rules": [{"name": "c", "values": ["x"]}]}, "rules[0].bias"),
    ({"user": "u", "dateRange": {"name": "d"}}, "dateRange"),
    ({"user": "u", "dateRange": {"after": "2025-01-01"}}, "dateRange.name"),
    ({"user": "u", "dateRange": {"name": "d", "before": "yesterday"}}, "dateRange.before"),
    ({"user": "u", "dateRange": {"name": "d", "after": "2025-02-01", "before": "2025-01-01"}}, "dateRange.after"),
    ({"user": "u", "currentDate": 1234}, "currentDate"),
    ({"user": "u", "blacklistItems": [None]}, "blacklistItems[0]"),
    ({"user": "u", "returnSelf": "yes"}, "returnSelf"),
    ({"user": "u", "history": ["a"]}, "history"),
    ({"user": "u", "history": {"view": "a"}}, "history.view"),
    ({"user": "u", "userBias": "1"}, "userBias"),
    ({"user": "u", "itemBias": True}, "itemBias"),
    ({"user": "u", "from": -1}, "from"),
    ({"user": "u", "from": 1.5}, "from"),
    ({"user": "u", "from": 9999, "num": 2}, "from"),
    ({"user": "u", "eventNames": []}, "eventNames"),
    ({"user": "u", "eventNames": ["view", 3]}, "eventNames[1]"),
    ({"user": "u", "withRanks": 1}, "withRanks"),
    ({"user": "x" * 600}, "user"),
])
def test_bad_requests_name_the_field(body, field):
    with pytest.raises(BadRequest) as e:
        parse_query(body, max_num=1000)
    assert e.value.field == field
    assert str(e.value).startswith(field)


def test_every_ur_field_parses():
    """The UR's and Harness's documented query fields are all accepted."""
    req = parse_query({
        "user": "u", "userBias": -1, "item": "i", "itemBias": 0, "itemSet": ["a"], "itemSetBias": 2.5,
        "from": 10, "num": 4, "eventNames": ["view", "view", "purchase"], "withRanks": True,
        "rules": [{"name": "categories", "values": ["Tablets"], "bias": 0},
                  {"name": "categories", "values": ["Samsung"], "bias": 0},
                  {"name": "categories", "values": ["Phones"], "bias": -1}],
        "dateRange": {"name": "date", "before": "2015-09-15T11:28:45.114-07:00"},
        "currentDate": "2015-08-15T11:28:45.114-07:00", "blacklistItems": ["x"], "returnSelf": False,
    })
    assert (req.user_bias, req.item_bias, req.item_set_bias) == (-1.0, 0.0, 2.5)
    assert (req.start, req.num, req.with_ranks, req.return_self) == (10, 4, True, False)
    assert req.event_names == ("view", "purchase")
    assert [(r.name, r.kind) for r in req.rules] == [
        ("categories", "exclude"), ("categories", "exclude"), ("categories", "filter")]
    assert req.rules_key == "rules"
    # every field is optional: {} asks for popular items
    assert parse_query({}) == parse_query({"num": None})
    assert parse_query({"num": 4}).num == 4


def test_settings_validate():
    assert QuerySettings(indicators=["purchase", "view"]).effective_primary() == "purchase"
    assert QuerySettings(indicators={"buy": 1, "view": 0.5}, primary="buy").indicators == {"buy": 1.0, "view": 0.5}
    with pytest.raises(SettingsError, match="indicators.view"):
        QuerySettings(indicators={"buy": 1, "view": 0})
    with pytest.raises(SettingsError, match="backfill"):
        QuerySettings(backfill="random")
    with pytest.raises(SettingsError, match=r"rules\[0\].bias"):
        QuerySettings(rules=[{"name": "c", "values": ["x"], "bias": "x"}])
