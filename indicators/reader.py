"""Read events (CSV/TSV, PredictionIO JSON lines, Parquet), validate every row, keep line numbers.

Every row goes through the one event validator (indicators/validate.py), which `cooccur
events import` and the HTTP event API use too, so a row is accepted or rejected the same
way everywhere with the same reason. Spark reads the lines (as bytes: a row that is not
UTF-8 is rejected, never turned into U+FFFD) and the validator runs in Python workers
over Arrow batches (`mapInArrow`; bench/reader.py: no slower than the native parsers it
replaced). Event times are kept to the millisecond, as the event store keeps them.

Line numbers are recovered without a second full read of good rows: within one
file split Spark reads rows in order, so a row's line is the rows before its split
(from a tiny per-split count) plus its position inside the split
(`monotonically_increasing_id` is consecutive within a partition). That is only computed
when some rows are bad.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from . import validate
from .errors import BadRow, InputNotFound, JobError
from .settings import InputSettings

log = logging.getLogger(__name__)

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
# Row kinds after validation.
USER_EVENT, ITEM_EVENT, IGNORED, REJECTED, BLANK = "user", "item", "ignored", "rejected", "blank"


@dataclass
class InputCounts:
    """What the reader saw. rows = accepted + rejected; accepted = user + item + ignored."""

    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    user_events: int = 0
    item_events: int = 0
    ignored: int = 0
    """Accepted rows the job does not use (another entity type, or an event not configured)."""
    blank_lines: int = 0
    files: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EventStats:
    """Accepted user events of one event name: how many, oldest and newest (epoch µs)."""

    events: int
    first_us: int | None
    last_us: int | None


@dataclass
class EventInput:
    """Validated input: user events, item property events, the counts and the bad rows."""

    events: DataFrame
    """user, event, item, time (timestamp, may be null)."""
    item_events: DataFrame
    """item, event ($set/$unset/$delete), properties (JSON text), time, file, pos."""
    counts: InputCounts
    rejected: DataFrame
    """file, line, field, problem, text of every bad row (lazy; empty when none)."""
    per_event: dict[str, EventStats]
    """Accepted user events by event name."""

    def first_rejected(self, n: int = 20) -> list[BadRow]:
        """The first n bad rows, by file and line."""
        rows = self.rejected.orderBy("file", "line").limit(n).collect()
        return [BadRow(r.file, r.line, r.field, r.problem, r.text) for r in rows]

    def iter_rejected(self) -> Iterator[BadRow]:
        """Every bad row, streamed to the driver one partition at a time."""
        for r in self.rejected.orderBy("file", "line").toLocalIterator():
            yield BadRow(r.file, r.line, r.field, r.problem, r.text)


def expand_paths(paths: list[str], fmt: str) -> dict[str, list[str]]:
    """Files by format, from files, directories and globs, sorted; hidden files skipped."""
    found: dict[str, list[str]] = {}
    for p in paths:
        matches = sorted(glob.glob(p)) if any(c in p for c in "*?[") else [p]
        if not matches or not all(os.path.exists(m) for m in matches):
            raise InputNotFound(f"no input at {p}")
        files: list[str] = []
        for m in matches:
            if os.path.isdir(m):
                files += sorted(
                    str(f) for f in Path(m).rglob("*")
                    if f.is_file() and not f.name.startswith((".", "_")) and _format_of(str(f), fmt)
                )
            else:
                files.append(m)
        if not files:
            raise InputNotFound(f"{p} holds no event files (.csv .tsv .jsonl .json .parquet)")
        for f in files:
            kind = _format_of(f, fmt)
            if kind is None:
                raise InputNotFound(
                    f"{f}: unknown file type", hint="set [train.input] format or use a known extension"
                )
            found.setdefault(kind, []).append(os.path.abspath(f))
    return {k: sorted(set(v)) for k, v in found.items()}


def _format_of(path: str, fmt: str) -> str | None:
    if fmt != "auto":
        return fmt
    name = path.lower()
    for ext in (".gz", ".bz2"):
        name = name.removesuffix(ext)
    return FORMATS.get(os.path.splitext(name)[1])


OUTPUT = pa.schema([
    ("file", pa.string()), ("block", pa.int64()), ("pos", pa.int64()), ("text", pa.string()),
    ("kind", pa.string()), ("field", pa.string()), ("problem", pa.string()), ("user", pa.string()),
    ("event", pa.string()), ("item", pa.string()), ("time", pa.timestamp("us", tz="UTC")),
    ("properties", pa.string()),
])
OUTPUT_DDL = ("file string, block bigint, pos bigint, text string, kind string, field string, "
              "problem string, user string, event string, item string, time timestamp, properties string")
HEADER = "header"
"""A CSV header line (dropped before counting)."""


def _with_position(df: DataFrame) -> DataFrame:
    return df.select(
        "*",
        F.col("_metadata.file_path").alias("file"),
        F.col("_metadata.file_block_start").alias("block"),
        F.monotonically_increasing_id().alias("pos"),
    )


def _read_header(path: str, sep: str) -> list[str]:
    opener = open
    if path.endswith(".gz"):
        import gzip

        opener = gzip.open  # type: ignore[assignment]
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        line = f.readline().rstrip("\r\n")
    return [c.strip().strip('"') for c in line.split(sep)]


def _classify(e: validate.Event, timed: bool) -> tuple:
    """(kind, field, problem, user, event, item, time, properties) of a valid event."""
    when = datetime.fromtimestamp(e.time_ms / 1000, tz=UTC) if timed else None
    if e.is_item_change:
        props = None if e.properties is None else json.dumps(e.properties)
        return ITEM_EVENT, None, None, e.entity_id, e.event, None, when, props
    if e.target_entity_id is None:  # `$set` and friends on users: user properties, unused
        return IGNORED, None, None, e.entity_id, e.event, None, when, None
    return USER_EVENT, None, None, e.entity_id, e.event, e.target_entity_id, when, None


RowParser = Callable[[bytes, dict], "tuple[validate.Event, bool] | str | None"]


def _validated(df: DataFrame, parse: RowParser) -> DataFrame:
    """Every row of `df` (file, block, pos, raw bytes, any other columns) through the
    shared validator (indicators/validate.py) in Python, one Arrow batch at a time.
    `parse(raw, row)` gives (event, has a time), None for a blank line, HEADER for a CSV
    header line, or raises `InvalidEvent`."""

    def run(batches):
        blank = (BLANK, *([None] * 7))
        for batch in batches:
            cols = batch.to_pydict()
            out: dict[str, list] = {name: [] for name in OUTPUT.names}
            for i in range(batch.num_rows):
                row = {k: v[i] for k, v in cols.items()}
                raw = row["raw"] or b""
                try:
                    parsed = parse(raw, row)
                except validate.InvalidEvent as bad:
                    result: tuple = (REJECTED, bad.field, bad.problem, *([None] * 5))
                else:
                    result = blank if parsed is None else (HEADER, *blank[1:]) if parsed == HEADER \
                        else _classify(*parsed)
                values = (row["file"], row["block"], row["pos"], raw.decode("utf-8", "replace"), *result)
                for name, value in zip(OUTPUT.names, values, strict=True):
                    out[name].append(value)
            yield pa.RecordBatch.from_pydict(out, schema=OUTPUT)

    return df.mapInArrow(run, OUTPUT_DDL).where(F.col("kind") != HEADER)


def _raw_lines(spark: SparkSession, files: list[str]) -> DataFrame:
    """file, block, pos and the line's bytes as read (not decoded: bytes that are not UTF-8
    reject the row instead of becoming U+FFFD)."""
    return _with_position(spark.read.text(files)).select(
        "file", "block", "pos", F.col("value").cast("binary").alias("raw"))


def _read_delimited(spark: SparkSession, files: list[str], s: InputSettings, kind: str) -> DataFrame:
    sep = "\t" if kind == "tsv" else ","
    header = _read_header(files[0], sep)
    for f in files[1:]:
        other = _read_header(f, sep)
        if other != header:
            raise JobError(
                f"{f}:1: header {other} differs from {files[0]}'s {header}",
                hint="give files with one header layout per run",
            )
    wanted = {"user": s.user, "event": s.event, "item": s.item, "time": s.time}
    missing = [name for name in wanted.values() if name not in header]
    if missing:
        raise JobError(
            f"{files[0]}:1: header has no column {', '.join(map(repr, missing))} (columns: {header})",
            hint="name the columns in [train.input] (user, event, item, time)",
        )
    at = [header.index(wanted[k]) for k in ("user", "event", "item", "time")]
    columns = (s.user, s.event, s.item, s.time)

    def parse(raw: bytes, row: dict):
        if not raw.strip():
            return None
        cells = validate.csv_cells(validate.decode_line(raw), sep, len(header))
        if row["block"] == 0 and cells == header:
            return HEADER
        user, event, item, time = (cells[k] for k in at)
        return validate.parse_row(user, event, item, time, now_ms=0, columns=columns), bool(time)

    return _validated(_raw_lines(spark, files), parse)


def _read_pio(spark: SparkSession, files: list[str]) -> DataFrame:
    def parse(raw: bytes, row: dict):
        if not raw.strip():
            return None
        obj = validate.loads_strict(validate.decode_line(raw))
        if not isinstance(obj, dict):
            raise validate.InvalidEvent("(line)", "not a JSON object")
        return validate.parse_event(obj, now_ms=0), obj.get("eventTime") is not None

    return _validated(_raw_lines(spark, files), parse)


def _read_parquet(spark: SparkSession, files: list[str], s: InputSettings) -> DataFrame:
    raw = _with_position(spark.read.parquet(*files))
    names = set(raw.columns)
    missing = [c for c in (s.user, s.event, s.item) if c not in names]
    if missing:
        raise JobError(
            f"{files[0]}: no column {', '.join(map(repr, missing))} (columns: {sorted(names)})",
            hint="name the columns in [train.input] (user, event, item, time)",
        )
    # Typed columns: their values as text (timestamps in ISO form, UTC) go through the same
    # validator as a CSV row's cells.
    time = F.lit(None).cast("string")
    if s.time in names:
        ttype = dict(raw.dtypes)[s.time]
        t = F.col(f"`{s.time}`")
        timestamp = ttype.startswith("timestamp") or ttype == "date"
        time = F.date_format(t, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'") if timestamp else t.cast("string")
    text = F.to_json(F.struct(*[F.col(f"`{c}`") for c in raw.columns if c not in ("file", "block", "pos")]))
    rows = raw.select(
        "file", "block", "pos", text.cast("binary").alias("raw"),
        *[F.trim(F.col(f"`{c}`").cast("string")).alias(k) for k, c in (("u", s.user), ("e", s.event), ("i", s.item))],
        F.trim(time).alias("t"),
    )
    columns = (s.user, s.event, s.item, s.time)

    def parse(raw: bytes, row: dict):
        event = validate.parse_row(row["u"], row["e"], row["i"], row["t"], now_ms=0, columns=columns)
        return event, bool(row["t"])

    return _validated(rows, parse)


def _line_numbers(rows: DataFrame, all_rows: DataFrame, header_lines: int) -> DataFrame:
    """Attach 1-based line numbers to `rows` (a filter of `all_rows`, same plan).

    Per (file, split): the split's first pos and row count; a split's first line is
    1 + header + rows of the splits before it in the file."""
    splits = all_rows.groupBy("file", "block").agg(
        F.min("pos").alias("first_pos"), F.count(F.lit(1)).alias("n")
    )
    from pyspark.sql.window import Window

    w = Window.partitionBy("file").orderBy("block").rowsBetween(Window.unboundedPreceding, -1)
    splits = splits.withColumn("before", F.coalesce(F.sum("n").over(w), F.lit(0)))
    return rows.join(F.broadcast(splits), ["file", "block"]).select(
        "*", (F.col("before") + F.col("pos") - F.col("first_pos") + 1 + header_lines).alias("line")
    )


def read_events(spark: SparkSession, paths: list[str], settings: InputSettings) -> EventInput:
    """Read and validate every input row; count them; keep bad rows with file and line."""
    by_format = expand_paths(paths, settings.format)
    parts: list[tuple[DataFrame, int]] = []
    for kind, files in sorted(by_format.items()):
        if kind in ("csv", "tsv"):
            # The header is filtered out of the rows, so line numbers count it back in.
            parts.append((_read_delimited(spark, files, settings, kind), 1))
        elif kind == "jsonl":
            parts.append((_read_pio(spark, files), 0))
        else:
            parts.append((_read_parquet(spark, files, settings), 0))

    rows = parts[0][0]
    for df, _ in parts[1:]:
        rows = rows.unionByName(df)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)

    stats = rows.groupBy("kind", "event").agg(
        F.count(F.lit(1)).alias("n"),
        F.unix_micros(F.min("time")).alias("first"),
        F.unix_micros(F.max("time")).alias("last"),
    ).collect()
    by_kind: dict[str, int] = {}
    for r in stats:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + r["n"]
    per_event = {
        r["event"]: EventStats(r["n"], r["first"], r["last"]) for r in stats if r["kind"] == USER_EVENT
    }
    counts = InputCounts(
        files=sum(len(f) for f in by_format.values()),
        user_events=by_kind.get(USER_EVENT, 0),
        item_events=by_kind.get(ITEM_EVENT, 0),
        ignored=by_kind.get(IGNORED, 0),
        rejected=by_kind.get(REJECTED, 0),
        blank_lines=by_kind.get(BLANK, 0),
    )
    counts.accepted = counts.user_events + counts.item_events + counts.ignored
    counts.rows = counts.accepted + counts.rejected

    rejected_parts = []
    for df, header in parts:
        bad = df.where(F.col("kind") == REJECTED)
        rejected_parts.append(
            _line_numbers(bad, df, header).select("file", "line", "field", "problem", "text")
        )
    rejected = rejected_parts[0]
    for df in rejected_parts[1:]:
        rejected = rejected.unionByName(df)
    rejected = rejected.withColumn("file", F.regexp_replace("file", "^file:", ""))

    events = rows.where(F.col("kind") == USER_EVENT).select("user", "event", "item", "time")
    item_events = rows.where(F.col("kind") == ITEM_EVENT).select(
        F.col("user").alias("item"), "event", "properties", "time", "file", "pos"
    )
    return EventInput(events, item_events, counts, rejected, per_event)
