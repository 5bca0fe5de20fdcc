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

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from . import validate
from .errors import BadRow, InputNotFound, JobError, StorageError
from .model import Location, location
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
    names: dict[str, str] = field(default_factory=dict)
    """Each input file as Spark names it (decoded) -> as the user named it."""

    def first_rejected(self, n: int = 20) -> list[BadRow]:
        """The first n bad rows, by file and line."""
        rows = self.rejected.orderBy("file", "line").limit(n).collect()
        return [BadRow(self._named(r.file), r.line, r.field, r.problem, r.text) for r in rows]

    def iter_rejected(self) -> Iterator[BadRow]:
        """Every bad row, streamed to the driver one partition at a time."""
        for r in self.rejected.orderBy("file", "line").toLocalIterator():
            yield BadRow(self._named(r.file), r.line, r.field, r.problem, r.text)

    def _named(self, spark_path: str) -> str:
        """A file as the user named it, from the percent-encoded URI Spark reports
        (`_metadata.file_path`: file:/a%20b for the local file "/a b")."""
        parts = urlsplit(spark_path)
        plain = f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}"
        return self.names.get(plain, plain.removeprefix("file://"))


Resolver = Callable[[str], Location]
"""A path or URI -> its Location (indicators.model.location; tests pass a file system)."""


def expand_paths(paths: list[str], fmt: str, *, resolve: Resolver = location) -> dict[str, list[Location]]:
    """Files by format, from files, directories and globs, as local paths or URIs (file://,
    hdfs://, s3a://, s3://, gs://, ...: listed through pyarrow's file systems), sorted.
    Inside a directory, names starting with `.` or `_` are skipped (Spark's _SUCCESS,
    _temporary/, hidden files)."""
    found: dict[str, dict[str, Location]] = {}
    for p in paths:
        try:
            matches = _matches(p, resolve)
            files = [f for m in matches for f in _files_in(m, fmt)]
        except OSError as e:  # listing failed: no permission, the store unreachable
            raise StorageError(p, str(e)) from None
        if not matches:
            raise InputNotFound(f"no input at {p}")
        if not files:
            raise InputNotFound(f"{p} holds no event files (.csv .tsv .jsonl .json .parquet)")
        for f in files:
            kind = _format_of(f.name, fmt)
            if kind is None:
                raise InputNotFound(
                    f"{f}: unknown file type", hint="set [train.input] format or use a known extension"
                )
            found.setdefault(kind, {})[f.uri] = f
    return {k: [v[u] for u in sorted(v)] for k, v in found.items()}


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _matches(p: str, resolve: Resolver) -> list[Location]:
    """What a path or URI names, its glob (in the path part) expanded level by level, as
    the shell does: `*` does not cross `/` and matches a leading `.` only when written. In
    a URI, `?` starts pyarrow's query options (as for a model URI), so its globs use `*`
    and `[...]`."""
    query = ""
    if "://" in p and "?" in p:
        p, query = p.split("?", 1)
        query = f"?{query}"
    if not _is_glob(p):
        at = resolve(p + query)
        return [at] if at.exists() else []
    magic = min(p.index(c) for c in "*?[" if c in p)
    cut = p.rfind("/", 0, magic)
    if "://" in p:
        path_start = p.find("/", p.index("://") + 3)
        if not 0 <= path_start < magic:
            raise InputNotFound(f"{p}: a glob may only be in the path, not in the scheme or host")
        base = p[:max(cut, path_start + 1)]  # the store's root is its path "/"
    else:
        base = p[:cut] if cut > 0 else ("/" if cut == 0 else ".")
    current = [resolve(base + query)]
    for part in p[cut + 1:].split("/"):
        if not part:
            continue
        if not _is_glob(part):
            current = [at / part for at in current]
            continue
        nxt = []
        for at in current:
            if not at.is_dir():
                continue
            for info in at.fs.get_file_info(pafs.FileSelector(at.path)):
                name = info.base_name
                if fnmatchcase(name, part) and (part.startswith(".") or not name.startswith(".")):
                    nxt.append(at / name)
        current = nxt
    return sorted((at for at in current if at.exists()), key=lambda at: at.uri)


def _files_in(at: Location, fmt: str) -> list[Location]:
    """`at` itself when it is a file, else the event files anywhere under it."""
    if not at.is_dir():
        return [at]
    base = at.path.rstrip("/")
    files = []
    for info in at.fs.get_file_info(pafs.FileSelector(at.path, recursive=True)):
        rel = info.path[len(base):].lstrip("/")
        if (info.type == pafs.FileType.File and _format_of(info.base_name, fmt)
                and not any(c.startswith((".", "_")) for c in rel.split("/"))):
            files.append(at / rel)
    return files


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


def _read_header(at: Location, sep: str) -> list[str]:
    """The first line's columns, read through the file's pyarrow file system (a .gz or .bz2
    file decompressed: `open_input_stream` detects it by extension)."""
    head = b""
    with at.fs.open_input_stream(at.path) as f:
        while b"\n" not in head and (chunk := f.read(65536)):
            head += chunk
    line = head.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
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


def _raw_lines(spark: SparkSession, files: list[Location]) -> DataFrame:
    """file, block, pos and the line's bytes as read (not decoded: bytes that are not UTF-8
    reject the row instead of becoming U+FFFD)."""
    return _with_position(spark.read.text([f.spark_uri for f in files])).select(
        "file", "block", "pos", F.col("value").cast("binary").alias("raw"))


def _read_delimited(spark: SparkSession, files: list[Location], s: InputSettings, kind: str) -> DataFrame:
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


def _read_pio(spark: SparkSession, files: list[Location]) -> DataFrame:
    def parse(raw: bytes, row: dict):
        if not raw.strip():
            return None
        obj = validate.loads_strict(validate.decode_line(raw))
        if not isinstance(obj, dict):
            raise validate.InvalidEvent("(line)", "not a JSON object")
        return validate.parse_event(obj, now_ms=0), obj.get("eventTime") is not None

    return _validated(_raw_lines(spark, files), parse)


def _read_parquet(spark: SparkSession, files: list[Location], s: InputSettings) -> DataFrame:
    raw = _with_position(spark.read.parquet(*[f.spark_uri for f in files]))
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

    events = rows.where(F.col("kind") == USER_EVENT).select("user", "event", "item", "time")
    item_events = rows.where(F.col("kind") == ITEM_EVENT).select(
        F.col("user").alias("item"), "event", "properties", "time", "file", "pos"
    )
    names = {f.spark_uri: f.uri for files in by_format.values() for f in files}
    return EventInput(events, item_events, counts, rejected, per_event, names)
