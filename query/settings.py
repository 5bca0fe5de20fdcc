"""Query, event-store and service settings with their defaults (docs/api.md, configuration)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from indicators.model import RANKINGS  # the model format's popularity rankings

from .errors import SettingsError

SCORINGS = ("terms", "weights")
WEIGHT_FUNCTIONS = ("linear", "saturation", "log")


@dataclass
class QuerySettings:
    """How a request becomes a search ([query])."""

    indicators: dict[str, float] | list[str] | None = None
    """Indicator fields and their boosts, primary first: `{purchase = 1.0, view = 0.5}` or a
    list (boost 1.0 each). Unset: the indicators of the current index (its model manifest),
    else the actions in the user's history."""
    primary: str | None = None
    """The primary action (default: the first indicator)."""
    max_query_events: int = 100
    """Most recent distinct items per action taken from a user's history (the UR's
    maxQueryEvents, also 100; chosen on validation splits, bench/defaults.py)."""
    history_decay: float = 0.98
    """Boost factor per step back in a user's history: the k-th newest item of an action
    weighs history_decay ** k (1.0 = every event alike). Lower favours what a user did
    last (next-item prediction) over their whole taste: run `cooccur tune`
    (docs/evaluation.md, "Recency or taste")."""
    secondary_boost: float = 0.5
    """Boost of every indicator but the primary where `indicators` does not set boosts (the
    served model's indicators): cross-occurrence with another action is weaker evidence
    than the primary action itself."""
    scoring: str | dict[str, str] = "weights"
    """How a history item scores the items that list it as a correlator: `terms` (a BM25
    `term` clause on the indicator field: rarer correlators weigh more) or `weights` (a
    `rank_feature` clause on the indexed LLR of that correlator, `[index]
    correlator_weights`); one for all indicators or a table per indicator, e.g.
    {like = "weights", view = "terms"} (unlisted ones: terms). The shipped defaults
    (weights, log, prior 0.5, history_decay 0.98, 100 events, secondary boost 0.5, 100
    correlators) were chosen on validation splits of two protocols (bench/defaults.py,
    docs/evaluation.md)."""
    weight_function: str = "log"
    """With `weights`: linear (w = LLR), saturation (LLR / (LLR + weight_parameter)) or log
    (ln(weight_parameter + LLR)), times the history item's boost (Elasticsearch's rank_feature)."""
    weight_parameter: float = 1.0
    """The saturation pivot or the log scaling factor (must make the log positive: >= 1)."""
    popularity_prior: bool = True
    """Multiply each item's personal score by its indexed `prior` (popularity **
    `[index] prior_exponent`): among items the history points to, well-supported ones first.
    Rule boosts stay additive (docs/search.md)."""
    num: int = 20
    """Results when a request gives no `num`."""
    max_num: int = 1000
    """Largest `num` a request may ask for."""
    rules: list[dict[str, Any]] = field(default_factory=list)
    """Business rules applied to every request: [{name, values, bias}] (request rules on the
    same field name win)."""
    blacklist_actions: list[str] | None = None
    """Actions whose items a user never gets recommended (default: [primary])."""
    max_excluded: int = 1000
    """Most items excluded per request from the user's blacklisted actions (newest first)."""
    backfill: str = "popular"
    """Ranking that fills results up to `num`: popular, trending, hot, or none."""
    available_date_field: str | None = None
    """Item date field: only items available at `currentDate` are returned (when set)."""
    expire_date_field: str | None = None
    """Item date field: items expired at `currentDate` are never returned (when set)."""
    return_self: bool = False
    """Default of the request's `returnSelf`."""
    user_bias: float = 1.0
    """Default of the request's `userBias` (the UR's engine.json userBias): > 0 multiplies the
    boosts of the user-history clauses, < 0 turns the user's history into a filter (only items
    it points to, scored by the rest of the query), 0 leaves the history out of the query."""
    item_bias: float = 1.0
    """Default of the request's `itemBias`, the same for the `item`'s correlators."""
    item_set_bias: float = 1.0
    """Default of the request's `itemSetBias`, the same for the `itemSet`'s correlators."""

    def __post_init__(self) -> None:
        if isinstance(self.indicators, list):
            self.indicators = {str(name): 1.0 for name in self.indicators}
        if self.indicators is not None:
            if not isinstance(self.indicators, dict) or not self.indicators:
                raise SettingsError("indicators", "must be a non-empty table or list")
            for name, boost in self.indicators.items():
                if isinstance(boost, bool) or not isinstance(boost, int | float) or boost <= 0:
                    raise SettingsError(f"indicators.{name}", f"boost must be a number > 0, not {boost!r}")
            self.indicators = {k: float(v) for k, v in self.indicators.items()}
        if isinstance(self.history_decay, bool) or not isinstance(self.history_decay, int | float) \
                or not 0 < self.history_decay <= 1:
            raise SettingsError("history_decay", f"must be a number in (0, 1], not {self.history_decay!r}")
        scorings = self.scoring.values() if isinstance(self.scoring, dict) else [self.scoring]
        for value in scorings:
            if value not in SCORINGS:
                raise SettingsError("scoring", f"must be one of {', '.join(SCORINGS)} (or a table of them), "
                                    f"not {value!r}")
        if self.weight_function not in WEIGHT_FUNCTIONS:
            raise SettingsError("weight_function",
                                f"must be one of {', '.join(WEIGHT_FUNCTIONS)}, not {self.weight_function!r}")
        p = self.weight_parameter
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p < float("inf") \
                or (self.weight_function == "log" and p < 1):
            raise SettingsError("weight_parameter", f"must be a finite number > 0 (>= 1 for log), not {p!r}")
        b = self.secondary_boost
        if isinstance(b, bool) or not isinstance(b, int | float) or not 0 < b < float("inf"):
            raise SettingsError("secondary_boost", f"must be a finite number > 0, not {b!r}")
        if self.backfill not in (*RANKINGS, "none"):
            raise SettingsError("backfill", f"must be one of {', '.join(RANKINGS)}, none; not {self.backfill!r}")
        for key in ("max_query_events", "num", "max_num", "max_excluded"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SettingsError(key, f"must be an integer >= 0, not {value!r}")
        for key in ("user_bias", "item_bias", "item_set_bias"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
                    or value in (float("inf"), float("-inf")):
                raise SettingsError(key, f"must be a finite number, not {value!r}")
            setattr(self, key, float(value))
        if self.num > self.max_num:
            raise SettingsError("num", f"{self.num} exceeds max_num {self.max_num}")
        # Validate config rules with the request validator so both share one definition.
        from .errors import BadRequest
        from .request import parse_rules

        try:
            self.rules = [r.as_dict() for r in parse_rules(self.rules, "rules")]
        except BadRequest as e:  # a settings error naming the config key
            raise SettingsError(e.field, e.problem) from None

    def scoring_of(self, indicator: str) -> str:
        """`terms` or `weights` for this indicator field."""
        if isinstance(self.scoring, dict):
            return self.scoring.get(indicator, "terms")
        return self.scoring

    @property
    def tie_ranking(self) -> str:
        """The ranking that breaks score ties (then id): the backfill's, else popular."""
        return self.backfill if self.backfill != "none" else "popular"

    def default_boosts(self, indicators: Sequence[str], primary: str) -> dict[str, float]:
        """Boosts of indicators the config does not weigh: the primary 1, the others
        `secondary_boost`."""
        return {i: 1.0 if i == primary else float(self.secondary_boost) for i in indicators}

    def effective_primary(self) -> str | None:
        if self.primary:
            return self.primary
        if self.indicators:
            return next(iter(self.indicators))
        return None


@dataclass
class EventSettings:
    """The live event store ([events])."""

    path: str | None = None
    """SQLite file (default: <index.data_dir>/events.db)."""
    retention: dict[str, float] = field(default_factory=dict)
    """Days of events kept per action, e.g. {view = 365}; actions not listed are kept forever."""
    prune_interval: float = 3600.0
    """Seconds between automatic prunes while `cooccur serve` runs (0 = never)."""

    def __post_init__(self) -> None:
        for action, days in self.retention.items():
            if isinstance(days, bool) or not isinstance(days, int | float) or not days > 0 \
                    or days == float("inf"):
                raise SettingsError(f"retention.{action}", f"must be a number of days > 0, not {days!r}", "events")
        if self.prune_interval < 0:
            raise SettingsError("prune_interval", "must be >= 0", "events")


@dataclass
class ServeSettings:
    """The HTTP service ([serve])."""

    host: str = "127.0.0.1"
    """Address the HTTP service listens on (0.0.0.0 for all interfaces)."""
    port: int = 8000
    """TCP port of the HTTP service."""
    workers: int | None = None
    """Worker processes answering requests, forked by gunicorn; they share the index
    (memory-mapped) and the event store (default: one per core, `os.cpu_count()`)."""
    threads: int = 1
    """Threads per worker process (the work is CPU-bound Python: more processes, not more
    threads, use more cores; docs/search.md, "Serving")."""
    token: str | None = field(default_factory=lambda: os.environ.get("COOCCUR_TOKEN") or None)
    """Writes (POST /events.json) need `Authorization: Bearer <token>` (or ?accessKey=) when set."""
    max_body_bytes: int = 1024 * 1024
    """Larger request bodies get 413."""
    max_connections: int = 1000
    """Open connections per process at most; one more gets a JSON 503 and is closed."""
    request_timeout: float = 10.0
    """Seconds to receive one whole request (headers and body); a slower client is cut off."""
    idle_timeout: float = 30.0
    """Seconds a keep-alive connection may sit idle between requests."""

    @property
    def processes(self) -> int:
        """`workers`, or the number of cores."""
        return self.workers if self.workers is not None else os.cpu_count() or 1

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise SettingsError("workers", "must be at least 1", "serve")
        if self.threads < 1:
            raise SettingsError("threads", "must be at least 1", "serve")
        if not 0 <= self.port <= 65535:
            raise SettingsError("port", f"{self.port} is not a TCP port", "serve")
        if self.max_body_bytes < 1024:
            raise SettingsError("max_body_bytes", "must be at least 1024", "serve")
        if self.max_connections < 1:
            raise SettingsError("max_connections", "must be at least 1", "serve")
        for key in ("request_timeout", "idle_timeout"):
            if not getattr(self, key) > 0:
                raise SettingsError(key, "must be a positive number of seconds", "serve")
