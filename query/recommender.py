"""The Python API used by the CLI and the HTTP service: history + request -> ranked items.

    rec = Recommender(backend, EventStore(path), QuerySettings(indicators={"purchase": 1, "view": 0.5}))
    rec.ingest(parse_events({...}))                      # live history and item changes
    rec.recommend({"user": "u1", "num": 10}).to_json()   # {"itemScores": [...], "version": ...}
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from indexer.backend import Backend, Document, Hit, IndexSchema
from indexer.documents import PRIOR, weights_field
from indexer.errors import BackendUnavailable

from .builder import (
    build_backfill,
    build_query,
    effective_rules,
    excluded_ids,
    personal_terms,
)
from .errors import BadRequest
from .eventstore import Event, EventStore, InsertReport
from .request import (
    ItemScore,
    QueryRequest,
    QueryResponse,
    format_time,
    normalize_date,
    parse_query,
)
from .settings import RANKINGS, QuerySettings

log = logging.getLogger(__name__)
DEFAULT_PRIMARY = "purchase"


class Recommender:
    """Answers recommendation requests from a backend, an event store and settings.

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
    ) -> None:
        self.backend = backend
        self.events = events
        self.settings = settings or QuerySettings()
        self.date_fields = set(date_fields)
        self.clock = clock

    # ------------------------------------------------------------------ settings
    @property
    def primary(self) -> str:
        return self.settings.effective_primary() or DEFAULT_PRIMARY

    def indicators_for(self, history: Mapping[str, Sequence[str]]) -> dict[str, float]:
        """Indicator fields and boosts: configured, else the actions of this history (boost
        1.0, primary first), else the primary alone."""
        if self.settings.indicators:
            return dict(self.settings.indicators)
        actions = [a for a in history if not a.startswith("$")]
        schema = self.index_schema()
        if schema is not None:
            # A term on a field the index lacks is an error in the embedded backend.
            actions = [a for a in actions if a in schema.keyword_fields]
        ordered = [self.primary] + sorted(a for a in actions if a != self.primary)
        return {a: 1.0 for a in ordered}

    def index_schema(self) -> IndexSchema | None:
        """The current index's fields, when the backend can tell (the embedded one can)."""
        snapshot = getattr(self.backend, "snapshot", None)
        if snapshot is None:
            return None
        try:
            return snapshot().schema
        except BackendUnavailable:
            return None

    def scoring_for(self, indicators: Mapping[str, float]) -> tuple[list[str], bool]:
        """(indicator fields scored by correlator weights, whether to apply the prior), as
        configured, less what the current index lacks (an index built without weights, or
        before priors existed) when the backend can tell."""
        weighted = [f for f in indicators if self.settings.scoring_of(f) == "weights"]
        prior = self.settings.popularity_prior
        schema = self.index_schema()
        if schema is not None:
            lacking = [f for f in weighted if weights_field(f) not in schema.feature_fields]
            if lacking:
                log.debug("index has no correlator weights for %s: term scoring", lacking)
                weighted = [f for f in weighted if f not in lacking]
            prior = prior and PRIOR in schema.number_fields
        return weighted, prior

    def check_rules(self, request: QueryRequest) -> None:
        """Rules on fields the index does not have are the client's mistake: say which."""
        schema = self.index_schema()
        if schema is None:
            return
        fields = set(schema.all_fields())
        for i, rule in enumerate(request.rules):
            if rule.name not in fields:
                raise BadRequest(f"fields[{i}].name", f"{rule.name!r} is not a field of the index")
        if request.date_range and request.date_range.name not in schema.date_fields:
            raise BadRequest("dateRange.name", f"{request.date_range.name!r} is not a date field of the index")

    @property
    def blacklist_actions(self) -> list[str]:
        if self.settings.blacklist_actions is not None:
            return list(self.settings.blacklist_actions)
        return [self.primary]

    # ------------------------------------------------------------------ queries
    def user_history(self, request: QueryRequest) -> tuple[dict[str, list[str]], list[str]]:
        """(query history per action, newest first and capped; items of blacklisted actions)."""
        cap = self.settings.max_query_events
        if request.history is not None:
            history = {a: list(dict.fromkeys(items))[:cap] for a, items in request.history.items()}
            blacklisted = [i for a in self.blacklist_actions for i in history.get(a, [])]
            return history, blacklisted
        if not request.user or self.events is None:
            return {}, []
        actions = list(self.settings.indicators) if self.settings.indicators else None
        history = self.events.history(request.user, actions, cap)
        black = self.events.history(request.user, self.blacklist_actions, self.settings.max_excluded)
        return history, [i for items in black.values() for i in items]

    def recommend(self, request: QueryRequest | Mapping[str, Any]) -> QueryResponse:
        """Answer one request: personal matches first, then backfill up to `num`."""
        if not isinstance(request, QueryRequest):
            request = parse_query(request, max_num=self.settings.max_num)
        num = request.num or self.settings.num
        self.check_rules(request)
        now = format_time(datetime.fromtimestamp(self.clock(), tz=UTC))
        history, blacklisted = self.user_history(request)
        indicators = self.indicators_for(history)
        context_ids = ([request.item] if request.item else []) + list(request.item_set)
        item_docs = self.backend.get(context_ids) if context_ids else {}
        excluded = excluded_ids(request, blacklisted, self.settings)

        version: str | None = None
        scores: list[ItemScore] = []
        queries: list[dict[str, Any]] = []
        weighted, prior = self.scoring_for(indicators)
        body = build_query(
            request, history, item_docs, self.settings,
            indicators=indicators, excluded=excluded, now=now, num=num, weighted=weighted, prior=prior,
        )
        if body is not None:
            queries.append(body)
            result = self.backend.search(body)
            version = result.version
            wanted = self._query_values(request, history, item_docs, indicators)
            docs = self._docs_of(result.hits)
            for hit in result.hits:
                doc = docs.get(hit.id, {})
                matched = {
                    f: sorted(set(doc.get(f) or ()) & values) for f, values in wanted.items()
                }
                matched = {f: v for f, v in matched.items() if v}
                score = ItemScore(hit.id, hit.score, {"personal": list(matched)})
                if request.explain:
                    score.explain = {"matched": matched, "rules": self._rules_matched(request, doc)}
                scores.append(score)

        ranking = self.settings.backfill
        if len(scores) < num and ranking != "none":
            body2 = build_backfill(
                request, self.settings, ranking=ranking,
                excluded=sorted(set(excluded) | {s.item for s in scores}), now=now, size=num - len(scores),
            )
            queries.append(body2)
            result = self.backend.search(body2)
            version = version or result.version
            docs = self._docs_of(result.hits) if request.explain else {}
            for hit in result.hits:
                score = ItemScore(hit.id, hit.score, {"backfill": ranking})
                if request.explain:
                    doc = docs.get(hit.id, {})
                    score.explain = {
                        ranking: doc.get(ranking), "rules": self._rules_matched(request, doc),
                    }
                scores.append(score)

        explain = None
        if request.explain:
            explain = {
                "indicators": indicators,
                "history": history,
                "excluded": excluded,
                "rules": [r.as_dict() for r in effective_rules(request.rules, self.settings.rules)],
                "currentDate": request.current_date or now,
                "queries": queries,
            }
        return QueryResponse(scores, version, explain)

    def _query_values(
        self, request: QueryRequest, history: Mapping[str, Sequence[str]],
        item_docs: Mapping[str, Document], indicators: Mapping[str, float],
    ) -> dict[str, set[str]]:
        wanted: dict[str, set[str]] = {}
        for field, value, _ in personal_terms(request, history, item_docs, indicators,
                                              self.settings.history_decay):
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
        out = []
        for rule in effective_rules(request.rules, self.settings.rules):
            if rule.bias > 0 and set(_as_list(doc.get(rule.name))) & set(rule.values):
                out.append(rule.name)
        return out

    # ------------------------------------------------------------------ events
    def check_events(self, events: Sequence[Event]) -> None:
        """Refuse item properties that would overwrite what the model owns (id, rankings,
        indicator fields); raises `BadRequest` naming the event's index and property."""
        indicators = [*(self.settings.indicators or {}), self.primary]
        reserved = {"id", *RANKINGS, PRIOR, *indicators, *map(weights_field, indicators)}
        for i, e in enumerate(events):
            if e.is_item_change and e.properties:
                for name in e.properties:
                    if name in reserved:
                        at = f"[{i}].properties.{name}" if len(events) > 1 else f"properties.{name}"
                        raise BadRequest(at, "is reserved (item id, ranking or indicator field)")
                    if e.event == "$set" and name in self.date_fields:
                        value = e.properties[name]
                        value = value[0] if isinstance(value, list) and value else value
                        normalize_date(value, f"properties.{name}")

    def ingest(self, events: Sequence[Event]) -> InsertReport:
        """Store events; item `$set` / `$unset` / `$delete` change the current index at once."""
        if self.events is None:
            raise BadRequest("(body)", "this recommender has no event store")
        self.check_events(events)
        report = self.events.insert(events)
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
        except BackendUnavailable as e:
            log.warning("item changes stored but not applied to the index (%s)", e)
            return 0
        for e in ordered:
            if e.event == "$delete":
                docs[e.entity_id] = None
                continue
            doc = docs.get(e.entity_id)
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
            for doc in docs.values():
                for name in [n for n in (doc or {}) if n not in known]:
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


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [json.dumps(v) if isinstance(v, bool) else str(v) for v in items]
