"""Errors of the query side (requests, event store, service); each carries the data to act on."""

from __future__ import annotations


class QueryError(Exception):
    """Base of every error the query side raises for a cause the user can fix."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint


class BadRequest(QueryError):
    """A query or event is invalid; `field` names the offending field (a JSON path)."""

    hint = "see docs/api.md for the request format"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class SettingsError(QueryError):
    """The [query], [events] or [serve] config section is wrong."""

    hint = "see docs/api.md (configuration)"

    def __init__(self, key: str, problem: str, section: str = "query") -> None:
        super().__init__(f"[{section}] {key}: {problem}")
        self.key = key
        self.problem = problem


class ImportRejected(QueryError):
    """`cooccur events import` found bad rows and was not told to skip them."""

    hint = "fix the rows, or pass --rejects PATH to write them there and import the rest"

    def __init__(self, path: str, rejected: int, total: int, first: list[tuple[int, str, str]]) -> None:
        shown = "; ".join(f"{path}:{line}: {field}: {problem}" for line, field, problem in first[:5])
        super().__init__(f"{rejected} of {total} rows rejected, nothing imported: {shown}")
        self.path = path
        self.rejected = rejected
        self.total = total
        self.first = first


class EventFileError(QueryError):
    """An events file cannot be read at all (missing, unknown format, bad CSV header)."""

    hint = "events files are JSON lines (PredictionIO format) or CSV with a header user,event,item,time"

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class EventStoreError(QueryError):
    """The event store's SQLite file cannot be opened or is not one."""

    hint = "point --events ([events] path) at a cooccur event store, or at a new file"

    def __init__(self, path: str, problem: str, *, hint: str = "") -> None:
        super().__init__(f"{path}: {problem}", hint=hint)
        self.path = path


class ModelMismatch(QueryError):
    """The config names indicators the served index version was not built with."""

    def __init__(self, section: str, missing: list[str], version: str | None, served: list[str],
                 served_source: str) -> None:
        have = f"{served_source}: {', '.join(served)}" if served else "none recorded"
        super().__init__(
            f"[{section}] indicators: {', '.join(repr(m) for m in missing)} "
            f"{'is not an indicator' if len(missing) == 1 else 'are not indicators'} of the served index "
            f"version {version} ({have})",
            hint=f"remove {'it' if len(missing) == 1 else 'them'} from [{section}] indicators (unset, serving "
                 "uses the indicators of the index's model), or index a model trained with "
                 f"{'it' if len(missing) == 1 else 'them'}",
        )
        self.section = section
        self.missing = missing
