"""The Elasticsearch backend: one index per training run behind an alias (docs/elasticsearch.md).

A run creates `<alias>_<UTC time>` with the mapping of mappings/items.json, streams the
documents into it with the client's bulk helper, refreshes, verifies the document count,
marks the index complete (mapping `_meta`) and then moves the alias in ONE `_aliases`
request, so searches see either the old or the new index, never a mix. Older indices
beyond `keep_versions` are deleted afterwards. Any failure before the switch deletes the
new index and leaves the alias where it was.

Server versions 8.x and 9.x are supported: the client's REST-compatibility headers are
pinned to `compatible-with=8`, which both accept (a 9.x client otherwise sends
`compatible-with=9`, which an 8.x server rejects with `media_type_header_exception`).
"""

from __future__ import annotations

import inspect
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elastic_transport import (
    ConnectionError as TransportConnectionError,
)
from elastic_transport import (
    ConnectionTimeout,
    HttpHeaders,
    TlsError,
    Transport,
    TransportError,
)
from elastic_transport.client_utils import DEFAULT
from elasticsearch import ApiError, Elasticsearch, UnsupportedProductError, helpers
from elasticsearch import __versionstr__ as CLIENT_VERSION
from elasticsearch.exceptions import GeneralAvailabilityWarning
from elasticsearch.helpers import BulkIndexError

from .backend import (
    ChangeSet,
    Check,
    Document,
    Hit,
    IndexReport,
    IndexSchema,
    ProgressFn,
    SearchResult,
    VersionInfo,
    check_update_base,
)
from .errors import BackendUnavailable, DocumentsFailed, IndexerError
from .mapping import ITEMS_MAPPING, build_index_body, load_template
from .settings import ElasticsearchSettings

log = logging.getLogger(__name__)

COMPAT_MAJOR = 8
"""REST-compatibility version sent to the server: 8.x and 9.x servers both accept 8."""
SUPPORTED_MAJORS = (8, 9)
RETRY_STATUSES = (429, 502, 503, 504)
"""Statuses the bulk helper retries (whole request or single document) with backoff."""
_COMPAT_RE = re.compile(r"compatible-with=\d+")
_ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,200}$")
_VERSION_RE = r"_(\d{8})t(\d{6})(\d{3})z"
TASK_POLL_FIRST = 0.5
"""Seconds before the first re-check of a running `_reindex` task; doubles up to TASK_POLL_MAX."""
TASK_POLL_MAX = 5.0


# --------------------------------------------------------------------------- errors
class ElasticsearchError(IndexerError):
    """Elasticsearch answered a request with an error status."""

    def __init__(self, action: str, status: int, error_type: str, reason: str, *, hint: str = ""):
        super().__init__(
            f"Elasticsearch refused to {action}: {status} {error_type}: {reason}", hint=hint
        )
        self.action = action
        self.status = status
        self.error_type = error_type
        self.reason = reason


def _api_reason(e: ApiError) -> tuple[str, str]:
    """(error type, reason) of an Elasticsearch error response, with its cause if any."""
    body = e.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        reason = str(err.get("reason", ""))
        cause = err.get("caused_by") or {}
        if isinstance(cause, dict) and cause.get("reason") and cause["reason"] != reason:
            reason += f" (caused by {cause.get('type', '?')}: {cause['reason']})"
        return str(err.get("type", e.message)), reason
    if isinstance(body, dict) and "error" in body:
        return str(e.message), str(body["error"])
    return str(e.message), str(body)[:500]


def _item_reason(info: dict[str, Any]) -> str:
    """The reason of one failed bulk item (an error object, or a message when the whole
    request failed)."""
    err = info.get("error")
    if isinstance(err, dict):
        reason = f"{err.get('type', 'error')}: {err.get('reason', '')}"
        cause = err.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" (caused by {cause['reason']})"
        return reason
    return f"status {info.get('status')}: {err}"


