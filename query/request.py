"""Query requests and responses (the Universal Recommender's JSON shape) and their validation.

Every validation error is a `BadRequest` naming the offending field as a JSON path
(`fields[1].bias`), so HTTP clients get a 400 that says what to fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from indicators import validate
from indicators.validate import format_time

from .errors import BadRequest

MAX_BIAS = 1e6
"""|bias| at most (rules, userBias, itemBias, itemSetBias): beyond it scores overflow the
float32 that Lucene and Elasticsearch score in (docs/api.md)."""
MAX_RESULT_WINDOW = 10_000
"""`from` + `num` at most: Elasticsearch's default index.max_result_window (docs/api.md)."""
# Every Universal Recommender query field (docs/api.md, "Request"), plus cooccur's own
# `history` and `explain`; `rules` is Harness's name for `fields`.
KNOWN_KEYS = {
    "user", "item", "itemSet", "fields", "rules", "dateRange", "currentDate", "blacklistItems", "num",
    "from", "returnSelf", "eventNames", "withRanks", "history", "explain", "userBias", "itemBias",
    "itemSetBias",
}


@dataclass(frozen=True)
class Rule:
    """A business rule on an item property: bias > 0 boosts, < 0 filters, == 0 excludes."""

    name: str
    values: tuple[str, ...]
    bias: float

    @property
    def kind(self) -> str:
        return "boost" if self.bias > 0 else "filter" if self.bias < 0 else "exclude"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self.values), "bias": self.bias}


@dataclass(frozen=True)
class DateRange:
    """Items whose date field `name` is after `after` and before `before` (both exclusive)."""

    name: str
    before: str | None = None
    after: str | None = None


@dataclass(frozen=True)
class QueryRequest:
    """One recommendation request (already validated)."""

    user: str | None = None
    item: str | None = None
    item_set: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    date_range: DateRange | None = None
    current_date: str | None = None
    blacklist_items: tuple[str, ...] = ()
    num: int | None = None
    return_self: bool | None = None
    history: dict[str, tuple[str, ...]] | None = None
    """Inline history {action: [item ids, newest first]}; replaces the event store's."""
    explain: bool = False
    user_bias: float | None = None
    """None: [query] user_bias. > 0 multiplies the history clauses' boosts, < 0 makes them a
    filter (the UR's meaning), 0 leaves the user's history out of the query."""
    item_bias: float | None = None
    item_set_bias: float | None = None
    start: int = 0
    """`from`: the position of the first result returned (pagination)."""
    event_names: tuple[str, ...] | None = None
    """`eventNames`: the actions of the user's history this query uses (None: every indicator)."""
    with_ranks: bool = False
    """`withRanks`: each item score also carries the item's ranking values."""
    rules_key: str = "fields"
    """The request key the rules came in (`fields`, or Harness's `rules`), for error paths."""


