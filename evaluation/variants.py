"""Query variants: which indicator fields a test user's history is sent to, and how it is
scored (ours through the live Recommender, or the Universal Recommender's shape), and the loop
that queries every evaluated user under every variant and scores the results."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

from indexer.backend import Backend
from indicators.validate import format_time
from query.builder import build_backfill, score_sort
from query.recommender import Recommender
from query.request import QueryRequest
from query.settings import QuerySettings

from .measures import Metrics, score_rankings
from .splits import PreparedSplit

SCORINGS = ("ours", "ur")
# Each user's history sent with a query is capped by QuerySettings.max_query_events; a
# user's excluded (already seen) items by max_excluded, as the live service caps them.


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
        now = format_time(datetime.now(UTC))
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
