"""Read a model directory (docs/model-format.md) and yield one item document per item."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Set
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

# The model format's module (pyarrow only), not the job: the reader and the writer share
# its layout, its constants and its file systems (a model may be on any URI).
from indicators.model import MODEL_FORMAT, RANKINGS, Location, data_of, location, read_manifest_at

from .backend import ChangeSet, Document, IndexSchema
from .errors import ChangedOnlyRefused, ModelDirError
from .features import MIN_NORMAL, encode_feature

PRIOR = "prior"
"""Number field: the item's popularity prior (docs/search.md, "Popularity prior")."""
WEIGHTS_SUFFIX = "_w"
RESERVED = ("id", *RANKINGS, PRIOR)


def weights_field(indicator: str) -> str:
    """The `rank_features` field holding an indicator's correlator weights (LLR scores)."""
    return indicator + WEIGHTS_SUFFIX


@dataclass(frozen=True)
class Prior:
    """How a document's `prior` is computed from its ranking ([index] prior_*)."""

    ranking: str = "popular"
    exponent: float = 0.5
    floor: float = 1.0

    def value(self, ranking: float | None) -> float:
        """max(ranking, floor) ** exponent; items without the ranking count as floor."""
        return max(ranking or 0.0, self.floor) ** self.exponent


@dataclass(frozen=True)
class Model:
    """A model directory opened for indexing: where it is, its manifest, and the version
    directory the manifest names (where its parts are read from)."""

    location: Location
    manifest: dict
    data: Location

    @property
    def path(self) -> str:
        """The model's path or URI, as given."""
        return self.location.uri

    @property
    def indicators(self) -> list[str]:
        return list(self.manifest["indicators"])

    @property
    def properties(self) -> list[str]:
        return list(self.manifest.get("properties", []))

    @property
    def served(self) -> dict[str, Any]:
        """What a version built from this model records so serving knows its model: the
        primary action and the indicators, primary first."""
        indicators = self.indicators
        return {"primary": self.manifest.get("primary") or indicators[0], "indicators": indicators}

    @property
    def model_id(self) -> str | None:
        """Unique per model directory (None: written before model ids existed)."""
        return self.manifest.get("model_id")

    @property
    def base_model_id(self) -> str | None:
        """The model_id of the model this one was updated from (`cooccur update` only)."""
        return self.manifest.get("base_model_id")


def open_model(path: str | os.PathLike) -> Model:
    """Open and validate a model directory written by `cooccur train` (a local path or a
    URI: indicators.model). The manifest is read first and names the version to read."""
    root = location(path)
    manifest_path = str(root / "manifest.json")
    try:
        if not root.is_dir() and not (root / "manifest.json").is_file():
            raise ModelDirError(root.uri, "not a directory")
        manifest = read_manifest_at(root)
    except FileNotFoundError:
        raise ModelDirError(root.uri, "no manifest.json (training did not finish?)") from None
    except json.JSONDecodeError as e:
        raise ModelDirError(manifest_path, f"invalid JSON at line {e.lineno}: {e.msg}") from e
    except OSError as e:
        raise ModelDirError(root.uri, f"unreadable: {e}") from None
    if manifest.get("format") != MODEL_FORMAT:
        raise ModelDirError(
            manifest_path, f"format {manifest.get('format')!r}, expected {MODEL_FORMAT!r}"
        )
    if not isinstance(manifest.get("indicators"), list) or not manifest["indicators"]:
        raise ModelDirError(manifest_path, "no `indicators` list (training did not finish?)")
    try:
        data = data_of(root, manifest)
    except ValueError as e:
        raise ModelDirError(manifest_path, str(e)) from None
    for part in ("indicators", "rankings", "properties"):
        if not (data / part).is_dir():
            raise ModelDirError(data.uri, f"missing {part}/")
    for key in ("model_id", "base_model_id"):
        if key in manifest and (not isinstance(manifest[key], str) or not manifest[key]):
            raise ModelDirError(manifest_path, f"`{key}` must be a non-empty string, not {manifest[key]!r}")
    clash = set(manifest["indicators"]) & set(manifest.get("properties", []))
    clash |= (set(manifest["indicators"]) | set(manifest.get("properties", []))) & set(RESERVED)
    clash |= {weights_field(i) for i in manifest["indicators"]} & set(manifest.get("properties", []))
    if clash:
        raise ModelDirError(root.uri, f"field name(s) used twice: {sorted(clash)}")
    return Model(root, manifest, data)


