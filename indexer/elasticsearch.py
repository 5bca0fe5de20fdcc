"""The Elasticsearch backend: indexer.search_server's versions behind an alias, through the
official `elasticsearch` client (docs/elasticsearch.md).

Server versions 8.x and 9.x are supported: the client's REST-compatibility headers are
pinned to `compatible-with=8`, which both accept (a 9.x client otherwise sends
`compatible-with=9`, which an 8.x server rejects with `media_type_header_exception`).
The client refuses servers that are not Elasticsearch (its product check): OpenSearch has
its own backend (indexer/opensearch.py).
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

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

from .errors import BackendUnavailable, IndexerError
from .search_server import Product, SearchServerBackend, api_error, bulk_failures, unreachable

ELASTICSEARCH = Product("Elasticsearch", "elasticsearch", (8, 9), "COOCCUR_ES_URL",
                        "api_key (COOCCUR_ES_API_KEY) or username/password")
COMPAT_MAJOR = 8
"""REST-compatibility version sent to the server: 8.x and 9.x servers both accept 8."""
_COMPAT_RE = re.compile(r"compatible-with=\d+")
RETRY_STATUSES = (429, 502, 503, 504)
"""Statuses the bulk helper retries (whole request or single document) with backoff."""


def translate_error(e: BaseException, action: str, urls: list[str]) -> IndexerError:
    """The project's error for an exception of the client, naming the URL and a hint."""
    p = ELASTICSEARCH
    if isinstance(e, IndexerError):
        return e
    if isinstance(e, UnsupportedProductError):
        return BackendUnavailable(
            f"{', '.join(urls)} is not Elasticsearch ({action}): {e.message}",
            hint=f"point {p.section} urls / {p.url_env} at an Elasticsearch {p.majors} cluster "
                 "(OpenSearch: backend = \"opensearch\")",
        )
    if isinstance(e, ApiError):
        return api_error(p, action, urls, e.meta.status, e.body, e.message)
    if isinstance(e, TlsError):
        return unreachable(p, action, urls, "tls", e)
    if isinstance(e, ConnectionTimeout):
        return unreachable(p, action, urls, "timeout", e)
    if isinstance(e, TransportConnectionError):
        return unreachable(p, action, urls, "connect", e)
    if isinstance(e, BulkIndexError):
        return bulk_failures(e.errors)
    if isinstance(e, TransportError):
        return BackendUnavailable(f"Elasticsearch at {', '.join(urls)} ({action}): {e}")
    return IndexerError(f"Elasticsearch ({action}): {e}")


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


class ElasticsearchBackend(SearchServerBackend):
    """indexer.backend.Backend on an Elasticsearch 8.x/9.x cluster, versions behind an alias."""

    product = ELASTICSEARCH
    client_errors = (ApiError, TransportError, BulkIndexError)
    client_version = CLIENT_VERSION

    def _make_client(self, extra: dict[str, Any]) -> Elasticsearch:
        s = self.settings
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
        return Elasticsearch(**kwargs)

    def _translate(self, e: BaseException, action: str) -> IndexerError:
        return translate_error(e, action, list(self.settings.urls))

    def _is_answer(self, e: BaseException) -> bool:
        return isinstance(e, ApiError)

    def _info(self) -> dict[str, Any]:
        quick = self.client.options(max_retries=0)
        try:
            return quick.info().body
        except ApiError as e:
            if e.meta.status not in (404, 405):
                raise
        # A node without the rest-root module (the live tests' node built from Maven Central
        # artifacts) has no `GET /`: its version from the nodes info API instead.
        nodes = quick.nodes.info(node_id="_local", metric="_none").body
        node: dict[str, Any] = next(iter(nodes.get("nodes", {}).values()), {})
        return {"version": {"number": node.get("version", "?")}, "cluster_name": nodes.get("cluster_name", "?")}

    def _indices(self, pattern: str) -> dict[str, Any]:
        return self.client.indices.get(index=pattern, expand_wildcards="open").body

    def _create_index(self, name: str, body: dict[str, Any]) -> None:
        self.client.indices.create(index=name, settings=body["settings"], mappings=body["mappings"])

    def _refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index)

    def _count(self, index: str, query: dict[str, Any] | None = None) -> int:
        kwargs = {"query": query} if query is not None else {}
        return int(self.client.count(index=index, **kwargs)["count"])

    def _put_meta(self, index: str, meta: dict[str, Any]) -> None:
        self.client.indices.put_mapping(index=index, meta=meta)

    def _update_aliases(self, actions: list[dict[str, Any]]) -> None:
        self.client.indices.update_aliases(actions=actions)

    def _delete_indices(self, names: list[str], *, missing_ok: bool = False) -> None:
        client = self.client.options(ignore_status=404) if missing_ok else self.client
        client.indices.delete(index=",".join(names))

    def _docs_stats(self, names: list[str]) -> dict[str, Any]:
        return self.client.indices.stats(index=",".join(names), metric="docs").body

    def _start_reindex(self, source: dict[str, Any], dest: dict[str, Any]) -> str:
        started = self.client.options(max_retries=0).reindex(source=source, dest=dest, wait_for_completion=False)
        return str(started["task"])

    def _task(self, task: str) -> dict[str, Any]:
        with _tasks_api():
            return self.client.tasks.get(task_id=task).body

    def _cancel_task(self, task: str) -> None:
        with _tasks_api():
            self.client.options(ignore_status=404).tasks.cancel(task_id=task)

    def _search_request(self, index: str, body: dict[str, Any], dfs: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"index": index, "body": body}
        if dfs:
            params["search_type"] = "dfs_query_then_fetch"
        return self.client.search(**params).body

    def _mget(self, index: str, ids: list[str]) -> dict[str, Any]:
        return self.client.mget(index=index, ids=ids).body

    def _streaming_bulk(self, actions: Iterable[dict[str, Any]], params: dict[str, Any]) -> Iterator[tuple[bool, dict]]:
        """helpers.streaming_bulk. Retries: the helper re-sends a chunk, or the documents of
        it, answered with a status in RETRY_STATUSES after initial_backoff * 2**n seconds
        (capped at max_backoff), up to max_retries times. The transport's own immediate
        status retries are switched off for these requests so the helper's backoff applies;
        connection errors and timeouts are retried by the transport (bulk `index` by id is
        idempotent)."""
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
        # a generator: the stubs' return type (Iterable) is wider than what it gives
        return cast(Iterator[tuple[bool, dict]], helpers.streaming_bulk(client, actions, **kwargs, **params))
