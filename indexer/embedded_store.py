"""On-disk layout of one embedded index version, and the read-side snapshot over it.

A version directory holds (all written once, then never changed, except overlay.jsonl):

    meta.json                 format, version, created, documents, schema, field file numbers
    ids.npy                   <U  ids of the documents, sorted (slot = rank of the id)
    docs.jsonl + docs.off.npy the documents as JSON lines; int64 byte offsets per slot (+ end)
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
    overlay.jsonl             append-only live changes: {"op": "upsert", "doc": ...} / {"op": "delete", "id": ...}

Arrays are loaded memory-mapped, so opening a version is cheap and the pages are shared
between processes. The overlay is a second, small in-memory segment; documents it
replaces or deletes are masked out of the base (like Lucene's live docs), and statistics
are computed over live documents only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Document, IndexSchema
from .embedded_query import DATE_MISSING, Derive, Part, parse_date
from .features import check_features, quantize

FORMAT = "cooccur-embedded/1"
OVERLAY = "overlay.jsonl"


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

    @property
    def n(self) -> int:
        return len(self.ids)


def build_segment(docs: Sequence[Document], schema: IndexSchema) -> Segment:
    """Columns of documents given in slot order (validated beforehand)."""
    n = len(docs)
    keyword = {}
    for field in schema.keyword_fields:
        flat: list[str] = []
        dl = np.zeros(n, np.int32)
        for slot, doc in enumerate(docs):
            values = doc.get(field)
            if values:
                distinct = set(values)  # docs-only postings: a repeated value counts once
                dl[slot] = len(distinct)
                flat.extend(distinct)
        # dict.fromkeys and map run in C; only the distinct terms are numbered in Python
        term_ids: dict[str, int] = dict.fromkeys(flat, 0)
        for i, term in enumerate(term_ids):
            term_ids[term] = i
        rows = np.fromiter(map(term_ids.__getitem__, flat), np.int64, len(flat))
        cols = np.repeat(np.arange(n, dtype=np.int32), dl)
        keyword[field] = csr(term_ids, rows, cols, dl)
    dates = {
        f: np.array([parse_date(d[f]) if d.get(f) is not None else DATE_MISSING for d in docs], np.int64)
        for f in schema.date_fields
    }
    numbers = {
        f: np.array([d[f] if d.get(f) is not None else np.nan for d in docs], np.float32)
        for f in schema.number_fields
    }
    ids = np.array([d["id"] for d in docs], dtype=str) if docs else np.array([], "<U1")
    features = {f: _feature_column(docs, f) for f in schema.feature_fields}
    return Segment(ids, keyword, dates, numbers, features)


def _feature_column(docs: Sequence[Document], name: str):
    """(names, indptr, indices, quantized values) of one rank_features field."""
    flat: list[str] = []
    values: list[float] = []
    per_doc = np.zeros(len(docs), np.int64)
    for slot, doc in enumerate(docs):
        features = doc.get(name)
        if features:
            if None in features.values():  # Elasticsearch skips null features
                features = {k: v for k, v in features.items() if v is not None}
            per_doc[slot] = len(features)
            flat.extend(features)
            values.extend(features.values())
    feature_ids: dict[str, int] = dict.fromkeys(flat, 0)
    for i, feature in enumerate(feature_ids):
        feature_ids[feature] = i
    rows = np.fromiter(map(feature_ids.__getitem__, flat), np.int64, len(flat))
    cols = np.repeat(np.arange(len(docs), dtype=np.int32), per_doc)
    names, indptr, order = _csr(feature_ids, rows, cols)
    vals = quantize(np.array(values, np.float64)) if values else np.zeros(0, np.float32)
    return names, indptr, cols[order].astype(np.int32), vals[order]


def _csr(term_ids: dict[str, int], rows: np.ndarray, cols: np.ndarray):
    """(sorted terms, CSR row pointers, the order putting the (term id, slot) pairs in CSR order)."""
    terms = np.array(list(term_ids), dtype=str) if term_ids else np.array([], "<U1")
    by_name = np.argsort(terms, kind="stable")
    rank = np.empty(len(terms), np.int64)
    rank[by_name] = np.arange(len(terms))
    sorted_rows = rank[rows] if rows.size else rows
    # the pairs come document by document (cols ascending): a stable sort by term keeps the
    # slots ascending within each term, as a lexsort by (term, slot) would
    order = np.argsort(sorted_rows, kind="stable") if _ascending(cols) else np.lexsort((cols, sorted_rows))
    counts = np.bincount(sorted_rows, minlength=len(terms)) if rows.size else np.zeros(len(terms), np.int64)
    indptr = np.zeros(len(terms) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return terms[by_name], indptr, order


def _ascending(values: np.ndarray) -> bool:
    return bool(values.size < 2 or (values[1:] >= values[:-1]).all())


def csr(term_ids: dict[str, int], rows: np.ndarray, cols: np.ndarray, dl: np.ndarray):
    """Sorted term dictionary + CSR postings from (term id, slot) pairs."""
    terms, indptr, order = _csr(term_ids, rows, cols)
    return terms, indptr, cols[order].astype(np.int32), dl


def lookup(sorted_values: np.ndarray, wanted: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(positions, found) of wanted strings in a sorted string array."""
    if len(sorted_values) == 0 or not wanted:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    w = np.array(wanted, dtype=str)
    pos = np.searchsorted(sorted_values, w)
    pos_c = np.minimum(pos, len(sorted_values) - 1)
    return pos_c, (pos < len(sorted_values)) & (sorted_values[pos_c] == w)