@dataclass
class ItemScore:
    item: str
    score: float
    source: dict[str, Any]
    """{"personal": [indicators that matched]} or {"backfill": ranking}."""
    explain: dict[str, Any] | None = None
    ranks: dict[str, float] | None = None
    """With `withRanks`: {ranking: the item's value} (the UR's `ranks`)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"item": self.item, "score": self.score}
        if self.ranks is not None:
            out["ranks"] = self.ranks
        out["source"] = self.source
        if self.explain is not None:
            out["explain"] = self.explain
        return out


@dataclass
class QueryResponse:
    item_scores: list[ItemScore]
    version: str | None
    """The index version that answered."""
    explain: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"itemScores": [s.to_json() for s in self.item_scores], "version": self.version}
        if self.explain is not None:
            out["explain"] = self.explain
        return out


# ----------------------------------------------------------------------------- helpers
def normalize_date(value: Any, where: str) -> str:
    """An ISO-8601 date/time as a UTC string `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (naive = UTC)."""
    return format_time(parse_time(value, where))


def parse_time(value: Any, where: str) -> datetime:
    """An ISO-8601 date/time (a `Z` suffix is accepted) as an aware UTC datetime: the event
    validator's rule (indicators/validate.py), so requests and events read times alike."""
    try:
        return validate.parse_time(value, where)
    except validate.InvalidEvent as e:
        raise BadRequest(e.field, e.problem) from None


def item_id(value: Any, where: str) -> str:
    """A non-empty id string of bounded length, valid Unicode (the event validator's rule)."""
    try:
        return validate.check_id(value, where)
    except validate.InvalidEvent as e:
        raise BadRequest(e.field, e.problem) from None


def id_list(value: Any, where: str, *, allow_empty: bool = True) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise BadRequest(where, f"must be a list of strings, not {type(value).__name__}")
    if not value and not allow_empty:
        raise BadRequest(where, "must not be empty")
    return tuple(item_id(v, f"{where}[{i}]") for i, v in enumerate(value))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(where, f"must be a number, not {value!r}")
    return float(value)


def _bias(value: Any, where: str) -> float:
    bias = _number(value, where)
    if abs(bias) > MAX_BIAS:
        raise BadRequest(where, f"{bias:g} is out of range (-{MAX_BIAS:g} to {MAX_BIAS:g})")
    return bias


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(where, f"must be true or false, not {value!r}")
    return value


_RULE_KEYS = ("name", "values", "bias")


def parse_rules(value: Any, where: str = "fields") -> list[Rule]:
    """`fields` of a request (or `rules` of the config): [{name, values, bias}]."""
    if not isinstance(value, list):
        raise BadRequest(where, f"must be a list of {{name, values, bias}}, not {type(value).__name__}")
    rules = []
    for i, raw in enumerate(value):
        at = f"{where}[{i}]"
        validate.check_object(raw, at, _RULE_KEYS, _RULE_KEYS, not_object="must be an object {name, values, bias}",
                              unknown="unknown key (expected name, values, bias)", error=BadRequest)
        name = item_id(raw["name"], f"{at}.name")
        values = id_list(raw["values"], f"{at}.values", allow_empty=False)
        rules.append(Rule(name, values, _bias(raw["bias"], f"{at}.bias")))
    return rules


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(where, f"must be an integer >= {minimum}, not {value!r}")
    return value


def parse_query(obj: Any, *, max_num: int = 1000) -> QueryRequest:
    """Validate a JSON query object into a `QueryRequest` (raises `BadRequest`).

    Every field is optional: `{}` asks for popular items (backfill only), as in the UR."""
    validate.check_object(obj, "", KNOWN_KEYS, (), not_object="must be a JSON object",
                          unknown="unknown field (see docs/api.md for the request fields)", error=BadRequest)
    args: dict[str, Any] = {}
    if obj.get("user") is not None:
        args["user"] = item_id(obj["user"], "user")
    if obj.get("item") is not None:
        args["item"] = item_id(obj["item"], "item")
    if obj.get("itemSet") is not None:
        args["item_set"] = id_list(obj["itemSet"], "itemSet")
    if obj.get("fields") is not None and obj.get("rules") is not None:
        raise BadRequest("rules", "give fields or rules (Harness's name for fields), not both")
    for key in ("fields", "rules"):
        if obj.get(key) is not None:
            # Each entry is its own rule, even on a field named twice (e.g. exclude one
            # category, exclude another, keep only a third), as in the UR.
            args["rules"] = tuple(parse_rules(obj[key], key))
            args["rules_key"] = key
    if obj.get("dateRange") is not None:
        dr = validate.check_object(obj["dateRange"], "dateRange", ("name", "before", "after"), ("name",),
                                   not_object="must be an object {name, before, after}",
                                   unknown="unknown key (expected name, before, after)", error=BadRequest)
        before = normalize_date(dr["before"], "dateRange.before") if dr.get("before") is not None else None
        after = normalize_date(dr["after"], "dateRange.after") if dr.get("after") is not None else None
        if before is None and after is None:
            raise BadRequest("dateRange", "needs before, after or both")
        if before is not None and after is not None and after >= before:
            raise BadRequest("dateRange.after", f"{after} is not before {before}")
        args["date_range"] = DateRange(item_id(dr["name"], "dateRange.name"), before, after)
    if obj.get("currentDate") is not None:
        args["current_date"] = normalize_date(obj["currentDate"], "currentDate")
    if obj.get("blacklistItems") is not None:
        args["blacklist_items"] = id_list(obj["blacklistItems"], "blacklistItems")
    if obj.get("num") is not None:
        num = _int(obj["num"], "num", 1)
        if num > max_num:
            raise BadRequest("num", f"{num} exceeds the maximum {max_num}")
        args["num"] = num
    if obj.get("from") is not None:
        args["start"] = _int(obj["from"], "from", 0)
        check_window(args["start"], args.get("num", 1))
    if obj.get("returnSelf") is not None:
        args["return_self"] = _bool(obj["returnSelf"], "returnSelf")
    if obj.get("explain") is not None:
        args["explain"] = _bool(obj["explain"], "explain")
    if obj.get("withRanks") is not None:
        args["with_ranks"] = _bool(obj["withRanks"], "withRanks")
    if obj.get("eventNames") is not None:
        args["event_names"] = tuple(dict.fromkeys(id_list(obj["eventNames"], "eventNames", allow_empty=False)))
    if obj.get("history") is not None:
        hist = obj["history"]
        if not isinstance(hist, dict):
            raise BadRequest("history", "must be an object {action: [item ids, newest first]}")
        args["history"] = {
            item_id(action, "history"): id_list(items, f"history.{action}") for action, items in hist.items()
        }
    for key, attr in (("userBias", "user_bias"), ("itemBias", "item_bias"), ("itemSetBias", "item_set_bias")):
        if obj.get(key) is not None:
            args[attr] = _bias(obj[key], key)
    return QueryRequest(**args)


def check_window(start: int, num: int) -> None:
    """`from` + `num` within the result window (raises `BadRequest` naming `from`)."""
    if start + num > MAX_RESULT_WINDOW:
        raise BadRequest("from", f"from + num = {start + num} exceeds {MAX_RESULT_WINDOW} "
                                 "(page through at most the first 10,000 results)")
