"""The one validation of an event row, shared by every way events come in: the job's file
reader (`cooccur train` / `update`), `cooccur events import` and the HTTP event API. The
same row is accepted or rejected the same way everywhere, with the same field and reason.

Pure Python (no pyspark): the Spark reader runs it over rows in `mapInArrow`, the query
side imports it directly (indicators/ is below query/ in the pipeline).

The rules (docs/api.md, "Events"):
- a row is one PredictionIO event object; user events need event, entityId and
  targetEntityId; item events (`$set` / `$unset` / `$delete` on entityType "item") need
  entityId and, except `$delete`, a non-empty properties object;
- ids (event names, entity ids, property names) are strings, not empty or blank, at most
  `MAX_ID_LENGTH` characters, valid Unicode (no lone surrogates, which no UTF-8 store can
  hold); numbers are not ids (`"entityId": 5` is rejected, not turned into "5");
- property values are strings, finite numbers, booleans or lists of them;
- eventTime is ISO-8601 (naive = UTC, `Z` accepted) or epoch seconds (9 to 11 digits,
  an optional fraction) / milliseconds (12 or 13 digits), within years 1 to 9999 in UTC.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_ID_LENGTH = 512
ITEM_EVENTS = ("$set", "$unset", "$delete")
EVENT_KEYS = frozenset({
    "event", "entityType", "entityId", "targetEntityType", "targetEntityId", "properties",
    "eventTime", "eventId", "prId", "creationTime", "tags",
})
_EPOCH = re.compile(r"^\d{9,13}(\.\d+)?$")
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidEvent(ValueError):
    """One field of an event is wrong: `field` (a JSON path) and `problem` say which and why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Event:
    """One PredictionIO event, validated. User events have a target item; item events
    (`$set`, `$unset`, `$delete` on entityType "item") have properties instead."""

    event: str
    entity_type: str
    entity_id: str
    time_ms: int
    target_entity_type: str | None = None
    target_entity_id: str | None = None
    properties: dict[str, Any] | None = None
    event_id: str | None = None
    """The store's id of a stored event (None for one not stored yet)."""

    @property
    def is_item_change(self) -> bool:
        return self.event in ITEM_EVENTS and self.entity_type == "item"

    def to_json(self) -> dict[str, Any]:
        """PredictionIO's JSON form (what `cooccur train` reads)."""
        out: dict[str, Any] = {"event": self.event, "entityType": self.entity_type, "entityId": self.entity_id}
        if self.target_entity_id is not None:
            out["targetEntityType"] = self.target_entity_type
            out["targetEntityId"] = self.target_entity_id
        if self.properties is not None:
            out["properties"] = self.properties
        out["eventTime"] = format_time(datetime.fromtimestamp(self.time_ms / 1000, tz=UTC))
        return out


def check_text(value: str, where: str) -> str:
    """`value` unchanged when it is valid Unicode (raises `InvalidEvent` on a lone surrogate:
    a JSON escape such as "\\udc00", or bytes that were not UTF-8)."""
    m = _SURROGATE.search(value)
    if m:
        if "\udc80" <= m.group() <= "\udcff":
            raise InvalidEvent(where, "not UTF-8 text")
        raise InvalidEvent(where, f"holds a lone surrogate (U+{ord(m.group()):04X}), not valid Unicode")
    return value


def check_id(value: Any, where: str) -> str:
    """A non-blank id string of bounded length and valid Unicode (raises `InvalidEvent`)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(where, f"must be a non-empty string, not {_show(value)}")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(where, f"longer than {MAX_ID_LENGTH} characters")
    return check_text(value, where)


def parse_time(value: Any, where: str) -> datetime:
    """An ISO-8601 date/time (naive = UTC, `Z` accepted) or epoch seconds / milliseconds
    (a digit string) as an aware UTC datetime; raises `InvalidEvent`."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(where, f"must be an ISO-8601 date/time string, not {_show(value)}")
    text = check_text(value, where).strip()
    try:
        if _EPOCH.match(text):
            seconds = float(text)
            # Spark's reader's rule: 12+ integer digits are milliseconds.
            dt = datetime.fromtimestamp(seconds / 1000 if seconds >= 1e11 else seconds, tz=UTC)
        else:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            dt = dt.astimezone(UTC)
    except ValueError:
        raise InvalidEvent(where, f"{_show(value)} is not an ISO-8601 date/time") from None
    except OverflowError:
        raise InvalidEvent(where, f"{_show(value)} is out of range (years 1 to 9999 in UTC)") from None
    return dt


def format_time(dt: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds)."""
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def time_ms(dt: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (exact, no float round-off)."""
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def check_property(value: Any, where: str) -> None:
    """Property values are strings, finite numbers, booleans or lists of them."""
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_scalar(v, f"{where}[{i}]")
    else:
        _check_scalar(value, where, "a string, number, boolean or a list of them")


def _check_scalar(value: Any, where: str, expected: str = "a string, number or boolean") -> None:
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidEvent(where, f"must be a finite number, not {value!r}")
    elif not isinstance(value, str | int | float | bool):
        raise InvalidEvent(where, f"must be {expected}")


