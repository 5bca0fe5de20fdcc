"""Splitting events into a training and a test part (docs/evaluation.md, "Splits"), and the
data the evaluation loop needs of a split: the training part written as the job's input, the
test users' histories, seen items and held-out items. The split itself runs in Spark (imported
inside the functions)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indicators.model import iso

from .errors import EvaluationError

if TYPE_CHECKING:  # type hints only: importing the evaluation never imports pyspark
    from pyspark.sql import DataFrame, SparkSession

    from indicators.settings import TrainSettings

SPLIT_KINDS = ("time", "time-fraction", "leave-last", "random")
SKIP_NO_HISTORY = "no training history"
SKIP_NO_HELD_OUT = "no held-out primary items"


@dataclass(frozen=True)
class Split:
    """How events are divided into a training and a test part (docs/evaluation.md)."""

    kind: str
    """time (a cut-off date), time-fraction (of the time span), leave-last (n per user) or
    random (a fraction of each user's primary items)."""
    value: str
    seed: int = 0
    """Seed of the random split's hash."""

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    @property
    def cut(self) -> datetime:
        return _parse_date(self.value)

    @property
    def fraction(self) -> float:
        return float(self.value)

    @property
    def n(self) -> int:
        return int(self.value)


def _parse_date(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_split(text: str, seed: int = 0) -> Split:
    """'time:2018-01-01', 'time-fraction:0.8', 'leave-last:1' or 'random:0.25' -> Split."""
    kind, sep, value = text.partition(":")
    kind, value = kind.strip(), value.strip()
    hint = "use time:2018-01-01, time-fraction:0.8, leave-last:1 or random:0.25"
    if not sep or kind not in SPLIT_KINDS or not value:
        raise EvaluationError(f"--split {text!r}: unknown split", hint=hint)
    try:
        if kind == "time":
            _parse_date(value)
        elif kind == "leave-last":
            if int(value) < 1:
                raise ValueError("n must be >= 1")
        else:
            f = float(value)
            if not 0.0 < f < 1.0:
                raise ValueError("the fraction must be between 0 and 1 (exclusive)")
    except ValueError as e:
        raise EvaluationError(f"--split {text!r}: {e}", hint=hint) from None
    return Split(kind, value, seed)


VALIDATION_RANDOM_FRACTION = 0.125
"""The most of a random split's training part its validation split holds out. The validation
histories are what is left of the training part, so a validation split of the same fraction f
would query histories (1 - f) as long as the test's (56% of a user's items instead of 75% at
f = 0.25), and shorter histories favour settings that shorten or decay them (docs/evaluation.md,
"Validation splits"); 1/8 keeps 7/8 of the test's history length."""


def validation_split(split: Split) -> Split:
    """The split carved from a training part to tune a model's settings on (never the test
    part): the same kind of split, except that a fixed date becomes the last 20% of time and
    a random split holds out at most VALIDATION_RANDOM_FRACTION of the training part."""
    if split.kind == "time":
        return Split("time-fraction", "0.8", split.seed)
    if split.kind == "random" and split.fraction > VALIDATION_RANDOM_FRACTION:
        return Split("random", f"{VALIDATION_RANDOM_FRACTION:g}", split.seed)
    return split


def split_events(events: DataFrame, split: Split, primary: str) -> tuple[DataFrame, dict[str, Any]]:
    """Events (user, event, item, time) plus a boolean `test` column, and what the split did
    (e.g. the cut-off time). Events without a time belong to the training part.

    - time: test = events at or after the date.
    - time-fraction f: the date is min + f * (max - min) of the event times.
    - leave-last n: per user, the n newest primary events (ties: higher item id first) are
      held out; the user's events at or after the oldest of them are the test part (so a
      secondary event on a held-out item at the same moment does not leak into training).
    - random f: per user, round(f * n) of the user's n distinct primary items, chosen by a
      seeded hash, are held out with every event on them.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    detail: dict[str, Any] = {"split": str(split)}
    if split.kind in ("time", "time-fraction"):
        if split.kind == "time":
            cut = split.cut
        else:
            row = events.agg(F.min("time").alias("lo"), F.max("time").alias("hi")).first()
            if row is None or row["lo"] is None:
                raise EvaluationError("time-fraction split: no event has a time")
            lo, hi = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (row["lo"], row["hi"]))
            cut = lo + (hi - lo) * split.fraction
        detail["cut"] = iso(cut)
        test = F.coalesce(F.col("time") >= F.lit(cut), F.lit(False))
        return events.withColumn("test", test), detail
    if split.kind == "leave-last":
        newest = Window.partitionBy("user").orderBy(F.col("time").desc_nulls_last(), F.col("item").desc())
        cuts = (
            events.where((F.col("event") == primary) & F.col("time").isNotNull())
            .withColumn("r", F.row_number().over(newest))
            .where(F.col("r") <= split.n)
            .groupBy("user").agg(F.min("time").alias("_cut"))
        )
        joined = events.join(cuts, "user", "left")
        test = F.coalesce(F.col("time") >= F.col("_cut"), F.lit(False))
        return joined.withColumn("test", test).drop("_cut"), detail
    # random: rank each user's distinct primary items by a seeded hash
    pairs = events.where(F.col("event") == primary).select("user", "item").distinct()
    h = F.xxhash64(F.lit(split.seed), F.col("user"), F.col("item"))
    per_user = Window.partitionBy("user")
    ranked = pairs.withColumn("r", F.row_number().over(per_user.orderBy(h, F.col("item")))).withColumn(
        "n", F.count(F.lit(1)).over(per_user)
    )
    held = ranked.where(F.col("r") <= F.col("n") - F.round(F.col("n") * (1.0 - split.fraction))).select(
        "user", "item", F.lit(True).alias("_held")
    )
    joined = events.join(held, ["user", "item"], "left")
    return joined.withColumn("test", F.coalesce(F.col("_held"), F.lit(False))).drop("_held"), detail


@dataclass
class PreparedSplit:
    """A split's training input on disk plus what the loop needs of the test users."""

    workdir: Path
    train_input: Path
    """Training part as PredictionIO JSON lines (user events + every item property event)."""
    events: Any
    """The Spark DataFrame of user events with the `test` column (persisted)."""
    split: Split
    detail: dict[str, Any]
    primary: str
    histories: dict[str, dict[str, list[str]]]
    """Per evaluated user: training history per indicator action, newest first, distinct."""
    seen: dict[str, list[str]]
    """Per evaluated user: training primary items, newest first (excluded from results)."""
    relevant: dict[str, set[str]]
    """Per evaluated user: held-out primary items the user had not met in training."""
    skipped: dict[str, int]
    test_users: int
    catalogue: int
    """Distinct items of the primary action in the training part."""
    counts: dict[str, int] = field(default_factory=dict)


def _sample_users(users: Iterable[str], n: int | None, seed: int) -> list[str]:
    """All users, or n of them chosen by a seeded hash (reproducible, order-independent)."""
    users = sorted(users)
    if n is None or n >= len(users):
        return users
    key = lambda u: hashlib.sha1(f"{seed}:{u}".encode()).hexdigest()  # noqa: E731
    return sorted(sorted(users, key=key)[:n])


def prepare_split(
    spark: SparkSession,
    paths: Sequence[str],
    settings: TrainSettings,
    split: Split,
    workdir: str | Path,
    *,
    max_users: int | None = None,
) -> PreparedSplit:
    """Read and validate the events (bad rows fail the run, as in `cooccur train`), split
    them, write the training part for the job, and collect the test users' data."""
    user_events, item_events = read_checked(spark, paths, settings)
    return prepare_events(spark, user_events, item_events, settings, split, workdir, max_users=max_users)


def read_checked(spark: SparkSession, paths: Sequence[str], settings: TrainSettings) -> tuple[DataFrame, DataFrame]:
    """(user events, item property events) of the inputs; any bad row fails the run."""
    from indicators.errors import BadInput
    from indicators.reader import read_events

    data = read_events(spark, list(paths), settings.input)
    if data.counts.rejected:
        raise BadInput(data.counts.rejected, data.counts.rows, data.first_rejected())
    return data.events, data.item_events


def prepare_events(
    spark: SparkSession,
    user_events: DataFrame,
    item_events: DataFrame,
    settings: TrainSettings,
    split: Split,
    workdir: str | Path,
    *,
    max_users: int | None = None,
) -> PreparedSplit:
    """prepare_split on events already read: split, write the training part, collect the
    test users' data. The tuner passes a training part here to carve its validation split."""
    from pyspark.sql import functions as F
    from pyspark.storagelevel import StorageLevel

    workdir = Path(workdir)
    primary, actions = settings.primary, settings.actions
    marked, detail = split_events(user_events, split, primary)
    events = marked.persist(StorageLevel.MEMORY_AND_DISK)
    train_input = workdir / "train-events"
    _write_training_input(events.where(~F.col("test")), item_events, train_input)

    train, test = events.where(~F.col("test")), events.where(F.col("test"))
    train_primary = train.where(F.col("event") == primary).select("user", "item").distinct()
    held = (
        test.where(F.col("event") == primary).select("user", "item").distinct()
        .join(train_primary, ["user", "item"], "left_anti")
    )
    relevant: dict[str, set[str]] = {}
    for r in held.toLocalIterator():
        relevant.setdefault(r["user"], set()).add(r["item"])
    test_user_list = [r["user"] for r in test.select("user").distinct().collect()]
    with_history = {
        r["user"] for r in train.where(F.col("event").isin(*actions)).select("user").distinct()
        .join(held.select("user").distinct(), "user").collect()
    }
    skipped = {SKIP_NO_HELD_OUT: len(set(test_user_list) - set(relevant)),
               SKIP_NO_HISTORY: len(set(relevant) - with_history)}
    chosen = _sample_users(with_history, max_users, split.seed)
    if max_users is not None and len(with_history) > len(chosen):
        skipped["not sampled"] = len(with_history) - len(chosen)
    relevant = {u: relevant[u] for u in chosen}

    histories: dict[str, dict[str, list[str]]] = {u: {} for u in chosen}
    seen: dict[str, list[str]] = {u: [] for u in chosen}
    users_df = spark.createDataFrame([(u,) for u in chosen], "user string")
    rows = (
        train.where(F.col("event").isin(*actions)).join(F.broadcast(users_df), "user")
        .select("user", "event", "item", "time")
        .orderBy(F.col("user"), F.col("time").desc_nulls_last(), F.col("item"))
    )
    for r in rows.toLocalIterator():
        histories[r["user"]].setdefault(r["event"], []).append(r["item"])
    for u, hist in histories.items():
        for action in list(hist):
            hist[action] = list(dict.fromkeys(hist[action]))
        seen[u] = list(hist.get(primary, []))
    catalogue = train_primary.select("item").distinct().count()
    by_part = {bool(r["test"]): r["count"] for r in events.groupBy("test").count().collect()}
    counts = {"train_events": by_part.get(False, 0), "test_events": by_part.get(True, 0)}
    return PreparedSplit(
        workdir, train_input, events, split, detail, primary, histories, seen, relevant,
        skipped, len(test_user_list), catalogue, counts,
    )


def _write_training_input(train: DataFrame, item_events: DataFrame, out: Path) -> None:
    """The training part as PredictionIO JSON lines, the job's own input format, so the
    indicator job reads it exactly as it reads a user's files."""
    from pyspark.sql import functions as F

    stamp = F.date_format("time", "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")
    users = train.select(F.to_json(F.struct(
        F.col("event"), F.lit("user").alias("entityType"), F.col("user").alias("entityId"),
        F.lit("item").alias("targetEntityType"), F.col("item").alias("targetEntityId"),
        stamp.alias("eventTime"),
    )).alias("value"))
    # Properties are raw JSON text: splice them in rather than quoting them as a string.
    head = F.to_json(F.struct(
        F.col("event"), F.lit("item").alias("entityType"), F.col("item").alias("entityId"),
        stamp.alias("eventTime"),
    ))
    spliced = F.concat(F.expr("substring(_h, 1, length(_h) - 1)"), F.lit(',"properties":'),
                       F.col("properties"), F.lit("}"))
    items = item_events.select(head.alias("_h"), "properties").select(
        F.when(F.col("properties").isNull(), F.col("_h")).otherwise(spliced).alias("value")
    )
    users.unionByName(items).write.mode("overwrite").text(str(out))
