"""The Python API used by the CLI and the HTTP service: history + request -> ranked items.

    rec = Recommender(backend, EventStore(path), QuerySettings(indicators={"purchase": 1, "view": 0.5}))
    rec.ingest(parse_events({...}))                      # live history and item changes
    rec.recommend({"user": "u1", "num": 10}).to_json()   # {"itemScores": [...], "version": ...}
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from indexer.backend import Backend, Document, Hit, IndexSchema
from indexer.documents import PRIOR, weights_field
from indexer.errors import BackendUnavailable, IndexerError

from .builder import (
    build_backfill,
    build_query,
    effective_rules,
    excluded_ids,
    part_biases,
    part_filters,
    personal_terms,
)
from .errors import BadRequest, ModelMismatch
from .eventstore import Event, EventStore, InsertReport
from .request import (
    ItemScore,
    QueryRequest,
    QueryResponse,
    check_window,
    format_time,
    normalize_date,
    parse_query,
)
from .settings import RANKINGS, QuerySettings

log = logging.getLogger(__name__)
DEFAULT_PRIMARY = "purchase"
MODEL_TTL = 30.0
"""Seconds a backend without cheap version reads (Elasticsearch) keeps the served model cached;
a search answered by another version refreshes it at once."""


@dataclass(frozen=True)
class ServedModel:
    """What serving knows of the model behind the current index version: its primary action
    and indicators (primary first), where they were read, and the index's keyword fields."""

    primary: str | None = None
    indicators: tuple[str, ...] = ()
    source: str = "none"
    """`index` (the model manifest's, recorded with the version), `index fields` (read from
    the version's correlator-weight fields), `[train]` (the config's, when the index records
    nothing) or `none`."""
    version: str | None = None
    model_id: str | None = None
    keyword_fields: frozenset[str] | None = None
    """The index's keyword fields (None: the backend does not tell)."""

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "primary": self.primary, "indicators": list(self.indicators),
                "version": self.version, "model_id": self.model_id}


def served_model_of(meta: Mapping[str, Any] | None, schema: IndexSchema | None, version: str | None,
                    model_id: str | None = None) -> ServedModel:
    """The model of an index version, from what the version records: `primary` and
    `indicators` (the model manifest's, when the indexer recorded them), else the indicators
    whose correlator weights the version indexed (`<indicator>_w` rank_features fields, written
    in the manifest's order, primary first)."""
    meta = meta or {}
    fields = frozenset(schema.keyword_fields) if schema is not None else None
    indicators = meta.get("indicators")
    if isinstance(indicators, list | tuple) and indicators and all(isinstance(i, str) and i for i in indicators):
        primary = meta.get("primary")
        primary = primary if isinstance(primary, str) and primary else indicators[0]
        return ServedModel(primary, tuple(indicators), "index", version, model_id, fields)
    if schema is not None:
        suffix = len(weights_field(""))
        found = [f[:-suffix] for f in schema.feature_fields
                 if f.endswith(weights_field("")) and f[:-suffix] in schema.keyword_fields]
        if found:
            return ServedModel(found[0], tuple(found), "index fields", version, model_id, fields)
    return ServedModel(None, (), "none", version, model_id, fields)


@dataclass(frozen=True)
class Plan:
    """The settings one request runs with, resolved from the config and the served model."""

    model: ServedModel
    indicators: dict[str, float] | None
    """Indicator fields and boosts (None: the actions of the user's history that are fields)."""
    primary: str
    blacklist_actions: list[str]


