"""The whole evaluation run: split, train on the training part, index into a temporary embedded
backend, query every test user under every variant, score; the report and its table.

    report = run_evaluation(["events.csv"], TrainSettings(primary="like", ...),
                            parse_split("time-fraction:0.8"), ks=(10, 20))
    print(format_table(report)); json.dumps(report.to_json())
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from indexer.backend import Backend
from query.settings import QuerySettings

from .errors import EvaluationError
from .splits import PreparedSplit, Split, prepare_split
from .variants import Variant, VariantResult, default_variants, run_variants

if TYPE_CHECKING:  # type hints only: importing the evaluation never imports pyspark
    from pyspark.sql import SparkSession

    from indexer.settings import IndexSettings
    from indicators.settings import TrainSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    ks = checked_ks(ks)
    stage = on_stage or (lambda line: log.info(line))
    with work_directory(workdir, "cooccur-eval-") as tmp:
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


def checked_ks(ks: Iterable[int]) -> list[int]:
    """The distinct k values, ascending; each must be at least 1."""
    out = sorted(set(ks))
    if not out or out[0] < 1:
        raise EvaluationError(f"k must be >= 1, not {out}")
    return out


@contextmanager
def work_directory(workdir: str | Path | None, prefix: str) -> Iterator[Path]:
    """`workdir` (created if missing, kept), or a temporary directory removed at the end."""
    if workdir:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)
        return
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
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
