"""Settings of the indicator job ([train] in the config file), with their defaults.

Documented once, in docs/configuration.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|seconds?|m|min|minutes?|h|hours?|d|days?|w|weeks?)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'30 days', '12h', '2 weeks' -> timedelta."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"cannot read duration {text!r} (use e.g. '30 days', '12 hours')")
    unit = m.group(2)[0]
    return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[unit])


@dataclass
class IndicatorSettings:
    """One indicator: the action whose items correlate with the primary action ([[train.indicators]])."""

    name: str
    """The action (event name); also the item document's field name."""
    max_correlators: int = 100
    """Correlators kept per item, best LLR first (Mahout's maxSimilaritiesPerItem, 50 there
    and in the UR; 100 was better on validation splits: docs/evaluation.md)."""
    min_llr: float | None = None
    """Drop correlators scoring below this LLR (none by default)."""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("an indicator needs a name (the action it counts)")
        if self.max_correlators < 1:
            raise ValueError(f"indicator {self.name}: max_correlators must be >= 1")


@dataclass
class InputSettings:
    """How event files are read ([train.input])."""

    format: str = "auto"
    """auto (by file extension), csv, tsv, jsonl (PredictionIO events) or parquet."""
    user: str = "user"
    """Column of the user id."""
    event: str = "event"
    """Column of the event (action) name."""
    item: str = "item"
    """Column of the item id."""
    time: str = "time"
    """Column names for CSV/TSV/Parquet. Times: ISO-8601 or epoch seconds."""

    def __post_init__(self) -> None:
        if self.format not in ("auto", "csv", "tsv", "jsonl", "parquet"):
            raise ValueError(f"input format must be auto, csv, tsv, jsonl or parquet, not {self.format!r}")


@dataclass
class RankingSettings:
    """Popularity rankings for backfill ([train.rankings])."""

    events: list[str] | None = None
    """Actions counted; default: the primary action."""
    window: str | None = None
    """Duration ending at `end`, e.g. '30 days'; default: all events."""
    end: str | None = None
    """ISO-8601 end of the window; default: the newest event."""

    def __post_init__(self) -> None:
        if self.window is not None:
            parse_duration(self.window)


@dataclass
class TrainSettings:
    """Everything `cooccur train` needs besides the input paths ([train])."""

    primary: str = "purchase"
    """The primary action: what recommendations should lead to (e.g. purchase)."""
    indicators: list[IndicatorSettings] = field(default_factory=list)
    """Indicators in order, primary first; default: the primary action alone."""
    max_interactions_per_user: int = 500
    """Per user and action, keep at most this many items (Mahout's default 500); 0 = no cap."""
    max_users_per_item: int = 500
    """Per item and action, keep at most this many users (applied after the user cap); 0 = no cap."""
    min_events_per_user: int = 0
    """Users with fewer primary-action events than this are left out of the counting: none
    of their events (of any indicator action) count, and N, the users in the LLR, leaves
    them out (the Universal Recommender's minEventsPerUser: raw events, repeats included,
    before downsampling). 0 = everyone counts, N = users with an event of any indicator
    action; 1 = only users with a primary event count, the UR's N (docs/ur-migration.md).
    Rankings still count every event."""
    seed: int = 0
    """Seed of the downsampling hash: same seed, same model."""
    save_state: bool = True
    """Save the interactions and pair counts with the model (state/) so `cooccur update`
    can add new events without retraining; costs training time and disk."""
    input: InputSettings = field(default_factory=InputSettings)
    """How event files are read: [train.input]."""
    rankings: RankingSettings = field(default_factory=RankingSettings)
    """Popularity rankings: [train.rankings]."""
    spark_master: str = "local[*]"
    """Spark master: local[*] (all cores of this machine) or a cluster URL (docs/cluster.md)."""
    spark_options: dict[str, str] = field(default_factory=dict)
    """Extra Spark settings, e.g. {"spark.driver.memory" = "8g"}."""

    _nested = {
        "indicators": IndicatorSettings,
        "input": InputSettings,
        "rankings": RankingSettings,
    }

    def __post_init__(self) -> None:
        self.indicators = [
            IndicatorSettings(**i) if isinstance(i, dict) else i for i in self.indicators
        ]
        if not self.indicators:
            self.indicators = [IndicatorSettings(self.primary)]
        names = [i.name for i in self.indicators]
        if self.primary not in names:
            self.indicators.insert(0, IndicatorSettings(self.primary))
        elif names[0] != self.primary:
            primary = self.indicators.pop(names.index(self.primary))
            self.indicators.insert(0, primary)
        names = [i.name for i in self.indicators]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"indicator(s) listed twice: {sorted(dupes)}")
        for cap in ("max_interactions_per_user", "max_users_per_item"):
            if getattr(self, cap) < 0:
                raise ValueError(f"{cap} must be >= 0 (0 = no cap)")
        m = self.min_events_per_user
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ValueError(f"min_events_per_user must be a whole number >= 0 (0 = no minimum), not {m!r}")

    @property
    def actions(self) -> list[str]:
        """Indicator actions, primary first."""
        return [i.name for i in self.indicators]

    def indicator(self, name: str) -> IndicatorSettings:
        return next(i for i in self.indicators if i.name == name)
