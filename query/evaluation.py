"""Offline evaluation: split events, train on the earlier part, query as the live service
would, and score the held-out primary-action items (docs/evaluation.md).

The metrics and the query variants here are plain Python over the backend's search API, so
importing this module never imports pyspark: only the functions that split and train
(`prepare_split`, `train_and_index`, `evaluate`, `run_evaluation`) import the indicator job,
inside their bodies.

    report = run_evaluation(["events.csv"], TrainSettings(primary="like", ...),
                            parse_split("time-fraction:0.8"), ks=(10, 20))
    print(format_table(report)); json.dumps(report.to_json())
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from indexer.backend import Backend

from .builder import build_backfill, score_sort
from .errors import QueryError
from .request import QueryRequest
from .settings import QuerySettings

if TYPE_CHECKING:  # type hints only: serving never imports pyspark
    from pyspark.sql import DataFrame, SparkSession

    from indexer.settings import IndexSettings
    from indicators.settings import TrainSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

SPLIT_KINDS = ("time", "time-fraction", "leave-last", "random")
SKIP_NO_HISTORY = "no training history"
SKIP_NO_HELD_OUT = "no held-out primary items"
SCORINGS = ("ours", "ur")
# Each user's history sent with a query is capped by QuerySettings.max_query_events; a
# user's excluded (already seen) items by max_excluded, as the live service caps them.


class EvaluationError(QueryError):
    """The evaluation was asked for something it cannot do (a bad split, no test users)."""

    hint = "see docs/evaluation.md"


# =========================================================================== metrics
def _hits(ranked: Sequence[str], relevant: set[str], k: int) -> list[bool]:
    return [item in relevant for item in ranked[:k]]


def precision_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Relevant items among the first k, divided by k (even when fewer than k came back)."""
    return sum(_hits(ranked, relevant, k)) / k


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Relevant items among the first k, divided by the number of relevant items."""
    if not relevant:
        return 0.0
    return sum(_hits(ranked, relevant, k)) / len(relevant)


def average_precision_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """AP@k = (1 / min(k, |relevant|)) * sum over ranks i <= k holding a relevant item of
    precision@i. The min() makes a perfect top-k score 1 even when |relevant| > k."""
    if not relevant:
        return 0.0
    total, found = 0.0, 0
    for i, hit in enumerate(_hits(ranked, relevant, k), 1):
        if hit:
            found += 1
            total += found / i
    return total / min(k, len(relevant))


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-gain NDCG@k: DCG = sum of 1/log2(i+1) over ranks i <= k holding a relevant
    item; divided by the DCG of an ideal list (min(k, |relevant|) hits at the top)."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 1) for i, hit in enumerate(_hits(ranked, relevant, k), 1) if hit)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal


def hit_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """1 when any of the first k items is relevant, else 0."""
    return 1.0 if any(_hits(ranked, relevant, k)) else 0.0


def coverage_at_k(rankings: Iterable[Sequence[str]], k: int, catalogue: int) -> float:
    """Distinct items in anyone's first k, divided by the catalogue size."""
    if catalogue <= 0:
        return 0.0
    seen: set[str] = set()
    for ranked in rankings:
        seen.update(ranked[:k])
    return len(seen) / catalogue


@dataclass(frozen=True)
class Metrics:
    """Metrics at one k, averaged over the evaluated users (coverage: over all of them)."""

    k: int
    precision: float
    recall: float
    map: float
    ndcg: float
    hit_rate: float
    coverage: float
    users: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def score_rankings(
    rankings: Mapping[str, Sequence[str]],
    relevant: Mapping[str, set[str]],
    ks: Sequence[int],
    catalogue: int,
) -> dict[int, Metrics]:
    """Every metric at every k over the users of `relevant` (a user missing from `rankings`
    got nothing and scores 0)."""
    users = sorted(relevant)
    out: dict[int, Metrics] = {}
    for k in ks:
        sums = [0.0] * 5
        for u in users:
            ranked, rel = rankings.get(u, ()), relevant[u]
            for j, fn in enumerate((precision_at_k, recall_at_k, average_precision_at_k, ndcg_at_k, hit_at_k)):
                sums[j] += fn(ranked, rel, k)
        n = max(len(users), 1)
        cov = coverage_at_k((rankings.get(u, ()) for u in users), k, catalogue)
        precision, recall, map_, ndcg, hit_rate = (s / n for s in sums)
        out[k] = Metrics(k, precision, recall, map_, ndcg, hit_rate, coverage=cov, users=len(users))
    return out


# =========================================================================== splits
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
        detail["cut"] = cut.astimezone(UTC).isoformat().replace("+00:00", "Z")
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