def gather(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated postings of CSR rows and the length of each."""
    positions, lengths = gather_positions(indptr, rows)
    return indices[positions].astype(np.int64), lengths


def gather_positions(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in the CSR arrays of the concatenated postings of rows, and the length of each."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64), lengths
    # position k of the output belongs to row r: start[r] + (k - first output position of r)
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(total), lengths


def runs(indptr: np.ndarray, array: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The concatenated runs array[indptr[r]:indptr[r + 1]] of CSR rows, and the length of
    each: one copy of the slices, no position arrays (a 500-item history gathers about a
    million postings at 100k items)."""
    starts = indptr[rows]
    ends = indptr[rows + 1]
    lengths = ends - starts
    if rows.size == 1:
        return array[int(starts[0]):int(ends[0])], lengths
    if rows.size == 0:
        return array[:0], lengths
    if rows.size > 32:
        total = int(lengths.sum())
        if total < 64 * rows.size:  # many short lists: one gather beats hundreds of slices
            offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
            return array[offsets + np.arange(total)], lengths
    return np.concatenate([array[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]), lengths


# --------------------------------------------------------------------------- on disk
def document_line(doc: Document, features: set[str], encode) -> tuple[bytes, int]:
    """(docs.jsonl line, cut): the document's JSON with its feature fields last, and the
    byte position where they start (-1: none), so a reader wanting no features parses
    line[:cut] + "}" only (the feature fields are most of a model document's bytes)."""
    tail = {k: v for k, v in doc.items() if k in features}
    if not tail:
        return encode(doc).encode() + b"\n", -1
    head = encode({k: v for k, v in doc.items() if k not in features}).encode()
    return head[:-1] + b"," + encode(tail).encode()[1:] + b"\n", len(head) - 1


def feature_cut(doc: Document, line: bytes, features: set[str]) -> int:
    """The cut of a stored line (a copied document): where its feature fields start, when
    they are its last keys; else -1 (readers parse the whole line)."""
    keys = list(doc)
    first = next((i for i, k in enumerate(keys) if k in features), None)
    if first is None or not all(k in features for k in keys[first:]) or first == 0:
        return -1
    return line.find(b"," + json.dumps(keys[first], ensure_ascii=False).encode() + b":")


def save_array(directory: Path, name: str, array: np.ndarray) -> None:
    with open(directory / name, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def write_segment(directory: Path, segment: Segment, schema: IndexSchema) -> dict[str, Any]:
    """Write the columns of a (base) segment; returns the field -> file number map."""
    save_array(directory, "ids.npy", segment.ids)
    files: dict[str, Any] = {"keyword": {}, "date": {}, "number": {}}
    if schema.feature_fields:  # (versions without feature fields keep the older meta.json)
        files["feature"] = {}
    for i, field in enumerate(schema.keyword_fields):
        terms, indptr, indices, dl = segment.keyword[field]
        for part, arr in (("terms", terms), ("indptr", indptr), ("indices", indices), ("dl", dl)):
            save_array(directory, f"k{i}.{part}.npy", arr)
        files["keyword"][field] = i
    for i, field in enumerate(schema.date_fields):
        save_array(directory, f"d{i}.npy", segment.dates[field])
        files["date"][field] = i
    for i, field in enumerate(schema.number_fields):
        save_array(directory, f"n{i}.npy", segment.numbers[field])
        files["number"][field] = i
    for i, field in enumerate(schema.feature_fields):
        names, indptr, indices, values = segment.features[field]
        for part, arr in (("names", names), ("indptr", indptr), ("indices", indices), ("values", values)):
            save_array(directory, f"f{i}.{part}.npy", arr)
        files["feature"][field] = i
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
            f: tuple(load(f"k{i}.{p}.npy") for p in ("terms", "indptr", "indices", "dl"))
            for f, i in files["keyword"].items()
        }
        dates = {f: load(f"d{i}.npy") for f, i in files["date"].items()}
        numbers = {f: load(f"n{i}.npy") for f, i in files["number"].items()}
        features = {
            f: tuple(load(f"f{i}.{p}.npy") for p in ("names", "indptr", "indices", "values"))
            for f, i in files.get("feature", {}).items()
        }
        self.segment = Segment(load("ids.npy"), keyword, dates, numbers, features)
        self.offsets = load("docs.off.npy")
        # versions written before it (or without feature fields) have no docs.cut.npy
        self.cuts = load("docs.cut.npy") if (directory / "docs.cut.npy").is_file() else None
        self._docs_fd = os.open(directory / "docs.jsonl", os.O_RDONLY)
        self._derived: dict[tuple, np.ndarray] = {}
        self._index: dict[tuple, dict[str, int]] = {}
        self._derived_lock = threading.Lock()

    DERIVED_KEPT = 8
    """Derived arrays kept per version, the least recently used dropped first (a function's
    values over a field's postings, a field's dense rows: each a few tens of MB at 100k
    items; a query configuration uses two or three per field)."""

    def find(self, key: tuple, sorted_values: np.ndarray, wanted: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`lookup` in one of this version's sorted string arrays (named by `key`): for many
        strings, through a dictionary of the array built once per version (a 500-item
        history looks up a thousand terms; a bisection over numpy strings costs more)."""
        if len(wanted) < 64:
            return lookup(sorted_values, wanted)
        index = self._index.get(key)
        if index is None:
            index = dict(zip(sorted_values.tolist(), range(len(sorted_values)), strict=True))
            self._index[key] = index
        pos = np.fromiter(map(index.get, wanted, itertools.repeat(-1, len(wanted))), np.int64, len(wanted))
        found = pos >= 0
        pos[~found] = 0
        return pos, found

    HOT_SHARE = 4
    """A posting list longer than 1/HOT_SHARE of the documents (and than HOT_MIN) is "hot"."""
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
            with self._derived_lock:
                while len(self._derived) >= self.DERIVED_KEPT:
                    self._derived.pop(next(iter(self._derived)))
                self._derived[key] = found
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
            with self._derived_lock:
                while len(self._derived) >= self.DERIVED_KEPT:
                    self._derived.pop(next(iter(self._derived)))
                self._derived[key] = found
        return found

    def _used(self, key: tuple):
        """A kept derived array, marked as the most recently used (or None)."""
        found = self._derived.get(key)
        if found is not None and next(reversed(self._derived)) != key:
            with self._derived_lock:
                if key in self._derived:
                    self._derived[key] = self._derived.pop(key)
        return found

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

    def document(self, slot: int, lean: bool = False) -> Document:
        """The stored document; `lean`: may leave out its feature fields (read and parse
        only the part before them, when the version recorded where they start)."""
        start, end = int(self.offsets[slot]), int(self.offsets[slot + 1])
        if lean and self.cuts is not None:
            cut = int(self.cuts[slot])
            if cut > 0:
                return json.loads(os.pread(self._docs_fd, cut, start) + b"}")
        return json.loads(os.pread(self._docs_fd, end - start, start))

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
        docs, lengths, _ = self._postings(lambda seg: seg.keyword[field], terms)
        return docs, lengths

    def feature_postings(
        self, field: str, features: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Live doc slots having each feature of a rank_features field, concatenated, the
        count per feature, and the (quantized float32) feature values aligned with the slots."""
        return self._postings(lambda seg: seg.features[field], features, with_values=True)

    def _postings(self, columns, terms: Sequence[str], with_values: bool = False):
        parts = [self._segment_postings(columns(self.base.segment), terms, 0, with_values)]
        if self.extra is not None:
            parts.append(self._segment_postings(columns(self.extra), terms, self.n_base, with_values))
        docs, values = parts[0][0], parts[0][2]
        if len(parts) > 1:
            # keep postings grouped per term: interleave base and overlay runs term by term
            owners = np.concatenate([np.repeat(np.arange(len(terms)), p[1]) for p in parts])
            order = np.argsort(owners, kind="stable")
            docs = np.concatenate([p[0] for p in parts])[order]
            if with_values:
                values = np.concatenate([p[2] for p in parts])[order]
        lengths = sum(p[1] for p in parts)
        if self.live is not None and docs.size:
            keep = self.live[docs]
            owners = np.repeat(np.arange(len(terms)), lengths)
            docs = docs[keep]
            if with_values:
                values = values[keep]
            lengths = np.bincount(owners[keep], minlength=len(terms)).astype(np.int64)
        return docs, lengths, values

    def _segment_postings(self, columns, terms: Sequence[str], offset: int, with_values: bool):
        t, indptr, indices, rest = columns
        pos, found = self.base.find(("terms", id(t)), t, terms) if offset == 0 else lookup(t, terms)
        lengths = np.zeros(len(terms), np.int64)
        rows = pos[found]
        docs, lengths[found] = runs(indptr, indices, rows)
        values = runs(indptr, rest, rows)[0] if with_values else None
        return docs.astype(np.int64) + offset if offset else docs.astype(np.int64), lengths, values

    def feature_parts(self, field: str, features: Sequence[str], derive: Derive | None = None) -> list[Part]:
        """Per segment (the version's, then the overlay's): the doc slots having each feature of
        a rank_features field, concatenated feature by feature, the count per feature, and the
        feature values aligned with the slots, or `derive`'s values of them (computed once per
        version over the whole field and cached: see `Derive`). Dead slots are included: the
        evaluator masks them out of the result, and feature clauses use no statistics."""
        parts = []
        for seg, offset in ((self.base.segment, 0), (self.extra, self.n_base)):
            if seg is None:
                continue
            names, indptr, indices, values = seg.features[field]
            pos, found = self.base.find(("features", field), names, features) if seg is self.base.segment \
                else lookup(names, features)
            rows = pos[found]
            lengths = np.zeros(len(features), np.int64)
            docs, lengths[found] = runs(indptr, indices, rows)
            if derive is not None:
                values = self.base.derived(field, derive) if seg is self.base.segment else derive.fn(values)
            parts.append(Part(docs if not offset else docs + np.int32(offset), lengths, runs(indptr, values, rows)[0]))
        return parts

    def term_postings_dense(self, field: str, terms: Sequence[str]):
        """Like term_postings, with the hot terms' postings left out of the gathered slots:
        (slots of the other terms, concatenated; docFreq of every term; [(term position, bool
        row over the version's slots)] of the hot ones). None when the snapshot has live
        changes (docFreq then counts live documents: term_postings)."""
        if self.live is not None or self.extra is not None or field == "id":
            return None
        t, indptr, indices, _ = self.base.segment.keyword[field]
        hot = self.base.hot_rows("k", field)
        if not hot.size:
            return None
        pos, found = self.base.find(("terms", id(t)), t, terms)
        rows = pos[found]
        lengths = np.zeros(len(terms), np.int64)
        lengths[found] = indptr[rows + 1] - indptr[rows]
        where = np.flatnonzero(found)
        at = np.minimum(np.searchsorted(hot, rows), hot.size - 1)
        is_hot = hot[at] == rows
        if not is_hot.any():
            return None
        stack = self.base.dense_keyword(field)
        dense_rows = [(w, stack[i]) for w, i in zip(where[is_hot].tolist(), at[is_hot].tolist(), strict=True)]
        docs, _ = runs(indptr, indices, rows[~is_hot])
        return docs, lengths, dense_rows

    def feature_parts_dense(self, field: str, features: Sequence[str], derive: Derive):
        """feature_parts with `derive`, the hot features of the version apart: (parts, with
        no postings (length 0) for the hot features; [(position in `features`, its row of
        codes over the version's slots, the codes' table of derive's values, the smallest
        of them)] for the hot features whose values are all > 0: see dense_feature)."""
        hot = self.base.hot_rows("f", field)
        if not hot.size:
            return self.feature_parts(field, features, derive), []
        names, indptr, indices, _ = self.base.segment.features[field]
        pos, found = self.base.find(("features", field), names, features)
        rows = pos[found]
        where = np.flatnonzero(found)
        at = np.minimum(np.searchsorted(hot, rows), hot.size - 1)
        is_hot = hot[at] == rows
        rows_out = []
        if is_hot.any():
            codes, tables, smallest = self.base.dense_feature(field, derive)
            is_hot &= smallest[at] > 0
            rows_out = [(w, codes[i], tables[i], smallest[i])
                        for w, i in zip(where[is_hot].tolist(), at[is_hot].tolist(), strict=True)]
        lengths = np.zeros(len(features), np.int64)
        cold = rows[~is_hot]
        lengths[where[~is_hot]] = indptr[cold + 1] - indptr[cold]
        values = self.base.derived(field, derive)
        docs, _ = runs(indptr, indices, cold)
        parts = [Part(docs, lengths, runs(indptr, values, cold)[0])]
        if self.extra is not None:
            parts += self.feature_parts(field, features, derive)[1:]
        return parts, rows_out

    def slots_of_ids(self, ids: Sequence[str]) -> np.ndarray:
        pos, found = self.base.find(("ids",), self.base.segment.ids, list(ids))
        slots = pos[found]
        extra = [self._extra_index[i] for i in ids if i in self._extra_index]
        if extra:
            slots = np.concatenate([slots, np.array(extra, np.int64)])
        if self.live is not None:
            slots = slots[self.live[slots]]
        return np.unique(slots)

    def document(self, slot: int, lean: bool = False) -> Document:
        if slot < self.n_base:
            return self.base.document(slot, lean)
        return self.extra_docs[slot - self.n_base]


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
