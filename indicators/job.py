"""The indicator job's entry point: read events, downsample, count, score, write the model.

`run_train` starts Spark (indicators.spark.spark_session); `train` takes a session, so
tests share one and the transforms stay DataFrame in, DataFrame out.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from .cooccurrence import IndicatorSpec, PairState, indicators
from .downsample import binarize, downsample
from .errors import BadInput, JobError, SparkOutOfMemory
from .model import (
    MODEL_FORMAT,
    Location,
    discard,
    iso,
    location,
    new_version,
    package_version,
    publish,
)
from .parts import DICTIONARY_PAGE_BYTES, write_properties, write_rankings, write_table
from .properties import property_changes
from .rankings import from_micros
from .reader import EventInput, expand_paths, read_events
from .settings import TrainSettings
from .spark import spark_session
from .stages import Stages, timed

log = logging.getLogger(__name__)

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


def train(
    spark: SparkSession,
    paths: list[str],
    settings: TrainSettings,
    out: str | os.PathLike,
    *,
    rejects: str | os.PathLike | None = None,
    on_stage: Callable[[str], None] | None = None,
    manifest_extra: dict[str, Any] | None = None,
) -> TrainReport:
    """Compute indicators, rankings and properties from events into a model directory.

    Bad rows fail the run (BadInput) unless `rejects` names a file to write them to.
    `manifest_extra`: more keys of the manifest (e.g. `event_store`, the watermark of a
    training from the event store), published with it.
    `out` is a local path or a URI every executor can write (docs/cluster.md). The model
    appears complete or not at all: its parts go into a new version directory, and the
    manifest naming it is written last (indicators.model)."""
    stages = Stages(on_stage)
    started = time.perf_counter()
    try:
        report = _train(spark, paths, settings, location(out), rejects, stages, manifest_extra or {})
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
    out: Location,
    rejects: str | os.PathLike | None,
    stages: Stages,
    manifest_extra: dict[str, Any],
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

    model_id, version = new_version(out)
    try:
        # Rankings and properties are independent of the indicators: their Spark jobs run
        # beside the co-occurrence job and fill the cores it leaves idle between stages.
        state = version / "state"
        if settings.min_events_per_user and settings.save_state:
            held = marked.where("held")
            held.select("action", "user", "item", "h").write.parquet((state / "held_interactions").spark_uri)
            held.where("first_user").select("user", "primary_events").write.parquet((state / "held_users").spark_uri)
        kept = marked.where(~F.col("held")) if settings.min_events_per_user else marked
        with ThreadPoolExecutor(max_workers=2) as pool:
            rank_job = pool.submit(timed, _write_rankings, data, settings, version)
            props_job = pool.submit(timed, _write_properties, data, version)
            seconds, report.indicators = timed(
                _write_indicators, spark, kept, settings, n_users, partitions, version
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
            "model_id": model_id,
            "data": f"versions/{model_id}",
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
            **manifest_extra,
        }
        publish(out, manifest)
    except BaseException:
        discard(version)
        raise
    finally:
        data.events.unpersist()
    return report


def _state_info(settings: TrainSettings, n_users: int, generation: int = 0) -> dict:
    """What `cooccur update` needs to know of the saved state (state/, docs/model-format.md)."""
    return {"pairs": settings.save_state, "users": n_users, "generation": generation}


def _write_indicators(
    spark: SparkSession, kept: DataFrame, settings: TrainSettings, n_users: int,
    partitions: int, version: Location,
) -> dict:
    """Write the indicators (and, with save_state, the interactions and pair counts);
    per indicator, items and correlators written."""
    specs = [IndicatorSpec(i.name, i.max_correlators, i.min_llr) for i in settings.indicators]
    pair_state = None
    state = version / "state"
    if settings.save_state:
        kept.select("action", "user", "item", "h", "user_kept", "kept").write.parquet(
            (state / "interactions").spark_uri)
        # The items' codes in the pair files: positions in this list, sorted by id (an
        # update appends new items, so codes never change).
        items = kept.select("item").distinct().toArrow()["item"].combine_chunks()
        items = items.take(pc.array_sort_indices(items))
        write_table(pa.table({"item": items}), state / "items.parquet")
        (state / "pairs").mkdir()
        # The executors write the pair files themselves: the URI must reach them all.
        pair_state = PairState((state / "pairs").uri, items)
    path = (version / "indicators").spark_uri  # Spark writes, Hadoop URI form
    indicators(
        kept.where("kept"), settings.primary, specs, n_users, partitions, pair_state,
    ).write.option("parquet.dictionary.page.size", str(DICTIONARY_PAGE_BYTES)).parquet(path)
    # Counted by Spark where the files are: the correlator lists never reach the driver.
    counted = {
        r["indicator"]: r
        for r in spark.read.parquet(path).groupBy("indicator").agg(
            F.count(F.lit(1)).alias("items"), F.sum(F.size("correlators")).alias("pairs")
        ).collect()
    }
    return {
        i: {"items": counted[i]["items"] if i in counted else 0,
            "correlators": int(counted[i]["pairs"] or 0) if i in counted else 0}
        for i in settings.actions
    }


def _write_rankings(data: EventInput, settings: TrainSettings, version: Location) -> tuple[int, str | None]:
    """Write the rankings; (items ranked, the newest event's time)."""
    actions = settings.rankings.events or [settings.primary]
    ranked = [data.per_event[a] for a in actions if a in data.per_event]
    newest_us = max((e.last_us for e in data.per_event.values() if e.last_us is not None), default=None)
    first_us = min((e.first_us for e in ranked if e.first_us is not None), default=None)
    newest, first = from_micros(newest_us), from_micros(first_us)
    events = data.events.where(F.col("event").isin(*actions)).select(
        "item", F.unix_micros("time").alias("time_us")).toArrow()
    return write_rankings(events, settings, newest, first, version), iso(newest)


def _write_properties(data: EventInput, version: Location) -> tuple[list[str], int]:
    """Write the item properties; (property names, items with properties)."""
    return write_properties(property_changes(data.item_events).toArrow(), version)


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


def run_train(
    paths: list[str],
    settings: TrainSettings,
    out: str | os.PathLike,
    *,
    rejects: str | os.PathLike | None = None,
    on_stage: Callable[[str], None] | None = None,
    manifest_extra: dict[str, Any] | None = None,
) -> TrainReport:
    """The job's entry point: start (or reuse) Spark, train, stop what was started."""
    expand_paths(paths, settings.input.format)  # a missing input fails before the JVM starts
    with spark_session(settings.spark_master, settings.spark_options) as spark:
        return train(spark, paths, settings, out, rejects=rejects, on_stage=on_stage,
                     manifest_extra=manifest_extra)
