"""Indexing and backend settings, with their defaults (documented in docs/configuration.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .backends import BACKENDS


def _env_urls(variable: str = "COOCCUR_ES_URL") -> list[str]:
    raw = os.environ.get(variable, "http://localhost:9200")
    return [u.strip() for u in raw.split(",") if u.strip()]


@dataclass
class ElasticsearchSettings:
    """Connection and bulk-indexing settings of the Elasticsearch backend ([index.elasticsearch])."""

    urls: list[str] = field(default_factory=_env_urls)
    """Cluster URL(s); default: $COOCCUR_ES_URL (comma-separated) or http://localhost:9200."""
    api_key: str | None = field(default_factory=lambda: os.environ.get("COOCCUR_ES_API_KEY"))
    """API key (base64 id:key); default: $COOCCUR_ES_API_KEY."""
    username: str | None = None
    """Basic-auth user (with `password`)."""
    password: str | None = None
    """Basic-auth password."""
    ca_certs: str | None = None
    """CA bundle for TLS verification."""
    verify_certs: bool = True
    """Verify the cluster's TLS certificate."""
    request_timeout: float = 30.0
    """Seconds per request."""
    shards: int = 1
    """One shard keeps idf exact, so scores equal the embedded backend's (docs/search.md)."""
    replicas: int = 1
    """Replicas of each new index."""
    chunk_size: int = 500
    """Documents per bulk request (at most)."""
    max_chunk_bytes: int = 10 * 1024 * 1024
    """Bytes per bulk request (at most)."""
    max_retries: int = 5
    """Retries of a bulk chunk refused with 429 / 5xx."""
    initial_backoff: float = 1.0
    """Seconds before the first retry; doubles each retry."""
    max_backoff: float = 60.0
    """Cap of the retry backoff in seconds."""


@dataclass
class OpenSearchSettings(ElasticsearchSettings):
    """Connection and bulk-indexing settings of the OpenSearch backend ([index.opensearch]):
    the same keys as [index.elasticsearch], but for api_key."""

    urls: list[str] = field(default_factory=lambda: _env_urls("COOCCUR_OPENSEARCH_URL"))
    """Cluster URL(s); default: $COOCCUR_OPENSEARCH_URL (comma-separated) or http://localhost:9200."""
    api_key: str | None = None
    """OpenSearch has no API keys: leave unset (basic auth: username / password)."""


@dataclass
class IndexSettings:
    """Where and how item documents are indexed ([index])."""

    backend: str = "embedded"
    """`embedded` (a local index directory, no server), `elasticsearch` or `opensearch`."""
    data_dir: str = "cooccur-data"
    """Embedded backend: the directory holding index versions (and the event store)."""
    name: str = "items"
    """Embedded: the index's subdirectory; Elasticsearch / OpenSearch: the alias (indices are name_<time>)."""
    keep_versions: int = 3
    """Versions kept after a switch (the current one included); older ones are removed."""
    search_threads: int = 1
    """Embedded: threads scoring one search's long posting lists, each a range of the
    documents (scores are the same with any number). 0 = auto: the cores shared by the
    searches that run at once (`cooccur serve`: its processes x threads; a library or CLI
    search: all cores). The default is 1: on the 2-vCPU machine of bench/index.py two
    threads made a history-500 search slower, not faster (docs/search.md, "Speed")."""
    date_fields: list[str] = field(default_factory=lambda: ["availableDate", "expireDate", "date"])
    """Item properties indexed as dates (all other properties are keyword arrays)."""
    prior_ranking: str = "popular"
    """Ranking behind each document's `prior` field (popular, trending or hot): the query
    multiplies an item's personal score by it (docs/search.md, "Popularity prior")."""
    prior_exponent: float = 0.5
    """prior = max(ranking, prior_floor) ** prior_exponent; 0 makes every prior 1 (no prior).
    Chosen on validation splits (docs/evaluation.md); a change needs a re-index."""
    prior_floor: float = 1.0
    """Ranking value of items with a lower one or none (new items, no events in the window)."""
    correlator_weights: bool = True
    """Also index each indicator's correlator LLR scores as a `rank_features` field
    `<indicator>_w`, so `[query] scoring = "weights"` can score by them."""
    elasticsearch: ElasticsearchSettings = field(default_factory=ElasticsearchSettings)
    """Connection and bulk settings: [index.elasticsearch]."""
    opensearch: OpenSearchSettings = field(default_factory=OpenSearchSettings)
    """Connection and bulk settings: [index.opensearch]."""

    _nested = {"elasticsearch": ElasticsearchSettings, "opensearch": OpenSearchSettings}

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.keep_versions < 1:
            raise ValueError("keep_versions must be at least 1")
        if isinstance(self.search_threads, bool) or not isinstance(self.search_threads, int) \
                or self.search_threads < 0:
            raise ValueError(f"search_threads must be 0 (auto) or a number of threads, not {self.search_threads!r}")
        if self.prior_ranking not in ("popular", "trending", "hot"):
            raise ValueError(f"prior_ranking must be popular, trending or hot, not {self.prior_ranking!r}")
        for key in ("prior_exponent", "prior_floor"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ValueError(f"{key} must be a finite number >= 0, not {value!r}")
        if self.prior_floor <= 0 and self.prior_exponent > 0:
            raise ValueError("prior_floor must be > 0 (a prior of 0 would hide items)")