# =========================================================================== the loop's data
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


def train_and_index(
    spark: SparkSession,
    prepared: PreparedSplit,
    settings: TrainSettings,
    *,
    index_settings: IndexSettings | None = None,
    model_name: str = "model",
    on_stage: Callable[[str], None] | None = None,
) -> tuple[Backend, dict[str, float]]:
    """Train the indicator job on the training part and index it into a temporary embedded
    backend under the work directory; returns the backend and the seconds each step took.
    `index_settings`: the document settings ([index] prior_*, correlator_weights)."""
    from indicators.job import train
    from indicators.settings import InputSettings

    t0 = time.perf_counter()
    job_settings = replace(settings, input=InputSettings(format="jsonl"))
    model = prepared.workdir / model_name
    train(spark, [str(prepared.train_input)], job_settings, model, on_stage=on_stage)
    t1 = time.perf_counter()
    backend = index_temporary(model, prepared.workdir / f"{model_name}-index", index_settings)
    t2 = time.perf_counter()
    return backend, {"train": round(t1 - t0, 3), "index": round(t2 - t1, 3)}


def index_temporary(model: Path, data_dir: Path, index_settings: IndexSettings | None = None) -> Backend:
    """Index a model into a fresh embedded backend at data_dir (one version kept) and open it;
    the document settings come from `index_settings` (its backend and location are ignored)."""
    from indexer.embedded import EmbeddedBackend
    from indexer.run import index_model
    from indexer.settings import IndexSettings

    base = index_settings or IndexSettings()
    local = replace(base, backend="embedded", data_dir=str(data_dir), keep_versions=1)
    index_model(model, local)
    return EmbeddedBackend(local.data_dir, local.name, keep_versions=1)


# =========================================================================== query variants
@dataclass(frozen=True)
class Variant:
    """One way of querying: which indicator fields, and which scoring."""

    name: str
    indicators: tuple[str, ...]
    """Indicator fields queried (boost 1 each); empty = popularity only."""
    scoring: str = "ours"
    """ours (one BM25 `term` clause per history item, the builder's default) or ur (one
    constant-score `terms` clause per indicator, ties by popularity)."""


def default_variants(primary: str, actions: Sequence[str]) -> list[Variant]:
    """Popularity, then primary-only vs all indicators, each with our and UR-style scoring
    (the all-indicator variants only when there is more than one indicator)."""
    out = [Variant("popularity", ())]
    sets: list[tuple[str, tuple[str, ...]]] = [("primary", (primary,))]
    if len(actions) > 1:
        sets.append(("all", tuple(actions)))
    for label, fields in sets:
        for scoring in SCORINGS:
            out.append(Variant(f"{label}/{scoring}", fields, scoring))
    return out


def ur_style_body(
    history: Mapping[str, Sequence[str]],
    indicators: Mapping[str, float],
    excluded: Sequence[str],
    num: int,
) -> dict[str, Any] | None:
    """The Universal Recommender's query shape: one constant-score `terms` clause per
    indicator (score = sum of the boosts of the indicators an item matches at all), ties
    broken by popularity, then id. None when the history has nothing to ask."""
    clauses = [{"terms": {f: list(history[f]), "boost": b}} for f, b in indicators.items() if history.get(f)]
    if not clauses:
        return None
    query: dict[str, Any] = {"must": [{"bool": {"should": clauses, "minimum_should_match": 1}}]}
    if excluded:
        query["must_not"] = [{"ids": {"values": list(excluded)}}]
    return {"size": num, "query": {"bool": query}, "sort": score_sort("popular"), "_source": False}


def ur_style_recommend(
    backend: Backend,
    history: Mapping[str, Sequence[str]],
    indicators: Mapping[str, float],
    excluded: Sequence[str],
    num: int,
    settings: QuerySettings | None = None,
) -> list[str]:
    """UR-style personal results, then popularity backfill up to num (as the builder does)."""
    settings = settings or QuerySettings()
    cap = settings.max_query_events
    capped = {f: list(items)[:cap] for f, items in history.items()}
    out: list[str] = []
    body = ur_style_body(capped, indicators, excluded, num)
    if body is not None:
        out = [h.id for h in backend.search(body).hits]
    if len(out) < num and settings.backfill != "none":
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        fill = build_backfill(QueryRequest(history={}), settings, ranking=settings.backfill,
                              excluded=sorted(set(excluded) | set(out)), now=now, size=num - len(out))
        fill["_source"] = False
        out += [h.id for h in backend.search(fill).hits]
    return out