def parse_event(obj: Any, where: str = "", *, now_ms: int) -> Event:
    """Validate one PredictionIO event object (raises `InvalidEvent` naming the field).
    `now_ms` is the time of an event without eventTime."""
    at = f"{where}." if where else ""
    check_object(obj, where, EVENT_KEYS, ("event", "entityType", "entityId"),
                 not_object="an event must be a JSON object", unknown="unknown field of a PredictionIO event")
    name = check_id(obj["event"], f"{at}event")
    entity_type = check_id(obj["entityType"], f"{at}entityType")
    entity_id = check_id(obj["entityId"], f"{at}entityId")
    when = now_ms
    if obj.get("eventTime") is not None:
        when = time_ms(parse_time(obj["eventTime"], f"{at}eventTime"))
    if name.startswith("$"):
        return _item_event(obj, name, entity_type, entity_id, when, at)
    if entity_type != "user":
        raise InvalidEvent(f"{at}entityType", f"must be \"user\" for a {name!r} event, not {entity_type!r}")
    if obj.get("targetEntityType", "item") != "item":
        raise InvalidEvent(f"{at}targetEntityType", f"must be \"item\", not {_show(obj['targetEntityType'])}")
    if obj.get("targetEntityId") is None:
        raise InvalidEvent(f"{at}targetEntityId", "is required (the item the user acted on)")
    target = check_id(obj["targetEntityId"], f"{at}targetEntityId")
    if obj.get("properties") is not None and not isinstance(obj["properties"], dict):
        raise InvalidEvent(f"{at}properties", "must be an object")
    return Event(name, entity_type, entity_id, when, "item", target)


def check_object(
    obj: Any,
    where: str,
    known: Collection[str],
    required: Iterable[str],
    *,
    not_object: str,
    unknown: str,
    error: Callable[[str, str], Exception] = InvalidEvent,
) -> dict[str, Any]:
    """`obj` when it is a dict of `known` keys only, holding every `required` key; otherwise
    raises `error(field, problem)` for the first wrong key (an unknown one before a missing
    one). `where` is the object's JSON path ("" at the top: the error then names "(body)");
    `not_object` and `unknown` are the problems to report. Shared with the query side's
    request objects (error=BadRequest)."""
    at = f"{where}." if where else ""
    if not isinstance(obj, dict):
        raise error(where or "(body)", not_object)
    extra = sorted(set(obj) - set(known))
    if extra:
        raise error(f"{at}{key_name(extra[0])}", unknown)
    for key in required:
        if key not in obj:
            raise error(f"{at}{key}", "is required")
    return obj


def _item_event(obj: dict, name: str, entity_type: str, entity_id: str, when: int, at: str) -> Event:
    if name not in ITEM_EVENTS:
        raise InvalidEvent(f"{at}event", f"{name!r}: the only $-events are {', '.join(ITEM_EVENTS)}")
    if obj.get("targetEntityId") is not None:
        raise InvalidEvent(f"{at}targetEntityId", f"a {name} event has no target")
    props = obj.get("properties")
    if name == "$delete":
        if props:
            raise InvalidEvent(f"{at}properties", "a $delete event has no properties")
        return Event(name, entity_type, entity_id, when)
    if not isinstance(props, dict) or not props:
        raise InvalidEvent(f"{at}properties", f"a {name} event needs a non-empty object")
    for key, value in props.items():
        check_id(key, f"{at}properties")
        if name == "$set":
            check_property(value, f"{at}properties.{key}")
    return Event(name, entity_type, entity_id, when, properties=props)


def decode_line(raw: bytes) -> str:
    """A line of an events file as text; bytes that are not UTF-8 reject the row."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("(line)", "not UTF-8 text") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads_strict(text: str | bytes, where: str = "(line)") -> Any:
    """Strict JSON (no NaN / Infinity; Python's parser takes them), errors as `InvalidEvent`."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise InvalidEvent(where, f"not JSON: {e.msg} at column {e.colno}") from None
    except RecursionError:
        raise InvalidEvent(where, "not JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise InvalidEvent(where, f"not JSON: {e}") from None


def parse_json_line(text: str, *, now_ms: int) -> Event:
    """One line of a PredictionIO JSON-lines file."""
    obj = loads_strict(text)
    if not isinstance(obj, dict):
        raise InvalidEvent("(line)", "not a JSON object")
    return parse_event(obj, now_ms=now_ms)


def csv_cells(text: str, sep: str, width: int) -> list[str]:
    """The stripped cells of one CSV / TSV line; a row of another width is rejected."""
    cells = [c.strip() for c in next(csv.reader([text], delimiter=sep), [])]
    if len(cells) != width:
        raise InvalidEvent("(row)", f"{len(cells)} columns, header has {width}")
    return cells


def parse_row(user: str | None, event: str | None, item: str | None, time: str | None, *, now_ms: int,
              columns: tuple[str, str, str, str] = ("user", "event", "item", "time")) -> Event:
    """One row of a CSV / TSV / Parquet file (cells already stripped) as a user event; an
    error names the file's column (`columns`: the names of user, event, item, time)."""
    obj: dict[str, Any] = {"event": event, "entityType": "user", "entityId": user,
                           "targetEntityType": "item", "targetEntityId": item}
    if time:
        obj["eventTime"] = time
    for key, value in (("event", event), ("entityId", user), ("targetEntityId", item)):
        if not value:  # an empty cell is a missing value
            del obj[key]
    try:
        if event is not None and event.startswith("$"):
            raise InvalidEvent("event", "a $-event needs properties: give it as JSON lines")
        return parse_event(obj, now_ms=now_ms)
    except InvalidEvent as e:
        names = dict(zip(("entityId", "event", "targetEntityId", "eventTime"), columns, strict=True))
        raise InvalidEvent(names.get(e.field, e.field), e.problem) from None


def key_name(key: str) -> str:
    """An object key as a field name in an error: as is, or quoted when it is blank or not
    valid Unicode (an error must name something a client can read)."""
    return key if key.strip() and not _SURROGATE.search(key) and key.isprintable() else _show(key)


def _show(value: Any) -> str:
    """A value for an error message: short, and printable even when it is not valid Unicode."""
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
