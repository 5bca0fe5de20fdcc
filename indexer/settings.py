"""Indexing and backend settings, with their defaults (documented in docs/configuration.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_urls() -> list[str]:
    raw = os.environ.get("COOCCUR_ES_URL", "http://localhost:9200")
    return [u.strip() for u in raw.split(",") if u.strip()]


@dataclass
class ElasticsearchSettings:
    """Connection and bulk-indexing settings of the Elasticsearch backend ([index.elasticsearch])."""

    urls: list[str] = field(default_factory=_env_urls)
    api_key: str | None = field(default_factory=lambda: os.environ.get("COOCCUR_ES_API_KEY"))
    username: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = 30.0
    shards: int = 1
    """One shard keeps idf exact, so scores equal the embedded backend's (docs/search.md)."""
    replicas: int = 1
    chunk_size: int = 500
    max_chunk_bytes: int = 10 * 1024 * 1024
    max_retries: int = 5
    initial_backoff: float = 1.0
    max_backoff: float = 60.0


@dataclass
class IndexSettings:
    """Where and how item documents are indexed ([index])."""

    backend: str = "embedded"
    """`embedded` (a local index directory, no server) or `elasticsearch`."""
    data_dir: str = "cooccur-data"
    """Embedded backend: the directory holding index versions (and the event store)."""
    name: str = "items"
    """Embedded: the index's subdirectory; Elasticsearch: the alias (indices are name_<time>)."""
    keep_versions: int = 3
    """Versions kept after a switch (the current one included); older ones are removed."""
    date_fields: list[str] = field(default_factory=lambda: ["availableDate", "expireDate", "date"])
    """Item properties indexed as dates (all other properties are keyword arrays)."""
    elasticsearch: ElasticsearchSettings = field(default_factory=ElasticsearchSettings)

    _nested = {"elasticsearch": ElasticsearchSettings}

    def __post_init__(self) -> None:
        if self.backend not in ("embedded", "elasticsearch"):
            raise ValueError(f"backend must be 'embedded' or 'elasticsearch', not {self.backend!r}")
        if self.keep_versions < 1:
            raise ValueError("keep_versions must be at least 1")
