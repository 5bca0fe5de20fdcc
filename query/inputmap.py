"""Input mapping: a CSV/TSV file of any layout -> PredictionIO events, by rules, no code.

A mapping is a small TOML file (docs/input-mapping.md). Each row of the CSV gives:
- user events by rules: a constant event (`name = "rate"`: every row), an event named by a
  column's value (`from = "action"`), either only when a condition holds
  (`when = "rating >= 4"`);
- an item `$set` of properties taken from columns, a list split on a separator
  (MovieLens genres `Adventure|Comedy` -> category = ["Adventure", "Comedy"]).

Events are validated by the event store's own validator (query.eventstore.parse_event), and
a bad row is reported with file, line and field; rows = accepted + rejected.
"""

from __future__ import annotations

import csv
import operator
import re
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadRequest, EventFileError, ImportRejected, QueryError
from .eventstore import Event, EventStore, ms_to_iso, parse_event

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, "!=": operator.ne, "==": operator.eq,
    ">": operator.gt, "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*([^\s<>=!]+)\s*(>=|<=|!=|==|>|<)\s*(.*?)\s*$")


class MappingError(QueryError):
    """The mapping file itself is wrong (names the file and the key)."""

    hint = "see docs/input-mapping.md"

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Condition:
    """`column OP value`; numbers compare as numbers, anything else as text (== and != only)."""

    column: str
    op: str
    value: str

    def holds(self, row: dict[str, str]) -> bool:
        """Whether the row meets the condition (BadRequest naming the column when its value
        cannot be compared)."""
        cell = row[self.column].strip()
        try:
            return OPERATORS[self.op](float(cell), float(self.value))
        except ValueError:
            if self.op in ("==", "!="):
                return OPERATORS[self.op](cell, self.value)
            raise BadRequest(self.column, f"{cell!r} is not a number (rule: {self.column} {self.op} "
                                          f"{self.value})") from None


@dataclass(frozen=True)
class EventRule:
    """One user event per row: named `name`, or by the value of column `column`; only when
    `when` holds (always without one)."""

    name: str | None = None
    column: str | None = None
    when: Condition | None = None


@dataclass(frozen=True)
class PropertyRule:
    """An item property from a column; `split`: a list on this separator; `ignore`: values
    that mean "none" (e.g. MovieLens "(no genres listed)")."""

    name: str
    column: str
    split: str | None = None
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mapping:
    """How one CSV layout becomes events (docs/input-mapping.md)."""

    item: str
    user: str | None = None
    time: str | None = None
    delimiter: str | None = None
    """None: by the file's extension (tab for .tsv, else comma)."""
    events: tuple[EventRule, ...] = ()
    properties: tuple[PropertyRule, ...] = ()

    def columns(self) -> list[str]:
        """Every column the mapping reads."""
        names = [self.item, self.user, self.time]
        names += [r.column for r in self.events] + [r.when.column for r in self.events if r.when]
        names += [p.column for p in self.properties]
        return list(dict.fromkeys(n for n in names if n))


@dataclass
class MappedImport:
    """What importing a mapped file did: rows = accepted + rejected."""

    path: str
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    user_events: int = 0
    item_events: int = 0
    seconds: float = 0.0
    item_changes: list[Event] = field(default_factory=list)


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a mapping file (MappingError naming the key when it is wrong)."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise MappingError(where, "(file)", "not found") from None
    except tomllib.TOMLDecodeError as e:
        raise MappingError(where, "(file)", str(e)) from None
    return mapping_from_dict(data, where)