def recommend_for(
    variant: Variant,
    backend: Backend,
    history: Mapping[str, Sequence[str]],
    seen: Sequence[str],
    num: int,
    settings: QuerySettings,
    recommenders: dict[tuple[str, ...], Any],
) -> list[str]:
    """One user's ranked item ids under a variant. `ours` goes through the Recommender with
    an inline history, exactly as a live request would; `seen` (the user's primary items)
    is excluded as the event store's blacklist would exclude it. Indicator boosts come from
    `settings.indicators` where it names the field, else as served by default (the primary
    1, the others `secondary_boost`); UR-style variants give every indicator 1."""
    excluded = list(seen)[: settings.max_excluded]
    if variant.scoring == "ur" or not variant.indicators:
        # the Universal Recommender's shape: every indicator at boost 1
        return ur_style_recommend(backend, history, dict.fromkeys(variant.indicators, 1.0), excluded, num,
                                  settings)
    fields = settings.default_boosts(variant.indicators, variant.indicators[0])
    # (QuerySettings.__post_init__ has made a list of names a dict)
    boosts = cast(dict[str, float], settings.indicators or {})
    fields.update({f: b for f, b in boosts.items() if f in fields})
    from .recommender import Recommender

    rec = recommenders.get(variant.indicators)
    if rec is None:
        rec = recommenders[variant.indicators] = Recommender(
            backend, None, replace(settings, indicators=fields, primary=variant.indicators[0]))
    request = {"history": {f: list(history.get(f, ())) for f in fields}, "num": num}
    if excluded:
        request["blacklistItems"] = excluded
    return [s.item for s in rec.recommend(request).item_scores]


@dataclass
class VariantResult:
    """One variant's metrics at each k and how long its queries took."""

    name: str
    indicators: list[str]
    scoring: str
    metrics: dict[int, Metrics]
    seconds: float
    queries: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "indicators": self.indicators, "scoring": self.scoring,
            "metrics": {str(k): m.as_dict() for k, m in self.metrics.items()},
            "seconds": round(self.seconds, 3), "queries": self.queries,
        }


def run_variants(
    backend: Backend,
    prepared: PreparedSplit,
    variants: Sequence[Variant],
    ks: Sequence[int],
    settings: QuerySettings | None = None,
    progress: Callable[[int], None] | None = None,
    rankings_out: dict[str, dict[str, list[str]]] | None = None,
) -> list[VariantResult]:
    """Query every evaluated user under every variant and score the results. `progress` is
    called with 1 after each user (all variants of that user done); `rankings_out`, when
    given, receives each variant's ranked ids per user."""
    settings = settings or QuerySettings()
    num = max(ks)
    users = sorted(prepared.relevant)
    rankings: dict[str, dict[str, list[str]]] = {v.name: {} for v in variants}
    seconds = {v.name: 0.0 for v in variants}
    recommenders: dict[tuple[str, ...], Any] = {}
    for u in users:
        for v in variants:
            t = time.perf_counter()
            rankings[v.name][u] = recommend_for(
                v, backend, prepared.histories[u], prepared.seen[u], num, settings, recommenders)
            seconds[v.name] += time.perf_counter() - t
        if progress is not None:
            progress(1)
    if rankings_out is not None:
        rankings_out.update(rankings)
    return [
        VariantResult(v.name, list(v.indicators), v.scoring if v.indicators else "popularity",
                      score_rankings(rankings[v.name], prepared.relevant, ks, prepared.catalogue),
                      seconds[v.name], len(users))
        for v in variants
    ]


# =========================================================================== the whole run
@dataclass
class EvaluationReport:
    """Everything `cooccur evaluate` prints: the split, the users, each variant's metrics."""

    split: dict[str, Any]
    primary: str
    indicators: list[str]
    ks: list[int]
    users: dict[str, Any]
    catalogue: int
    events: dict[str, int]
    variants: list[VariantResult]
    timings: dict[str, float]

    def only_ks(self, ks: Iterable[int]) -> EvaluationReport:
        """The same report with the metrics at these k only."""
        keep = sorted(set(ks))
        variants = [replace(v, metrics={k: v.metrics[k] for k in keep}) for v in self.variants]
        return replace(self, ks=keep, variants=variants)

    def to_json(self) -> dict[str, Any]:
        return {
            "split": self.split, "primary": self.primary, "indicators": self.indicators, "k": self.ks,
            "users": self.users, "catalogue": self.catalogue, "events": self.events,
            "variants": [v.to_json() for v in self.variants], "timings": self.timings,
        }


