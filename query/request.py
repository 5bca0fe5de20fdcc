"""Query requests and responses (the Universal Recommender's JSON shape) and their validation.

Every validation error is a `BadRequest` naming the offending field as a JSON path
(`fields[1].bias`), so HTTP clients get a 400 that says what to fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import BadRequest

MAX_ID_LENGTH = 512
# UR request keys accepted (and used) besides the documented ones.
KNOWN_KEYS = {
    "user", "item", "itemSet", "fields", "dateRange", "currentDate", "blacklistItems", "num",
    "returnSelf", "history", "explain", "userBias", "itemBias", "itemSetBias",
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
    user_bias: float = 1.0
    item_bias: float = 1.0
    item_set_bias: float = 1.0


@dataclass
class ItemScore:
    item: str
    score: float
    source: dict[str, Any]
    """{"personal": [indicators that matched]} or {"backfill": ranking}."""
    explain: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"item": self.item, "score": self.score, "source": self.source}
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
    """An ISO-8601 date/time (a `Z` suffix is accepted) as an aware UTC datetime."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(where, f"must be an ISO-8601 date/time string, not {value!r}")
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise BadRequest(where, f"{value!r} is not an ISO-8601 date/time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def format_time(dt: datetime) -> str:
    text = dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    return text + "Z"


def item_id(value: Any, where: str) -> str:
    """A non-empty id string of bounded length."""
    if not isinstance(value, str) or not value:
        raise BadRequest(where, f"must be a non-empty string, not {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise BadRequest(where, f"longer than {MAX_ID_LENGTH} characters")
    return value


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


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(where, f"must be true or false, not {value!r}")
    return value


def parse_rules(value: Any, where: str = "fields") -> list[Rule]:
    """`fields` of a request (or `rules` of the config): [{name, values, bias}]."""
    if not isinstance(value, list):
        raise BadRequest(where, f"must be a list of {{name, values, bias}}, not {type(value).__name__}")
    rules = []
    for i, raw in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(raw, dict):
            raise BadRequest(at, "must be an object {name, values, bias}")
        unknown = sorted(set(raw) - {"name", "values", "bias"})
        if unknown:
            raise BadRequest(f"{at}.{unknown[0]}", "unknown key (expected name, values, bias)")
        for key in ("name", "values", "bias"):
            if key not in raw:
                raise BadRequest(f"{at}.{key}", "is required")
        name = item_id(raw["name"], f"{at}.name")
        values = id_list(raw["values"], f"{at}.values", allow_empty=False)
        rules.append(Rule(name, values, _number(raw["bias"], f"{at}.bias")))
    return rules


def parse_query(obj: Any, *, max_num: int = 1000) -> QueryRequest:
    """Validate a JSON query object into a `QueryRequest` (raises `BadRequest`)."""
    if not isinstance(obj, dict):
        raise BadRequest("(body)", "must be a JSON object")
    unknown = sorted(set(obj) - KNOWN_KEYS)
    if unknown:
        raise BadRequest(unknown[0], "unknown field (see docs/api.md for the request fields)")
    args: dict[str, Any] = {}
    if obj.get("user") is not None:
        args["user"] = item_id(obj["user"], "user")
    if obj.get("item") is not None:
        args["item"] = item_id(obj["item"], "item")
    if obj.get("itemSet") is not None:
        args["item_set"] = id_list(obj["itemSet"], "itemSet")
    if obj.get("fields") is not None:
        rules = parse_rules(obj["fields"], "fields")
        names = [r.name for r in rules]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise BadRequest(f"fields[{i}].name", f"{n!r} appears twice")
        args["rules"] = tuple(rules)
    if obj.get("dateRange") is not None:
        dr = obj["dateRange"]
        if not isinstance(dr, dict):
            raise BadRequest("dateRange", "must be an object {name, before, after}")
        unknown = sorted(set(dr) - {"name", "before", "after"})
        if unknown:
            raise BadRequest(f"dateRange.{unknown[0]}", "unknown key (expected name, before, after)")
        if "name" not in dr:
            raise BadRequest("dateRange.name", "is required")
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
        num = obj["num"]
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise BadRequest("num", f"must be an integer >= 1, not {num!r}")
        if num > max_num:
            raise BadRequest("num", f"{num} exceeds the maximum {max_num}")
        args["num"] = num
    if obj.get("returnSelf") is not None:
        args["return_self"] = _bool(obj["returnSelf"], "returnSelf")
    if obj.get("explain") is not None:
        args["explain"] = _bool(obj["explain"], "explain")
    if obj.get("history") is not None:
        hist = obj["history"]
        if not isinstance(hist, dict):
            raise BadRequest("history", "must be an object {action: [item ids, newest first]}")
        args["history"] = {
            item_id(action, "history"): id_list(items, f"history.{action}") for action, items in hist.items()
        }
    for key, attr in (("userBias", "user_bias"), ("itemBias", "item_bias"), ("itemSetBias", "item_set_bias")):
        if obj.get(key) is not None:
            value = _number(obj[key], key)
            if value <= 0:
                raise BadRequest(key, f"must be > 0 (it multiplies that part's boosts), not {value!r}")
            args[attr] = value
    request = QueryRequest(**args)
    if not (request.user or request.item or request.item_set or request.history is not None
            or request.rules):
        raise BadRequest("user", "a query needs user, item, itemSet, history or fields")
    return request