def schema_for(model: Model, date_fields: tuple[str, ...] = (), *, weights: bool = True) -> IndexSchema:
    """The index schema of a model: indicators and non-date properties are keyword fields,
    the rankings and the prior number fields; with `weights`, one `rank_features` field of
    correlator weights per indicator."""
    dates = tuple(f for f in date_fields if f in model.properties)
    keywords = tuple(model.indicators) + tuple(p for p in model.properties if p not in dates)
    features = tuple(weights_field(i) for i in model.indicators) if weights else ()
    return IndexSchema(keyword_fields=keywords, date_fields=dates, number_fields=(*RANKINGS, PRIOR),
                       feature_fields=features)


def _read(path: Location, columns: list[str], only: Set[str] | None = None):
    files = path.files()
    if not files:
        return []
    # `only`: the filter is pushed down to the Parquet reader, which skips row groups
    # whose item statistics cannot match, so a small change set reads little of the model
    filters = ds.field("item").isin(pa.array(sorted(only), pa.string())) if only is not None else None
    try:
        return pq.ParquetDataset(files, filesystem=path.fs, filters=filters).read(columns=columns).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise ModelDirError(str(path), f"unreadable Parquet: {e}") from None


def iter_documents(
    model: Model, schema: IndexSchema, only: Set[str] | None = None, prior: Prior | None = None
) -> Iterator[Document]:
    """One document per item found anywhere in the model, in item-id order.

    Items that appear only as properties or only in rankings still get a document, so
    business rules and backfill can return them. Dates keep their first value. Every
    document gets its `prior` (when the schema has it) and, for feature fields of the
    schema, its correlators' LLR scores ({encoded correlator id: LLR}; correlators scoring
    0 have no weight: rank_features values must be positive).
    With `only`, just the documents of those items (an item of `only` that the model does
    not have gets none).
    """
    prior = prior or Prior()
    features = set(schema.feature_fields)
    docs: dict[str, Document] = {}

    def doc(item: str) -> Document:
        d = docs.get(item)
        if d is None:
            d = docs[item] = {"id": item}
        return d

    for row in _read(model.data / "indicators", ["indicator", "item", "correlators", "scores"], only):
        d = doc(row["item"])
        d[row["indicator"]] = list(row["correlators"])
        if weights_field(row["indicator"]) in features:
            weights = {encode_feature(c): s for c, s in zip(row["correlators"], row["scores"], strict=True)
                       if s >= MIN_NORMAL}
            if weights:
                d[weights_field(row["indicator"])] = weights
    dates = set(schema.date_fields)
    for row in _read(model.data / "properties", ["item", "name", "values"], only):
        values = list(row["values"] or [])
        if not values:
            continue
        doc(row["item"])[row["name"]] = values[0] if row["name"] in dates else values
    for row in _read(model.data / "rankings", ["item", *RANKINGS], only):
        d = doc(row["item"])
        for r in RANKINGS:
            d[r] = float(row[r] or 0.0)
    with_prior = PRIOR in schema.number_fields
    for item in sorted(docs):
        d = docs[item]
        if with_prior:
            d[PRIOR] = prior.value(d.get(prior.ranking))
        yield d


def changed_items(model: Model) -> set[str]:
    """The items of the model's changed/ dataset (written by `cooccur update`)."""
    path = model.data / "changed"
    if not path.is_dir():
        raise ChangedOnlyRefused(
            "no-changed", f"{model.path} has no changed/ dataset (not written by `cooccur update`)"
        )
    files = path.files()
    if not files:
        return set()  # nothing changed: Spark writes no part file for an empty dataset
    try:
        table = pq.ParquetDataset(files, filesystem=path.fs).read()
    except (pa.ArrowException, OSError) as e:
        raise ModelDirError(str(path), f"unreadable Parquet: {e}") from None
    if "item" not in table.column_names:
        raise ModelDirError(str(path), f"no `item` column (columns: {', '.join(table.column_names)})")
    items = table.column("item")
    if items.null_count:
        raise ModelDirError(str(path), f"{items.null_count} null item id(s)")
    return set(items.to_pylist())


def read_changes(model: Model, schema: IndexSchema, prior: Prior | None = None) -> ChangeSet:
    """The documents an updated model changes relative to its base model: the new
    documents of the changed items, and the changed items it has no document for."""
    if model.base_model_id is None:
        raise ChangedOnlyRefused(
            "no-base-model",
            f"{model.path}/manifest.json has no base_model_id (a model written by `cooccur train`, "
            "not `cooccur update`)",
        )
    items = changed_items(model)
    documents = list(iter_documents(model, schema, only=items, prior=prior)) if items else []
    present = {d["id"] for d in documents}
    return ChangeSet(model.base_model_id, model.model_id, documents, sorted(items - present), model.served)
