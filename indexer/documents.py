"""Read a model directory (docs/model-format.md) and yield one item document per item."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .backend import Document, IndexSchema
from .errors import ModelDirError

MODEL_FORMAT = "cooccur-model/1"
RANKINGS = ("popular", "trending", "hot")
RESERVED = ("id", *RANKINGS)


@dataclass(frozen=True)
class Model:
    """A model directory opened for indexing."""

    path: Path
    manifest: dict

    @property
    def indicators(self) -> list[str]:
        return list(self.manifest["indicators"])

    @property
    def properties(self) -> list[str]:
        return list(self.manifest.get("properties", []))


def open_model(path: str | Path) -> Model:
    """Open and validate a model directory written by `cooccur train`."""
    root = Path(path)
    manifest_path = root / "manifest.json"
    if not root.is_dir():
        raise ModelDirError(str(root), "not a directory")
    if not manifest_path.is_file():
        raise ModelDirError(str(root), "no manifest.json (training did not finish?)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise ModelDirError(str(manifest_path), f"invalid JSON at line {e.lineno}: {e.msg}") from e
    if manifest.get("format") != MODEL_FORMAT:
        raise ModelDirError(
            str(manifest_path), f"format {manifest.get('format')!r}, expected {MODEL_FORMAT!r}"
        )
    if not isinstance(manifest.get("indicators"), list) or not manifest["indicators"]:
        raise ModelDirError(str(manifest_path), "no `indicators` list (training did not finish?)")
    for part in ("indicators", "rankings", "properties"):
        if not (root / part).is_dir():
            raise ModelDirError(str(root), f"missing {part}/")
    clash = set(manifest["indicators"]) & set(manifest.get("properties", []))
    clash |= (set(manifest["indicators"]) | set(manifest.get("properties", []))) & set(RESERVED)
    if clash:
        raise ModelDirError(str(root), f"field name(s) used twice: {sorted(clash)}")
    return Model(root, manifest)


def schema_for(model: Model, date_fields: tuple[str, ...] = ()) -> IndexSchema:
    """The index schema of a model: indicators and non-date properties are keyword fields."""
    dates = tuple(f for f in date_fields if f in model.properties)
    keywords = tuple(model.indicators) + tuple(p for p in model.properties if p not in dates)
    return IndexSchema(keyword_fields=keywords, date_fields=dates, number_fields=RANKINGS)


def _read(path: Path, columns: list[str]):
    files = sorted(path.glob("*.parquet"))
    if not files:
        return []
    try:
        return pq.ParquetDataset(files).read(columns=columns).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise ModelDirError(str(path), f"unreadable Parquet: {e}") from None


def iter_documents(model: Model, schema: IndexSchema) -> Iterator[Document]:
    """One document per item found anywhere in the model, in item-id order.

    Items that appear only as properties or only in rankings still get a document, so
    business rules and backfill can return them. Dates keep their first value.
    """
    docs: dict[str, Document] = {}

    def doc(item: str) -> Document:
        d = docs.get(item)
        if d is None:
            d = docs[item] = {"id": item}
        return d

    for row in _read(model.path / "indicators", ["indicator", "item", "correlators"]):
        doc(row["item"])[row["indicator"]] = list(row["correlators"])
    dates = set(schema.date_fields)
    for row in _read(model.path / "properties", ["item", "name", "values"]):
        values = list(row["values"] or [])
        if not values:
            continue
        doc(row["item"])[row["name"]] = values[0] if row["name"] in dates else values
    for row in _read(model.path / "rankings", ["item", *RANKINGS]):
        d = doc(row["item"])
        for r in RANKINGS:
            d[r] = float(row[r] or 0.0)
    for item in sorted(docs):
        yield docs[item]
