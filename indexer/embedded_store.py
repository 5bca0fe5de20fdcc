"""On-disk layout of one embedded index version, and the read-side snapshot over it.

A version directory holds (all written once, then never changed, except overlay.jsonl):

    meta.json                 format (FORMAT), version, created, documents, schema, field file numbers
    ids.npy                   <U  ids of the documents, sorted (slot = rank of the id)
    k<i>.terms.npy            <U  sorted distinct values of keyword field i
    k<i>.indptr.npy           int64 CSR row pointers: postings of term t = indices[indptr[t]:indptr[t+1]]
    k<i>.indices.npy          int32 slots, ascending within each term
    k<i>.dl.npy               int32 distinct values per slot (0 = no value) for docCount / sumDocFreq
    d<i>.npy                  int64 epoch ms per slot (DATE_MISSING when absent)
    n<i>.npy                  float32 per slot (NaN when absent)
    f<i>.names.npy            <U  sorted distinct feature names of rank_features field i
    f<i>.indptr.npy           int64 CSR row pointers: documents of feature t = indices[indptr[t]:indptr[t+1]]
    f<i>.indices.npy          int32 slots, ascending within each feature
    f<i>.values.npy           float32 feature values aligned with indices, as Lucene scores
                              them (indexer.features.quantize: 9 significant bits)
  the documents' own values (`Source`; what `get` and a hit's `_source` render):
    k<i>.src.offsets.npy      int64 per slot (+ end) into k<i>.src.codes
    k<i>.src.codes.npy        int32 positions in k<i>.terms of each document's values, in its order
    k<i>.src.present.npy      bool per slot: the document has the field (maybe as [])
    d<i>.src.texts.npy        <U  sorted distinct date texts; d<i>.src.codes.npy int32 per slot (-1: none)
    n<i>.src.npy              float64 per slot, as given (NaN when absent)
    f<i>.src.offsets/codes/present.npy   as k<i>'s, the codes into f<i>.names
    f<i>.src.values.npy       float64 feature values as given, aligned with f<i>.src.codes
    src.slots.npy, src.jsonl, src.off.npy   the few documents the arrays cannot give back
                              exactly (`Source.irregular`): slots, JSON lines, byte offsets
    overlay.jsonl             append-only live changes: {"op": "upsert", "doc": ...} / {"op": "delete", "id": ...}

Arrays are loaded memory-mapped, so opening a version is cheap and the pages are shared
between processes. The overlay is a second, small in-memory segment; documents it
replaces or deletes are masked out of the base (like Lucene's live docs), and statistics
are computed over live documents only.

Format 1 (`FORMAT_JSON_LINES`, before the Source arrays) kept the documents as JSON lines
(docs.jsonl, docs.off.npy, docs.cut.npy); such versions are still read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
from collections.abc import Collection, Container, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import kernels
from .backend import Document, IndexSchema
from .embedded_query import DATE_MISSING, Derive, parse_date
from .features import check_features, quantize
from .kernels import Runs

if TYPE_CHECKING:
    from .documents import DocumentColumns, ListColumn

FORMAT = "cooccur-embedded/2"
"""The version directory's format: 2 keeps documents as arrays (`Source`)."""
FORMAT_JSON_LINES = "cooccur-embedded/1"
"""The format before 2, documents as JSON lines (docs.jsonl): still read."""
OVERLAY = "overlay.jsonl"
IRREGULAR = "src.jsonl"
_SOURCE_LISTS = ("src.offsets", "src.codes", "src.present")


# --------------------------------------------------------------------------- documents
def check_document(doc: Any, schema: IndexSchema) -> str | None:
    """Why a document does not fit the schema, or None when it does."""
    if not isinstance(doc, dict):
        return "not an object"
    if not isinstance(doc.get("id"), str) or not doc["id"]:
        return "id must be a non-empty string"
    keywords, dates, numbers = set(schema.keyword_fields), set(schema.date_fields), set(schema.number_fields)
    features = schema.feature_fields
    for name, value in doc.items():
        if name == "id" or value is None:
            continue
        if name in keywords:
            # set(map(type, ...)) runs in C: this check sees every posting of the index
            if not isinstance(value, list) or not (
                set(map(type, value)) <= {str} or all(isinstance(v, str) for v in value)
            ):
                return f"{name}: expected a list of strings"
        elif name in dates:
            try:
                parse_date(value)
            except ValueError as e:
                return f"{name}: {e}"
        elif name in numbers:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"{name}: expected a finite number, got {value!r}"
        elif name in features:
            problem = check_features(value)
            if problem is not None:
                return f"{name}: {problem}"
        else:
            return f"{name}: not a field of the index (fields: {', '.join(schema.all_fields())})"
    return None

_Csr = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""A field's four arrays as Segment keeps them (see its keyword and features)."""


@dataclass
class Source:
    """What each document of a segment is made of, field by field in slot order: what `get`
    and a hit's `_source` render (`render`), kept as arrays instead of JSON text (format 2:
    writing them costs a few array writes where JSON lines cost a third of indexing).

    keyword: field -> (offsets int64[n + 1], codes int32 into the field's sorted terms, in
    each document's order with repeats kept, present bool[n]: the document has the field,
    maybe as []); dates: field -> (sorted distinct texts, int32 code per slot, -1: absent);
    numbers: field -> float64 per slot (NaN: absent); features: field -> (offsets, codes into
    the field's sorted names, present, float64 values as given). `irregular`: slot -> the
    document, for those the arrays cannot give back exactly (a null value, an integer number
    or feature value, a date that is not a string); stored as JSON lines."""

    keyword: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    dates: dict[str, tuple[np.ndarray, np.ndarray]]
    numbers: dict[str, np.ndarray]
    features: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    irregular: dict[int, Document] = dataclasses.field(default_factory=dict)


