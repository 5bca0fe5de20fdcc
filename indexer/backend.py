"""The interface every search backend implements, and the plain data it exchanges.

Both backends (embedded, Elasticsearch) take the same documents and the same
Elasticsearch-style query bodies and must rank identically (docs/search.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

Document = dict[str, Any]
"""An item document: {"id": str, <keyword field>: [str, ...], <date field>: str (ISO-8601),
<number field>: float}. Keyword fields are arrays; a missing field means no value."""


@dataclass(frozen=True)
class IndexSchema:
    """Which fields an index has and of which type. `id` is always a keyword field."""

    keyword_fields: tuple[str, ...]
    date_fields: tuple[str, ...] = ()
    number_fields: tuple[str, ...] = ()

    def all_fields(self) -> tuple[str, ...]:
        return ("id", *self.keyword_fields, *self.date_fields, *self.number_fields)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    source: Document | None = None


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    version: str
    """The index version that answered (embedded version name or Elasticsearch index name)."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    created: str
    documents: int
    current: bool


@dataclass
class IndexReport:
    """What one indexing run did."""

    version: str
    documents: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(document id, reason) for each document the backend refused."""
    seconds: float = 0.0
    removed_versions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    """One line of `cooccur doctor`."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


ProgressFn = Callable[[int], None]
"""Called with the number of documents just written (for progress bars)."""


class Backend(Protocol):
    """A versioned search index of item documents."""

    def create_version(
        self,
        schema: IndexSchema,
        documents: Iterable[Document],
        *,
        progress: ProgressFn | None = None,
    ) -> IndexReport:
        """Write all documents into a new version, verify it, then switch to it atomically.
        On any failure the previous version stays current and the error is raised."""
        ...

    def versions(self) -> list[VersionInfo]:
        """All kept versions, oldest first."""
        ...

    def rollback(self) -> VersionInfo:
        """Make the version before the current one current again."""
        ...

    def search(self, body: dict[str, Any]) -> SearchResult:
        """Run an Elasticsearch-style search body (the subset in docs/search.md)."""
        ...

    def get(self, ids: Iterable[str]) -> dict[str, Document]:
        """The current version's documents for these ids (missing ids are absent)."""
        ...

    def upsert(self, documents: Iterable[Document]) -> None:
        """Create or replace documents in the current version (live item changes)."""
        ...

    def delete(self, ids: Iterable[str]) -> None:
        """Remove documents from the current version."""
        ...

    def checks(self) -> Iterator[Check]:
        """Health checks for `cooccur doctor`."""
        ...
