"""Errors of the indexer and the backends; each carries the data a user needs to act."""

from __future__ import annotations


class IndexerError(Exception):
    """Base of every error the indexer or a backend raises for a cause the user can fix."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint


class ModelDirError(IndexerError):
    """The model directory is missing, incomplete or of an unknown format."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"{path}: {problem}",
            hint="point at a directory written by `cooccur train`",
        )
        self.path = path
        self.problem = problem


class DocumentsFailed(IndexerError):
    """Some documents were refused; the previous version stays current."""

    def __init__(self, failed: list[tuple[str, str]], total: int) -> None:
        first = "; ".join(f"{doc_id}: {reason}" for doc_id, reason in failed[:3])
        super().__init__(
            f"{len(failed)} of {total} documents failed ({first}); the current version is unchanged",
            hint="fix the model or the mapping, then index again",
        )
        self.failed = failed
        self.total = total


class BackendUnavailable(IndexerError):
    """The backend cannot be reached or has no usable current version."""


class UnsupportedQuery(IndexerError):
    """A query body uses something outside the subset both backends implement."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"query {path}: {problem}",
            hint="see docs/search.md for the supported query subset",
        )
        self.path = path


class ChangedOnlyRefused(IndexerError):
    """`cooccur index --changed-only` cannot apply this model to the current version; a full
    index of the model is always possible instead.

    `reason` is one of: `no-base-model` (the model was not written by `cooccur update`),
    `no-changed` (no changed/ dataset), `no-current-version`, `other-base` (the current
    version was built from another model), `schema` (the fields differ)."""

    def __init__(self, reason: str, detail: str, *, expected: object = None, found: object = None) -> None:
        super().__init__(
            f"cannot index only the changed items: {detail}",
            hint="run a full `cooccur index MODEL` (without --changed-only)",
        )
        self.reason = reason
        self.detail = detail
        self.expected = expected
        self.found = found