class Recommender:
    """Answers recommendation requests from a backend, an event store and settings.

    Indicators, the primary action and the blacklisted actions are the config's ([query]) where
    it sets them, else the served index's model's (`served_model`), else `fallback_model`'s
    (the CLI passes [train]'s), else the user's history's actions.

    Thread-safe: it holds no per-request state (the event store keeps a connection per thread).
    """

    def __init__(
        self,
        backend: Backend,
        events: EventStore | None,
        settings: QuerySettings | None = None,
        *,
        date_fields: Sequence[str] = ("availableDate", "expireDate", "date"),
        clock: Callable[[], float] = time.time,
        fallback_model: ServedModel | None = None,
    ) -> None:
        self.backend = backend
        self.events = events
        self.settings = settings or QuerySettings()
        self.date_fields = set(date_fields)
        self.clock = clock
        self.fallback_model = fallback_model
        self._served: tuple[float, ServedModel] | None = None
        self._warned: set[tuple[str | None, str]] = set()

    # ------------------------------------------------------------------ the served model
    def served_model(self) -> ServedModel:
        """The current index version's model (cached per version), with `fallback_model`'s
        primary and indicators when the version records none."""
        snapshot = getattr(self.backend, "snapshot", None)
        cached = self._served
        if snapshot is not None:  # embedded: the current version's meta, in memory
            try:
                snap = snapshot()
            except BackendUnavailable:
                return self._with_fallback(ServedModel())
            if cached is not None and cached[1].version == snap.version:
                return cached[1]
            model = served_model_of(getattr(snap.base, "meta", None), snap.schema, snap.version,
                                    (getattr(snap.base, "meta", None) or {}).get("model_id"))
        else:
            if cached is not None and time.monotonic() - cached[0] < MODEL_TTL:
                return cached[1]
            try:
                current = [v for v in self.backend.versions() if v.current]
            except IndexerError:
                return self._with_fallback(ServedModel())
            if not current:
                return self._with_fallback(ServedModel())
            v = current[0]
            schema = getattr(v, "schema", None)
            meta = {"primary": getattr(v, "primary", None), "indicators": getattr(v, "indicators", None)}
            model = served_model_of(meta, schema, v.name, v.model_id)
        model = self._with_fallback(model)
        self._served = (time.monotonic(), model)
        return model

    def _with_fallback(self, model: ServedModel) -> ServedModel:
        fb = self.fallback_model
        if model.indicators or fb is None or not fb.indicators:
            return model
        return ServedModel(fb.primary or fb.indicators[0], fb.indicators, fb.source, model.version,
                           model.model_id, model.keyword_fields)

    def _saw_version(self, version: str | None) -> None:
        """A search was answered by `version`: a backend without snapshots re-reads the model
        at the next request when the version changed."""
        cached = self._served
        if cached is not None and version is not None and cached[1].version not in (None, version) \
                and getattr(self.backend, "snapshot", None) is None:
            self._served = None

    def check_model(self) -> ServedModel:
        """At start (`serve`, `recommend`): configured indicators ([query], else [train] when
        the index records no model) that the served index lacks are an error (ModelMismatch).
        Without a usable index there is nothing to check yet."""
        model = self.served_model()
        if self.settings.indicators:
            section, configured = "query", list(self.settings.indicators)
        elif model.source == "[train]":
            section, configured = "train", list(model.indicators)
        else:
            if model.source == "none" and model.version is not None:
                plan = self.plan(model)
                log.warning("index version %s records no model (primary, indicators) and the config names "
                            "none: queries use the user's actions that are index fields, primary %r, "
                            "blacklisted actions %s; set [query] indicators (or [train]) to say",
                            model.version, plan.primary, plan.blacklist_actions)
            return model
        if model.source in ("index", "index fields"):
            known: Collection[str] = model.indicators
        elif model.keyword_fields is not None:
            known = model.keyword_fields
        else:
            return model
        missing = [i for i in configured if i not in known]
        if missing:
            served = list(model.indicators) if model.source in ("index", "index fields") else sorted(known)
            what = "its model's indicators" if model.source in ("index", "index fields") else "its fields"
            raise ModelMismatch(section, missing, model.version, served, what)
        return model

    def plan(self, model: ServedModel | None = None) -> Plan:
        """Indicators, primary and blacklisted actions for one request."""
        model = model or self.served_model()
        s = self.settings
        indicators: dict[str, float] | None
        if s.indicators:
            # (QuerySettings.__post_init__ has made a list of names a dict)
            indicators = dict(cast(dict[str, float], s.indicators))
            if model.keyword_fields is not None:
                # After a switch to a version without one of them: serve with the others
                # (`check_model` makes this an error at start).
                lacking = [f for f in indicators if f not in model.keyword_fields]
                if lacking:
                    if (model.version, ",".join(lacking)) not in self._warned:
                        self._warned.add((model.version, ",".join(lacking)))
                        log.warning("index version %s has no field for configured indicator(s) %s: "
                                    "left out of queries", model.version, ", ".join(lacking))
                    indicators = {f: b for f, b in indicators.items() if f not in lacking} or None
        else:
            indicators = None
        primary = s.effective_primary() or model.primary or DEFAULT_PRIMARY
        if indicators is None and model.indicators:
            indicators = s.default_boosts(model.indicators, primary)
        black = list(s.blacklist_actions) if s.blacklist_actions is not None else [primary]
        return Plan(model, indicators, primary, black)

    @property
    def primary(self) -> str:
        return self.plan().primary

    @property
    def blacklist_actions(self) -> list[str]:
        return self.plan().blacklist_actions

    def indicators_for(self, history: Mapping[str, Sequence[str]], plan: Plan | None = None) -> dict[str, float]:
        """Indicator fields and boosts: the plan's, else the actions of this history (the
        primary first; boosts as `[query] secondary_boost` says), else the primary alone."""
        plan = plan or self.plan()
        if plan.indicators:
            return dict(plan.indicators)
        actions = [a for a in history if not a.startswith("$")]
        fields = plan.model.keyword_fields
        if fields is not None:
            # A term on a field the index lacks is an error in the embedded backend.
            actions = [a for a in actions if a in fields]
        ordered = [plan.primary] + sorted(a for a in actions if a != plan.primary)
        return self.settings.default_boosts(ordered, plan.primary)

    def index_schema(self) -> IndexSchema | None:
        """The current index's fields (None: no current version, or one that does not say)."""
        try:
            return self.backend.current_schema()
        except IndexerError:
            return None

    def scoring_for(self, indicators: Mapping[str, float], schema: IndexSchema | None) -> tuple[list[str], bool]:
        """(indicator fields scored by correlator weights, whether to apply the prior), as
        configured, less what the index of `schema` lacks (an index built without weights, or
        before priors existed; None: the backend cannot tell)."""
        weighted = [f for f in indicators if self.settings.scoring_of(f) == "weights"]
        prior = self.settings.popularity_prior
        if schema is not None:
            lacking = [f for f in weighted if weights_field(f) not in schema.feature_fields]
            if lacking:
                log.debug("index has no correlator weights for %s: term scoring", lacking)
                weighted = [f for f in weighted if f not in lacking]
            prior = prior and PRIOR in schema.number_fields
        return weighted, prior

    @staticmethod
    def check_rules(request: QueryRequest, schema: IndexSchema | None) -> None:
        """Rules on fields the index (of `schema`) does not have are the client's mistake: say which."""
        if schema is None or not (request.rules or request.date_range):
            return
        fields = set(schema.all_fields())
        for i, rule in enumerate(request.rules):
            if rule.name not in fields:
                raise BadRequest(f"{request.rules_key}[{i}].name", f"{rule.name!r} is not a field of the index")
            if rule.name != "id" and rule.name not in schema.keyword_fields:
                raise BadRequest(f"{request.rules_key}[{i}].name", f"{rule.name!r} is not a keyword field: rules "
                                 "match keyword values (dates go in dateRange)")
        if request.date_range and request.date_range.name not in schema.date_fields:
            raise BadRequest("dateRange.name", f"{request.date_range.name!r} is not a date field of the index")

    # ------------------------------------------------------------------ queries
    def user_history(self, request: QueryRequest, plan: Plan | None = None) -> tuple[dict[str, list[str]], list[str]]:
        """(query history per action, newest first and capped, only the request's
        `eventNames` when it names some; items of the blacklisted actions)."""
        plan = plan or self.plan()
        cap = self.settings.max_query_events
        wanted = request.event_names
        if request.history is not None:
            history = {a: list(dict.fromkeys(items))[:cap] for a, items in request.history.items()}
            blacklisted = [i for a in plan.blacklist_actions for i in history.get(a, [])]
            if wanted is not None:
                history = {a: items for a, items in history.items() if a in wanted}
            return history, blacklisted
        if not request.user or self.events is None:
            return {}, []
        actions = list(plan.indicators) if plan.indicators else None
        if wanted is not None:
            actions = [a for a in (actions if actions is not None else wanted) if a in wanted]
        excluded = self.settings.max_excluded
        if actions is None:  # every action of the user's
            history = self.events.history(request.user, None, cap)
            black = self.events.history(request.user, plan.blacklist_actions, excluded)
            return history, [i for items in black.values() for i in items]
        # the history and the blacklisted items in one read of the store
        limits = dict.fromkeys(actions, cap)
        for a in plan.blacklist_actions:
            limits[a] = max(limits.get(a, 0), excluded)
        rows = self.events.histories(request.user, limits)
        history = {a: rows[a][:cap] for a in actions if a in rows}
        return history, [i for a in dict.fromkeys(plan.blacklist_actions) for i in rows.get(a, ())[:excluded]]

    def check_event_names(self, request: QueryRequest, plan: Plan) -> None:
        """`eventNames` must be indicators of this query (when they are known)."""
        if request.event_names is None or not plan.indicators:
            return
        for i, name in enumerate(request.event_names):
            if name not in plan.indicators:
                raise BadRequest(f"eventNames[{i}]", f"{name!r} is not an indicator of the served model "
                                                     f"({', '.join(plan.indicators)})")

    def recommend(self, request: QueryRequest | Mapping[str, Any]) -> QueryResponse:
        """Answer one request: personal matches first, then backfill up to `from` + `num`;
        the `num` results from position `from` are returned."""
        if not isinstance(request, QueryRequest):
            request = parse_query(request, max_num=self.settings.max_num)
        num = request.num or self.settings.num
        check_window(request.start, num)
        want = request.start + num
        plan = self.plan()
        schema = self.index_schema()  # read once: each read checks the index for a switch
        self.check_rules(request, schema)
        self.check_event_names(request, plan)
        now = format_time(datetime.fromtimestamp(self.clock(), tz=UTC))
        history, blacklisted = self.user_history(request, plan)
        indicators = self.indicators_for(history, plan)
        context_ids = ([request.item] if request.item else []) + list(request.item_set)
        item_docs = self.backend.get(context_ids) if context_ids else {}
        excluded = excluded_ids(request, blacklisted, self.settings)
        biases = part_biases(request, self.settings)
        filters = part_filters(request, history, item_docs, indicators, biases)

        version: str | None = None
        scores: list[ItemScore] = []
        queries: list[dict[str, Any]] = []
        weighted, prior = self.scoring_for(indicators, schema)
        body = build_query(
            request, history, item_docs, self.settings, indicators=indicators, excluded=excluded, now=now,
            num=want, weighted=weighted, prior=prior, extra_filters=filters,
        )
        need_docs = request.explain or request.with_ranks
        if body is not None:
            # the hits' correlator weights are never read here: leave them out of the sources
            # (most of a model document's bytes; docs/search.md, "_source")
            unused = list(schema.feature_fields) if schema is not None else \
                [weights_field(i) for i in dict.fromkeys([*indicators, *plan.model.indicators])]
            if unused:
                body["_source"] = {"excludes": unused}
            queries.append(body)
            result = self.backend.search(body)
            version = result.version
            wanted = self._query_values(request, history, item_docs, indicators, biases)
            docs = self._docs_of(result.hits)
            for hit in result.hits:
                doc = docs.get(hit.id, {})
                # (the few query values looked up in the hit's list: no set of the list built)
                matched = {f: sorted(found) for f, values in wanted.items()
                           if (found := values.intersection(doc.get(f) or ()))}
                score = ItemScore(hit.id, hit.score, {"personal": list(matched)})
                if request.explain:
                    score.explain = {"matched": matched, "rules": self._rules_matched(request, doc)}
                if request.with_ranks:
                    score.ranks = _ranks(doc)
                scores.append(score)

        ranking = self.settings.backfill
        if len(scores) < want and ranking != "none":
            body2 = build_backfill(
                request, self.settings, ranking=ranking,
                excluded=sorted(set(excluded) | {s.item for s in scores}), now=now, size=want - len(scores),
                extra_filters=filters,
            )
            queries.append(body2)
            result = self.backend.search(body2)
            version = version or result.version
            docs = self._docs_of(result.hits) if need_docs else {}
            for hit in result.hits:
                score = ItemScore(hit.id, hit.score, {"backfill": ranking})
                doc = docs.get(hit.id, {})
                if request.explain:
                    score.explain = {
                        ranking: doc.get(ranking), "rules": self._rules_matched(request, doc),
                    }
                if request.with_ranks:
                    score.ranks = _ranks(doc)
                scores.append(score)
        self._saw_version(version)

        explain = None
        if request.explain:
            explain = {
                "model": plan.model.as_json(),
                "indicators": indicators,
                "primary": plan.primary,
                "blacklistActions": plan.blacklist_actions,
                "history": history,
                "biases": dict(zip(("userBias", "itemBias", "itemSetBias"), biases, strict=True)),
                "excluded": excluded,
                "rules": [r.as_dict() for r in effective_rules(request.rules, self.settings.rules)],
                "currentDate": request.current_date or now,
                "from": request.start,
                "queries": queries,
            }
        return QueryResponse(scores[request.start:want], version or plan.model.version, explain)

    def _query_values(
        self, request: QueryRequest, history: Mapping[str, Sequence[str]],
        item_docs: Mapping[str, Document], indicators: Mapping[str, float],
        biases: tuple[float, float, float],
    ) -> dict[str, set[str]]:
        wanted: dict[str, set[str]] = {}
        for field, value, _ in personal_terms(request, history, item_docs, indicators,
                                              self.settings.history_decay, biases):
            wanted.setdefault(field, set()).add(value)
        return wanted

    def _docs_of(self, hits: Iterable[Hit]) -> dict[str, Document]:
        hits = list(hits)
        docs = {h.id: h.source for h in hits if h.source is not None}
        missing = [h.id for h in hits if h.source is None]
        if missing:
            docs.update(self.backend.get(missing))
        return docs

    def _rules_matched(self, request: QueryRequest, doc: Mapping[str, Any]) -> list[str]:
        out: list[str] = []
        for rule in effective_rules(request.rules, self.settings.rules):
            if rule.bias > 0 and set(_as_list(doc.get(rule.name))) & set(rule.values) and rule.name not in out:
                out.append(rule.name)
        return out

    # ------------------------------------------------------------------ events
    def check_events(self, events: Sequence[Event]) -> None:
        """Refuse item properties that would overwrite what the model owns (id, rankings,
        indicator fields); raises `BadRequest` naming the event's index and property."""
        plan = self.plan()
        indicators = [*(plan.indicators or {}), *plan.model.indicators, plan.primary]
        reserved = {"id", *RANKINGS, PRIOR, *indicators, *map(weights_field, indicators)}
        for i, e in enumerate(events):
            if e.is_item_change and e.properties:
                for name in e.properties:
                    at = f"[{i}].properties.{name}" if len(events) > 1 else f"properties.{name}"
                    if name in reserved:
                        raise BadRequest(at, "is reserved (item id, ranking or indicator field)")
                    if e.event == "$set" and name in self.date_fields:
                        value = e.properties[name]
                        if isinstance(value, list):
                            if len(value) != 1:
                                raise BadRequest(at, f"a date field holds one date, not {len(value)} values")
                            value = value[0]
                        normalize_date(value, at)

    def ingest(self, events: Sequence[Event], *, with_ids: bool = False) -> InsertReport:
        """Store events; item `$set` / `$unset` / `$delete` change the current index at once.
        `with_ids`: the report also has each event's id."""
        if self.events is None:
            raise BadRequest("(body)", "this recommender has no event store")
        self.check_events(events)
        report = self.events.insert(events, with_ids=with_ids)
        if report.item_changes:
            self.apply_item_changes(report.item_changes)
        return report

    def apply_item_changes(self, events: Sequence[Event]) -> int:
        """Apply item events to the current index's documents (in time order); returns the
        documents changed. Without an index yet, the events wait in the store for training."""
        ordered = sorted(events, key=lambda e: e.time_ms)
        items = list(dict.fromkeys(e.entity_id for e in ordered))
        try:
            docs: dict[str, Document | None] = dict(self.backend.get(items))
        except BackendUnavailable as exc:
            log.warning("item changes stored but not applied to the index (%s)", exc)
            return 0
        for e in ordered:
            if e.event == "$delete":
                docs[e.entity_id] = None
                continue
            doc = docs.get(e.entity_id)
            if doc is None and e.event == "$unset":
                continue  # nothing to unset: an unknown item must not become an empty document
            doc = {"id": e.entity_id} if doc is None else dict(doc)
            for name, value in (e.properties or {}).items():
                if e.event == "$unset":
                    doc.pop(name, None)
                else:
                    doc[name] = self._field_value(name, value)
            docs[e.entity_id] = doc
        schema = self.index_schema()
        if schema is not None:
            known = set(schema.all_fields())
            for doc in (d for d in docs.values() if d is not None):
                for name in [n for n in doc if n not in known]:
                    # Stored in the event store: the next training run indexes it.
                    log.info("item %s: property %r is not in the current index yet", doc["id"], name)
                    del doc[name]
        upserts = [d for d in docs.values() if d is not None]
        deletes = [i for i, d in docs.items() if d is None]
        if upserts:
            self.backend.upsert(upserts)
        if deletes:
            self.backend.delete(deletes)
        return len(upserts) + len(deletes)

    def _field_value(self, name: str, value: Any) -> Any:
        """A property value as the index stores it: dates a single ISO string, else keywords."""
        values = _as_list(value)
        if name in self.date_fields:
            return normalize_date(values[0], f"properties.{name}") if values else None
        return values


def _ranks(doc: Mapping[str, Any]) -> dict[str, float]:
    """The item's ranking values (`withRanks`); an item without one (no events in the
    ranking window, or added live) has 0."""
    return {r: float(doc.get(r) or 0.0) for r in RANKINGS}


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [json.dumps(v) if isinstance(v, bool) else str(v) for v in items]
