"""The indicator job's entry point: read events, downsample, count, score, write the model.

`run_train` is the only place that builds a Spark session; `train` takes one, so tests
share a session and the transforms stay DataFrame in, DataFrame out.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from .cooccurrence import IndicatorSpec, PairState, indicators
from .downsample import binarize, downsample
from .errors import BadInput, JobError, SparkOutOfMemory
from .properties import current_properties, property_changes
from .rankings import from_micros, kept_since, rankings
from .reader import EventInput, expand_paths, read_events
from .settings import TrainSettings, parse_duration
from .spark import check_java
from .state import MODEL_FORMAT

log = logging.getLogger(__name__)

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
# Input events per partition: bounds each Python worker's arrays. A block also receives
# copies of its users' other interactions, and more blocks mean more copies: two per core
# measured fastest (synth-5m, local[2]: 4 blocks 15-17 s, 10 blocks 19 s).
ROWS_PER_PARTITION = 2_000_000


@dataclass
class TrainReport:
    """What a training run did: counts per stage, timings, where the model went."""

    model_dir: str
    input: dict
    actions: dict = field(default_factory=dict)
    users: int = 0
    """N: the users counted (the LLR's total)."""
    users_left_out: int = 0
    """Users with an indicator event but fewer primary events than min_events_per_user."""
    indicators: dict = field(default_factory=dict)
    rankings: int = 0
    properties: int = 0
    rejects_file: str | None = None
    newest_event: str | None = None
    timings: dict = field(default_factory=dict)
    """Seconds per stage; rankings and properties run beside the indicators."""
    seconds: float = 0.0
    """Wall time of the whole run."""


def build_spark_session(
    master: str = "local[*]", options: dict[str, str] | None = None, app_name: str = "cooccur"
) -> SparkSession:
    """A Spark session for the job: UTC, Arrow on, bound to loopback in local mode."""
    builder = SparkSession.builder.master(master).appName(app_name)
    # py4j logs every connection close at INFO; Spark's start-up chatter goes via log4j.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    java_options = f"-Dlog4j.configurationFile={LOG4J_CONFIG}"
    defaults = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": str(sys.stderr.isatty()).lower(),  # piped, bars splice into lines
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.adaptive.enabled": "true",
        "spark.driver.extraJavaOptions": java_options,
        "spark.executor.extraJavaOptions": java_options,
    }
    if master.startswith("local"):
        # Bind to loopback: no lookups of the machine's name, no exposed ports.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        defaults.update({
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            # Small local jobs drown in 200 shuffle tasks; AQE coalesces further.
            "spark.sql.shuffle.partitions": str(max(4, 2 * (os.cpu_count() or 2))),
        })
    for key, value in {**defaults, **(options or {})}.items():
        builder = builder.config(key, value)
    if master.startswith("local"):
        # Python workers must be this interpreter (the virtualenv that has cooccur).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    if not master.startswith("local"):
        session.sparkContext.addPyFile(_package_zip())
    return session


def _package_zip() -> str:
    """This package as a zip for a cluster's Python workers (they unpickle its functions)."""
    package = Path(__file__).parent
    target = Path(tempfile.mkdtemp(prefix="cooccur-")) / "indicators.zip"
    with zipfile.ZipFile(target, "w") as z:
        for f in package.glob("*.py"):
            z.write(f, f"indicators/{f.name}")
    return str(target)


class Stages:
    """Times each stage and logs one summary line per stage."""

    def __init__(self, on_stage: Callable[[str], None] | None) -> None:
        self.timings: dict[str, float] = {}
        self.on_stage = on_stage or (lambda line: log.info(line))
        self._t = time.perf_counter()

    def done(self, name: str, summary: str, seconds: float | None = None) -> None:
        """Log a finished stage; its time is since the last one unless given (a stage that
        ran concurrently with others)."""
        now = time.perf_counter()
        self.timings[name] = round(now - self._t, 3) if seconds is None else seconds
        self._t = now
        self.on_stage(f"{name:<12} {summary} ({self.timings[name]:.1f} s)")