def _hint_for(status: int, error_type: str) -> str:
    if error_type == "media_type_header_exception":
        return "the server's major version is not supported (cooccur supports Elasticsearch 8.x and 9.x)"
    if status == 401:
        return "set api_key (COOCCUR_ES_API_KEY) or username/password under [index.elasticsearch]"
    if status == 403:
        return "the API key or user lacks privileges: it needs create_index, write, delete_index and manage on the alias's indices"
    if error_type in ("mapper_parsing_exception", "illegal_argument_exception"):
        return "check mappings/items.json and the shards/replicas settings"
    if error_type == "resource_already_exists_exception":
        return "another indexing run started at the same moment; run again"
    if error_type == "index_not_found_exception":
        return "run `cooccur index` to create the index, or check [index] name"
    if error_type == "aliases_not_found_exception":
        return "another run moved the alias meanwhile: run one indexer per alias at a time, then index again"
    if status == 413:
        return "lower [index.elasticsearch] max_chunk_bytes (or raise http.max_content_length)"
    if status == 429:
        return "the cluster is overloaded: lower chunk_size or raise max_retries / max_backoff"
    if status >= 500:
        return "check the cluster's health (GET _cluster/health) and its logs"
    return ""


def translate_error(e: BaseException, action: str, urls: list[str]) -> IndexerError:
    """The project's error for an exception of the client, naming the URL and a hint."""
    where = ", ".join(urls)
    if isinstance(e, IndexerError):
        return e
    if isinstance(e, UnsupportedProductError):
        return BackendUnavailable(
            f"{where} is not Elasticsearch ({action}): {e.message}",
            hint="point [index.elasticsearch] urls / COOCCUR_ES_URL at an Elasticsearch 8.x or 9.x cluster",
        )
    if isinstance(e, ApiError):
        error_type, reason = _api_reason(e)
        if error_type == "index_not_found_exception":
            # No index behind the alias: the backend has no usable version (not a bad request).
            return BackendUnavailable(
                f"Elasticsearch at {where} ({action}): {reason}",
                hint=_hint_for(e.meta.status, error_type),
            )
        return ElasticsearchError(
            action, e.meta.status, error_type, reason, hint=_hint_for(e.meta.status, error_type)
        )
    if isinstance(e, TlsError):
        return BackendUnavailable(
            f"TLS connection to Elasticsearch at {where} failed ({action}): {e}",
            hint="set [index.elasticsearch] ca_certs to the cluster's CA file (or verify_certs = false for a test cluster)",
        )
    if isinstance(e, ConnectionTimeout):
        return BackendUnavailable(
            f"Elasticsearch at {where} did not answer in time ({action}): {e}",
            hint="check the cluster's health, or raise [index.elasticsearch] request_timeout",
        )
    if isinstance(e, TransportConnectionError):
        return BackendUnavailable(
            f"cannot reach Elasticsearch at {where} ({action}): {e}",
            hint="start the cluster, or set [index.elasticsearch] urls / COOCCUR_ES_URL",
        )
    if isinstance(e, BulkIndexError):
        failed = [
            (str(info.get("_id")), _item_reason(info))
            for item in e.errors
            for info in item.values()
        ]
        return DocumentsFailed(failed, len(failed))
    if isinstance(e, TransportError):
        return BackendUnavailable(f"Elasticsearch at {where} ({action}): {e}")
    return IndexerError(f"Elasticsearch ({action}): {e}")


# --------------------------------------------------------------------------- transport
class CompatTransport(Transport):
    """The client's transport, sending `compatible-with=8` instead of the client's major.

    Elasticsearch 9.x accepts requests in 8.x compatibility mode and 8.x servers accept
    only 7 or 8, so one client works against both."""

    def perform_request(self, method: str, target: str, *, headers: Any = DEFAULT, **kwargs: Any):
        if headers is not DEFAULT and headers:
            fixed = HttpHeaders(headers)
            for name in ("accept", "content-type"):
                value = fixed.get(name)
                if value and "compatible-with=" in value:
                    fixed[name] = _COMPAT_RE.sub(f"compatible-with={COMPAT_MAJOR}", value)
            headers = fixed
        return super().perform_request(method, target, headers=headers, **kwargs)


# --------------------------------------------------------------------------- pure parts
def version_name(alias: str, when: datetime) -> str:
    """`<alias>_<UTC yyyymmdd>t<hhmmss><milliseconds>z`: lower case (index names must be)
    and sorting by name sorts by creation time."""
    t = when.astimezone(UTC)
    return f"{alias}_{t:%Y%m%d}t{t:%H%M%S}{t.microsecond // 1000:03d}z"