@dataclass
class Segment:
    """Columns of a set of documents, slot-addressed (base: on disk; overlay: in memory)."""

    ids: np.ndarray
    keyword: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    """field -> (terms, indptr, indices, dl)."""
    dates: dict[str, np.ndarray]
    numbers: dict[str, np.ndarray]
    features: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = dataclasses.field(
        default_factory=dict)
    """rank_features field -> (names, indptr, indices, values)."""
    source: Source | None = None
    """The documents' own values (None: a format-1 version, whose documents are JSON lines)."""

    @property
    def n(self) -> int:
        return len(self.ids)


def render(segment: Segment, slots: np.ndarray, fields: Container[str] | None = None) -> list[Document]:
    """The documents at `slots` from their segment's Source (their irregular ones aside), with
    only `fields` (None: all; the id always): id, keyword fields, dates, numbers, rank_features
    fields. Field by field over all the slots at once (a few numpy calls per field, not per
    document: a hit's `_source` is on every request's path)."""
    source = segment.source
    assert source is not None
    slots = np.asarray(slots, np.int64)
    docs: list[Document] = [{"id": i} for i in segment.ids[slots].tolist()]

    def lists(offsets: np.ndarray, present: np.ndarray):
        """(positions of the slots' elements, one run per slot; their lengths; present flags)."""
        starts = offsets[slots]
        lengths = offsets[slots + 1] - starts
        ends = np.cumsum(lengths)
        positions = np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if ends.size else 0)
        return positions, lengths.tolist(), present[slots].tolist()

    for field, (offsets, codes, present) in source.keyword.items():
        if fields is None or field in fields:
            positions, lengths, has = lists(offsets, present)
            values = segment.keyword[field][0][codes[positions]].tolist()
            at = 0
            for doc, n, h in zip(docs, lengths, has, strict=True):
                if h:
                    doc[field] = values[at:at + n]
                at += n
    for field, (texts, date_codes) in source.dates.items():
        if fields is None or field in fields:
            found = date_codes[slots]
            for doc, code, text in zip(docs, found.tolist(), texts[np.maximum(found, 0)].tolist(), strict=True):
                if code >= 0:
                    doc[field] = text
    for field, numbers in source.numbers.items():
        if fields is None or field in fields:
            for doc, value in zip(docs, numbers[slots].tolist(), strict=True):
                if value == value:  # (NaN: absent)
                    doc[field] = value
    for field, (offsets, codes, present, weights) in source.features.items():
        if fields is None or field in fields:
            positions, lengths, has = lists(offsets, present)
            names = segment.features[field][0][codes[positions]].tolist()
            values = weights[positions].tolist()
            at = 0
            for doc, n, h in zip(docs, lengths, has, strict=True):
                if h:
                    doc[field] = dict(zip(names[at:at + n], values[at:at + n], strict=True))
                at += n
    return docs


def _only(doc: Document, fields: Collection[str] | None) -> Document:
    """The document with only `fields` (None: all; the id always)."""
    return doc if fields is None else {k: v for k, v in doc.items() if k == "id" or k in fields}


def build_segment(docs: Sequence[Document], schema: IndexSchema) -> Segment:
    """Columns of documents given in slot order (validated beforehand): their values laid out
    as columns (`indexer.documents.DocumentColumns`, one Python pass per field), then
    `segment_from_columns`."""
    from .documents import DocumentColumns

    irregular: dict[int, Document] = {}
    keyword = {f: _list_column(docs, f, irregular) for f in schema.keyword_fields}
    features = {f: _list_column(docs, f, irregular, weights=True) for f in schema.feature_fields}
    texts = {}
    for field in schema.date_fields:
        values = [d.get(field) for d in docs]
        irregular.update((slot, docs[slot]) for slot, v in enumerate(values)
                         if (v is None and field in docs[slot]) or (v is not None and type(v) is not str))
        texts[field] = pa.array([v if type(v) is str else None for v in values], pa.string())
    numbers = {}
    for field in schema.number_fields:
        values = [d.get(field) for d in docs]
        irregular.update((slot, docs[slot]) for slot, v in enumerate(values)
                         if (v is None and field in docs[slot]) or (v is not None and type(v) is not float))
        numbers[field] = np.array([np.nan if v is None else v for v in values], np.float64)
    segment = segment_from_columns(
        DocumentColumns(pa.array([d["id"] for d in docs], pa.string()), keyword, texts, numbers, features), schema)
    # an irregular date (epoch ms) has no text, so the columns left it missing: its value
    for field in schema.date_fields:
        for slot, doc in irregular.items():
            value = doc.get(field)
            if value is not None and type(value) is not str:
                segment.dates[field][slot] = parse_date(value)
    assert segment.source is not None
    segment.source.irregular = irregular
    return segment


