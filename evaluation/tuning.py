"""`cooccur tune`: choose settings on a validation split carved from the training part only,
then report the chosen settings and the defaults side by side on the test split
(docs/evaluation.md, "Tuning").

The search is coordinate descent over a small grid (GRID): one setting at a time, each
value tried with the others held, the best kept, until a round changes nothing. Query-time
settings reuse one index; `prior_exponent` re-indexes (seconds: the documents' `prior`
field); only `min_llr` retrains. The objective is MAP at the first k of the validation
split, every indicator queried, as a live request would.

Nothing of the test part reaches the search: `tune` splits the events once (the test
split), and the search sees only the training part, which it splits again
(`validation_split`) into its own training and validation parts.

    report = run_tuning(["events.csv"], train_settings, parse_split("leave-last:5"))
    print(format_tuning(report)); Path("tuned.toml").write_text(report.toml())
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from indexer.settings import IndexSettings
from query.settings import QuerySettings

from .errors import EvaluationError
from .measures import Metrics
from .run import checked_ks, index_temporary, with_spark, work_directory
from .splits import PreparedSplit, Split, prepare_events, read_checked, split_events, validation_split
from .variants import Variant, run_variants

if TYPE_CHECKING:  # type hints only: importing the evaluation never imports pyspark
    from pyspark.sql import DataFrame, SparkSession

    from indicators.settings import TrainSettings

log = logging.getLogger(__name__)

SCORING_CHOICES = ("terms", "weights:log", "weights:linear", "weights:saturation")
"""`weights:<function>`: rank_feature scoring with that function (saturation's pivot is
SATURATION_PIVOT LLR, log's scaling factor 1: ln(1 + LLR))."""
SATURATION_PIVOT = 10.0
GRID: dict[str, tuple[Any, ...]] = {
    "scoring": SCORING_CHOICES,
    "prior_exponent": (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
    "history_decay": (1.0, 0.98, 0.95, 0.9, 0.8, 0.7, 0.6),
    "max_query_events": (25, 50, 100, 200, 500),
    "min_llr": (0.0, 10.0, 20.0, 30.0),
    "max_correlators": (50, 100, 200),
}
"""The values tried per setting, in search order (cheapest to change first; min_llr and
max_correlators retrain). Each secondary indicator's boost is searched too (BOOSTS)."""
BOOSTS = (0.0, 0.1, 0.25, 0.5, 1.0)
"""Boosts tried per secondary indicator (0 leaves it out of the query; the primary keeps 1)."""


@dataclass(frozen=True)
class Candidate:
    """One point of the search: the settings `tune` chooses."""

    scoring: str
    prior_exponent: float
    history_decay: float
    max_query_events: int
    min_llr: float
    max_correlators: int = 50
    boosts: tuple[tuple[str, float], ...] = ()
    """(secondary indicator, boost) in the training order; the primary's boost is 1."""

    @classmethod
    def of(cls, train: TrainSettings, index: IndexSettings, query: QuerySettings) -> Candidate:
        """The point the given settings stand at (the defaults' point)."""
        scoring = query.scoring if isinstance(query.scoring, str) else "terms"
        if scoring == "weights":
            scoring = f"weights:{query.weight_function}"
        llrs = {i.min_llr or 0.0 for i in train.indicators}
        # (QuerySettings.__post_init__ has made a list of names a dict)
        configured = cast(dict[str, float], query.indicators) or query.default_boosts(train.actions, train.primary)
        boosts = tuple((a, float(configured.get(a, 0.0))) for a in train.actions[1:])
        return cls(scoring, float(index.prior_exponent), float(query.history_decay),
                   int(query.max_query_events), max(llrs), max(i.max_correlators for i in train.indicators),
                   boosts)

    def with_setting(self, name: str, value: Any) -> Candidate:
        """This point with one setting changed (`boost:<indicator>` for a boost)."""
        if name.startswith("boost:"):
            indicator = name.split(":", 1)[1]
            return replace(self, boosts=tuple((a, value if a == indicator else b) for a, b in self.boosts))
        return replace(self, **{name: value})

    def dimensions(self) -> dict[str, tuple[Any, ...]]:
        """The settings searched from this point and the values tried for each."""
        return {**GRID, **{f"boost:{a}": BOOSTS for a, _ in self.boosts}}

    def indicators(self, primary: str) -> dict[str, float]:
        """The queried indicators and their boosts, primary first (boost 0: left out)."""
        return {primary: 1.0, **{a: b for a, b in self.boosts if b > 0}}

    def query_settings(self, base: QuerySettings, primary: str) -> QuerySettings:
        scoring, _, function = self.scoring.partition(":")
        extra: dict[str, Any] = {}
        if function:
            extra = {"weight_function": function,
                     "weight_parameter": SATURATION_PIVOT if function == "saturation" else 1.0}
        return replace(base, scoring=scoring, history_decay=self.history_decay,
                       max_query_events=self.max_query_events, indicators=self.indicators(primary),
                       primary=primary, popularity_prior=base.popularity_prior or self.prior_exponent > 0,
                       **extra)

    def index_settings(self, base: IndexSettings) -> IndexSettings:
        return replace(base, prior_exponent=self.prior_exponent, correlator_weights=True)

    def describe(self) -> str:
        return (f"scoring={self.scoring} prior_exponent={self.prior_exponent:g} "
                f"history_decay={self.history_decay:g} max_query_events={self.max_query_events} "
                f"min_llr={self.min_llr:g} max_correlators={self.max_correlators} "
                + " ".join(f"boost:{a}={b:g}" for a, b in self.boosts)).strip()

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "boosts"}
        return {**out, "boosts": dict(self.boosts)}


@dataclass
class Trial:
    candidate: Candidate
    metrics: dict[int, Metrics]


@dataclass
class TuningReport:
    """What `cooccur tune` prints: the chosen point, every trial, and both points' metrics on
    the validation and the test split."""

    split: dict[str, Any]
    validation: dict[str, Any]
    k: int
    default: Candidate
    chosen: Candidate
    trials: list[Trial]
    results: dict[str, dict[str, dict[int, Metrics]]]
    """{"validation" | "test": {"defaults" | "tuned": {k: Metrics}}}."""
    train: TrainSettings
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def metrics(m: dict[int, Metrics]) -> dict[str, Any]:
            return {str(k): v.as_dict() for k, v in m.items()}

        return {
            "split": self.split, "validation_split": self.validation, "k": self.k,
            "defaults": self.default.as_dict(), "chosen": self.chosen.as_dict(),
            "results": {part: {name: metrics(m) for name, m in r.items()} for part, r in self.results.items()},
            "trials": [{**t.candidate.as_dict(), "map": round(t.metrics[self.k].map, 6),
                        "precision": round(t.metrics[self.k].precision, 6)} for t in self.trials],
            "timings": self.timings,
        }

    def toml(self) -> str:
        """The chosen settings as a config fragment to paste (its [[train.indicators]]
        replace the config's)."""
        c = self.chosen
        scoring, _, function = c.scoring.partition(":")
        val = self.results["validation"]
        lines = [
            f"# cooccur tune: chosen on the validation split {self.validation['split']} carved from the "
            f"training part of {self.split['split']}",
            f"# validation MAP@{self.k}: {val['tuned'][self.k].map:.4f} (defaults {val['defaults'][self.k].map:.4f}); "
            f"test MAP@{self.k}: {self.results['test']['tuned'][self.k].map:.4f} "
            f"(defaults {self.results['test']['defaults'][self.k].map:.4f})",
            "",
            "[train]",
            f'primary = "{self.train.primary}"',
        ]
        for ind in self.train.indicators:
            lines += ["", "[[train.indicators]]", f'name = "{ind.name}"', f"max_correlators = {c.max_correlators}"]
            if c.min_llr:
                lines.append(f"min_llr = {c.min_llr!r}")
        boosts = ", ".join(f'"{a}" = {b!r}' for a, b in c.indicators(self.train.primary).items())
        lines += ["", "[index]", f"prior_exponent = {c.prior_exponent!r}", "correlator_weights = true",
                  "", "[query]", f"indicators = {{ {boosts} }}", f'scoring = "{scoring}"']
        if function:
            param = SATURATION_PIVOT if function == "saturation" else 1.0
            lines += [f'weight_function = "{function}"', f"weight_parameter = {param!r}"]
        lines += [f"popularity_prior = {'true' if c.prior_exponent > 0 else 'false'}",
                  f"history_decay = {c.history_decay!r}", f"max_query_events = {c.max_query_events}", ""]
        return "\n".join(lines)


class Searcher:
    """Evaluates candidates on one prepared split (all indicators, as a live request would
    query), training and indexing only when a candidate needs a model or index not made yet."""

    def __init__(self, spark: SparkSession, prepared: PreparedSplit, train: TrainSettings,
                 index: IndexSettings, query: QuerySettings, ks: Sequence[int],
                 say: Callable[[str], None]) -> None:
        self.spark, self.prepared, self.train = spark, prepared, train
        self.index, self.query, self.ks, self.say = index, query, list(ks), say
        self.models: dict[tuple[float, int], Path] = {}
        self.backends: dict[tuple[float, int, float], Any] = {}
        self.cache: dict[Candidate, dict[int, Metrics]] = {}
        self.seconds = {"train": 0.0, "index": 0.0, "queries": 0.0}

    def model(self, c: Candidate) -> Path:
        from indicators.job import train
        from indicators.settings import InputSettings

        key = (c.min_llr, c.max_correlators)
        if key not in self.models:
            t = time.perf_counter()
            path = self.prepared.workdir / f"model-llr{c.min_llr:g}-k{c.max_correlators}"
            settings = replace(self.train, input=InputSettings(format="jsonl"), indicators=[
                replace(i, min_llr=c.min_llr or None, max_correlators=c.max_correlators)
                for i in self.train.indicators])
            train(self.spark, [str(self.prepared.train_input)], settings, path)
            self.models[key] = path
            self.seconds["train"] += time.perf_counter() - t
            self.say(f"trained with min_llr {c.min_llr:g}, max_correlators {c.max_correlators} "
                     f"({time.perf_counter() - t:.1f} s)")
        return self.models[key]

    def backend(self, c: Candidate):
        key = (c.min_llr, c.max_correlators, c.prior_exponent)
        if key not in self.backends:
            model = self.model(c)
            t = time.perf_counter()
            self.backends[key] = index_temporary(
                model, self.prepared.workdir / f"index-{model.name}-prior{c.prior_exponent:g}",
                c.index_settings(self.index))
            self.seconds["index"] += time.perf_counter() - t
        return self.backends[key]

    def metrics(self, c: Candidate) -> dict[int, Metrics]:
        if c not in self.cache:
            t = time.perf_counter()
            variant = Variant("all/ours", tuple(c.indicators(self.train.primary)), "ours")
            (result,) = run_variants(self.backend(c), self.prepared, [variant], self.ks,
                                     c.query_settings(self.query, self.train.primary))
            self.cache[c] = result.metrics
            self.seconds["queries"] += time.perf_counter() - t
        return self.cache[c]


def search(objective: Callable[[Candidate], float], start: Candidate, say: Callable[[str], None],
           rounds: int = 3, label: str = "objective", hold: Collection[str] = ()) -> Candidate:
    """Coordinate descent from `start` over its dimensions (GRID and the indicator boosts),
    maximising `objective`; a value must beat the current best to replace it, so ties keep
    the earlier choice. Settings named in `hold` keep the start's value."""
    best = start
    best_value = objective(best)
    say(f"start  {best.describe()}: {label} {best_value:.4f}")
    for r in range(1, rounds + 1):
        moved = False
        for name, values in best.dimensions().items():
            if name in hold:
                continue
            for value in values:
                c = best.with_setting(name, value)
                if c == best:
                    continue
                v = objective(c)
                mark = " *" if v > best_value + 1e-12 else ""
                say(f"round {r} {name}={value}: {label} {v:.4f} (best {max(v, best_value):.4f}){mark}")
                if v > best_value + 1e-12:
                    best, best_value, moved = c, v, True
        if not moved:
            break
    return best


def prepare_validation(
    spark: SparkSession,
    user_events: DataFrame,
    item_events: DataFrame,
    train: TrainSettings,
    split: Split,
    workdir: Path,
    *,
    max_users: int | None = None,
) -> PreparedSplit:
    """The validation split carved from the training part of `split`: the search's whole
    input is that training part, so nothing of the test part can reach it."""
    from pyspark.sql import functions as F

    marked, _ = split_events(user_events, split, train.primary)
    training_part = marked.where(~F.col("test")).drop("test")
    vsplit = validation_split(split)
    validation = prepare_events(spark, training_part, item_events, train, vsplit, workdir, max_users=max_users)
    if not validation.relevant:
        raise EvaluationError(f"validation split {vsplit}: no user to evaluate",
                              hint="use a split that leaves each user more held-out primary events")
    return validation


def tune(
    spark: SparkSession,
    paths: Sequence[str],
    train: TrainSettings,
    split: Split,
    ks: Sequence[int] = (10,),
    *,
    k: int | None = None,
    index: IndexSettings | None = None,
    query: QuerySettings | None = None,
    max_users: int | None = None,
    rounds: int = 3,
    workdir: str | Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TuningReport:
    """Search on a validation split of the training part by MAP@k (default: the smallest of
    `ks`), then evaluate the defaults and the chosen settings on the test split at every k of
    `ks`. The temporary directory is removed unless given."""
    ks = checked_ks(set(ks) | ({k} if k else set()))
    k = k or ks[0]
    index = index or IndexSettings()
    query = query or QuerySettings()
    say = on_stage or (lambda line: log.info(line))
    with work_directory(workdir, "cooccur-tune-") as tmp:
        t0 = time.perf_counter()
        user_events, item_events = read_checked(spark, paths, train)
        validation = prepare_validation(spark, user_events, item_events, train, split, tmp / "validation",
                                        max_users=max_users)
        vsplit = validation.split
        say(f"validation   {vsplit} of the training part: {len(validation.relevant):,} users "
            f"({time.perf_counter() - t0:.1f} s)")
        default = Candidate.of(train, index, query)
        searcher = Searcher(spark, validation, train, index, query, ks, say)
        chosen = search(lambda c: searcher.metrics(c)[k].map, default, say, rounds, f"MAP@{k}")
        trials = [Trial(c, m) for c, m in searcher.cache.items()]
        validation.events.unpersist()
        say(f"chosen       {chosen.describe()}")

        t1 = time.perf_counter()
        test = prepare_events(spark, user_events, item_events, train, split, tmp / "test", max_users=max_users)
        say(f"test         {split}: {len(test.relevant):,} users ({time.perf_counter() - t1:.1f} s)")
        tester = Searcher(spark, test, train, index, query, ks, say)
        results = {
            "validation": {"defaults": searcher.metrics(default), "tuned": searcher.metrics(chosen)},
            "test": {"defaults": tester.metrics(default), "tuned": tester.metrics(chosen)},
        }
        test.events.unpersist()
        timings = {f"search_{n}": round(v, 3) for n, v in searcher.seconds.items()}
        timings.update({f"test_{n}": round(v, 3) for n, v in tester.seconds.items()})
        timings["total"] = round(time.perf_counter() - t0, 3)
        return TuningReport(
            split={"split": str(split), "seed": split.seed}, validation={"split": str(vsplit)}, k=k,
            default=default, chosen=chosen, trials=trials, results=results, train=train, timings=timings)


def run_tuning(paths: Sequence[str], train: TrainSettings, split: Split, ks: Sequence[int] = (10,),
               **kwargs: Any) -> TuningReport:
    """The CLI's entry point: check Java, start one Spark session, tune."""
    return with_spark(train, "cooccur-tune", lambda spark: tune(spark, paths, train, split, ks, **kwargs))


def format_tuning(report: TuningReport) -> str:
    """The chosen settings and the metrics of defaults vs tuned on both splits, as text."""
    k = report.k
    lines = [f"split {report.split['split']}; settings chosen on {report.validation['split']} of its "
             f"training part ({len(report.trials)} settings tried, by MAP@{k})", "",
             f"{'':<12}{'setting':<20}{'defaults':>14}{'tuned':>14}"]
    default, chosen = report.default.as_dict(), report.chosen.as_dict()
    for name in GRID:
        lines.append(f"{'':<12}{name:<20}{default[name]!s:>14}{chosen[name]!s:>14}")
    for name in chosen["boosts"]:
        lines.append(f"{'':<12}{'boost:' + name:<20}{default['boosts'][name]!s:>14}{chosen['boosts'][name]!s:>14}")
    lines += ["", f"{'part':<12}{'settings':<10}" + "".join(f"{c + '@' + str(k):>14}" for c in
                                                          ("precision", "map", "ndcg", "hit_rate"))]
    for part in ("validation", "test"):
        for name in ("defaults", "tuned"):
            m = report.results[part][name][k]
            lines.append(f"{part:<12}{name:<10}" + "".join(
                f"{getattr(m, c):>14.4f}" for c in ("precision", "map", "ndcg", "hit_rate")))
    return "\n".join(lines)
