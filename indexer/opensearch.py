"""The OpenSearch backend: indexer.search_server's versions behind an alias, through
`opensearch-py` (docs/opensearch.md).

OpenSearch speaks the Elasticsearch 7.10 REST API that everything here uses (index, bulk,
aliases, mapping `_meta`, `_reindex` tasks, the query bodies of query/builder.py), so all of
it is shared with the Elasticsearch backend; only the client differs. The `elasticsearch`
client cannot be used: it refuses any server that is not Elasticsearch (its product check).

Scoring: OpenSearch 1.x and 2.x score keyword `term` clauses with Lucene's
LegacyBM25Similarity (BM25 times k1 + 1) like Elasticsearch, which the embedded backend
follows. OpenSearch 3.0 changed two things: plain BM25Similarity became the default, and
`term` queries on keyword fields score a constant 1.0 unless the field sets
`use_similarity`. On 3.x each new index undoes both (scoring_as_before_3), so its scores
are those of 2.x, Elasticsearch and the embedded backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any, cast

from opensearchpy import (
    ConnectionError,
    ConnectionTimeout,
    OpenSearch,
    SSLError,
    TransportError,
    helpers,
)
from opensearchpy import __versionstr__ as CLIENT_VERSION
from opensearchpy.helpers import BulkIndexError

from .errors import BackendUnavailable, IndexerError
from .search_server import Product, SearchServerBackend, api_error, bulk_failures, unreachable

OPENSEARCH = Product("OpenSearch", "opensearch", (1, 2, 3), "COOCCUR_OPENSEARCH_URL")
SCORING_CHANGED_IN = 3
"""The first major whose keyword `term` queries do not score with LegacyBM25 by default."""


def scoring_as_before_3(body: dict[str, Any]) -> dict[str, Any]:
    """The index body with what OpenSearch 3.0 changed undone: LegacyBM25 as the default
    similarity (3.0 made plain BM25 the default, opensearch-project/OpenSearch#17315) and
    `use_similarity` on every keyword field (3.0 scores `term` queries on keyword fields as
    constant 1.0 unless it is set, #17889)."""
    settings = body["settings"]
    index = {**settings.get("index", {}), "similarity": {"default": {"type": "LegacyBM25"}}}
    properties = {
        field: {"use_similarity": True, **spec} if spec.get("type") == "keyword" else spec
        for field, spec in body["mappings"].get("properties", {}).items()
    }
    return {**body, "settings": {**settings, "index": index},
            "mappings": {**body["mappings"], "properties": properties}}


def translate_error(e: BaseException, action: str, urls: list[str]) -> IndexerError:
    """The project's error for an exception of opensearch-py, naming the URL and a hint."""
    p = OPENSEARCH
    if isinstance(e, IndexerError):
        return e
    if isinstance(e, BulkIndexError):
        return bulk_failures(e.errors)
    # ConnectionError is a TransportError whose status_code is "N/A"; SSLError and
    # ConnectionTimeout are ConnectionErrors.
    if isinstance(e, SSLError):
        return unreachable(p, action, urls, "tls", e)
    if isinstance(e, ConnectionTimeout):
        return unreachable(p, action, urls, "timeout", e)
    if isinstance(e, ConnectionError):
        return unreachable(p, action, urls, "connect", e)
    if isinstance(e, TransportError) and isinstance(e.status_code, int):
        return api_error(p, action, urls, e.status_code, e.info, str(e.error))
    if isinstance(e, TransportError):
        return BackendUnavailable(f"OpenSearch at {', '.join(urls)} ({action}): {e}")
    return IndexerError(f"OpenSearch ({action}): {e}")


class OpenSearchBackend(SearchServerBackend):
    """indexer.backend.Backend on an OpenSearch cluster, versions behind an alias."""

    product = OPENSEARCH
    client_errors = (TransportError, BulkIndexError)
    client_version = CLIENT_VERSION

    def _client_kwargs(self, extra: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        if s.api_key:
            raise IndexerError(
                "[index.opensearch] api_key: OpenSearch has no API keys",
                hint="use username/password (basic auth) under [index.opensearch]",
            )
        kwargs: dict[str, Any] = {
            "hosts": list(s.urls),
            "timeout": s.request_timeout,
            "verify_certs": s.verify_certs,
            "max_retries": s.max_retries,
            "retry_on_timeout": False,
        }
        if s.username:
            kwargs["http_auth"] = (s.username, s.password or "")
        if s.ca_certs:
            kwargs["ca_certs"] = s.ca_certs
        kwargs.update(extra)
        return kwargs

    def _make_client(self, extra: dict[str, Any]) -> OpenSearch:
        self._kwargs = self._client_kwargs(extra)
        return OpenSearch(**self._kwargs)

    def _new_clients(self) -> None:
        super()._new_clients()
        for derived in ("_once", "_bulk_client"):  # made again from the new kwargs on first use
            self.__dict__.pop(derived, None)

    @cached_property
    def _once(self) -> OpenSearch:
        """A client that never retries (opensearch-py has no per-request max_retries)."""
        return OpenSearch(**{**self._kwargs, "max_retries": 0})

    @cached_property
    def _bulk_client(self) -> OpenSearch:
        """Bulk requests retry timeouts too: a bulk `index` by id is idempotent."""
        return OpenSearch(**{**self._kwargs, "retry_on_timeout": True})

    def _translate(self, e: BaseException, action: str) -> IndexerError:
        return translate_error(e, action, list(self.settings.urls))

    def _is_answer(self, e: BaseException) -> bool:
        return isinstance(e, TransportError) and isinstance(e.status_code, int)

    def _info(self) -> dict[str, Any]:
        return self._once.info()

    def _indices(self, pattern: str) -> dict[str, Any]:
        return self.client.indices.get(index=pattern, expand_wildcards="open")

    @cached_property
    def _major(self) -> int:
        number = str(self._info().get("version", {}).get("number", "0"))
        return int(number.split(".")[0]) if number.split(".")[0].isdigit() else 0

    def _create_index(self, name: str, body: dict[str, Any]) -> None:
        if self._major >= SCORING_CHANGED_IN:
            body = scoring_as_before_3(body)
        self.client.indices.create(index=name, body=body)

    def _refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index)

    def _count(self, index: str, query: dict[str, Any] | None = None) -> int:
        body = {"query": query} if query is not None else None
        return int(self.client.count(index=index, body=body)["count"])

    def _put_meta(self, index: str, meta: dict[str, Any]) -> None:
        self.client.indices.put_mapping(index=index, body={"_meta": meta})

    def _update_aliases(self, actions: list[dict[str, Any]]) -> None:
        self.client.indices.update_aliases(body={"actions": actions})

    def _delete_indices(self, names: list[str], *, missing_ok: bool = False) -> None:
        kwargs = {"ignore": 404} if missing_ok else {}
        self.client.indices.delete(index=",".join(names), **kwargs)

    def _docs_stats(self, names: list[str]) -> dict[str, Any]:
        return self.client.indices.stats(index=",".join(names), metric="docs")

    def _start_reindex(self, source: dict[str, Any], dest: dict[str, Any]) -> str:
        started = self._once.reindex(body={"source": source, "dest": dest}, wait_for_completion=False)
        return str(started["task"])

    def _task(self, task: str) -> dict[str, Any]:
        return self.client.tasks.get(task_id=task)

    def _cancel_task(self, task: str) -> None:
        self.client.tasks.cancel(task_id=task, ignore=404)

    def _search_request(self, index: str, body: dict[str, Any], dfs: bool) -> dict[str, Any]:
        kwargs = {"search_type": "dfs_query_then_fetch"} if dfs else {}
        return self.client.search(index=index, body=body, **kwargs)

    def _mget(self, index: str, ids: list[str]) -> dict[str, Any]:
        return self.client.mget(index=index, body={"ids": ids})

    def _streaming_bulk(self, actions: Iterable[dict[str, Any]], params: dict[str, Any]) -> Iterator[tuple[bool, dict]]:
        """helpers.streaming_bulk. Retries: the helper re-sends the documents answered with
        429 after initial_backoff * 2**n seconds (capped at max_backoff), up to max_retries
        times; the transport retries a whole request answered 502/503/504, a timeout or a
        lost connection, up to max_retries times, without waiting (opensearch-py's helper
        retries no other status)."""
        s = self.settings
        return helpers.streaming_bulk(
            self._bulk_client, actions, chunk_size=s.chunk_size, max_chunk_bytes=s.max_chunk_bytes,
            raise_on_error=False, raise_on_exception=True, max_retries=s.max_retries,
            # the stubs say int; the helper only sleeps min(max_backoff, initial_backoff * 2**n) seconds
            initial_backoff=cast(int, s.initial_backoff), max_backoff=cast(int, s.max_backoff), yield_ok=True,
            **params,
        )
