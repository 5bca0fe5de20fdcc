"""Read events (CSV/TSV, PredictionIO JSON lines, Parquet), validate every row, keep line numbers.

Rows are parsed by Spark's native readers (`from_csv`, `from_json`), never row by row in
Python. Line numbers are recovered without a second full read of good rows: within one
file split Spark reads rows in order, so a row's line is the rows before its split
(from a tiny per-split count) plus its position inside the split
(`monotonically_increasing_id` is consecutive within a partition). That is only computed
when some rows are bad.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

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
PROPERTY_EVENTS = ("$set", "$unset", "$delete")
PIO_SCHEMA = (
    "event string, entityType string, entityId string, targetEntityType string, "
    "targetEntityId string, eventTime string, properties string, _corrupt string"
)

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


def _parse_time(col: Column) -> Column:
    """ISO-8601 (with or without zone; UTC when none) or epoch seconds / milliseconds."""
    digits = col.rlike(r"^\s*\d{9,13}\s*$")
    num = F.trim(col).cast("long")
    epoch = F.when(num >= 100_000_000_000, F.timestamp_millis(num)).otherwise(F.timestamp_seconds(num))
    return F.when(digits, epoch).otherwise(F.try_to_timestamp(F.trim(col)))


def _empty(c: Column) -> Column:
    return c.isNull() | (F.trim(c) == "")


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


def _validate(
    fields: list[tuple[str, Column]], time_name: str, time_raw: Column, time: Column
) -> tuple[Column, Column]:
    """(field, problem) of the first failing check; nulls when the row is good."""
    field: Column = F.lit(None).cast("string")
    problem: Column = F.lit(None).cast("string")
    checks = [(name, _empty(c), "missing") for name, c in fields]
    checks.append((time_name, ~_empty(time_raw) & time.isNull(), "unparseable time"))
    for name, bad, what in reversed(checks):
        field = F.when(bad, F.lit(name)).otherwise(field)
        problem = F.when(bad, F.lit(what)).otherwise(problem)
    return field, problem


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
    schema = ", ".join(f"`c{i}` string" for i in range(len(header)))
    raw = _with_position(spark.read.text(files))
    parsed = raw.select(
        "file", "block", "pos", "value",
        F.from_csv("value", schema, {"sep": sep, "mode": "PERMISSIVE"}).alias("r"),
    )
    col = {name: F.col(f"r.c{header.index(name)}") for name in wanted.values()}
    is_header = F.col("block") == 0
    for i, name in enumerate(header):
        is_header &= F.coalesce(F.trim(F.col(f"r.c{i}")) == name, F.lit(False))
    time = _parse_time(col[s.time])
    field, problem = _validate(
        [(s.user, col[s.user]), (s.event, col[s.event]), (s.item, col[s.item])], s.time, col[s.time], time
    )
    return parsed.where(~is_header).select(
        "file", "block", "pos", F.col("value").alias("text"),
        F.when(F.trim(F.col("value")) == "", BLANK)
        .when(field.isNotNull(), REJECTED)
        .otherwise(USER_EVENT).alias("kind"),
        field.alias("field"), problem.alias("problem"),
        F.trim(col[s.user]).alias("user"), F.trim(col[s.event]).alias("event"),
        F.trim(col[s.item]).alias("item"), time.alias("time"),
        F.lit(None).cast("string").alias("properties"),
    )


def _read_pio(spark: SparkSession, files: list[str]) -> DataFrame:
    raw = _with_position(spark.read.text(files))
    r = F.from_json("value", PIO_SCHEMA, {"columnNameOfCorruptRecord": "_corrupt"})
    parsed = raw.select("file", "block", "pos", "value", r.alias("r"))
    c = {k: F.col(f"r.{k}") for k in ("event", "entityType", "entityId", "targetEntityId", "eventTime")}
    time = _parse_time(c["eventTime"])
    is_item_event = (c["entityType"] == "item") & c["event"].isin(*PROPERTY_EVENTS)
    # `$set` and friends on users carry user properties, which the job does not use.
    is_user_event = (c["entityType"] == "user") & ~c["event"].startswith("$")
    user_field, user_problem = _validate(
        [("event", c["event"]), ("entityId", c["entityId"]), ("targetEntityId", c["targetEntityId"])],
        "eventTime", c["eventTime"], time,
    )
    item_field, item_problem = _validate([("entityId", c["entityId"])], "eventTime", c["eventTime"], time)
    bad_json = F.col("r._corrupt").isNotNull() | F.col("r").isNull()
    base_field, base_problem = _validate(
        [("event", c["event"]), ("entityType", c["entityType"])], "eventTime", c["eventTime"], time
    )
    field = (
        F.when(bad_json, F.lit("(line)"))
        .when(base_field.isNotNull(), base_field)
        .when(is_user_event, user_field)
        .when(is_item_event, item_field)
    )
    problem = (
        F.when(bad_json, F.lit("not a JSON object"))
        .when(base_problem.isNotNull(), base_problem)
        .when(is_user_event, user_problem)
        .when(is_item_event, item_problem)
    )
    blank = F.trim(F.col("value")) == ""
    kind = (
        F.when(blank, BLANK)
        .when(field.isNotNull(), REJECTED)
        .when(is_user_event, USER_EVENT)
        .when(is_item_event, ITEM_EVENT)
        .otherwise(IGNORED)
    )
    return parsed.select(
        "file", "block", "pos", F.col("value").alias("text"), kind.alias("kind"),
        field.alias("field"), problem.alias("problem"),
        F.trim(c["entityId"]).alias("user"), F.trim(c["event"]).alias("event"),
        F.trim(c["targetEntityId"]).alias("item"), time.alias("time"),
        F.col("r.properties").alias("properties"),
    )


def _read_parquet(spark: SparkSession, files: list[str], s: InputSettings) -> DataFrame:
    raw = _with_position(spark.read.parquet(*files))
    names = set(raw.columns)
    missing = [c for c in (s.user, s.event, s.item) if c not in names]
    if missing:
        raise JobError(
            f"{files[0]}: no column {', '.join(map(repr, missing))} (columns: {sorted(names)})",
            hint="name the columns in [train.input] (user, event, item, time)",
        )
    col = {k: F.col(f"`{k}`").cast("string") for k in (s.user, s.event, s.item)}
    if s.time in names:
        t = F.col(f"`{s.time}`")
        time_raw = t.cast("string")
        ttype = dict(raw.dtypes)[s.time]
        time = t.cast("timestamp") if ttype.startswith("timestamp") or ttype == "date" else _parse_time(time_raw)
    else:
        time_raw, time = F.lit(None).cast("string"), F.lit(None).cast("timestamp")
    field, problem = _validate(
        [(s.user, col[s.user]), (s.event, col[s.event]), (s.item, col[s.item])], s.time, time_raw, time
    )
    text = F.to_json(F.struct(*[F.col(f"`{c}`") for c in raw.columns if c not in ("file", "block", "pos")]))
    return raw.select(
        "file", "block", "pos", text.alias("text"),
        F.when(field.isNotNull(), REJECTED).otherwise(USER_EVENT).alias("kind"),
        field.alias("field"), problem.alias("problem"),
        F.trim(col[s.user]).alias("user"), F.trim(col[s.event]).alias("event"),
        F.trim(col[s.item]).alias("item"), time.alias("time"),
        F.lit(None).cast("string").alias("properties"),
    )


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
