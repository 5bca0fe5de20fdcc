"""Read a model directory (docs/model-format.md) and yield one item document per item."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Set
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

# The model format's module (pyarrow only), not the job: the reader and the writer share
# its layout, its constants and its file systems (a model may be on any URI).
from indicators.model import MODEL_FORMAT, RANKINGS, Location, data_of, location, read_manifest_at

from .backend import ChangeSet, Document, IndexSchema
from .errors import ChangedOnlyRefused, ModelDirError
from .features import FINITE_BELOW, MIN_NORMAL, encode_feature

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
) -> ModelDocuments:
    """One document per item found anywhere in the model, in item-id order.

    Items that appear only as properties or only in rankings still get a document, so
    business rules and backfill can return them. Dates keep their first value. Every
    document gets its `prior` (when the schema has it) and, for feature fields of the
    schema, its correlators' LLR scores ({encoded correlator id: LLR}; correlators scoring
    0 have no weight: rank_features values must be positive).
    With `only`, just the documents of those items (an item of `only` that the model does
    not have gets none).

    The result iterates the documents as dicts (any backend); `.columns()` gives the same
    documents as Arrow columns, which the embedded backend indexes without a Python object
    per value.
    """
    return ModelDocuments(model, schema, only, prior or Prior())


@dataclass(frozen=True)
class ListColumn:
    """A field of lists of strings over the documents, dictionary-encoded: document d's
    values are dictionary[codes[offsets[d]:offsets[d + 1]]] (and `values` over the same
    range, for a rank_features field); present[d] False: the document lacks the field."""

    dictionary: pa.Array
    """distinct strings (any order), none needing JSON escapes."""
    codes: np.ndarray
    """int64 positions in the dictionary, document after document."""
    offsets: np.ndarray
    """int64, one more than documents."""
    present: np.ndarray
    values: np.ndarray | None = None
    """float64 aligned with codes (a rank_features field's feature values)."""


@dataclass(frozen=True)
class DocumentColumns:
    """Documents as columns, one row per document in id order (the embedded backend's fast
    path: no Python object per value)."""

    ids: pa.Array
    """string, sorted (by code point, as Python sorts), unique, none needing JSON escapes."""
    keyword: dict[str, ListColumn]
    dates: dict[str, pa.Array]
    """string per date field, null where absent (checked: parse_date accepts every one)."""
    numbers: dict[str, np.ndarray]
    """float64 per number field, NaN where absent."""
    features: dict[str, ListColumn]
    """names = encoded correlator ids, with values."""


@dataclass(frozen=True)
class ModelDocuments:
    """The documents of a model (`iter_documents`)."""

    model: Model
    schema: IndexSchema
    only: Set[str] | None
    prior: Prior

    def __iter__(self) -> Iterator[Document]:
        return _documents(self.model, self.schema, self.only, self.prior)

    def columns(self) -> DocumentColumns | None:
        """The documents as Arrow columns, read and joined column by column. None when the
        model has anything only the per-document path judges (a null, a non-finite number,
        a string JSON must escape, a field outside the schema, an unparseable date, a
        weight beyond float32; with `only`): that path then fails with its precise error."""
        if self.only is not None:
            return None
        try:
            return _columns(self.model, self.schema, self.prior)
        except _Irregular:
            return None


class _Irregular(Exception):
    """The model has something the columnar path leaves to the per-document path."""


def _documents(model: Model, schema: IndexSchema, only: Set[str] | None, prior: Prior) -> Iterator[Document]:
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




_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
"""Characters json.dumps escapes (ensure_ascii=False): the columnar path writes strings as they are."""


_STRINGS = pa.list_(pa.string())


def _table(path: Location, columns: list[str], types: list[pa.DataType]) -> pa.Table:
    """The columns of a model part; its lists of strings read dictionary-encoded (their
    elements are item ids and property values repeated across rows: Parquet stores them
    dictionary-encoded, and reading them so spares a Python-free but costly hash of every
    string, `_Rows.of`)."""
    files = path.files()
    if not files:
        return pa.table({c: pa.array([], t) for c, t in zip(columns, types, strict=True)})
    lists = [f"{c}.list.element" for c, t in zip(columns, types, strict=True) if t == _STRINGS]
    try:
        table = pq.ParquetDataset(files, filesystem=path.fs, read_dictionary=lists).read(columns=columns)
        table = table.combine_chunks()
    except (pa.ArrowException, OSError) as e:
        raise ModelDirError(str(path), f"unreadable Parquet: {e}") from None
    for c, t in zip(columns, types, strict=True):
        if table.column(c).null_count:
            raise _Irregular(c)
        if t == _STRINGS and table.schema.field(c).type == pa.list_(pa.dictionary(pa.int32(), pa.string())):
            continue
        if table.schema.field(c).type != t:
            try:
                table = table.set_column(table.schema.get_field_index(c), c, table.column(c).cast(t))
            except pa.ArrowException:
                raise _Irregular(c) from None
    return table


def _check_strings(values: pa.Array) -> None:
    if values.null_count or (len(values) and pc.any(pc.match_substring_regex(values, _NEEDS_ESCAPE)).as_py()):
        raise _Irregular("string")


@dataclass(frozen=True)
class _Rows:
    """Rows (item, list of strings[, list of doubles]) of a table, the strings dictionary-encoded
    once for all its rows."""

    items: pa.Array
    dictionary: pa.Array
    codes: np.ndarray
    """int64 per list element."""
    offsets: np.ndarray
    """int64 per row + 1, into codes."""
    values: np.ndarray | None

    @staticmethod
    def of(table: pa.Table, lists: str, weights: str | None = None) -> _Rows:
        column = table.column(lists).combine_chunks()
        flat = column.flatten()
        if flat.null_count:
            raise _Irregular("null value")
        if not pa.types.is_dictionary(flat.type) or len(pc.unique(flat.dictionary)) != len(flat.dictionary):
            flat = flat.cast(pa.string()) if pa.types.is_dictionary(flat.type) else flat
            encoded = flat.dictionary_encode()
        else:
            encoded = flat  # (read so by _table: one dictionary of distinct strings)
        _check_strings(encoded.dictionary)
        offsets = column.offsets.to_numpy().astype(np.int64)
        offsets -= offsets[0]
        values = None
        if weights is not None:
            wcolumn = table.column(weights).combine_chunks()
            flat_weights = wcolumn.flatten()
            woffsets = wcolumn.offsets.to_numpy().astype(np.int64)
            if flat_weights.null_count or not np.array_equal(woffsets - woffsets[0], offsets):
                raise _Irregular("scores")
            values = flat_weights.to_numpy()
        return _Rows(table.column("item").combine_chunks(), encoded.dictionary,
                     encoded.indices.to_numpy().astype(np.int64), offsets, values)

    def column(self, rows: np.ndarray, ids: pa.Array) -> ListColumn:
        """The ListColumn of these rows over documents `ids` (the dictionary cut down to the
        strings they use), the postings reordered document by document."""
        n = len(ids)
        slots = pc.index_in(self.items.take(pa.array(rows)), value_set=ids).to_numpy()
        if np.bincount(slots, minlength=n).max(initial=0) > 1:
            raise _Irregular("repeated item")  # (the per-document path keeps the last row)
        order = rows[np.argsort(slots, kind="stable")]
        lengths = self.offsets[order + 1] - self.offsets[order]
        doc_lengths = np.zeros(n, np.int64)
        doc_lengths[np.sort(slots)] = lengths
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(doc_lengths, out=offsets[1:])
        # the rows' elements, row after row in slot order: a slice when the rows come in
        # that order already (a model written sorted by item), else gathered
        positions: slice | np.ndarray
        if order.size and (np.diff(order) == 1).all():
            positions = slice(int(self.offsets[order[0]]), int(self.offsets[order[-1] + 1]))
        else:
            positions = np.repeat(self.offsets[order] - offsets[:-1][np.sort(slots)], lengths) + np.arange(offsets[-1])
        codes = self.codes[positions]
        used = np.bincount(codes, minlength=len(self.dictionary)) > 0
        if not used.all():  # the dictionary cut down to the strings used
            codes = (np.cumsum(used) - 1)[codes]
        present = np.zeros(n, bool)
        present[slots] = True
        return ListColumn(self.dictionary.filter(used), codes, offsets, present,
                          None if self.values is None else self.values[positions])


def _weights(correlators: ListColumn) -> ListColumn:
    """The rank_features column of an indicator: {encoded correlator: LLR} of the correlators
    scoring at least Float.MIN_NORMAL (others have no weight; a document with none, no field)."""
    values = correlators.values
    assert values is not None  # an indicator's correlators carry their LLRs
    keep = values >= MIN_NORMAL  # (False for NaN)
    if (values[keep] >= FINITE_BELOW).any():
        raise _Irregular("weight")  # beyond float32: the document fails, as in Elasticsearch
    names = pc.replace_substring(pc.replace_substring(correlators.dictionary, "%", "%25"), ".", "%2E")
    if keep.all() and pc.all(pc.equal(names, correlators.dictionary)).as_py() is not False:
        # every correlator weighs and no name needs encoding (the usual model): the same
        # dictionary, codes and offsets objects, so the index builds and writes them once
        return ListColumn(correlators.dictionary, correlators.codes, correlators.offsets,
                          correlators.present & (np.diff(correlators.offsets) > 0), values)
    kept = np.zeros(len(values) + 1, np.int64)
    np.cumsum(keep, out=kept[1:])
    offsets = kept[correlators.offsets]
    codes = correlators.codes[keep]
    used = np.bincount(codes, minlength=len(correlators.dictionary)) > 0
    remap = np.cumsum(used) - 1
    return ListColumn(names.filter(used), remap[codes], offsets, correlators.present & (np.diff(offsets) > 0),
                      values[keep])


def _columns(model: Model, schema: IndexSchema, prior: Prior) -> DocumentColumns:
    from .embedded_query import parse_date  # (the embedded backend's: only its fast path gets here)

    indicators = model.indicators
    dates = set(schema.date_fields)
    properties = [p for p in model.properties if p not in dates]
    expected = IndexSchema(tuple(indicators) + tuple(properties), schema.date_fields, schema.number_fields,
                           schema.feature_fields)
    weighted = schema.feature_fields == tuple(weights_field(i) for i in indicators)
    if schema != expected or not (weighted or not schema.feature_fields) \
            or not set(RANKINGS) <= set(schema.number_fields) <= {*RANKINGS, PRIOR} or prior.ranking not in RANKINGS:
        raise _Irregular("schema")
    ind = _table(model.data / "indicators", ["indicator", "item", "correlators", "scores"],
                 [pa.string(), pa.string(), pa.list_(pa.string()), pa.list_(pa.float64())])
    props = _table(model.data / "properties", ["item", "name", "values"],
                   [pa.string(), pa.string(), pa.list_(pa.string())])
    ranks = _table(model.data / "rankings", ["item", *RANKINGS], [pa.string()] + [pa.float64()] * len(RANKINGS))
    if not set(pc.unique(ind.column("indicator")).to_pylist()) <= set(indicators) \
            or not set(pc.unique(props.column("name")).to_pylist()) <= set(model.properties):
        raise _Irregular("field")
    props = props.filter(pc.greater(pc.list_value_length(props.column("values")), 0))  # empty: no value
    ids = pc.unique(pa.concat_arrays([t.column("item").combine_chunks() for t in (ind, props, ranks)]))
    ids = ids.take(pc.array_sort_indices(ids))
    _check_strings(ids)
    n = len(ids)

    def chunk(table: pa.Table, name: str) -> pa.Array:
        return table.column(name).combine_chunks()

    keyword: dict[str, ListColumn] = {}
    features: dict[str, ListColumn] = {}
    rows = _Rows.of(ind, "correlators", "scores")
    for name in indicators:
        which = np.flatnonzero(pc.equal(ind.column("indicator"), name).to_numpy(zero_copy_only=False))
        if which.size:
            keyword[name] = rows.column(which, ids)
            if weighted:
                features[weights_field(name)] = _weights(keyword[name])
    date_columns: dict[str, pa.Array] = {}
    rows = _Rows.of(props, "values")
    for name in model.properties:
        which = np.flatnonzero(pc.equal(props.column("name"), name).to_numpy(zero_copy_only=False))
        if not which.size:
            continue
        column = rows.column(which, ids)
        if name in dates:
            first = np.where(column.present, column.codes[np.minimum(column.offsets[:-1], len(column.codes) - 1)], -1)
            text = column.dictionary.take(pa.array(first, mask=first < 0))
            for value in pc.unique(text.drop_null()).to_pylist():  # each distinct date once
                try:
                    parse_date(value)
                except ValueError:
                    raise _Irregular("date") from None
            date_columns[name] = text
        else:
            keyword[name] = column
    numbers: dict[str, np.ndarray] = {}
    slots = pc.index_in(chunk(ranks, "item"), value_set=ids).to_numpy()
    if np.bincount(slots, minlength=n).max(initial=0) > 1:
        raise _Irregular("repeated item")
    for r in RANKINGS:
        values = np.full(n, np.nan)
        values[slots] = chunk(ranks, r).to_numpy()
        if not np.isfinite(values[slots]).all():
            raise _Irregular(r)
        numbers[r] = values
    if PRIOR in schema.number_fields:
        # Python's float ** (C pow) of each distinct ranking, as _documents computes it: the same values
        distinct, inverse = np.unique(numbers[prior.ranking], return_inverse=True)
        numbers[PRIOR] = np.array([prior.value(None if v != v else v) for v in distinct.tolist()])[inverse]
    return DocumentColumns(ids, keyword, date_columns, {f: numbers[f] for f in schema.number_fields}, features)


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
