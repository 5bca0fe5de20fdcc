"""Request + history + item documents + settings -> an Elasticsearch query body (pure).

The same body goes to the embedded backend and to Elasticsearch (docs/api.md, "The query"):

    {"size": num,
     "query": {"bool": {
        "must":     [{"function_score": {                                  # popularity_prior
                        "query": {"bool": {"should": [<personal clauses>], "minimum_should_match": 1}},
                        "field_value_factor": {"field": "prior", "missing": 1.0},
                        "boost_mode": "multiply"}}],
        "should":   [{"terms": {<field>: [values], "boost": bias}}],     # rules with bias > 0
        "filter":   [{"terms": ...} (bias < 0), {"range": ...} (dates)],
        "must_not": [{"ids": {"values": [excluded]}}, {"terms": ...} (bias == 0)]}},
     "sort": [{"_score": {"order": "desc"}}, {"popular": {"order": "desc"}}, {"id": {"order": "asc"}}]}

A personal clause is a BM25 `term` clause on the indicator field ({field: {value, boost}})
or, with scoring = weights, a `rank_feature` clause on the correlator's LLR.

Why the personal clauses sit in a nested `must` bool with minimum_should_match 1: a `terms`
boost scores a constant on every item having the value, and a bool with a filter makes its
should-clauses optional. Were the boosts and the personal clauses siblings, an item matching
only a category boost would come back as a "recommendation". Nested, an item must match at
least one personal clause to score at all; the boost then only re-orders personal matches.
Items nobody's history points to come only from backfill, which says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from indexer.documents import PRIOR, weights_field
from indexer.features import encode_feature

from .request import QueryRequest, Rule
from .settings import QuerySettings

Body = dict[str, Any]


def score_sort(ranking: str) -> list[Body]:
    """Score, then the ranking (the Universal Recommender's tie-break), then id."""
    return [{"_score": {"order": "desc"}}, {ranking: {"order": "desc"}}, {"id": {"order": "asc"}}]


def effective_rules(request_rules: Iterable[Rule], config_rules: Iterable[Mapping[str, Any]]) -> list[Rule]:
    """Config rules, except those on a field the request has a rule for (the request wins)."""
    request_rules = list(request_rules)
    named = {r.name for r in request_rules}
    merged = [
        Rule(c["name"], tuple(c["values"]), float(c["bias"])) for c in config_rules if c["name"] not in named
    ]
    return merged + request_rules


def excluded_ids(request: QueryRequest, blacklisted: Iterable[str], settings: QuerySettings) -> list[str]:
    """Ids never returned: blacklistItems, the user's items of blacklisted actions, and the
    query item / item set unless returnSelf. Sorted, so bodies are reproducible."""
    ids = set(request.blacklist_items) | set(blacklisted)
    return_self = settings.return_self if request.return_self is None else request.return_self
    if not return_self:
        if request.item:
            ids.add(request.item)
        ids.update(request.item_set)
    return sorted(ids)


def part_biases(request: QueryRequest, settings: QuerySettings) -> tuple[float, float, float]:
    """(user, item, item set) biases: the request's, else the config's ([query] user_bias ...)."""
    def pick(value: float | None, default: float) -> float:
        return default if value is None else value

    return (pick(request.user_bias, settings.user_bias), pick(request.item_bias, settings.item_bias),
            pick(request.item_set_bias, settings.item_set_bias))


def _parts(
    request: QueryRequest,
    history: Mapping[str, Sequence[str]],
    item_docs: Mapping[str, Mapping[str, Any]],
    indicators: Mapping[str, float],
    history_decay: float,
) -> list[tuple[str, list[tuple[str, str, float]]]]:
    """The three parts of the personal query, each as (part, [(field, value, boost before the
    part's bias)]): the user's history (newest first; the k-th newest item of an action
    weighs history_decay ** k), the item's correlators, the item set's correlators."""
    user = [(field, value, boost * history_decay**k)
            for field, boost in indicators.items() for k, value in enumerate(history.get(field, ()))]
    def correlators(items: Sequence[str]) -> list[tuple[str, str, float]]:
        return [(field, value, boost) for field, boost in indicators.items() for i in items
                for value in (item_docs.get(i) or {}).get(field) or ()]

    item = correlators([request.item] if request.item else [])
    return [("user", user), ("item", item), ("itemSet", correlators(request.item_set))]


def personal_terms(
    request: QueryRequest,
    history: Mapping[str, Sequence[str]],
    item_docs: Mapping[str, Mapping[str, Any]],
    indicators: Mapping[str, float],
    history_decay: float = 1.0,
    biases: tuple[float, float, float] | None = None,
) -> list[tuple[str, str, float]]:
    """(indicator field, value, boost) per scoring personal clause: the user's history first
    (newest first), then the item's and the item set's correlators, each part's boosts
    multiplied by its bias (userBias, itemBias, itemSetBias; `biases` default to the
    request's, else 1). A part whose bias is <= 0 scores nothing (< 0: it is a filter, see
    `part_filters`; 0: left out). A (field, value) pair appears once (its first, i.e. the
    user's, boost) so a value in both history and context is not doubled."""
    if biases is None:
        biases = cast(tuple[float, float, float], tuple(
            1.0 if b is None else b for b in (request.user_bias, request.item_bias, request.item_set_bias)))
    (_, user), (_, item), (_, item_set) = _parts(request, history, item_docs, indicators, history_decay)
    weighted = [(t, biases[0]) for t in user]
    # the item's and the item set's correlators field by field, the item's first in each
    order = {field: n for n, field in enumerate(indicators)}
    weighted += sorted([(t, biases[1]) for t in item] + [(t, biases[2]) for t in item_set],
                       key=lambda tb: order[tb[0][0]])
    terms: list[tuple[str, str, float]] = []
    seen: set[tuple[str, str]] = set()
    for (field, value, boost), bias in weighted:
        if bias > 0 and (field, value) not in seen:
            seen.add((field, value))
            terms.append((field, value, boost * bias))
    return terms


def part_filters(
    request: QueryRequest,
    history: Mapping[str, Sequence[str]],
    item_docs: Mapping[str, Mapping[str, Any]],
    indicators: Mapping[str, float],
    biases: tuple[float, float, float],
) -> list[Body]:
    """Filters of the parts with a negative bias (the UR's meaning: that part must match,
    it no longer scores): only items holding one of the part's (field, value) pairs pass.
    A negative part with nothing to match (a user without usable history, an item without
    correlators) matches nothing, as in the UR: no results."""
    filters: list[Body] = []
    asked = {"user": bool(request.user or request.history is not None), "item": bool(request.item),
             "itemSet": bool(request.item_set)}
    for (name, part), bias in zip(_parts(request, history, item_docs, indicators, 1.0), biases, strict=True):
        if bias >= 0 or not asked[name]:
            continue
        values: dict[str, list[str]] = {}
        for field, value, _ in part:
            values.setdefault(field, [])
            if value not in values[field]:
                values[field].append(value)
        if not values:
            filters.append({"ids": {"values": []}})  # nothing to match: no item passes
            continue
        filters.append({"bool": {"should": [{"terms": {f: v}} for f, v in values.items()],
                                 "minimum_should_match": 1}})
    return filters


def personal_clauses(
    terms: Iterable[tuple[str, str, float]], settings: QuerySettings, weighted: Iterable[str] = ()
) -> list[Body]:
    """One clause per personal term: a BM25 `term` clause on the indicator field, or, for the
    fields in `weighted`, a `rank_feature` clause on the correlator's weight in the field's
    `<indicator>_w` rank_features (docs/search.md): the items listing the value as a
    correlator score f(LLR) times the boost."""
    weighted = set(weighted)
    function = {"linear": {}, "saturation": {"pivot": settings.weight_parameter},
                "log": {"scaling_factor": settings.weight_parameter}}[settings.weight_function]
    clauses: list[Body] = []
    for field, value, boost in terms:
        if field in weighted:
            clauses.append({"rank_feature": {
                "field": f"{weights_field(field)}.{encode_feature(value)}",
                settings.weight_function: function, "boost": boost}})
        else:
            clauses.append({"term": {field: {"value": value, "boost": boost}}})
    return clauses


def rule_clauses(
    request: QueryRequest, settings: QuerySettings, now: str
) -> tuple[list[Body], list[Body], list[Body]]:
    """(should, filter, must_not) clauses from business rules and dates."""
    should: list[Body] = []
    filters: list[Body] = []
    must_not: list[Body] = []
    for rule in effective_rules(request.rules, settings.rules):
        if rule.bias > 0:
            should.append({"terms": {rule.name: list(rule.values), "boost": rule.bias}})
        elif rule.bias < 0:
            filters.append({"terms": {rule.name: list(rule.values)}})
        else:
            must_not.append({"terms": {rule.name: list(rule.values)}})
    if request.date_range is not None:
        dr = request.date_range
        bounds = {}
        if dr.after is not None:
            bounds["gt"] = dr.after
        if dr.before is not None:
            bounds["lt"] = dr.before
        filters.append({"range": {dr.name: bounds}})
    current = request.current_date or now
    if settings.available_date_field:
        filters.append(_date_or_missing(settings.available_date_field, {"lte": current}))
    if settings.expire_date_field:
        filters.append(_date_or_missing(settings.expire_date_field, {"gt": current}))
    return should, filters, must_not


def _date_or_missing(field: str, bounds: dict[str, str]) -> Body:
    """The date is in bounds, or the item has no such date: an item without an expire date
    never expires, one without an available date is always available."""
    return {"bool": {"should": [
        {"range": {field: bounds}},
        {"bool": {"must_not": [{"exists": {"field": field}}]}},
    ]}}


def _bool(must: list[Body], should: list[Body], filters: list[Body], must_not: list[Body]) -> Body:
    out: Body = {}
    for key, clauses in (("must", must), ("should", should), ("filter", filters), ("must_not", must_not)):
        if clauses:
            out[key] = clauses
    return {"bool": out}


def build_query(
    request: QueryRequest,
    history: Mapping[str, Sequence[str]],
    item_docs: Mapping[str, Mapping[str, Any]],
    settings: QuerySettings,
    *,
    indicators: Mapping[str, float],
    excluded: Sequence[str],
    now: str,
    num: int,
    weighted: Iterable[str] = (),
    prior: bool = False,
    extra_filters: Sequence[Body] = (),
) -> Body | None:
    """The personal query body, or None when there is nothing personal to ask (no history,
    no item context): then only backfill can answer. `weighted`: indicator fields scored by
    correlator weights; `prior`: multiply the personal part by each item's `prior`;
    `extra_filters`: more filters (`part_filters`: parts with a negative bias)."""
    terms = personal_terms(request, history, item_docs, indicators, settings.history_decay,
                           part_biases(request, settings))
    if not terms:
        return None
    should, filters, must_not = rule_clauses(request, settings, now)
    filters = [*extra_filters, *filters]
    if excluded:
        must_not = [{"ids": {"values": list(excluded)}}, *must_not]
    personal: Body = {"bool": {"should": personal_clauses(terms, settings, weighted), "minimum_should_match": 1}}
    if prior:
        # Only the personal part: rule boosts stay additive, as in the Universal Recommender.
        # `missing`: documents added live (an item `$set` before its first training) have no prior.
        personal = {"function_score": {
            "query": personal, "field_value_factor": {"field": PRIOR, "missing": 1.0}, "boost_mode": "multiply"}}
    return {"size": num, "query": _bool([personal], should, filters, must_not),
            "sort": score_sort(settings.tie_ranking)}


def build_backfill(
    request: QueryRequest,
    settings: QuerySettings,
    *,
    ranking: str,
    excluded: Sequence[str],
    now: str,
    size: int,
    extra_filters: Sequence[Body] = (),
) -> Body:
    """The backfill body: every item passing the same filters and exclusions (plus `excluded`,
    which the caller extends with the personal results), ordered by rule boosts, then by the
    ranking (items without it last), then by id."""
    should, filters, must_not = rule_clauses(request, settings, now)
    filters = [*extra_filters, *filters]
    if excluded:
        must_not = [{"ids": {"values": list(excluded)}}, *must_not]
    sort = [{"_score": {"order": "desc"}}, {ranking: {"order": "desc"}}, {"id": {"order": "asc"}}]
    if not filters:
        # A bool without must/filter requires one should-clause to match (Lucene's pure
        # disjunction, whatever minimum_should_match says): a match_all filter keeps boosts
        # re-ordering backfill without restricting it. Without boosts it makes every score 0
        # (an empty bool would be a match_all scoring 1), as the UR's backfill scores.
        filters = [{"match_all": {}}]
    return {"size": size, "query": _bool([], should, filters, must_not), "sort": sort}