def _list_column(docs: Sequence[Document], field: str, irregular: dict[int, Document],
                 weights: bool = False) -> ListColumn:
    """The ListColumn of a keyword field (lists) or, with `weights`, a rank_features field
    (objects; a null feature value is skipped, as Elasticsearch does) of documents."""
    from .documents import ListColumn

    flat: list[str] = []
    values: list[float] = []
    lengths = np.zeros(len(docs), np.int64)
    present = np.zeros(len(docs), bool)
    for slot, doc in enumerate(docs):
        given = doc.get(field)
        if given is None:
            if field in doc:
                irregular[slot] = doc
            continue
        if weights:
            if not set(map(type, given.values())) <= {float}:  # a null or an integer: kept as given
                irregular[slot] = doc
                given = {k: v for k, v in given.items() if v is not None}
            values.extend(given.values())
        present[slot] = True
        lengths[slot] = len(given)
        flat.extend(given)
    # dict.fromkeys and map run in C; only the distinct strings are numbered in Python
    ids: dict[str, int] = dict.fromkeys(flat, 0)
    for i, term in enumerate(ids):
        ids[term] = i
    offsets = np.zeros(len(docs) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return ListColumn(pa.array(list(ids), pa.string()), np.fromiter(map(ids.__getitem__, flat), np.int64, len(flat)),
                      offsets, present, np.array(values, np.float64) if weights else None)


def unicode_array(strings: pa.Array) -> np.ndarray:
    """A numpy `<U` array of Arrow strings; ASCII ones without a Python object per string
    (their bytes laid out in a fixed-width matrix)."""
    if len(strings) == 0:
        return np.array([], "<U1")
    if not pc.all(pc.string_is_ascii(strings)).as_py():
        return np.array(strings.to_pylist(), dtype=str)
    strings = strings.cast(pa.large_string())
    offsets = np.frombuffer(strings.buffers()[1], np.int64)[strings.offset:strings.offset + len(strings) + 1]
    data = np.frombuffer(strings.buffers()[2], np.uint8)
    lengths = np.diff(offsets)
    width = max(int(lengths.max()), 1)
    matrix = np.zeros((len(strings), width), np.uint8)
    rows = np.repeat(np.arange(len(strings)), lengths)
    columns = np.arange(int(lengths.sum())) - np.repeat(offsets[:-1] - offsets[0], lengths)
    matrix[rows, columns] = data[offsets[0]:offsets[-1]]
    return matrix.view(f"S{width}").ravel().astype(f"<U{width}")


def _column_csr(column: ListColumn, n: int, values: np.ndarray | None = None):
    """(sorted terms, indptr, indices, dl, `values` in CSR order or None, int32 codes of the
    column's values into the sorted terms) of a dictionary-encoded column."""
    order = pc.array_sort_indices(column.dictionary).to_numpy()
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    slots = np.repeat(np.arange(n, dtype=np.int64), np.diff(column.offsets))
    codes = rank[column.codes]
    indptr, indices, dl, values = kernels.csr(codes, slots, len(order), n, values)
    return unicode_array(column.dictionary.take(order)), indptr, indices, dl, values, codes.astype(np.int32)


def _empty_column(n: int, weights: bool) -> ListColumn:
    from .documents import ListColumn

    return ListColumn(pa.array([], pa.string()), np.zeros(0, np.int64), np.zeros(n + 1, np.int64), np.zeros(n, bool),
                      np.zeros(0, np.float64) if weights else None)


def _date_column(text: pa.Array) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """(epoch ms per slot, (sorted distinct texts, int32 code per slot, -1: absent)) of date
    texts (null: absent); each distinct text parsed once."""
    encoded = pc.dictionary_encode(text)
    order = pc.array_sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order) + 1, np.int64)
    rank[order] = np.arange(len(order))
    rank[-1] = -1
    codes = rank[encoded.indices.fill_null(-1).to_numpy()].astype(np.int32)
    texts = unicode_array(encoded.dictionary.take(order))
    ms = np.array([parse_date(t) for t in texts.tolist()] + [DATE_MISSING], np.int64)
    return ms[codes], (texts, codes)


PARALLEL_FROM = 100_000
"""Postings from which segment_from_columns builds the fields in parallel threads."""


def segment_from_columns(columns: DocumentColumns, schema: IndexSchema) -> Segment:
    """The segment of documents given as columns (`indexer.documents.DocumentColumns`), with
    their Source: no Python object per value (one counting pass per field)."""
    n = len(columns.ids)
    source = Source({}, {}, {}, {})
    keyword_columns = {f: columns.keyword.get(f) or _empty_column(n, False) for f in schema.keyword_fields}
    feature_columns = {f: columns.features.get(f) or _empty_column(n, True) for f in schema.feature_fields}
    # a rank_features column sharing a keyword column's codes (documents._weights: an
    # indicator's weights) has its postings: built once, with the weights in CSR order.
    # (Both dicts keep every column alive, so ids name them.)
    weights = {id(c.codes): c.values for c in feature_columns.values()}
    jobs = [(c, weights.get(id(c.codes))) for c in keyword_columns.values()]
    shared = {id(c.codes) for c in keyword_columns.values()}
    jobs += [(c, c.values) for c in feature_columns.values() if id(c.codes) not in shared]
    # the fields' passes in parallel: the kernels, Arrow's sorts and numpy's large array
    # operations release the GIL (not for a few documents, e.g. the overlay's: a pool costs more)
    threads = min(len(jobs), os.cpu_count() or 1)
    if threads > 1 and sum(len(c.codes) for c, _ in jobs) >= PARALLEL_FROM:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda job: _column_csr(job[0], n, job[1]), jobs))
    else:
        results = [_column_csr(c, n, values) for c, values in jobs]
    built = {id(c.codes): result for (c, _), result in zip(jobs, results, strict=True)}
    keyword = {}
    for field, c in keyword_columns.items():
        terms, indptr, indices, dl, _, codes = built[id(c.codes)]
        keyword[field] = (terms, indptr, indices, dl)
        source.keyword[field] = (c.offsets, codes, c.present)
    dates = {}
    for field in schema.date_fields:
        text = columns.dates.get(field)
        dates[field], source.dates[field] = _date_column(text if text is not None else pa.nulls(n, pa.string()))
    numbers = {f: columns.numbers[f].astype(np.float32) for f in schema.number_fields}
    source.numbers = {f: np.asarray(columns.numbers[f], np.float64) for f in schema.number_fields}
    features = {}
    for field, c in feature_columns.items():
        assert c.values is not None  # a rank_features column carries its values
        terms, indptr, indices, _, values, codes = built[id(c.codes)]
        features[field] = (terms, indptr, indices, quantize(values))
        source.features[field] = (c.offsets, codes, c.present, c.values)
    return Segment(unicode_array(columns.ids), keyword, dates, numbers, features, source)


