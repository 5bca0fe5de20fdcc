"""What the Elasticsearch and OpenSearch backends share: one index per training run behind
an alias (docs/elasticsearch.md, docs/opensearch.md).

A run creates `<alias>_<UTC time>` with the mapping of mappings/items.json, streams the
documents into it with the client's bulk helper, refreshes, verifies the document count,
marks the index complete (mapping `_meta`) and then moves the alias in ONE `_aliases`
request, so searches see either the old or the new index, never a mix. Older indices
beyond `keep_versions` are deleted afterwards. Any failure before the switch deletes the
new index and leaves the alias where it was.

Both products speak the same REST API for everything used here (index, bulk, aliases,
mapping `_meta`, `_reindex` tasks, search bodies, error objects); only their Python clients
differ. SearchServerBackend holds all of it once and calls a handful of client primitives
that indexer/elasticsearch.py and indexer/opensearch.py implement with their own client.
"""

from __future__ import annotations

import logging
import os
import re
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indicators.model import iso

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
DUPLICATE_IDS_HINT = "duplicate document ids in the model? (each id must appear once)"
"""What a version whose count falls short of the documents sent most likely means."""

_ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,200}$")
_VERSION_RE = r"_(\d{8})t(\d{6})(\d{3})z"
TASK_POLL_FIRST = 0.5
"""Seconds before the first re-check of a running `_reindex` task; doubles up to TASK_POLL_MAX."""
TASK_POLL_MAX = 5.0
SCHEMA_TTL = 5.0
"""Seconds current_schema() answers from memory: serving asks per request, and another
process's switch is seen this much later (this process's own switches at once)."""


@dataclass(frozen=True)
class Product:
    """What the messages, hints and `cooccur doctor` say about one search server product."""

    name: str
    """As users know it: Elasticsearch, OpenSearch."""
    backend: str
    """Its [index] backend name."""
    supported: tuple[int, ...]
    """Server major versions this backend supports."""
    url_env: str
    """The environment variable of its default URLs."""
    credentials: str = "username/password"
    """The settings that authenticate a client."""

    @property
    def section(self) -> str:
        return f"[index.{self.backend}]"

    @property
    def majors(self) -> str:
        """ "8.x and 9.x" """
        names = [f"{m}.x" for m in self.supported]
        return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


# --------------------------------------------------------------------------- errors
class SearchServerError(IndexerError):
    """The server answered a request with an error status."""

    def __init__(self, product: str, action: str, status: int, error_type: str, reason: str, *, hint: str = ""):
        super().__init__(f"{product} refused to {action}: {status} {error_type}: {reason}", hint=hint)
        self.product = product
        self.action = action
        self.status = status
        self.error_type = error_type
        self.reason = reason


def error_reason(body: Any, message: str) -> tuple[str, str]:
    """(error type, reason) of an error response body (both products answer
    {"error": {"type", "reason", "caused_by"}, "status"}), with its cause if any."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        reason = str(err.get("reason", ""))
        cause = err.get("caused_by") or {}
        if isinstance(cause, dict) and cause.get("reason") and cause["reason"] != reason:
            reason += f" (caused by {cause.get('type', '?')}: {cause['reason']})"
        return str(err.get("type", message)), reason
    if isinstance(body, dict) and "error" in body:
        return str(message), str(body["error"])
    return str(message), str(body)[:500]


def item_reason(info: dict[str, Any]) -> str:
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


def hint_for(product: Product, status: int, error_type: str) -> str:
    """What to do about an error status / type of `product`."""
    section = product.section
    if error_type == "media_type_header_exception":
        return f"the server's major version is not supported (cooccur supports {product.name} {product.majors})"
    if status == 401:
        return f"set {product.credentials} under {section}"
    if status == 403:
        return ("the API key or user lacks privileges: it needs create_index, write, delete_index and manage "
                "on the alias's indices")
    if error_type in ("mapper_parsing_exception", "illegal_argument_exception"):
        return f"check mappings/items.json and the shards/replicas settings of {section}"
    if error_type == "resource_already_exists_exception":
        return "another indexing run started at the same moment; run again"
    if error_type == "index_not_found_exception":
        return "run `cooccur index` to create the index, or check [index] name"
    if error_type == "aliases_not_found_exception":
        return "another run moved the alias meanwhile: run one indexer per alias at a time, then index again"
    if status == 413:
        return f"lower {section} max_chunk_bytes (or raise http.max_content_length)"
    if status == 429:
        return "the cluster is overloaded: lower chunk_size or raise max_retries / max_backoff"
    if status >= 500:
        return "check the cluster's health (GET _cluster/health) and its logs"
    return ""


def api_error(product: Product, action: str, urls: list[str], status: int, body: Any, message: str) -> IndexerError:
    """The project's error for an error answer of the server."""
    error_type, reason = error_reason(body, message)
    if error_type == "index_not_found_exception":
        # No index behind the alias: the backend has no usable version (not a bad request).
        return BackendUnavailable(f"{product.name} at {', '.join(urls)} ({action}): {reason}",
                                  hint=hint_for(product, status, error_type))
    return SearchServerError(product.name, action, status, error_type, reason,
                             hint=hint_for(product, status, error_type))