def evaluate(
    spark: SparkSession,
    paths: Sequence[str],
    settings: TrainSettings,
    split: Split,
    ks: Sequence[int] = (10,),
    *,
    query_settings: QuerySettings | None = None,
    index_settings: IndexSettings | None = None,
    variants: Sequence[Variant] | None = None,
    max_users: int | None = None,
    workdir: str | Path | None = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Split, train on the earlier part, index into a temporary embedded backend, query
    every test user under every variant and score the held-out primary items.

    `progress(total_users)`: called once with the number of users, returns the per-user
    callback. The temporary directory is removed unless `workdir` is given."""
    ks = sorted(set(ks))
    if not ks or ks[0] < 1:
        raise EvaluationError(f"k must be >= 1, not {ks}")
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="cooccur-eval-"))
    tmp.mkdir(parents=True, exist_ok=True)
    stage = on_stage or (lambda line: log.info(line))
    try:
        t0 = time.perf_counter()
        prepared = prepare_split(spark, paths, settings, split, tmp, max_users=max_users)
        t_split = time.perf_counter() - t0
        stage(f"split        {split}: {prepared.counts['train_events']:,} training events, "
              f"{prepared.counts['test_events']:,} test events; {len(prepared.relevant):,} users to "
              f"evaluate ({t_split:.1f} s)")
        if not prepared.relevant:
            raise EvaluationError(
                f"split {split}: no user has both training history and held-out {settings.primary!r} items "
                f"({_skipped_text(prepared.skipped)})",
                hint="move the split (an earlier date, a larger test fraction) or check --primary")
        backend, timings = train_and_index(spark, prepared, settings, index_settings=index_settings,
                                           on_stage=on_stage)
        prepared.events.unpersist()
        chosen = list(variants) if variants else default_variants(settings.primary, settings.actions)
        callback = progress(len(prepared.relevant)) if progress else None
        t1 = time.perf_counter()
        results = run_variants(backend, prepared, chosen, ks, query_settings, callback)
        timings = {"split": round(t_split, 3), **timings, "queries": round(time.perf_counter() - t1, 3)}
        return EvaluationReport(
            split={**prepared.detail, "seed": split.seed}, primary=settings.primary,
            indicators=list(settings.actions), ks=list(ks),
            users={"test": prepared.test_users, "evaluated": len(prepared.relevant),
                   "skipped": prepared.skipped},
            catalogue=prepared.catalogue, events=prepared.counts, variants=results, timings=timings,
        )
    finally:
        if not workdir:
            shutil.rmtree(tmp, ignore_errors=True)


def run_evaluation(
    paths: Sequence[str], settings: TrainSettings, split: Split, ks: Sequence[int] = (10,), **kwargs: Any
) -> EvaluationReport:
    """The CLI's entry point: check Java, start one Spark session for every variant, evaluate."""
    return with_spark(settings, "cooccur-evaluate",
                      lambda spark: evaluate(spark, paths, settings, split, ks, **kwargs))


def with_spark(settings: TrainSettings, app_name: str, run: Callable[[SparkSession], T]) -> T:
    """Check Java, start (or reuse) a Spark session for `settings`, run, and stop the session
    if it was started here."""
    from indicators.spark import spark_session

    with spark_session(settings.spark_master, settings.spark_options, app_name) as spark:
        return run(spark)


def _skipped_text(skipped: Mapping[str, int]) -> str:
    return ", ".join(f"{n:,} {reason}" for reason, n in skipped.items() if n) or "none skipped"


METRIC_COLUMNS = ("precision", "recall", "map", "ndcg", "hit_rate", "coverage")


def format_table(report: EvaluationReport) -> str:
    """The report as a plain-text table (one row per variant and k) with a users line."""
    lines = [
        f"split {report.split['split']}"
        + (f" (cut {report.split['cut']})" if "cut" in report.split else "")
        + f"; primary {report.primary}; catalogue {report.catalogue:,} items",
        f"users: {report.users['evaluated']:,} evaluated of {report.users['test']:,} in the test part; "
        f"skipped: {_skipped_text(report.users['skipped'])}",
        "",
    ]
    head = f"{'variant':<16}{'k':>4}" + "".join(f"{c:>10}" for c in METRIC_COLUMNS) + f"{'ms/query':>10}"
    lines += [head, "-" * len(head)]
    for v in report.variants:
        ms = 1000 * v.seconds / v.queries if v.queries else 0.0
        for k in report.ks:
            m = v.metrics[k]
            lines.append(f"{v.name:<16}{k:>4}" + "".join(f"{getattr(m, c):>10.4f}" for c in METRIC_COLUMNS)
                         + f"{ms:>10.2f}")
    return "\n".join(lines)