def train(
    spark: SparkSession,
    paths: list[str],
    settings: TrainSettings,
    out: str | os.PathLike,
    *,
    rejects: str | os.PathLike | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainReport:
    """Compute indicators, rankings and properties from events into a model directory.

    Bad rows fail the run (BadInput) unless `rejects` names a file to write them to.
    The model directory appears complete or not at all (written aside, then renamed)."""
    stages = Stages(on_stage)
    started = time.perf_counter()
    try:
        report = _train(spark, paths, settings, Path(out), rejects, stages)
        report.seconds = round(time.perf_counter() - started, 3)
        return report
    except JobError:
        raise
    except Exception as e:  # Spark wraps JVM and worker failures; name the setting to raise.
        text = str(e)
        if "OutOfMemoryError" in text or "Java heap space" in text or "GC overhead" in text:
            raise SparkOutOfMemory(
                "Spark ran out of JVM memory",
                hint="raise spark.driver.memory (local mode) or spark.executor.memory, e.g. "
                "--conf spark.driver.memory=8g, or lower max_interactions_per_user",
            ) from None
        if "MemoryError" in text or "Python worker exited unexpectedly" in text:
            raise SparkOutOfMemory(
                "a Python worker ran out of memory counting co-occurrences",
                hint="raise spark.executor.pyspark.memory or spark.sql.shuffle.partitions, "
                "or lower max_interactions_per_user / max_users_per_item",
            ) from None
        raise


def _train(
    spark: SparkSession,
    paths: list[str],
    settings: TrainSettings,
    out: Path,
    rejects: str | os.PathLike | None,
    stages: Stages,
) -> TrainReport:
    data = read_events(spark, paths, settings.input)
    c = data.counts
    stages.done(
        "read",
        f"{c.rows:,} rows in {c.files} file(s): {c.accepted:,} accepted "
        f"({c.user_events:,} user events, {c.item_events:,} item events, {c.ignored:,} ignored), "
        f"{c.rejected:,} rejected",
    )
    report = TrainReport(model_dir=str(out), input=c.as_dict())
    if c.rejected:
        if rejects is None:
            raise BadInput(c.rejected, c.rows, data.first_rejected())
        report.rejects_file = write_rejects(data, Path(rejects))
        stages.done("rejects", f"{c.rejected:,} bad rows written to {report.rejects_file}")

    actions = settings.actions
    events_in = sum(data.per_event[a].events for a in actions if a in data.per_event)
    partitions = max(
        2 * spark.sparkContext.defaultParallelism, math.ceil(events_in / ROWS_PER_PARTITION)
    )
    n_users, report.users_left_out, action_stats, marked = _interactions(data, settings, partitions)
    report.users = n_users
    report.actions = action_stats
    summary = "; ".join(
        f"{a}: {s['events']:,} events, {s['users']:,} users, {s['items']:,} items, "
        f"{s['kept']:,}/{s['interactions']:,} interactions kept"
        for a, s in action_stats.items()
    )
    left_out = ""
    if settings.min_events_per_user:
        left_out = (f" ({report.users_left_out:,} left out: fewer than {settings.min_events_per_user} "
                    f"{settings.primary} events)")
    stages.done("downsample", f"{n_users:,} users{left_out}; {summary}")
    missing = [a for a in actions if action_stats[a]["events"] == 0]
    if action_stats[settings.primary]["events"] == 0:
        raise JobError(
            f"no events of the primary action {settings.primary!r} in the input",
            hint="set [train] primary to an event name present in the data",
        )
    if missing:
        log.warning("no events for indicator(s) %s: their fields stay empty", ", ".join(missing))

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        # Rankings and properties are independent of the indicators: their Spark jobs run
        # beside the co-occurrence job and fill the cores it leaves idle between stages.
        state = tmp / "state"
        state.mkdir()
        if settings.min_events_per_user and settings.save_state:
            held = marked.where("held")
            held.select("action", "user", "item", "h").write.parquet(str(state / "held_interactions"))
            held.where("first_user").select("user", "primary_events").write.parquet(str(state / "held_users"))
        kept = marked.where(~F.col("held")) if settings.min_events_per_user else marked
        with ThreadPoolExecutor(max_workers=2) as pool:
            rank_job = pool.submit(_timed, _write_rankings, data, settings, tmp)
            props_job = pool.submit(_timed, _write_properties, data, tmp)
            seconds, report.indicators = _timed(
                _write_indicators, spark, kept, settings, n_users, partitions, tmp
            )
            stages.done("indicators", "; ".join(
                f"{i}: {v['items']:,} items, {v['correlators']:,} correlators"
                for i, v in report.indicators.items()), seconds)
            marked.unpersist()
            seconds, (report.rankings, report.newest_event) = rank_job.result()
            stages.done("rankings", f"{report.rankings:,} items ranked "
                        f"(window {settings.rankings.window or 'all'})", seconds)
            seconds, (names, report.properties) = props_job.result()
            stages.done("properties", f"{report.properties:,} items with properties {names}", seconds)

        report.timings = dict(stages.timings)
        manifest = {
            "format": MODEL_FORMAT,
            "model_id": uuid.uuid4().hex,
            "created": iso(datetime.now(UTC)),
            "cooccur_version": package_version(),
            "primary": settings.primary,
            "indicators": actions,
            "properties": names,
            "newest_event": report.newest_event,
            "settings": asdict(settings),
            "state": _state_info(settings, n_users),
            "counts": {
                "input": report.input,
                "users": n_users,
                "users_left_out": report.users_left_out,
                "actions": report.actions,
                "indicators": report.indicators,
                "rankings": report.rankings,
                "items_with_properties": report.properties,
            },
            "timings": report.timings,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        data.events.unpersist()
    return report


def _timed(fn, *args):
    """(seconds, result) of fn(*args)."""
    t = time.perf_counter()
    result = fn(*args)
    return round(time.perf_counter() - t, 3), result


def _state_info(settings: TrainSettings, n_users: int, generation: int = 0) -> dict:
    """What `cooccur update` needs to know of the saved state (state/, docs/model-format.md)."""
    return {"pairs": settings.save_state, "users": n_users, "generation": generation}


def _write_indicators(
    spark: SparkSession, kept: DataFrame, settings: TrainSettings, n_users: int,
    partitions: int, model: Path,
) -> dict:
    """Write the indicators (and, with save_state, the interactions and pair counts);
    per indicator, items and correlators written."""
    specs = [IndicatorSpec(i.name, i.max_correlators, i.min_llr) for i in settings.indicators]
    pair_state = None
    if settings.save_state:
        kept.select("action", "user", "item", "h", "user_kept", "kept").write.parquet(
            str(model / "state" / "interactions"))
        # The items' codes in the pair files: positions in this list, sorted by id (an
        # update appends new items, so codes never change).
        items = kept.select("item").distinct().toArrow()["item"].combine_chunks()
        items = items.take(pc.array_sort_indices(items))
        pq.write_table(pa.table({"item": items}), model / "state" / "items.parquet")
        (model / "state" / "pairs").mkdir()
        pair_state = PairState(str((model / "state" / "pairs").resolve()), items)
    path = model / "indicators"
    indicators(
        kept.where("kept"), settings.primary, specs, n_users, partitions, pair_state,
    ).write.parquet(str(path))
    # Counted by Spark where the files are: the correlator lists never reach the driver.
    counted = {
        r["indicator"]: r
        for r in spark.read.parquet(str(path)).groupBy("indicator").agg(
            F.count(F.lit(1)).alias("items"), F.sum(F.size("correlators")).alias("pairs")
        ).collect()
    }
    return {
        i: {"items": counted[i]["items"] if i in counted else 0,
            "correlators": int(counted[i]["pairs"] or 0) if i in counted else 0}
        for i in settings.actions
    }


def ranking_window(settings: TrainSettings, newest: datetime | None):
    """(end, window) of the rankings: the configured end or the newest event."""
    r = settings.rankings
    end = datetime.fromisoformat(r.end.replace("Z", "+00:00")) if r.end else newest
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return end or datetime.now(UTC), parse_duration(r.window) if r.window else None


def write_rankings(events: pa.Table, settings: TrainSettings, newest: datetime | None,
                   first: datetime | None, model: Path) -> int:
    """Rank items from the ranked events (item, time_us) into rankings/, and keep the
    events that can still count into state/ (with a window, older ones never will)."""
    end, window = ranking_window(settings, newest)
    ranked = rankings(events["item"], events["time_us"], end, window, first)
    (model / "rankings").mkdir()
    pq.write_table(ranked, model / "rankings" / "part-00000.parquet")
    since = kept_since(end, window)
    if since is not None:
        events = events.filter(pc.greater_equal(events["time_us"], since))
    pq.write_table(events, model / "state" / "ranking_events.parquet")
    return ranked.num_rows


def _write_rankings(data: EventInput, settings: TrainSettings, model: Path) -> tuple[int, str | None]:
    """Write the rankings; (items ranked, the newest event's time)."""
    actions = settings.rankings.events or [settings.primary]
    ranked = [data.per_event[a] for a in actions if a in data.per_event]
    newest_us = max((e.last_us for e in data.per_event.values() if e.last_us is not None), default=None)
    first_us = min((e.first_us for e in ranked if e.first_us is not None), default=None)
    newest, first = from_micros(newest_us), from_micros(first_us)
    events = data.events.where(F.col("event").isin(*actions)).select(
        "item", F.unix_micros("time").alias("time_us")).toArrow()
    return write_rankings(events, settings, newest, first, model), iso(newest)


def write_properties(changes: pa.Table, model: Path) -> tuple[list[str], int]:
    """Write the current item properties and their state (latest changes); (property
    names, items with properties)."""
    state, props = current_properties(changes)
    (model / "properties").mkdir()
    pq.write_table(props, model / "properties" / "part-00000.parquet")
    pq.write_table(state, model / "state" / "property_changes.parquet")
    return sorted(pc.unique(props["name"]).to_pylist()), len(pc.unique(props["item"]))


def _write_properties(data: EventInput, model: Path) -> tuple[list[str], int]:
    """Write the item properties; (property names, items with properties)."""
    return write_properties(property_changes(data.item_events).toArrow(), model)


def _interactions(
    data: EventInput, settings: TrainSettings, partitions: int
) -> tuple[int, int, dict, DataFrame]:
    """N users, the users min_events_per_user leaves out, per-action input counts and what
    the caps keep, and the marked interactions (`held` rows: those left out).

    One job: the downsampling windows mark first rows, so counting needs no distinct
    aggregation."""
    actions = settings.actions
    marked = downsample(
        binarize(data.events, actions),
        settings.seed,
        settings.max_interactions_per_user,
        settings.max_users_per_item,
        partitions,
        settings.primary,
        settings.min_events_per_user,
    ).persist(StorageLevel.MEMORY_AND_DISK)
    flag = lambda c: F.sum(F.col(c).cast("int"))  # noqa: E731
    counted = ~F.col("held")
    rows = {
        r["action"]: r
        for r in marked.groupBy("action").agg(
            F.sum(counted.cast("int")).alias("interactions"),
            flag("kept").alias("kept"),
            F.sum((F.col("first_user") & counted).cast("int")).alias("first_users"),
            F.sum((F.col("first_user") & F.col("held")).cast("int")).alias("held_users"),
            F.sum((F.col("first_user_action") & counted).cast("int")).alias("users"),
            flag("first_item").alias("items"),
            F.sum((F.col("first_user_action") & F.col("user_capped")).cast("int")).alias("users_capped"),
            F.sum((F.col("first_item") & F.col("item_capped")).cast("int")).alias("items_capped"),
        ).collect()
    }
    n_users = sum(r["first_users"] for r in rows.values())
    left_out = sum(r["held_users"] for r in rows.values())
    stats = {}
    for a in actions:
        r, ev = rows.get(a), data.per_event.get(a)
        stats[a] = {
            "events": ev.events if ev else 0,
            **{k: (r[k] if r else 0) for k in
               ("users", "items", "interactions", "kept", "users_capped", "items_capped")},
        }
    return n_users, left_out, stats, marked


def write_rejects(data: EventInput, path: Path) -> str:
    """Every bad row as JSON lines: file, line, field, problem, text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in data.iter_rejected():
            f.write(json.dumps(asdict(row)) + "\n")
    return str(path)


def replace_dir(new: Path, target: Path) -> None:
    """Put `new` at `target`; an older model there is removed only after the rename."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def package_version() -> str:
    try:
        return metadata.version("cooccur")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def run_train(
    paths: list[str],
    settings: TrainSettings,
    out: str | os.PathLike,
    *,
    rejects: str | os.PathLike | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainReport:
    """The job's entry point: check Java, start Spark, train, stop Spark."""
    check_java()
    expand_paths(paths, settings.input.format)  # a missing input fails before the JVM starts
    # A session that already runs in this process (a notebook's, a test run's) is reused
    # and left running; one started here is stopped here.
    owned = SparkSession.getActiveSession() is None
    spark = build_spark_session(settings.spark_master, settings.spark_options)
    try:
        return train(spark, paths, settings, out, rejects=rejects, on_stage=on_stage)
    finally:
        if owned:
            spark.stop()