def unreachable(product: Product, action: str, urls: list[str], kind: str, e: BaseException) -> IndexerError:
    """The project's error for a request that got no answer: kind is tls, timeout or connect."""
    where, section = ", ".join(urls), product.section
    if kind == "tls":
        return BackendUnavailable(
            f"TLS connection to {product.name} at {where} failed ({action}): {e}",
            hint=f"set {section} ca_certs to the cluster's CA file (or verify_certs = false for a test cluster)",
        )
    if kind == "timeout":
        return BackendUnavailable(
            f"{product.name} at {where} did not answer in time ({action}): {e}",
            hint=f"check the cluster's health, or raise {section} request_timeout",
        )
    return BackendUnavailable(
        f"cannot reach {product.name} at {where} ({action}): {e}",
        hint=f"start the cluster, or set {section} urls / {product.url_env}",
    )


def bulk_failures(errors: Iterable[dict[str, Any]]) -> DocumentsFailed:
    """DocumentsFailed of the items of a client's BulkIndexError."""
    failed = [(str(info.get("_id")), item_reason(info)) for item in errors for info in item.values()]
    return DocumentsFailed(failed, len(failed))


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


# --------------------------------------------------------------------------- backend
_BACKENDS: weakref.WeakSet[SearchServerBackend] = weakref.WeakSet()
"""Every backend of this process: a forked child gives each new clients."""


def _after_fork_in_child() -> None:
    for backend in list(_BACKENDS):
        backend._new_clients()


os.register_at_fork(after_in_child=_after_fork_in_child)


