"""The interface every search backend implements, and the plain data it exchanges.

Both backends (embedded, Elasticsearch) take the same documents and the same
Elasticsearch-style query bodies and must rank identically (docs/search.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import ChangedOnlyRefused

Document = dict[str, Any]
"""An item document: {"id": str, <keyword field>: [str, ...], <date field>: str (ISO-8601),
<number field>: float, <feature field>: {feature name: float > 0}}. Keyword fields are
arrays; a missing field means no value. Feature names contain no dots (indexer.features)."""


@dataclass(frozen=True)
class IndexSchema:
    """Which fields an index has and of which type. `id` is always a keyword field."""

    keyword_fields: tuple[str, ...]
    date_fields: tuple[str, ...] = ()
    number_fields: tuple[str, ...] = ()
    feature_fields: tuple[str, ...] = ()
    """`rank_features` fields: per document {feature name: positive float} (docs/search.md)."""

    def all_fields(self) -> tuple[str, ...]:
        return ("id", *self.keyword_fields, *self.date_fields, *self.number_fields, *self.feature_fields)


SCHEMA_GROUPS = ("keyword_fields", "date_fields", "number_fields", "feature_fields")
"""The field groups of an IndexSchema, in order."""


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
    model_id: str | None = None
    """The model_id of the model this version was built from (None: a model without one)."""
    primary: str | None = None
    """The model's primary action, when the indexer recorded it."""
    indicators: tuple[str, ...] | None = None
    """The model's indicators, primary first, when the indexer recorded them."""
    schema: IndexSchema | None = None
    """The version's fields, when the backend records them."""


@dataclass
class IndexReport:
    """What one indexing run did."""

    version: str
    documents: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(document id, reason) for each document the backend refused."""
    seconds: float = 0.0
    removed_versions: list[str] = field(default_factory=list)
    copied: int | None = None
    """--changed-only runs: documents carried over unchanged from the previous version
    (None for a full index)."""
    replaced: int = 0
    """--changed-only: documents of the previous version rewritten from the new model."""
    added: int = 0
    """--changed-only: documents of items the previous version did not have."""
    deleted: int = 0
    """--changed-only: documents of the previous version removed (no longer in the model)."""


@dataclass(frozen=True)
class ChangeSet:
    """What an updated model changes relative to the model the current version was built
    from (docs/model-format.md, `changed/`): applied by `Backend.update_version`."""

    base_model_id: str
    """The model the current version must have been built from."""
    model_id: str | None
    """The updated model's id, recorded in the new version."""
    documents: list[Document]
    """The new model's documents of the changed items (replacing or adding)."""
    deleted: list[str]
    """Changed items the new model has no document for: removed from the new version."""
    model: dict[str, Any] | None = None
    """The updated model's `primary` and `indicators`, recorded in the new version."""


@dataclass(frozen=True)
class Check:
    """One line of `cooccur doctor`."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


def check_update_base(
    version: str | None,
    version_model_id: str | None,
    version_schema: IndexSchema | None,
    schema: IndexSchema,
    changes: ChangeSet,
) -> None:
    """Refuse (ChangedOnlyRefused) to apply `changes` to the current version `version`
    unless it exists, was built from changes.base_model_id and has the same fields (a
    field's group decides its type in the index; order within a group does not matter)."""
    if version is None:
        raise ChangedOnlyRefused("no-current-version", "the index has no current version")
    if version_model_id is not None and version_model_id == changes.model_id:
        raise ChangedOnlyRefused(
            "other-base", f"the current version {version} is already built from model {version_model_id}",
            expected=changes.base_model_id, found=version_model_id,
        )
    if version_model_id != changes.base_model_id:
        built = f"model {version_model_id}" if version_model_id else "a model without a model_id"
        raise ChangedOnlyRefused(
            "other-base",
            f"the current version {version} was built from {built}, but the model was updated "
            f"from model {changes.base_model_id}",
            expected=changes.base_model_id, found=version_model_id,
        )
    if version_schema is None:
        raise ChangedOnlyRefused("schema", f"the current version {version} does not record its fields")
    diffs = []
    for group in SCHEMA_GROUPS:
        old, new = set(getattr(version_schema, group)), set(getattr(schema, group))
        if old != new:
            kind = group.split("_")[0]
            parts = [f"+{f}" for f in sorted(new - old)] + [f"-{f}" for f in sorted(old - new)]
            diffs.append(f"{kind} fields {' '.join(parts)}")
    if diffs:
        raise ChangedOnlyRefused(
            "schema",
            f"the model's fields differ from the current version {version}'s: {'; '.join(diffs)}",
            expected=version_schema, found=schema,
        )


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
        model_id: str | None = None,
        model: dict[str, Any] | None = None,
    ) -> IndexReport:
        """Write all documents into a new version, verify it, then switch to it atomically.
        On any failure the previous version stays current and the error is raised.
        `model_id` and `model` (the manifest's `primary` and `indicators`, so serving knows
        what the version was trained for) are recorded in the version."""
        ...

    def update_version(
        self,
        schema: IndexSchema,
        changes: ChangeSet,
        *,
        progress: ProgressFn | None = None,
    ) -> IndexReport:
        """Write a new version = the current version's documents with the changed ones
        replaced or deleted, verify it, then switch to it atomically (like create_version).
        Raises indexer.errors.ChangedOnlyRefused when there is no current version, it was
        built from another model than changes.base_model_id, or its schema differs."""
        ...

    def versions(self) -> list[VersionInfo]:
        """All kept versions, oldest first."""
        ...

    def current_schema(self) -> IndexSchema | None:
        """The current version's fields (None: no current version, or one that does not
        record them). Serving asks it per request: backends keep it cheap."""
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