def _value_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """BaseVersion.value_codes of a field's float32 values: a float32 of 9 significant bits
    is its top 17 bits (sign, exponent, 8 stored mantissa bits), so they index a table of
    presence and codes (no sort)."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
    if (bits & 0x7FFF).any():
        return None
    present = np.zeros(1 << 17, bool)
    present[bits >> 15] = True
    distinct = np.flatnonzero(present)
    if distinct.size > np.iinfo(np.uint16).max:
        return None
    code_of = np.zeros(1 << 17, np.uint16)
    code_of[distinct] = np.arange(distinct.size)
    return code_of[bits >> 15], (distinct.astype(np.uint32) << 15).view(np.float32)


def lookup(sorted_values: np.ndarray, wanted: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(positions, found) of wanted strings in a sorted string array."""
    if len(sorted_values) == 0 or not wanted:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    w = np.array(wanted, dtype=str)
    pos = np.searchsorted(sorted_values, w)
    pos_c = np.minimum(pos, len(sorted_values) - 1)
    return pos_c, (pos < len(sorted_values)) & (sorted_values[pos_c] == w)


# --------------------------------------------------------------------------- on disk
def save_array(directory: Path, name: str, array: np.ndarray) -> None:
    with open(directory / name, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def write_segment(directory: Path, segment: Segment, schema: IndexSchema) -> dict[str, Any]:
    """Write the columns of a (base) segment and its Source; returns the field -> file number map."""
    source = segment.source
    assert source is not None
    save_array(directory, "ids.npy", segment.ids)
    files: dict[str, Any] = {"keyword": {}, "date": {}, "number": {}}
    if schema.feature_fields:  # (versions without feature fields keep the older meta.json)
        files["feature"] = {}
    arrays: list[tuple[str, np.ndarray]] = []
    for i, field in enumerate(schema.keyword_fields):
        arrays += zip((f"k{i}.{p}.npy" for p in ("terms", "indptr", "indices", "dl", *_SOURCE_LISTS)),
                      (*segment.keyword[field], *source.keyword[field]), strict=True)
        files["keyword"][field] = i
    for i, field in enumerate(schema.date_fields):
        arrays += [(f"d{i}.npy", segment.dates[field]), (f"d{i}.src.texts.npy", source.dates[field][0]),
                   (f"d{i}.src.codes.npy", source.dates[field][1])]
        files["date"][field] = i
    for i, field in enumerate(schema.number_fields):
        arrays += [(f"n{i}.npy", segment.numbers[field]), (f"n{i}.src.npy", source.numbers[field])]
        files["number"][field] = i
    for i, field in enumerate(schema.feature_fields):
        arrays += zip((f"f{i}.{p}.npy" for p in ("names", "indptr", "indices", "values", *_SOURCE_LISTS, "src.values")),
                      (*segment.features[field], *source.features[field]), strict=True)
        files["feature"][field] = i
    saved: dict[int, str] = {}
    for name, array in arrays:
        if id(array) in saved:  # the same array as another field's (segment_from_columns): one file
            os.link(directory / saved[id(array)], directory / name)
        else:
            save_array(directory, name, array)
            saved[id(array)] = name
    # the irregular documents (Source.irregular) as JSON lines, by slot
    slots = sorted(source.irregular)
    lines = [json.dumps(source.irregular[s], separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
             for s in slots]
    offsets = np.zeros(len(lines) + 1, np.int64)
    np.cumsum([len(line) for line in lines], out=offsets[1:])
    with open(directory / IRREGULAR, "wb") as f:
        f.write(b"".join(lines))
        f.flush()
        os.fsync(f.fileno())
    save_array(directory, "src.slots.npy", np.array(slots, np.int64))
    save_array(directory, "src.off.npy", offsets)
    return files


def schema_to_json(schema: IndexSchema) -> dict[str, list[str]]:
    data = {
        "keyword_fields": list(schema.keyword_fields),
        "date_fields": list(schema.date_fields),
        "number_fields": list(schema.number_fields),
    }
    if schema.feature_fields:  # without them, the same meta.json as before feature fields existed
        data["feature_fields"] = list(schema.feature_fields)
    return data


def schema_from_json(data: dict[str, list[str]]) -> IndexSchema:
    return IndexSchema(
        tuple(data["keyword_fields"]), tuple(data["date_fields"]), tuple(data["number_fields"]),
        tuple(data.get("feature_fields", ())),  # versions written before feature fields have none
    )


class BaseVersion:
    """One version directory opened for reading: memory-mapped columns and the docs file.

    Every file is opened here, at once, so a version that is pruned later (by another
    process) stays readable for as long as this object lives (POSIX keeps unlinked files)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.meta = json.loads((directory / "meta.json").read_text())
        self.name: str = self.meta["version"]
        self.schema = schema_from_json(self.meta["schema"])
        files = self.meta["files"]

        def load(name: str) -> np.ndarray:
            # a plain ndarray view of the map: np.memmap's own indexing is slow on hot paths
            return np.load(directory / name, mmap_mode="r", allow_pickle=False).view(np.ndarray)

        keyword = {
            f: cast(_Csr, tuple(load(f"k{i}.{p}.npy") for p in ("terms", "indptr", "indices", "dl")))
            for f, i in files["keyword"].items()
        }
        dates = {f: load(f"d{i}.npy") for f, i in files["date"].items()}
        numbers = {f: load(f"n{i}.npy") for f, i in files["number"].items()}
        features = {
            f: cast(_Csr, tuple(load(f"f{i}.{p}.npy") for p in ("names", "indptr", "indices", "values")))
            for f, i in files.get("feature", {}).items()
        }
        fmt = self.meta.get("format")
        if fmt == FORMAT:
            lists = _SOURCE_LISTS
            source = Source(
                {f: cast(Any, tuple(load(f"k{i}.{p}.npy") for p in lists)) for f, i in files["keyword"].items()},
                {f: (load(f"d{i}.src.texts.npy"), load(f"d{i}.src.codes.npy")) for f, i in files["date"].items()},
                {f: load(f"n{i}.src.npy") for f, i in files["number"].items()},
                {f: cast(Any, tuple(load(f"f{i}.{p}.npy") for p in (*lists, "src.values")))
                 for f, i in files.get("feature", {}).items()},
            )
            self.segment = Segment(load("ids.npy"), keyword, dates, numbers, features, source)
            self.irregular: np.ndarray | None = load("src.slots.npy")
            self.offsets = load("src.off.npy")
            self.cuts: np.ndarray | None = None
            self._docs_fd = os.open(directory / IRREGULAR, os.O_RDONLY)
        elif fmt == FORMAT_JSON_LINES:
            self.segment = Segment(load("ids.npy"), keyword, dates, numbers, features)
            self.irregular = None
            self.offsets = load("docs.off.npy")
            # versions written before it (or without feature fields) have no docs.cut.npy
            self.cuts = load("docs.cut.npy") if (directory / "docs.cut.npy").is_file() else None
            self._docs_fd = os.open(directory / "docs.jsonl", os.O_RDONLY)
        else:
            raise ValueError(f"format {fmt!r}: this cooccur reads {FORMAT} and {FORMAT_JSON_LINES} "
                             "(a newer cooccur wrote it?)")
        # caches keyed by kind: each key's value has the type its method returns
        self._derived: dict[tuple, Any] = {}
        self._index: dict[tuple, Any] = {}
        self._derived_lock = threading.Lock()

    DERIVED_KEPT = 8
    """Derived arrays kept per version, the least recently used dropped first (a function's
    values over a field's postings, a field's dense rows: each a few tens of MB at 100k
    items; a query configuration uses two or three per field)."""

    def find(self, key: tuple, sorted_values: np.ndarray, wanted: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`lookup` in one of this version's sorted string arrays (named by `key`), through a
        hash table of the array built once per version (kernels.hash_table: a 500-item history
        looks up a thousand terms; a bisection over numpy strings, or a dict of Python
        strings once out of the cache, costs a microsecond a term)."""
        if not wanted or sorted_values.dtype.itemsize == 0:
            return lookup(sorted_values, wanted)
        table = self._index.get(key)
        if table is None:
            table = self._index[key] = kernels.hash_table(sorted_values)
        # a string longer than the array's width is in no entry (and a `<U` array of the
        # wanted strings is as wide as the longest: a long one would cost memory, not a match)
        width = sorted_values.dtype.itemsize // 4
        fits = np.fromiter(map(len, wanted), np.int64, len(wanted)) <= width
        if fits.all():
            return kernels.hash_find(table, sorted_values, np.array(wanted, dtype=f"<U{width}"))
        pos, found = np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
        which = np.flatnonzero(fits)
        if which.size:
            short = [wanted[i] for i in which.tolist()]
            pos[which], found[which] = kernels.hash_find(table, sorted_values, np.array(short, dtype=f"<U{width}"))
        return pos, found

    HOT_SHARE = 1
    """A posting list longer than 1/HOT_SHARE of the documents (and than HOT_MIN) is "hot".
    None by default: with the compiled kernels, scattering a list's sorted postings costs
    less than adding a dense row, even for lists over half the documents (bench/index.py's
    100k model, history 500: 20% slower with the lists over 1/4 dense, 15% over 1/2). The
    rows stay available (tests/test_lucene_parity.py forces them on, so they stay exact)."""
    HOT_MIN = 4096
    HOT_MAX = 32
    """Hot lists kept dense per field (the longest): at most 32 rows of 1 or 2 bytes per document."""

    def hot_rows(self, kind: str, field: str) -> np.ndarray:
        """The CSR rows (sorted; the position of each is its row in the field's dense stack) of
        the field's hot posting lists
        (`kind` "k": keyword, "f": rank_features). In a Zipf-shaped model the most popular
        items are correlators of most items: their lists hold nearly all the postings a query
        gathers, and adding a dense row is several times cheaper than scattering its postings."""
        key = ("hot", kind, field)
        found = self._index.get(key)
        if found is None:
            indptr = (self.segment.keyword if kind == "k" else self.segment.features)[field][1]
            lengths = np.diff(indptr)
            rows = np.flatnonzero(lengths > max(self.segment.n // self.HOT_SHARE, self.HOT_MIN))
            if rows.size > self.HOT_MAX:
                rows = np.sort(rows[np.argsort(-lengths[rows], kind="stable")[:self.HOT_MAX]])
            found = rows.astype(np.int64)
            self._index[key] = found
        return found

    def dense_keyword(self, field: str) -> np.ndarray:
        """bool[hot rows, n]: the documents of each hot term of a keyword field."""
        key = ("dense", "k", field)
        found = self._used(key)
        if found is None:
            _, indptr, indices, _ = self.segment.keyword[field]
            rows = self.hot_rows("k", field)
            found = np.zeros((len(rows), self.segment.n), bool)
            for i, r in enumerate(rows.tolist()):
                found[i, indices[indptr[r]:indptr[r + 1]]] = True
            self._keep(key, found)
        return found

    def dense_feature(self, field: str, derive: Derive) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """The hot features' documents as dense rows of codes: (uint16[hot rows, n], 0 where
        the document lacks the feature, else 1 + the index of its value in the row's table;
        per row, the table: 0, then derive's distinct values of the row, ascending; per row,
        its smallest value, > 0 when the row is usable). Feature values keep 9 significant
        bits, so a row has a few thousand distinct values at most: a query scores the table
        and gathers it, instead of computing over every document."""
        key = ("dense", "f", field, *derive.key)
        found = self._used(key)
        if found is None:
            _, indptr, indices, _ = self.segment.features[field]
            values = self.derived(field, derive)
            rows = self.hot_rows("f", field)
            codes = np.zeros((len(rows), self.segment.n), np.uint16)
            tables: list[np.ndarray] = []
            smallest = np.zeros(len(rows), np.float64)
            for i, r in enumerate(rows.tolist()):
                a, b = indptr[r], indptr[r + 1]
                distinct, inverse = np.unique(values[a:b], return_inverse=True)
                if distinct.size >= np.iinfo(np.uint16).max:
                    tables.append(distinct[:0])  # (never with 9-bit values) left to the postings
                    continue
                codes[i, indices[a:b]] = inverse + 1
                tables.append(np.concatenate([np.zeros(1, distinct.dtype), distinct]))
                smallest[i] = distinct[0]
            found = (codes, tables, smallest)
            self._keep(key, found)
        return found

    def _keep(self, key: tuple, value: Any) -> None:
        """Keep a derived array, dropping the least recently used beyond DERIVED_KEPT."""
        with self._derived_lock:
            while len(self._derived) >= self.DERIVED_KEPT:
                self._derived.pop(next(iter(self._derived)))
            self._derived[key] = value

    def _used(self, key: tuple):
        """A kept derived array, marked as the most recently used (or None)."""
        found = self._derived.get(key)
        if found is not None and next(reversed(self._derived)) != key:
            with self._derived_lock:
                if key in self._derived:
                    self._derived[key] = self._derived.pop(key)
        return found

    def value_codes(self, field: str) -> tuple[np.ndarray, np.ndarray] | None:
        """A rank_features field's values as (uint16 code per posting, float32 distinct values
        by code), or None when they are not 9-bit values (Lucene's FeatureField keeps 9
        significant bits: indexer.features.quantize) or more than a uint16 codes. A query
        reads 2 bytes a posting instead of 8 (derive's float64), and derive's function is
        computed on the few thousand distinct values only (`derived_table`)."""
        key = ("codes", field)
        kept = self._index.get(key)
        if kept is None:
            codes = _value_codes(self.segment.features[field][3])
            self._index[key] = False if codes is None else codes  # (None: not computed yet)
            return codes
        return kept or None

    def derived_table(self, field: str, derive: Derive) -> tuple[np.ndarray, np.ndarray] | None:
        """(value_codes' codes, derive.fn of the distinct values by code), or None (see there):
        derive.fn applies elementwise, so table[codes[p]] is `derived`'s value p."""
        codes = self.value_codes(field)
        if codes is None:
            return None
        key = ("table", field, *derive.key)
        found = self._used(key)
        if found is None:
            found = np.ascontiguousarray(derive.fn(codes[1]))
            self._keep(key, found)
        return codes[0], found

    def derived(self, field: str, derive: Derive) -> np.ndarray:
        """derive.fn of the field's feature values, computed once and kept (the last
        DERIVED_KEPT used): a query's rank_feature function applies to every posting it
        gathers, so the arithmetic is done once per version instead of per query."""
        key = (field, *derive.key)
        found = self._used(key)
        if found is None:
            with self._derived_lock:
                found = self._derived.get(key)
                if found is None:
                    found = np.ascontiguousarray(derive.fn(self.segment.features[field][3]))
                    while len(self._derived) >= self.DERIVED_KEPT:
                        self._derived.pop(next(iter(self._derived)))
                    self._derived[key] = found
        return found

    def documents_at(self, slots: np.ndarray, fields: Collection[str] | None = None) -> list[Document]:
        """The stored documents at `slots`, with only `fields` (None: all; the id always):
        rendered from the version's arrays (`render`), or read from JSON lines (its irregular
        documents; every document of a format-1 version)."""
        slots = np.asarray(slots, np.int64)
        if self.irregular is None:
            docs = [self._line(s, fields) for s in slots.tolist()]
        else:
            docs = render(self.segment, slots, fields)
            if self.irregular.size:
                at = np.minimum(np.searchsorted(self.irregular, slots), self.irregular.size - 1)
                for i in np.flatnonzero(self.irregular[at] == slots).tolist():
                    docs[i] = self._line(int(at[i]), fields)  # (its line in src.jsonl)
        return docs

    def document(self, slot: int, lean: bool = False) -> Document:
        """The stored document; `lean`: without its feature fields."""
        return self.documents_at(np.array([slot]), self.lean_fields if lean else None)[0]

    @property
    def lean_fields(self) -> set[str]:
        """All fields but the rank_features ones."""
        return set(self.schema.all_fields()) - set(self.schema.feature_fields)

    def _line(self, line: int, fields: Collection[str] | None) -> Document:
        """The document of JSON line `line`, with only `fields`. Format 1 recorded where its
        feature fields start (they are written last): without any, only the part before is parsed."""
        start, end = int(self.offsets[line]), int(self.offsets[line + 1])
        if fields is not None and self.cuts is not None and not any(f in fields for f in self.schema.feature_fields):
            cut = int(self.cuts[line])
            if cut > 0:
                end = start + cut
        text = os.pread(self._docs_fd, end - start, start)
        doc = json.loads(text if end == int(self.offsets[line + 1]) else text + b"}")
        return _only(doc, fields)

    def close(self) -> None:
        if getattr(self, "_docs_fd", -1) >= 0:  # absent when __init__ failed (a broken file)
            os.close(self._docs_fd)
            self._docs_fd = -1

    def __del__(self) -> None:  # pragma: no cover - depends on garbage collection
        with contextlib.suppress(OSError):
            self.close()


# --------------------------------------------------------------------------- snapshot
class Snapshot:
    """One consistent, immutable view of the current version plus its overlay (the
    evaluator's IndexView). Slots 0..base.n-1 are the base documents, then the overlay's."""

    def __init__(self, base: BaseVersion, overlay_docs: dict[str, Document | None], overlay_pos: int) -> None:
        self.base = base
        self.version = base.name
        self.schema = base.schema
        self.overlay_pos = overlay_pos
        self.overlay_state = overlay_docs
        seg = base.segment
        upserted = [d for d in overlay_docs.values() if d is not None]
        self.extra = build_segment(upserted, self.schema) if upserted else None
        self.extra_docs = upserted
        self.n_base = seg.n
        self.n = seg.n + len(upserted)
        if overlay_docs:
            live = np.ones(self.n, bool)
            pos, found = lookup(seg.ids, list(overlay_docs))
            live[pos[found]] = False  # replaced or deleted base documents
            self.live: np.ndarray | None = live
            all_ids = np.concatenate([seg.ids.astype(str), self.extra.ids if self.extra else seg.ids[:0]])
            rank = np.empty(self.n, np.int64)
            rank[np.argsort(all_ids, kind="stable")] = np.arange(self.n)
            self.id_rank = rank
            self._extra_index = {d["id"]: self.n_base + i for i, d in enumerate(upserted)}
        else:
            self.live = None
            self.id_rank = np.arange(self.n)  # base slots are in id order
            self._extra_index = {}
        self._cache: dict[tuple[str, str], Any] = {}

    @property
    def documents(self) -> int:
        return self.n if self.live is None else int(self.live.sum())

    # -- columns over all slots
    def _column(self, kind: str, field: str, base_col: np.ndarray, extra_col, fill) -> np.ndarray:
        if self.extra is None:
            return base_col
        key = (kind, field)
        if key not in self._cache:
            extra = extra_col if extra_col is not None else np.full(self.extra.n, fill, base_col.dtype)
            self._cache[key] = np.concatenate([base_col, extra])
        return self._cache[key]

    def dates(self, field: str) -> np.ndarray:
        return self._column("d", field, self.base.segment.dates[field],
                            self.extra.dates[field] if self.extra else None, DATE_MISSING)

    def numbers(self, field: str) -> np.ndarray:
        return self._column("n", field, self.base.segment.numbers[field],
                            self.extra.numbers[field] if self.extra else None, np.nan)

    def _dl(self, field: str) -> np.ndarray:
        return self._column("dl", field, self.base.segment.keyword[field][3],
                            self.extra.keyword[field][3] if self.extra else None, 0)

    def has_field(self, field: str) -> np.ndarray:
        if field == "id":
            return np.ones(self.n, bool)
        if field in self.schema.keyword_fields:
            return self._dl(field) > 0
        if field in self.schema.date_fields:
            return self.dates(field) != DATE_MISSING
        return ~np.isnan(self.numbers(field))

    def field_stats(self, field: str) -> tuple[int, int]:
        key = ("stats", field)
        if key not in self._cache:
            if field == "id":
                self._cache[key] = (self.documents, self.documents)
            else:
                dl = self._dl(field)
                if self.live is not None:
                    dl = dl[self.live]
                self._cache[key] = (int(np.count_nonzero(dl)), int(dl.sum(dtype=np.int64)))
        return self._cache[key]

    def term_postings(self, field: str, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if field == "id":
            slots = [self.slots_of_ids([t]) for t in terms]
            lengths = np.array([len(s) for s in slots], np.int64)
            return (np.concatenate(slots) if slots else np.zeros(0, np.int64)), lengths
        parts = [self._gathered(self._runs(("k", field), self.base.segment.keyword[field], terms, 0, None))]
        if self.extra is not None:
            parts.append(self._gathered(self._runs(None, self.extra.keyword[field], terms, self.n_base, None)))
        docs = parts[0][0]
        if len(parts) > 1:
            # keep postings grouped per term: interleave base and overlay runs term by term
            owners = np.concatenate([np.repeat(np.arange(len(terms)), p[1]) for p in parts])
            docs = np.concatenate([p[0] for p in parts])[np.argsort(owners, kind="stable")]
        lengths = cast(np.ndarray, sum(p[1] for p in parts))  # of arrays: an array
        if self.live is not None and docs.size:
            keep = self.live[docs]
            owners = np.repeat(np.arange(len(terms)), lengths)
            docs = docs[keep]
            lengths = np.bincount(owners[keep], minlength=len(terms)).astype(np.int64)
        return docs, lengths

    @staticmethod
    def _gathered(runs: Runs) -> tuple[np.ndarray, np.ndarray]:
        """(the runs' slots, concatenated, as int64; the length of each run)."""
        return runs.docs[runs.positions()].astype(np.int64) + runs.offset, runs.ends - runs.starts

    def _runs(self, key: tuple | None, columns: tuple, terms: Sequence[str], offset: int,
              values: np.ndarray | None, codes: np.ndarray | None = None) -> Runs:
        """The runs of `terms` in a segment's CSR columns (names, indptr, indices, ...): the
        version's (its dictionary look-ups cached under `key`) or, with key None, the overlay's."""
        names, indptr, indices = columns[:3]
        if key is not None:
            pos, found = self.base.find(key, names, terms)
        else:
            pos, found = lookup(names, terms)
        starts = np.zeros(len(terms), np.int64)
        ends = np.zeros(len(terms), np.int64)
        rows = pos[found]
        starts[found] = indptr[rows]
        ends[found] = indptr[rows + 1]
        return Runs(indices, values, starts, ends, offset, codes)

    def term_runs(self, field: str, terms: Sequence[str], dense: bool) -> tuple[list[Runs], np.ndarray, list]:
        """A keyword field's postings of each term: (runs per segment; docFreq of each term
        over live documents; with `dense`, [(term position, bool row over the version's
        slots)] of its hot terms, whose runs are then left empty). With live changes the
        live postings are gathered first (docFreq counts live documents), without dense rows."""
        if self.live is not None or field == "id":
            docs, lengths = self.term_postings(field, terms)
            ends = np.cumsum(lengths)
            return [Runs(docs, None, ends - lengths, ends)], lengths, []
        runs = self._runs(("k", field), self.base.segment.keyword[field], terms, 0, None)
        lengths = runs.ends - runs.starts
        rows = []
        if dense and (hot := self._hot(runs, "k", field)) is not None:
            where, at = hot
            stack = self.base.dense_keyword(field)
            rows = [(w, stack[i]) for w, i in zip(where.tolist(), at.tolist(), strict=True)]
            runs.ends[where] = runs.starts[where]
        return [runs], lengths, rows

    def _hot(self, runs: Runs, kind: str, field: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(positions of the runs that are hot lists, their rows in the field's dense stack)."""
        hot = self.base.hot_rows(kind, field)
        if not hot.size:
            return None
        hot_starts = (self.base.segment.keyword if kind == "k" else self.base.segment.features)[field][1][hot]
        at = np.minimum(np.searchsorted(hot_starts, runs.starts), hot_starts.size - 1)
        is_hot = (hot_starts[at] == runs.starts) & (runs.ends > runs.starts)
        if not is_hot.any():
            return None
        return np.flatnonzero(is_hot), at[is_hot]

    def feature_runs(self, field: str, features: Sequence[str], derive: Derive | None = None,
                     dense: bool = False) -> tuple[list[Runs], list]:
        """A rank_features field's postings of each feature: (runs per segment, the version's
        then the overlay's, with the feature values or `derive`'s values of them (computed
        once per version over the whole field and kept: see `Derive`); with `dense` (and
        `derive`), [(feature position, its row of codes over the version's slots, the codes'
        table of derive's values)] of the hot features whose values are all > 0 (see
        BaseVersion.dense_feature), their runs left empty). Dead slots are included: the
        evaluator masks them out of the result, and feature clauses use no statistics."""
        base = self.base.segment.features[field]
        coded = None if derive is None else self.base.derived_table(field, derive)
        if coded is not None:
            runs = [self._runs(("f", field), base, features, 0, coded[1], coded[0])]
        else:
            values = base[3] if derive is None else self.base.derived(field, derive)
            runs = [self._runs(("f", field), base, features, 0, values)]
        rows = []
        if dense and derive is not None and (hot := self._hot(runs[0], "f", field)) is not None:
            where, at = hot
            codes, tables, smallest = self.base.dense_feature(field, derive)
            usable = smallest[at] > 0
            where, at = where[usable], at[usable]
            rows = [(w, codes[i], tables[i]) for w, i in zip(where.tolist(), at.tolist(), strict=True)]
            runs[0].ends[where] = runs[0].starts[where]
        if self.extra is not None:
            extra = self.extra.features[field]
            values = extra[3] if derive is None else derive.fn(extra[3])
            runs.append(self._runs(None, extra, features, self.n_base, values))
        return runs, rows

    def slots_of_ids(self, ids: Sequence[str]) -> np.ndarray:
        pos, found = self.base.find(("ids",), self.base.segment.ids, list(ids))
        slots = pos[found]
        extra = [self._extra_index[i] for i in ids if i in self._extra_index]
        if extra:
            slots = np.concatenate([slots, np.array(extra, np.int64)])
        if self.live is not None:
            slots = slots[self.live[slots]]
        return np.unique(slots)

    def documents_at(self, slots: np.ndarray, fields: Collection[str] | None = None) -> list[Document]:
        """The documents at `slots` (the version's and the overlay's), with only `fields`
        (None: all; the id always)."""
        slots = np.asarray(slots, np.int64)
        base = iter(self.base.documents_at(slots[slots < self.n_base], fields))
        return [next(base) if s < self.n_base
                else _only(self.extra_docs[s - self.n_base], fields) for s in slots.tolist()]


def read_overlay(path: Path, state: dict[str, Document | None], pos: int) -> tuple[dict[str, Document | None], int]:
    """Apply the complete lines appended to an overlay file since byte `pos`."""
    try:
        with open(path, "rb") as f:
            f.seek(pos)
            data = f.read()
    except FileNotFoundError:
        return state, pos
    end = data.rfind(b"\n") + 1  # a line still being written is read next time
    if end == 0:
        return state, pos
    state = dict(state)
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        op = json.loads(line)
        if op["op"] == "upsert":
            state[op["doc"]["id"]] = op["doc"]
        else:
            state[op["id"]] = None
    return state, pos + end


def iter_overlay_lines(ops: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(op, separators=(",", ":")).encode() + b"\n" for op in ops)