def version_time(alias: str, name: str) -> datetime | None:
    """The creation time encoded in a version name of this alias (None: not one of ours)."""
    m = re.fullmatch(re.escape(alias) + _VERSION_RE, name)
    if not m:
        return None
    day, hms, ms = m.groups()
    return datetime.strptime(day + hms, "%Y%m%d%H%M%S").replace(
        microsecond=int(ms) * 1000, tzinfo=UTC
    )


def alias_actions(alias: str, old: Iterable[str], new: str) -> list[dict[str, Any]]:
    """The `_aliases` actions that move the alias from the old indices to the new one.

    Naming each old index (not a wildcard) makes the request fail as a whole if another
    process moved the alias meanwhile, instead of silently stealing it."""
    actions: list[dict[str, Any]] = [
        {"remove": {"index": name, "alias": alias}} for name in sorted(set(old)) if name != new
    ]
    actions.append({"add": {"index": new, "alias": alias}})
    return actions


@dataclass(frozen=True)
class IndexState:
    """One of the alias's indices as the cluster reports it."""

    name: str
    aliased: bool
    complete: bool
    """True once the run that wrote it verified its count (mapping `_meta`)."""
    model_id: str | None = None
    """The model it was built from (`_meta.cooccur.model_id`; None: a model without one)."""
    schema: IndexSchema | None = None
    """Its fields (`_meta.cooccur.schema`, recorded with the model_id)."""
    primary: str | None = None
    """The model's primary action (`_meta.cooccur.primary`)."""
    indicators: tuple[str, ...] | None = None
    """The model's indicators (`_meta.cooccur.indicators`)."""


def prune_choices(states: list[IndexState], current: str, keep: int) -> list[str]:
    """Indices to delete so that `keep` complete versions remain, the current one included.

    Complete indices older than the current one are kept newest first; incomplete ones
    older than the current one are leftovers of killed runs and go. Indices newer than the
    current one are never touched: they may be another run still writing."""
    older = sorted((s for s in states if s.name < current), key=lambda s: s.name)
    complete = [s.name for s in older if s.complete]
    kept = set(complete[len(complete) - (keep - 1):]) if keep > 1 else set()
    return [s.name for s in older if s.name not in kept and not s.aliased]


def bulk_actions(index: str, documents: Iterable[Document]) -> Iterator[dict[str, Any]]:
    """One bulk `index` action per document, `_id` = the document's id.

    `index` (not `create`) keeps a retried chunk idempotent: a chunk re-sent after a
    timeout overwrites what the first attempt may have written instead of failing with 409."""
    for n, doc in enumerate(documents):
        doc_id = doc.get("id")
        if not isinstance(doc_id, str) or not doc_id:
            raise IndexerError(f"document #{n + 1} has no string id: {str(doc)[:200]}")
        yield {"_op_type": "index", "_index": index, "_id": doc_id, "_source": doc}


def _schema_to_meta(schema: IndexSchema) -> dict[str, list[str]]:
    meta = {
        "keyword_fields": list(schema.keyword_fields),
        "date_fields": list(schema.date_fields),
        "number_fields": list(schema.number_fields),
    }
    if schema.feature_fields:  # without them, the same _meta as before feature fields existed
        meta["feature_fields"] = list(schema.feature_fields)
    return meta


def _schema_from_meta(data: Any) -> IndexSchema | None:
    if not isinstance(data, dict):
        return None
    try:
        return IndexSchema(
            tuple(data["keyword_fields"]), tuple(data["date_fields"]), tuple(data["number_fields"]),
            # indices written before feature fields existed have none
            tuple(data.get("feature_fields", ())),
        )
    except (KeyError, TypeError):
        return None


