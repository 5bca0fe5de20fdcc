"""Writing and reading a model version's Parquet parts on its file system (pyarrow only:
shared by the job, which computes them with Spark, and the update, which does not)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .model import Location
from .properties import current_properties
from .rankings import kept_since, rankings
from .settings import TrainSettings, parse_duration

DICTIONARY_PAGE_BYTES = 64 << 20
"""Dictionary page limit of the model's Parquet files. The writers' default (1 MB, pyarrow's
and parquet-mr's `parquet.dictionary.page.size`) is below the item ids of a 100 000-item
catalogue, and past it a column falls back to plain strings, which the indexer must hash
again (read_dictionary): reading the correlators of 100 000 items took 5x as long."""


def write_table(table: pa.Table, where: Location, **options) -> None:
    """One Parquet file (its directory is made first: object stores have none)."""
    parent = where.path.rsplit("/", 1)[0]
    where.fs.create_dir(parent, recursive=True)
    options.setdefault("dictionary_pagesize_limit", DICTIONARY_PAGE_BYTES)
    pq.write_table(table, where.path, filesystem=where.fs, **options)


def read_table(where: Location, **options) -> pa.Table:
    """A Parquet file, or the Parquet files directly inside a directory as one table."""
    source = where.files() if where.is_dir() else where.path
    return pq.read_table(source, filesystem=where.fs, **options)


def ranking_window(settings: TrainSettings, newest: datetime | None):
    """(end, window) of the rankings: the configured end or the newest event."""
    r = settings.rankings
    end = datetime.fromisoformat(r.end.replace("Z", "+00:00")) if r.end else newest
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return end or datetime.now(UTC), parse_duration(r.window) if r.window else None


def write_rankings(events: pa.Table, settings: TrainSettings, newest: datetime | None,
                   first: datetime | None, data: Location) -> int:
    """Rank items from the ranked events (item, time_us) into rankings/, and keep the
    events that can still count into state/ (with a window, older ones never will)."""
    end, window = ranking_window(settings, newest)
    ranked = rankings(events["item"], events["time_us"], end, window, first)
    write_table(ranked, data / "rankings" / "part-00000.parquet")
    since = kept_since(end, window)
    if since is not None:
        events = events.filter(pc.greater_equal(events["time_us"], since))
    write_table(events, data / "state" / "ranking_events.parquet")
    return ranked.num_rows


def write_properties(changes: pa.Table, data: Location) -> tuple[list[str], int]:
    """Write the current item properties and their state (latest changes); (property
    names, items with properties)."""
    state, props = current_properties(changes)
    write_table(props, data / "properties" / "part-00000.parquet")
    write_table(state, data / "state" / "property_changes.parquet")
    return sorted(pc.unique(props["name"]).to_pylist()), len(pc.unique(props["item"]))