class SearchServerBackend:
    """indexer.backend.Backend on an Elasticsearch-API cluster, versions behind an alias.

    Subclasses give the product, make the client and implement the primitives below with
    it; each primitive raises only the client's exceptions (`client_errors`), which
    `_error` turns into the project's errors."""

    product: Product
    client_errors: tuple[type[BaseException], ...] = ()
    """The client's exception classes (answers with an error status, transport failures,
    bulk failures)."""
    client_version: str = "?"

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
        """`client_options` are extra keyword arguments of the client (tests pass a
        `node_class` / `connection_class`); `clock` gives the UTC time used in version names."""
        p = self.product
        if not _ALIAS_RE.match(alias):
            raise IndexerError(
                f"{alias!r} is not a valid {p.name} alias name",
                hint="[index] name must be lower case letters, digits, '_', '-' or '.'",
            )
        if keep_versions < 1:
            raise IndexerError("keep_versions must be at least 1")
        if not settings.urls:
            raise BackendUnavailable(f"no {p.name} URL configured",
                                     hint=f"set {p.section} urls or {p.url_env}")
        self.alias = alias
        self.settings = settings
        self.keep_versions = keep_versions
        self._clock = clock or (lambda: datetime.now(UTC))
        self._mapping_path = mapping_path
        self._dfs = settings.shards > 1
        self._schema: tuple[float, IndexSchema | None] | None = None
        self._client_options = client_options or {}
        try:
            self.client = self._make_client(self._client_options)
        except (ValueError, TypeError) as e:
            raise IndexerError(
                f"{p.section}: {e}",
                hint=f"urls look like https://host:9200 (see docs/{p.backend}.md)",
            ) from None
        _BACKENDS.add(self)

    def _new_clients(self) -> None:
        """Clients of its own for a forked process (they connect on first use). The parent's
        keep-alive connections must not be shared: two processes writing requests to one
        socket read each other's responses (`cooccur serve`'s forked workers: one read two
        responses at once, an internal error, while the other timed out)."""
        self.client = self._make_client(self._client_options)

    # ----------------------------------------------------------------- client primitives
    def _make_client(self, extra: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _translate(self, e: BaseException, action: str) -> IndexerError:
        """The project's error for one of the client's exceptions."""
        raise NotImplementedError

    def _is_answer(self, e: BaseException) -> bool:
        """Whether the exception is the server's answer (an error status), not a lost request."""
        raise NotImplementedError

    def _info(self) -> dict[str, Any]:
        """The cluster's root info ({"version": {"number"}, "cluster_name"}), not retried."""
        raise NotImplementedError

    def _indices(self, pattern: str) -> dict[str, Any]:
        """GET <pattern> of open indices: {name: {"aliases", "mappings"}}."""
        raise NotImplementedError

    def _create_index(self, name: str, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def _refresh(self, index: str) -> None:
        raise NotImplementedError

    def _count(self, index: str, query: dict[str, Any] | None = None) -> int:
        raise NotImplementedError

    def _put_meta(self, index: str, meta: dict[str, Any]) -> None:
        """Set the mapping's `_meta`."""
        raise NotImplementedError

    def _update_aliases(self, actions: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _delete_indices(self, names: list[str], *, missing_ok: bool = False) -> None:
        raise NotImplementedError

    def _docs_stats(self, names: list[str]) -> dict[str, Any]:
        """The `docs` index stats of these indices."""
        raise NotImplementedError

    def _start_reindex(self, source: dict[str, Any], dest: dict[str, Any]) -> str:
        """Start a detached `_reindex` (never retried: a retry after a lost answer would
        start a second task nobody waits for); its task id."""
        raise NotImplementedError

    def _task(self, task: str) -> dict[str, Any]:
        raise NotImplementedError

    def _cancel_task(self, task: str) -> None:
        """Cancel a task; an unknown task is not an error."""
        raise NotImplementedError

    def _search_request(self, index: str, body: dict[str, Any], dfs: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _mget(self, index: str, ids: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def _streaming_bulk(self, actions: Iterable[dict[str, Any]], params: dict[str, Any]) -> Iterator[tuple[bool, dict]]:
        """The client's streaming_bulk with the settings' chunking and retries, yielding
        (ok, item) for every action; `params` are extra bulk parameters (refresh)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- plumbing
    def _error(self, e: BaseException, action: str) -> IndexerError:
        return e if isinstance(e, IndexerError) else self._translate(e, action)

    def _call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call; client exceptions become the project's errors."""
        try:
            return fn(*args, **kwargs)
        except self.client_errors as e:
            raise self._error(e, action) from e

    def _states(self) -> list[IndexState]:
        """The alias's indices (`<alias>_<time>`), oldest first."""
        resp = self._call(f"list indices {self.alias}_*", self._indices, f"{self.alias}_*")
        states = []
        for name, info in resp.items():
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
                hint=f"run `cooccur index MODEL_DIR --backend {self.product.backend}` first",
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
        """Stream actions through the client's streaming_bulk; (documents sent, failed
        (id, reason)). Retries are the client's (see _streaming_bulk of each product)."""
        total = 0
        failed: list[tuple[str, str]] = []
        for ok, item in self._streaming_bulk(actions, bulk_params):
            total += 1
            _, info = next(iter(item.items()))
            if ok:
                if on_ok is not None:
                    on_ok()
            elif info.get("status") not in ignore_statuses:
                failed.append((str(info.get("_id")), item_reason(info)))
        return total, failed

    def _drop(self, name: str) -> None:
        """Delete a half-written index; failures are logged (the alias never pointed to it)."""
        try:
            self._delete_indices([name], missing_ok=True)
        except self.client_errors as e:
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
            return self._write_all(name, documents, progress), "were written", DUPLICATE_IDS_HINT

        name, count, removed = self._new_version(schema, model_id, dict(model or {}), fill, None)
        return IndexReport(
            version=name,
            documents=count,
            failed=[],
            seconds=time.monotonic() - start,
            removed_versions=removed,
        )

    def _write_all(self, name: str, documents: Iterable[Document], progress: ProgressFn | None) -> int:
        """Bulk-index every document into index `name` (DocumentsFailed if any is refused);
        the number written."""
        total, failed = self._bulk(
            bulk_actions(name, documents),
            on_ok=(lambda: progress(1)) if progress is not None else None,
        )
        if failed:
            raise DocumentsFailed(failed, total)
        return total

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
            total = self._write_all(name, changes.documents, progress)
            return copied + total, f"were expected ({copied} copied + {total} changed)", DUPLICATE_IDS_HINT

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
        return self._call(f"count the changed items in {index}", self._count, index, {"ids": {"values": ids}})

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
                "created": iso(created_at),
                "complete": False,
            }
        }
        # the fields: what serving asks (current_schema) and `index --changed-only` checks
        meta["cooccur"]["schema"] = _schema_to_meta(schema)
        if model_id is not None:
            meta["cooccur"]["model_id"] = model_id
        meta["cooccur"].update(extra_meta)
        body = build_index_body(
            schema, self.settings, load_template(self._mapping_path), meta=meta
        )
        may_exist = False
        action = f"create index {name}"
        try:
            try:
                may_exist = True
                self._create_index(name, body)
            except self.client_errors as e:
                if self._is_answer(e):
                    may_exist = False  # a definite refusal: nothing was created
                raise
            action = f"bulk-index documents into {name}"
            expected, what, hint = fill(name)
            action = f"refresh {name}"
            self._refresh(name)
            action = f"count the documents of {name}"
            count = self._count(name)
            if count != expected:
                raise IndexerError(
                    f"index {name} holds {count} documents but {expected} {what}; "
                    "the current version is unchanged",
                    hint=hint,
                )
            action = f"mark {name} complete"
            meta["cooccur"].update(complete=True, documents=count)
            self._put_meta(name, meta)
            action = f"switch alias {self.alias} to {name}"
            if previous is None:
                states = self._states()
                previous = [st.name for st in states if st.aliased and st.name != name]
            self._update_aliases(alias_actions(self.alias, previous, name))
            self._schema = None
        except BaseException as e:
            if may_exist:
                self._drop(name)
            if isinstance(e, self.client_errors):
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
            task = self._start_reindex({"index": source, "query": query}, {"index": dest})
        except self.client_errors as e:
            raise self._error(e, action) from e
        done = False
        try:
            delay = TASK_POLL_FIRST
            while True:
                status = self._call(action, self._task, task)
                if status.get("completed"):
                    done = True
                    break
                time.sleep(delay)
                delay = min(delay * 2, TASK_POLL_MAX)
        finally:
            if not done:
                try:
                    self._cancel_task(task)
                except self.client_errors as e:
                    log.warning("could not cancel the copy task %s: %s", task, e)
        error = status.get("error")
        if isinstance(error, dict):
            raise SearchServerError(
                self.product.name, action, 500, str(error.get("type", "error")), str(error.get("reason", "")),
                hint=hint_for(self.product, 500, str(error.get("type", ""))),
            )
        response = status.get("response") or {}
        failures = response.get("failures") or []
        if failures or response.get("timed_out"):
            first = failures[0] if failures else {}
            cause = first.get("cause")
            if not isinstance(cause, dict):
                cause = {}
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
        errors: tuple[type[BaseException], ...] = (IndexerError, *self.client_errors)
        try:
            doomed = prune_choices(self._states(), current, self.keep_versions)
            if doomed:
                self._delete_indices(doomed)
                log.info("removed old versions %s", doomed)
            return doomed
        except errors as e:
            log.warning("could not remove old versions of %s: %s", self.alias, e)
            return []

    def current_schema(self) -> IndexSchema | None:
        """The current index's fields (its `_meta.cooccur.schema`), kept SCHEMA_TTL seconds."""
        now = time.monotonic()
        if self._schema is None or now - self._schema[0] >= SCHEMA_TTL:
            states = self._states()
            current = [st for st in states if st.aliased]
            self._schema = (now, current[0].schema if len(current) == 1 else None)
        return self._schema[1]

    def versions(self) -> list[VersionInfo]:
        """All `<alias>_<time>` indices, oldest first, with document counts."""
        states = self._states()
        if not states:
            return []
        counts = self._call("read index stats", self._docs_stats, [st.name for st in states]).get("indices", {})
        out = []
        for st in states:
            docs = counts.get(st.name, {}).get("primaries", {}).get("docs", {}).get("count", 0)
            created = version_time(self.alias, st.name)
            out.append(
                VersionInfo(
                    name=st.name,
                    created=iso(created) or "",
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
        self._call(f"switch alias {self.alias} to {target}", self._update_aliases,
                   alias_actions(self.alias, [current.name], target))
        self._schema = None
        count = self._call(f"count {target}", self._count, target)
        created = version_time(self.alias, target)
        return VersionInfo(
            name=target,
            created=iso(created) or "",
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
        version = str(resp["hits"]["hits"][0]["_index"]) if resp["hits"]["hits"] else self._current(self._states()).name
        return SearchResult(hits=hits, version=version)

    def _search(self, body: dict[str, Any], dfs: bool) -> dict[str, Any]:
        return self._call(f"search {self.alias}", self._search_request, self.alias, body, dfs)

    def get(self, ids: Iterable[str]) -> dict[str, Document]:
        """The current documents of these ids (absent ids are left out)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        resp = self._call(f"get documents of {self.alias}", self._mget, self.alias, wanted)
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
        except self.client_errors as e:
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
        except self.client_errors as e:
            raise self._error(e, f"delete documents from {self.alias}") from e
        if failed:
            raise DocumentsFailed(failed, total)

    def checks(self) -> Iterator[Check]:
        """Cluster reachable, of this product and a supported version; the alias on one
        index with documents."""
        p = self.product
        where = ", ".join(self.settings.urls)
        try:
            info = self._info()
        except self.client_errors as e:
            err = self._error(e, "read cluster info")
            yield Check(p.backend, False, str(err), err.hint)
            return
        number = str(info.get("version", {}).get("number", "?"))
        major = int(number.split(".")[0]) if number.split(".")[0].isdigit() else 0
        detail = (f"{where}: {p.name} {number} (cluster {info.get('cluster_name', '?')}, "
                  f"client {self.client_version})")
        if major not in p.supported:
            yield Check(p.backend, False, detail, f"cooccur supports {p.name} {p.majors}")
            return
        yield Check(p.backend, True, detail)
        try:
            states = self._states()
            current = self._current(states)
            count = self._call(f"count {current.name}", self._count, current.name)
        except IndexerError as e:
            yield Check(f"{p.backend} alias", False, str(e), e.hint)
            return
        detail = f"alias {self.alias} -> {current.name} ({count} documents; {len(states)} versions kept)"
        if count == 0:
            yield Check(f"{p.backend} alias", False, detail, "the current index is empty: index a model again")
        else:
            yield Check(f"{p.backend} alias", True, detail)