@contextmanager
def _tasks_api() -> Iterator[None]:
    """The client marks the task API "technical preview" and warns on each call; the API
    has been the same since 5.x (8.x and 9.x servers alike), so the warning is noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeneralAvailabilityWarning)
        yield


def _supports(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False


# --------------------------------------------------------------------------- backend
class ElasticsearchBackend:
    """indexer.backend.Backend on an Elasticsearch 8.x/9.x cluster, versions behind an alias."""

    def __init__(
        self,
        alias: str,
        settings: ElasticsearchSettings,
        keep_versions: int = 3,
        *,
        client_options: dict[str, Any] | None = None,
        clock: Callable[[], datetime] | None = None,
        mapping_path: str | Path = ITEMS_MAPPING,
    ) -> None:
        """`client_options` are extra keyword arguments of `Elasticsearch()` (tests pass a
        `node_class`); `clock` gives the UTC time used in version names."""
        if not _ALIAS_RE.match(alias):
            raise IndexerError(
                f"{alias!r} is not a valid Elasticsearch alias name",
                hint="[index] name must be lower case letters, digits, '_', '-' or '.'",
            )
        if keep_versions < 1:
            raise IndexerError("keep_versions must be at least 1")
        self.alias = alias
        self.settings = settings
        self.keep_versions = keep_versions
        self._clock = clock or (lambda: datetime.now(UTC))
        self._mapping_path = mapping_path
        self._dfs = settings.shards > 1
        self.client = self._make_client(client_options or {})

    # ----------------------------------------------------------------- plumbing
    def _make_client(self, extra: dict[str, Any]) -> Elasticsearch:
        s = self.settings
        if not s.urls:
            raise BackendUnavailable(
                "no Elasticsearch URL configured",
                hint="set [index.elasticsearch] urls or COOCCUR_ES_URL",
            )
        kwargs: dict[str, Any] = {
            "hosts": list(s.urls),
            "request_timeout": s.request_timeout,
            "verify_certs": s.verify_certs,
            "max_retries": s.max_retries,
            "retry_on_timeout": False,
            "transport_class": CompatTransport,
        }
        if _supports(Elasticsearch.__init__, "retry_backoff_base"):
            # Connection errors: the transport retries with capped, jittered backoff.
            kwargs["retry_backoff_base"] = s.initial_backoff
            kwargs["retry_backoff_cap"] = s.max_backoff
        if s.api_key:
            kwargs["api_key"] = s.api_key
        elif s.username:
            kwargs["basic_auth"] = (s.username, s.password or "")
        if s.ca_certs:
            kwargs["ca_certs"] = s.ca_certs
        kwargs.update(extra)
        try:
            return Elasticsearch(**kwargs)
        except (ValueError, TypeError) as e:
            raise IndexerError(
                f"[index.elasticsearch]: {e}",
                hint="urls look like https://host:9200 (see docs/elasticsearch.md)",
            ) from None

    def _error(self, e: BaseException, action: str) -> IndexerError:
        return translate_error(e, action, list(self.settings.urls))

    def _call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call; client exceptions become the project's errors."""
        try:
            return fn(*args, **kwargs)
        except (ApiError, TransportError, BulkIndexError) as e:
            raise self._error(e, action) from e

    def _states(self) -> list[IndexState]:
        """The alias's indices (`<alias>_<time>`), oldest first."""
        resp = self._call(
            f"list indices {self.alias}_*",
            self.client.indices.get,
            index=f"{self.alias}_*",
            expand_wildcards="open",
        )
        states = []
        for name, info in resp.body.items():
            if version_time(self.alias, name) is None:
                continue  # e.g. items_foo_<time> belongs to the alias items_foo
            meta = ((info.get("mappings") or {}).get("_meta") or {}).get("cooccur") or {}
            states.append(
                IndexState(
                    name,
                    aliased=self.alias in (info.get("aliases") or {}),
                    complete=bool(meta.get("complete")),
                    model_id=meta.get("model_id"),
                    schema=_schema_from_meta(meta.get("schema")),
                    primary=meta.get("primary") if isinstance(meta.get("primary"), str) else None,
                    indicators=tuple(meta["indicators"]) if isinstance(meta.get("indicators"), list) else None,
                )
            )
        return sorted(states, key=lambda st: st.name)

    def _current(self, states: list[IndexState]) -> IndexState:
        current = [st for st in states if st.aliased]
        if not current:
            raise BackendUnavailable(
                f"alias {self.alias} does not exist on {', '.join(self.settings.urls)}",
                hint="run `cooccur index MODEL_DIR --backend elasticsearch` first",
            )
        if len(current) > 1:
            raise BackendUnavailable(
                f"alias {self.alias} points to {len(current)} indices: {[c.name for c in current]}",
                hint="remove the alias from all but one index (POST _aliases), or index again",
            )
        return current[0]

    def _bulk(
        self,
        actions: Iterable[dict[str, Any]],
        on_ok: Callable[[], None] | None = None,
        ignore_statuses: tuple[int, ...] = (),
        **bulk_params: Any,
    ) -> tuple[int, list[tuple[str, str]]]:
        """Stream actions through helpers.streaming_bulk; (documents sent, failed (id, reason)).

        Retries: the helper re-sends a chunk, or the documents of it, answered with a status
        in RETRY_STATUSES after initial_backoff * 2**n seconds (capped at max_backoff), up to
        max_retries times. The transport's own immediate status retries are switched off for
        these requests so the helper's backoff applies; connection errors and timeouts are
        retried by the transport (bulk `index` by id is idempotent)."""
        s = self.settings
        client = self.client.options(retry_on_status=(), retry_on_timeout=True)
        kwargs: dict[str, Any] = {
            "chunk_size": s.chunk_size,
            "max_chunk_bytes": s.max_chunk_bytes,
            "raise_on_error": False,
            "raise_on_exception": True,
            "max_retries": s.max_retries,
            "initial_backoff": s.initial_backoff,
            "max_backoff": s.max_backoff,
            "yield_ok": True,
        }
        if _supports(helpers.streaming_bulk, "retry_on_status"):
            kwargs["retry_on_status"] = RETRY_STATUSES
        total = 0
        failed: list[tuple[str, str]] = []
        for ok, item in helpers.streaming_bulk(client, actions, **kwargs, **bulk_params):
            total += 1
            _, info = next(iter(item.items()))
            if ok:
                if on_ok is not None:
                    on_ok()
            elif info.get("status") not in ignore_statuses:
                failed.append((str(info.get("_id")), _item_reason(info)))
        return total, failed

    def _drop(self, name: str) -> None:
        """Delete a half-written index; failures are logged (the alias never pointed to it)."""
        try:
            self.client.options(ignore_status=404).indices.delete(index=name)
        except (ApiError, TransportError) as e:
            log.warning("could not delete the unfinished index %s: %s", name, e)

    # ----------------------------------------------------------------- Backend
    def create_version(
        self,
        schema: IndexSchema,
        documents: Iterable[Document],
        *,
        progress: ProgressFn | None = None,
        model_id: str | None = None,
        model: dict[str, Any] | None = None,
    ) -> IndexReport:
        """Write all documents into a new index, verify, switch the alias, prune old indices.
        `model_id` and `model` (primary, indicators) go into the mapping's `_meta.cooccur`."""
        start = time.monotonic()

        def fill(name: str) -> tuple[int, str, str]:
            total, failed = self._bulk(
                bulk_actions(name, documents),
                on_ok=(lambda: progress(1)) if progress is not None else None,
            )
            if failed:
                raise DocumentsFailed(failed, total)
            return total, "were written", "duplicate document ids in the model? (each id must appear once)"

        name, count, removed = self._new_version(schema, model_id, dict(model or {}), fill, None)
        return IndexReport(
            version=name,
            documents=count,
            failed=[],
            seconds=time.monotonic() - start,
            removed_versions=removed,
        )

    def update_version(
        self,
        schema: IndexSchema,
        changes: ChangeSet,
        *,
        progress: ProgressFn | None = None,
    ) -> IndexReport:
        """A new index = a server-side `_reindex` copy of the current index without the
        changed items, then the changed items' new documents indexed in bulk; verified and
        switched to in one `_aliases` request exactly as create_version does.

        Leaving the changed items out of the copy (instead of overwriting or deleting them
        afterwards) keeps deleted documents out of the new index's segments, whose term
        statistics would otherwise count them until a merge: the scores are exactly those
        of a full index. The switch names the copied index, so it fails (and the new index
        is dropped) if the alias moved meanwhile."""
        start = time.monotonic()
        states = self._states()
        current = self._current(states) if any(st.aliased for st in states) else None
        check_update_base(
            current.name if current else None,
            current.model_id if current else None,
            current.schema if current else None,
            schema,
            changes,
        )
        assert current is not None  # check_update_base refuses a missing current version
        written = [d["id"] for d in changes.documents]
        gone = sorted(set(changes.deleted) - set(written))
        # for the report only: how many of the changed items the current index holds
        replaced, deleted = (self._count_ids(current.name, ids) for ids in (written, gone))
        copied = 0

        def fill(name: str) -> tuple[int, str, str]:
            nonlocal copied
            copied = self._copy(current.name, name, exclude=sorted({*written, *gone}))
            total, failed = self._bulk(
                bulk_actions(name, changes.documents),
                on_ok=(lambda: progress(1)) if progress is not None else None,
            )
            if failed:
                raise DocumentsFailed(failed, total)
            return (copied + total, f"were expected ({copied} copied + {total} changed)",
                    "duplicate document ids in the model? (each id must appear once)")

        extra = {"base_model_id": changes.base_model_id, "base_index": current.name, **(changes.model or {})}
        name, count, removed = self._new_version(schema, changes.model_id, extra, fill, [current.name])
        return IndexReport(
            version=name,
            documents=count,
            failed=[],
            seconds=time.monotonic() - start,
            removed_versions=removed,
            copied=copied,
            replaced=replaced,
            added=len(written) - replaced,
            deleted=deleted,
        )

    def _count_ids(self, index: str, ids: list[str]) -> int:
        """How many of these ids the index holds (no request for none)."""
        if not ids:
            return 0
        resp = self._call(f"count the changed items in {index}", self.client.count,
                          index=index, query={"ids": {"values": ids}})
        return int(resp["count"])

    def _new_version(
        self,
        schema: IndexSchema,
        model_id: str | None,
        extra_meta: dict[str, Any],
        fill: Callable[[str], tuple[int, str, str]],
        previous: list[str] | None,
    ) -> tuple[str, int, list[str]]:
        """Create a new index, `fill` it, refresh, check its count, mark it complete, move the
        alias from `previous` (None: whatever holds it now) and prune; on any failure before
        the switch the new index is deleted. `fill(name)` returns (expected count, how the
        count was expected, hint when it differs). Returns (name, count, pruned)."""
        created_at = self._clock()
        name = version_name(self.alias, created_at)
        meta: dict[str, Any] = {
            "cooccur": {
                "alias": self.alias,
                "created": created_at.astimezone(UTC).isoformat(),
                "complete": False,
            }
        }
        if model_id is not None:
            # what `index --changed-only` checks before it builds on this index
            meta["cooccur"].update(model_id=model_id, schema=_schema_to_meta(schema))
        meta["cooccur"].update(extra_meta)
        body = build_index_body(
            schema, self.settings, load_template(self._mapping_path), meta=meta
        )
        may_exist = False
        action = f"create index {name}"
        try:
            try:
                may_exist = True
                self.client.indices.create(
                    index=name, settings=body["settings"], mappings=body["mappings"]
                )
            except ApiError:
                may_exist = False  # a definite refusal: nothing was created
                raise
            action = f"bulk-index documents into {name}"
            expected, what, hint = fill(name)
            action = f"refresh {name}"
            self.client.indices.refresh(index=name)
            action = f"count the documents of {name}"
            count = int(self.client.count(index=name)["count"])
            if count != expected:
                raise IndexerError(
                    f"index {name} holds {count} documents but {expected} {what}; "
                    "the current version is unchanged",
                    hint=hint,
                )
            action = f"mark {name} complete"
            meta["cooccur"].update(complete=True, documents=count)
            self.client.indices.put_mapping(index=name, meta=meta)
            action = f"switch alias {self.alias} to {name}"
            if previous is None:
                states = self._states()
                previous = [st.name for st in states if st.aliased and st.name != name]
            self.client.indices.update_aliases(
                actions=alias_actions(self.alias, previous, name)
            )
        except BaseException as e:
            if may_exist:
                self._drop(name)
            if isinstance(e, (ApiError, TransportError, BulkIndexError)):
                raise self._error(e, action) from e
            raise
        log.info("alias %s -> %s (%d documents; was %s)", self.alias, name, count, previous or "none")
        return name, count, self._prune(name)

    def _copy(self, source: str, dest: str, exclude: list[str]) -> int:
        """Copy the documents of `source` but those of `exclude` into `dest` with a
        server-side `_reindex` task and wait for it; returns the number copied.

        The task runs detached (wait_for_completion=false) and is polled, so a long copy
        outlives no request timeout. The start request is never retried: a retry after a
        lost answer would start a second task that nobody waits for or cancels.
        If anything fails or the run is interrupted while it runs, the task is cancelled."""
        action = f"copy {source} into {dest}"
        try:
            query = {"bool": {"must_not": [{"ids": {"values": exclude}}]}} if exclude else {"match_all": {}}
            started = self.client.options(max_retries=0).reindex(
                source={"index": source, "query": query}, dest={"index": dest}, wait_for_completion=False
            )
        except (ApiError, TransportError) as e:
            raise self._error(e, action) from e
        task = str(started["task"])
        done = False
        try:
            delay = TASK_POLL_FIRST
            while True:
                with _tasks_api():
                    status = self._call(action, self.client.tasks.get, task_id=task)
                if status.get("completed"):
                    done = True
                    break
                time.sleep(delay)
                delay = min(delay * 2, TASK_POLL_MAX)
        finally:
            if not done:
                try:
                    with _tasks_api():
                        self.client.options(ignore_status=404).tasks.cancel(task_id=task)
                except (ApiError, TransportError) as e:
                    log.warning("could not cancel the copy task %s: %s", task, e)
        error = status.get("error")
        if isinstance(error, dict):
            raise ElasticsearchError(
                action, 500, str(error.get("type", "error")), str(error.get("reason", "")),
                hint=_hint_for(500, str(error.get("type", ""))),
            )
        response = status.get("response") or {}
        failures = response.get("failures") or []
        if failures or response.get("timed_out"):
            first = failures[0] if failures else {}
            cause = first.get("cause") if isinstance(first.get("cause"), dict) else {}
            raise IndexerError(
                f"{action}: {len(failures)} document(s) failed to copy"
                + (f" (first: {first.get('id')}: {cause.get('type')}: {cause.get('reason')})" if failures else
                   " (timed out)")
                + "; the current version is unchanged",
                hint="check the cluster's health and logs, or run a full `cooccur index MODEL`",
            )
        created, total = int(response.get("created", 0)), int(response.get("total", 0))
        if created != total:
            raise IndexerError(
                f"{action}: copied {created} of {total} documents; the current version is unchanged",
                hint="another process writes into the new index? run one indexer per alias at a time",
            )
        log.info("copied %d documents from %s into %s", created, source, dest)
        return created

    def _prune(self, current: str) -> list[str]:
        """Delete versions beyond keep_versions; a failure here is only a warning (the new
        version is already live)."""
        try:
            doomed = prune_choices(self._states(), current, self.keep_versions)
            if doomed:
                self.client.indices.delete(index=",".join(doomed))
                log.info("removed old versions %s", doomed)
            return doomed
        except (IndexerError, ApiError, TransportError) as e:
            log.warning("could not remove old versions of %s: %s", self.alias, e)
            return []

    def versions(self) -> list[VersionInfo]:
        """All `<alias>_<time>` indices, oldest first, with document counts."""
        states = self._states()
        if not states:
            return []
        stats = self._call(
            "read index stats",
            self.client.indices.stats,
            index=",".join(st.name for st in states),
            metric="docs",
        )
        counts = stats.body.get("indices", {})
        out = []
        for st in states:
            docs = counts.get(st.name, {}).get("primaries", {}).get("docs", {}).get("count", 0)
            created = version_time(self.alias, st.name)
            out.append(
                VersionInfo(
                    name=st.name,
                    created=created.isoformat().replace("+00:00", "Z") if created else "",
                    documents=int(docs),
                    current=st.aliased,
                    model_id=st.model_id,
                    primary=st.primary,
                    indicators=st.indicators,
                    schema=st.schema,
                )
            )
        return out

    def rollback(self) -> VersionInfo:
        """Point the alias at the newest complete index older than the current one."""
        states = self._states()
        current = self._current(states)
        older = [st for st in states if st.name < current.name and st.complete]
        if not older:
            raise IndexerError(
                f"no earlier complete version of {self.alias} to roll back to "
                f"(current: {current.name})",
                hint="`cooccur indexes` lists the kept versions; raise keep_versions to keep more",
            )
        target = older[-1].name
        self._call(
            f"switch alias {self.alias} to {target}",
            self.client.indices.update_aliases,
            actions=alias_actions(self.alias, [current.name], target),
        )
        count = self._call(f"count {target}", self.client.count, index=target)["count"]
        created = version_time(self.alias, target)
        return VersionInfo(
            name=target,
            created=created.isoformat().replace("+00:00", "Z") if created else "",
            documents=int(count),
            current=True,
        )

    def search(self, body: dict[str, Any]) -> SearchResult:
        """Run the body as is against the alias.

        With more than one shard, idf is per shard unless the search first collects global
        term statistics: dfs_query_then_fetch makes scores equal the one-shard (embedded)
        scores. The shard count is taken from the settings, and learnt from the first
        response if the index has more shards than configured."""
        resp = self._search(body, self._dfs)
        if not self._dfs and resp.get("_shards", {}).get("total", 1) > 1:
            self._dfs = True
            resp = self._search(body, True)
        hits = [
            Hit(str(h["_id"]), float(h.get("_score") or 0.0), h.get("_source"))
            for h in resp["hits"]["hits"]
        ]
        if resp["hits"]["hits"]:
            version = str(resp["hits"]["hits"][0]["_index"])
        else:
            version = self._current(self._states()).name
        return SearchResult(hits=hits, version=version)

    def _search(self, body: dict[str, Any], dfs: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"index": self.alias, "body": body}
        if dfs:
            params["search_type"] = "dfs_query_then_fetch"
        return self._call(f"search {self.alias}", self.client.search, **params).body

    def get(self, ids: Iterable[str]) -> dict[str, Document]:
        """The current documents of these ids (absent ids are left out)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        resp = self._call(f"get documents of {self.alias}", self.client.mget, index=self.alias, ids=wanted)
        return {d["_id"]: d["_source"] for d in resp["docs"] if d.get("found")}

    def upsert(self, documents: Iterable[Document]) -> None:
        """Index documents into the alias's current index.

        refresh="wait_for": the call returns once the change is visible to searches (the
        next periodic refresh, at most refresh_interval = 1s later) without forcing an
        extra refresh per call as refresh=true would, which makes tiny segments under a
        steady stream of item updates."""
        docs = list(documents)
        try:
            total, failed = self._bulk(bulk_actions(self.alias, docs), refresh="wait_for")
        except (ApiError, TransportError, BulkIndexError) as e:
            raise self._error(e, f"upsert documents into {self.alias}") from e
        if failed:
            raise DocumentsFailed(failed, total)

    def delete(self, ids: Iterable[str]) -> None:
        """Remove documents from the current index; ids that do not exist are ignored."""
        actions = (
            {"_op_type": "delete", "_index": self.alias, "_id": i} for i in dict.fromkeys(ids)
        )
        try:
            total, failed = self._bulk(actions, ignore_statuses=(404,), refresh="wait_for")
        except (ApiError, TransportError, BulkIndexError) as e:
            raise self._error(e, f"delete documents from {self.alias}") from e
        if failed:
            raise DocumentsFailed(failed, total)

    def checks(self) -> Iterator[Check]:
        """Cluster reachable with a supported version; the alias on one index with documents."""
        where = ", ".join(self.settings.urls)
        quick = self.client.options(max_retries=0)
        try:
            info = quick.info().body
        except (ApiError, TransportError) as e:
            err = self._error(e, "read cluster info")
            yield Check("elasticsearch", False, str(err), err.hint)
            return
        number = str(info.get("version", {}).get("number", "?"))
        major = int(number.split(".")[0]) if number.split(".")[0].isdigit() else 0
        detail = f"{where}: Elasticsearch {number} (cluster {info.get('cluster_name', '?')}, client {CLIENT_VERSION})"
        if major not in SUPPORTED_MAJORS:
            yield Check("elasticsearch", False, detail, "cooccur supports Elasticsearch 8.x and 9.x")
            return
        yield Check("elasticsearch", True, detail)
        try:
            states = self._states()
            current = self._current(states)
            count = self._call(f"count {current.name}", self.client.count, index=current.name)["count"]
        except IndexerError as e:
            yield Check("elasticsearch alias", False, str(e), e.hint)
            return
        detail = f"alias {self.alias} -> {current.name} ({count} documents; {len(states)} versions kept)"
        if count == 0:
            yield Check("elasticsearch alias", False, detail, "the current index is empty: index a model again")
        else:
            yield Check("elasticsearch alias", True, detail)
