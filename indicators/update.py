"""`cooccur update`: fold new events into a model; the result equals a full retrain.

The expensive part of training is counting co-occurrences; scoring counts is cheap. So
`cooccur train` saves its counting state (state/, docs/model-format.md) and an update
changes only what the new events touch, as in Schelter et al., "Efficient Incremental
Cooccurrence Analysis for Item-Based Collaborative Filtering" (SSDBM 2019):

1. Downsampling by hash is incremental: a new interaction enters a user's kept set only
   if its hash is among the smallest, evicting the largest; an item's kept set is
   recomputed only for items whose user-kept interactions changed.
2. Pair counts change only for users whose kept interactions changed:
   dC = A_new'B_new - A_old'B_old over those users' rows alone.
3. Rows are re-scored by LLR where k11, an item count or N changed; N (users) is in every
   LLR, so a new user means every row is re-scored from the stored counts.
4. Rankings and properties are recomputed from their small saved inputs.
5. With `min_events_per_user`, the users below it stay out of all of the above (their
   interactions wait in state/held_*); one who reaches it enters as a new user would.

Everything after reading the new events is numpy/scipy/pyarrow in this process
(indicators/fold.py); the same scoring function as the job's (`cooccurrence.score_rows`)
keeps results identical. This module imports pyspark only where event files are read
with Spark: `update_from_events` (the event store's events) never starts a JVM.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from .downsample import sample_hashes
from .errors import BadInput
from .fold import Delta, UpdateReport, fold
from .model import location
from .properties import changes_from_pio
from .settings import InputSettings, TrainSettings
from .spark import spark_session
from .stages import Stages
from .state import model_settings, read_manifest, writing

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def read_delta(spark: SparkSession, paths: list[str], settings: TrainSettings,
               input_settings: InputSettings, generation: int,
               rejects: str | os.PathLike | None) -> tuple[Delta, str | None]:
    """Read new event files with the job's reader (same formats, same validation) and
    collect what the update needs; (delta, rejects file written)."""
    from pyspark.sql import functions as F

    from .downsample import sample_hash
    from .job import write_rejects
    from .properties import property_changes
    from .reader import read_events

    data = read_events(spark, paths, input_settings)
    c = data.counts
    rejects_file = None
    if c.rejected:
        if rejects is None:
            raise BadInput(c.rejected, c.rows, data.first_rejected())
        rejects_file = write_rejects(data, Path(rejects))
    # One collect for both uses: the new events are few, the Spark jobs are what costs.
    ranked_actions = settings.rankings.events or [settings.primary]
    events = data.events.where(F.col("event").isin(*settings.actions, *ranked_actions)).select(
        F.col("event").alias("action"), "user", "item", F.unix_micros("time").alias("time_us"),
        sample_hash(settings.seed).alias("h"),
    ).toArrow()
    interactions = events.filter(pc.is_in(events["action"], pa.array(settings.actions))).select(
        ["action", "user", "item", "h"])
    ranked = events.filter(pc.is_in(events["action"], pa.array(ranked_actions))).select(["item", "time_us"])
    changes = property_changes(data.item_events, gen=generation).toArrow()
    newest = max((e.last_us for e in data.per_event.values() if e.last_us is not None), default=None)
    return Delta(
        interactions=interactions, ranked=ranked, property_changes=changes,
        events={a: e.events for a, e in data.per_event.items()}, newest_us=newest,
        input=c.as_dict(),
    ), rejects_file


def delta_from_events(
    user_events: list[tuple[str, str, str, int]],
    item_events: list[tuple[str, str, dict | None, int]],
    settings: TrainSettings,
    generation: int,
    source: str,
) -> Delta:
    """A Delta from events validated elsewhere (the event store's), without Spark: user
    events (event, user, item, time_us) and item events (event, item, properties, time_us),
    in input order. Equal to what `read_delta` makes of the same events as a file."""
    event, user, item, time_us = (list(c) for c in zip(*user_events, strict=True)) if user_events \
        else ([], [], [], [])
    t = pa.table({"action": pa.array(event, pa.string()), "user": pa.array(user, pa.string()),
                  "item": pa.array(item, pa.string()), "time_us": pa.array(time_us, pa.int64())})
    mine = pc.is_in(t["action"], pa.array(settings.actions)).to_numpy(zero_copy_only=False)
    interactions = t.filter(pa.array(mine)).select(["action", "user", "item"])
    interactions = interactions.append_column("h", pa.array(sample_hashes(
        settings.seed, interactions["user"].to_pylist(), interactions["item"].to_pylist())))
    ranked = t.filter(pc.is_in(t["action"], pa.array(settings.rankings.events or [settings.primary])))
    counts: dict[str, int] = {}
    for e in event:
        counts[e] = counts.get(e, 0) + 1
    n = len(user_events) + len(item_events)
    return Delta(
        interactions=interactions, ranked=ranked.select(["item", "time_us"]),
        property_changes=changes_from_pio(item_events, generation, source),
        events=counts, newest_us=max(time_us) if time_us else None,
        input={"rows": n, "accepted": n, "rejected": 0, "user_events": len(user_events),
               "item_events": len(item_events), "ignored": 0, "blank_lines": 0, "files": 0},
    )


def update_from_events(
    model_dir: str | os.PathLike,
    user_events: list[tuple[str, str, str, int]],
    item_events: list[tuple[str, str, dict | None, int]],
    out: str | os.PathLike | None = None,
    *,
    source: str = "events",
    on_stage: Callable[[str], None] | None = None,
    event_store: dict | None = None,
) -> UpdateReport:
    """`update` for events validated already (see `delta_from_events`): no Spark, no JVM."""
    model = location(model_dir)
    target = location(out) if out else model
    with writing(target):
        manifest = read_manifest(model)
        stages = Stages(on_stage)
        started = time.perf_counter()
        delta = delta_from_events(user_events, item_events, model_settings(manifest),
                                  manifest["state"]["generation"] + 1, source)
        stages.done("read", f"{len(user_events):,} new user events, {len(item_events):,} item events")
        report = fold(model, manifest, delta, target, stages, event_store)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def update(
    spark: SparkSession,
    model_dir: str | os.PathLike,
    paths: list[str],
    out: str | os.PathLike | None = None,
    *,
    input_settings: InputSettings | None = None,
    rejects: str | os.PathLike | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> UpdateReport:
    """Add the events in `paths` to the model in `model_dir`, writing the updated model to
    `out` (default: in place, atomically). The model's own settings apply; `input_settings`
    only says how to read the new files (default: the model's)."""
    model = location(model_dir)
    target = location(out) if out else model
    with writing(target):
        manifest = read_manifest(model)
        settings = model_settings(manifest)
        stages = Stages(on_stage)
        started = time.perf_counter()
        delta, rejects_file = read_delta(
            spark, paths, settings, input_settings or settings.input,
            manifest["state"]["generation"] + 1, rejects,
        )
        c = delta.input
        stages.done("read", f"{c['rows']:,} new rows: {c['accepted']:,} accepted, {c['rejected']:,} rejected")
        report = fold(model, manifest, delta, target, stages)
    report.rejects_file = rejects_file
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def run_update(
    model_dir: str | os.PathLike,
    paths: list[str],
    out: str | os.PathLike | None = None,
    *,
    input_settings: InputSettings | None = None,
    rejects: str | os.PathLike | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> UpdateReport:
    """The update's entry point: check the model, start (or reuse) Spark to read, update."""
    from .reader import expand_paths

    with writing(out or model_dir):
        settings = model_settings(read_manifest(model_dir))
        expand_paths(paths, (input_settings or settings.input).format)
        with spark_session(settings.spark_master, settings.spark_options) as spark:
            return update(spark, model_dir, paths, out, input_settings=input_settings,
                          rejects=rejects, on_stage=on_stage)