def mapping_from_dict(data: dict[str, Any], where: str = "mapping") -> Mapping:
    """A Mapping from its TOML form (see load_mapping)."""
    known = {"item", "user", "time", "delimiter", "event", "properties"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MappingError(where, unknown[0], f"unknown key (keys: {', '.join(sorted(known))})")
    for key in ("item", "user", "time", "delimiter"):
        if key in data and not (isinstance(data[key], str) and data[key]):
            raise MappingError(where, key, "must be a non-empty string")
    if "item" not in data:
        raise MappingError(where, "item", "is required: the item id column")
    rules = [_event_rule(r, f"event[{i}]", where) for i, r in enumerate(_tables(data, "event", where))]
    if rules and "user" not in data:
        raise MappingError(where, "user", "is required by [[event]] rules: the user id column")
    props = data.get("properties", {})
    if not isinstance(props, dict):
        raise MappingError(where, "properties", "must be a table: property = column or {column, split, ignore}")
    properties = [_property_rule(name, spec, where) for name, spec in props.items()]
    if not rules and not properties:
        raise MappingError(where, "event", "the mapping makes nothing: give [[event]] rules and/or [properties]")
    return Mapping(item=data["item"], user=data.get("user"), time=data.get("time"),
                   delimiter=data.get("delimiter"), events=tuple(rules), properties=tuple(properties))


def _tables(data: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise MappingError(where, key, f"must be an array of tables ([[{key}]])")
    return value


def _event_rule(rule: dict[str, Any], key: str, where: str) -> EventRule:
    unknown = sorted(set(rule) - {"name", "from", "when"})
    if unknown:
        raise MappingError(where, f"{key}.{unknown[0]}", "unknown key (keys: name, from, when)")
    if ("name" in rule) == ("from" in rule):
        raise MappingError(where, key, "give `name` (a constant event) or `from` (a column holding the event)")
    for k in ("name", "from", "when"):
        if k in rule and not (isinstance(rule[k], str) and rule[k].strip()):
            raise MappingError(where, f"{key}.{k}", "must be a non-empty string")
    when = None
    if "when" in rule:
        m = _CONDITION.match(rule["when"])
        if not m or not m.group(3):
            raise MappingError(where, f"{key}.when", f"{rule['when']!r}: expected `column OP value`, "
                                                     f"OP one of {' '.join(OPERATORS)}")
        when = Condition(m.group(1), m.group(2), m.group(3).strip("\"'"))
    return EventRule(name=rule.get("name"), column=rule.get("from"), when=when)


def _property_rule(name: str, spec: Any, where: str) -> PropertyRule:
    key = f"properties.{name}"
    if isinstance(spec, str) and spec:
        return PropertyRule(name, spec)
    if not isinstance(spec, dict):
        raise MappingError(where, key, "must be a column name or {column, split, ignore}")
    unknown = sorted(set(spec) - {"column", "split", "ignore"})
    if unknown:
        raise MappingError(where, f"{key}.{unknown[0]}", "unknown key (keys: column, split, ignore)")
    if not (isinstance(spec.get("column"), str) and spec["column"]):
        raise MappingError(where, f"{key}.column", "is required: the column holding the value")
    if "split" in spec and not (isinstance(spec["split"], str) and spec["split"]):
        raise MappingError(where, f"{key}.split", "must be a non-empty separator")
    ignore = spec.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(v, str) for v in ignore):
        raise MappingError(where, f"{key}.ignore", "must be a list of strings")
    return PropertyRule(name, spec["column"], spec.get("split"), tuple(ignore))


def map_row(mapping: Mapping, row: dict[str, str], now_ms: int) -> list[Event]:
    """The events of one row (BadRequest naming the column on a bad value)."""
    def cell(column: str) -> str:
        value = row[column].strip()
        if not value:
            raise BadRequest(column, "missing")
        return value

    item = cell(mapping.item)
    stamp: dict[str, Any] = {}
    if mapping.time and row[mapping.time].strip():
        stamp["eventTime"] = _time_text(row[mapping.time].strip())
    out: list[Event] = []
    for rule in mapping.events:
        if rule.when is not None and not rule.when.holds(row):
            continue
        obj = {"event": rule.name or cell(rule.column or ""), "entityType": "user",
               "entityId": cell(mapping.user or ""), "targetEntityType": "item", "targetEntityId": item, **stamp}
        out.append(_parsed(obj, now_ms, {"entityId": mapping.user, "event": rule.column,
                                         "eventTime": mapping.time}))
    props: dict[str, Any] = {}
    for p in mapping.properties:
        raw = row[p.column].strip()
        values = [v.strip() for v in raw.split(p.split)] if p.split else [raw]
        values = [v for v in values if v and v not in p.ignore]
        if values:
            props[p.name] = values if p.split else values[0]
    if props:
        obj = {"event": "$set", "entityType": "item", "entityId": item, "properties": props, **stamp}
        columns = {f"properties.{p.name}": p.column for p in mapping.properties}
        out.append(_parsed(obj, now_ms, {"eventTime": mapping.time, **columns}))
    return out


def _parsed(obj: dict[str, Any], now_ms: int, columns: dict[str, str | None]) -> Event:
    """parse_event, with the problem named by the CSV column it came from."""
    try:
        return parse_event(obj, now=now_ms)
    except BadRequest as e:
        raise BadRequest(columns.get(e.field) or e.field, e.problem) from None


def _time_text(text: str) -> str:
    """Epoch seconds (MovieLens) or milliseconds as ISO-8601; anything else as given."""
    if re.fullmatch(r"\d{9,13}", text):
        n = int(text)
        return ms_to_iso(n if n >= 100_000_000_000 else n * 1000)
    return text


def read_mapped(path: str | Path, mapping: Mapping) -> Iterator[tuple[int, list[Event] | BadRequest, str]]:
    """(line number, the row's events or its problem, raw row) for each row of a CSV/TSV file
    with a header; a header without a column the mapping reads is an EventFileError."""
    p = Path(path)
    if not p.is_file():
        raise EventFileError(str(p), "no such file")
    delimiter = mapping.delimiter or ("\t" if p.suffix.lower() == ".tsv" else ",")
    now = int(time.time() * 1000)
    with open(p, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in mapping.columns() if c not in header]
        if missing:
            raise EventFileError(f"{p}:1", f"header {header} has no column {', '.join(map(repr, missing))} "
                                           "(named in the mapping)")
        for row in reader:
            line, raw = reader.line_num, delimiter.join(row)
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                yield line, BadRequest("(row)", f"{len(row)} columns, header has {len(header)}"), raw
                continue
            try:
                yield line, map_row(mapping, dict(zip(header, row, strict=True)), now), raw
            except BadRequest as e:
                yield line, e, raw


def import_mapped(store: EventStore, path: str | Path, mapping: Mapping, *,
                  rejects: str | Path | None = None,
                  check: Callable[[list[Event]], None] | None = None) -> MappedImport:
    """Map a CSV file's rows to events and store them in one transaction. As
    `import_events`: any bad row rejects the file (nothing stored) unless `rejects` names a
    file for them (`line<TAB>field: problem<TAB>raw row`); `check` as there."""
    start = time.perf_counter()
    report = MappedImport(str(path))
    good: list[Event] = []
    bad: list[tuple[int, str, str, str]] = []
    for line, result, raw in read_mapped(path, mapping):
        report.rows += 1
        if check is not None and not isinstance(result, BadRequest) and any(e.is_item_change for e in result):
            try:
                check([e for e in result if e.is_item_change])
            except BadRequest as e:
                result = e
        if isinstance(result, BadRequest):
            bad.append((line, result.field, result.problem, raw))
        else:
            good += result
    report.rejected, report.accepted = len(bad), report.rows - len(bad)
    if bad and rejects is None:
        raise ImportRejected(str(path), len(bad), report.rows, [(b[0], b[1], b[2]) for b in bad])
    if bad and rejects is not None:  # (None raised above)
        Path(rejects).parent.mkdir(parents=True, exist_ok=True)
        with open(rejects, "w", encoding="utf-8") as f:
            f.writelines(f"{line}\t{field_}: {problem}\t{raw}\n" for line, field_, problem, raw in bad)
    inserted = store.insert(good)
    report.user_events = inserted.stored
    report.item_events = sum(e.is_item_change for e in good)
    report.item_changes = inserted.item_changes
    report.seconds = time.perf_counter() - start
    return report
