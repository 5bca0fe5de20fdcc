"""Query evaluation of the embedded backend: the Elasticsearch subset of docs/search.md.

Scores mirror Lucene 8/9 as Elasticsearch runs it (LegacyBM25Similarity, k1 = 1.2,
b = 0.75, keyword fields indexed docs-only without norms), including its float32
arithmetic, so rankings equal an Elasticsearch index with one shard. Postings are scored
in compiled loops (`indexer.kernels`), everything else is vectorised over per-document
arrays; nothing loops over documents in Python.
"""

from __future__ import annotations

import fnmatch
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NoReturn, Protocol

import numpy as np

from . import kernels
from .backend import IndexSchema
from .errors import UnsupportedQuery
from .kernels import NO_COUNTS, Runs

K1 = np.float32(1.2)
B = np.float32(0.75)
ONE = np.float32(1.0)
FLOAT32_MAX = np.float32(np.finfo(np.float32).max)
MAX_RESULT_WINDOW = 10_000
"""Elasticsearch's index.max_result_window default: from + size beyond it is an error."""
DATE_MISSING = np.iinfo(np.int64).min
"""Date column value of a document without the date."""

_DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?)?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?$"
)


def parse_date(value: Any, *, round_up: bool = False, now_ms: int | None = None) -> int:
    """Epoch milliseconds of an ISO-8601 date (Elasticsearch's strict_date_optional_time),
    an epoch-millisecond number, or "now".

    With round_up (range `gt` / `lte`), missing time components are filled the way
    Elasticsearch does: month and day with 01, hour 23, minute 59, second 59 and the
    fraction .999. Without a zone the date is UTC. Raises ValueError when unparseable.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a date: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    if value == "now":
        return now_ms if now_ms is not None else int(time.time() * 1000)
    m = _DATE_RE.match(value)
    if not m:
        raise ValueError(f"not an ISO-8601 date: {value!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    up = round_up
    try:
        dt = datetime(
            int(year),
            int(month) if month else 1,
            int(day) if day else 1,
            int(hour) if hour else (23 if up else 0),
            int(minute) if minute else (59 if up else 0),
            int(second) if second else (59 if up else 0),
            tzinfo=_zone(zone),
        )
    except ValueError as e:
        raise ValueError(f"not a valid date: {value!r} ({e})") from None
    millis = int(frac.ljust(9, "0")[:3]) if frac else 999 if up else 0
    return int(dt.timestamp()) * 1000 + millis


def _zone(zone: str | None) -> timezone:
    if not zone or zone == "Z":
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


class IndexView(Protocol):
    """What the evaluator needs from one consistent snapshot of an index."""

    schema: IndexSchema
    n: int
    """Number of document slots (dead slots included; `live` masks them)."""
    live: np.ndarray | None
    """bool[n], or None when every slot is live."""
    id_rank: np.ndarray
    """int[n]: the rank of each slot's id in id order (ties break by id asc)."""

    def term_postings(self, field: str, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Live doc slots of each term, concatenated, and the count per term (= docFreq)."""
        ...

    def field_stats(self, field: str) -> tuple[int, int]:
        """(docCount, sumDocFreq) of a keyword field over live documents."""
        ...

    def has_field(self, field: str) -> np.ndarray:
        """bool[n]: the slot has at least one value of the field."""
        ...

    def dates(self, field: str) -> np.ndarray:
        """int64[n] epoch ms, DATE_MISSING where absent."""
        ...

    def numbers(self, field: str) -> np.ndarray:
        """float32[n], NaN where absent."""
        ...

    def slots_of_ids(self, ids: Sequence[str]) -> np.ndarray:
        """Live doc slots of these ids (unknown ids are skipped)."""
        ...

    def term_runs(self, field: str, terms: Sequence[str], dense: bool) -> tuple[list[Runs], np.ndarray, list]:
        """Each term's live postings as runs (one Runs per segment), the count per term
        (= docFreq), and with `dense` the hot terms' [(term position, bool row over the first
        slots)], their runs left empty (see Snapshot.term_runs)."""
        ...

    def feature_runs(self, field: str, features: Sequence[str], derive: Derive | None = None,
                     dense: bool = False) -> tuple[list[Runs], list]:
        """Each feature's postings in a rank_features field as runs (dead slots included) with
        the float32 feature values (as Lucene decodes them) or `derive.fn` of them, and with
        `dense` the hot features' [(feature position, uint16 codes over the first slots, the
        codes' table of derived values)], their runs left empty (see Snapshot.feature_runs)."""
        ...


class ScoringError(UnsupportedQuery):
    """A supported query whose scoring fails for a matching document, where Elasticsearch
    fails the search too: a `field_value_factor` without a value and without `missing`, a
    modifier giving a negative value, a NaN or negative function_score."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.hint = "give the function a `missing` value or a modifier defined for every value"


@dataclass(frozen=True)
class Derive:
    """A function of a rank_features field's values that an IndexView may compute once per
    version over all the field's postings and keep: `key` names it, `fn` maps the float32
    feature values to the derived array elementwise."""

    key: tuple
    fn: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SortKey:
    field: str
    """`_score`, `id`, or a number/date field."""
    descending: bool


@dataclass(frozen=True)
class SourceFilter:
    """`_source` includes / excludes (field names, `*` matching any characters)."""

    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()

    def keeps(self, field: str) -> bool:
        if field == "id":
            return True  # hits are named by the document's id
        if self.includes and not any(fnmatch.fnmatchcase(field, p) for p in self.includes):
            return False
        return not any(fnmatch.fnmatchcase(field, p) for p in self.excludes)


@dataclass(frozen=True)
class ParsedBody:
    query: dict
    size: int
    start: int
    sort: tuple[SortKey, ...]
    source: bool
    source_filter: SourceFilter | None = None
    """Which fields of the documents the hits carry (None: all, when `source`)."""


@dataclass
class _Result:
    mask: np.ndarray
    score: np.ndarray | None
    """float32[n] (meaningful where mask), or None in filter context."""


_BODY_KEYS = {"query", "size", "from", "sort", "_source"}


def parse_body(body: dict[str, Any], schema: IndexSchema) -> ParsedBody:
    """Validate the top level of a search body; the query itself is checked while evaluated."""
    if not isinstance(body, dict):
        raise UnsupportedQuery("(body)", "a search body must be a JSON object")
    for key in body:
        if key not in _BODY_KEYS:
            raise UnsupportedQuery(key, f"unsupported search option (supported: {sorted(_BODY_KEYS)})")
    query = body.get("query", {"match_all": {}})
    size = _int(body.get("size", 10), "size")
    start = _int(body.get("from", 0), "from")
    if size < 0 or start < 0:
        raise UnsupportedQuery("size" if size < 0 else "from", "must not be negative")
    if size + start > MAX_RESULT_WINDOW:
        raise UnsupportedQuery("size", f"from + size must be at most {MAX_RESULT_WINDOW}")
    source, source_filter = _parse_source(body.get("_source", True))
    return ParsedBody(query, size, start, _parse_sort(body.get("sort"), schema), source, source_filter)


def _parse_source(raw: Any) -> tuple[bool, SourceFilter | None]:
    """Elasticsearch's `_source`: true / false, a field pattern or a list of them (includes),
    or {"includes": [...], "excludes": [...]}."""
    if isinstance(raw, bool):
        return raw, None

    def patterns(value: Any, path: str) -> tuple[str, ...]:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UnsupportedQuery(path, "expected a field name (`*` matches any characters) or a list of them")
        return tuple(value)

    if isinstance(raw, dict):
        for key in raw:
            if key not in ("includes", "excludes"):
                raise UnsupportedQuery(f"_source.{key}", "unsupported option (supported: includes, excludes)")
        return True, SourceFilter(patterns(raw.get("includes", []), "_source.includes"),
                                  patterns(raw.get("excludes", []), "_source.excludes"))
    return True, SourceFilter(patterns(raw, "_source"))


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnsupportedQuery(path, f"expected an integer, got {value!r}")
    return value


def _parse_sort(sort: Any, schema: IndexSchema) -> tuple[SortKey, ...]:
    if sort is None:
        sort = ["_score"]
    if isinstance(sort, (str, dict)):
        sort = [sort]
    if not isinstance(sort, list):
        raise UnsupportedQuery("sort", "expected a list")
    sortable = {"_score", "id", *schema.number_fields, *schema.date_fields}
    keys: list[SortKey] = []
    for i, entry in enumerate(sort):
        path = f"sort[{i}]"
        if isinstance(entry, str):
            name, order = entry, None
        elif isinstance(entry, dict) and len(entry) == 1:
            name, order = next(iter(entry.items()))
            if isinstance(order, dict):
                if set(order) - {"order"}:
                    raise UnsupportedQuery(f"{path}.{name}", "only `order` is supported")
                order = order.get("order")
        else:
            raise UnsupportedQuery(path, "expected a field name or {field: order}")
        if name not in sortable:
            raise UnsupportedQuery(f"{path}.{name}", "can only sort by _score, id, or a number or date field")
        if order is None:
            order = "desc" if name == "_score" else "asc"
        if order not in ("asc", "desc"):
            raise UnsupportedQuery(f"{path}.{name}", f"order must be asc or desc, not {order!r}")
        keys.append(SortKey(name, order == "desc"))
        if name == "id":
            break  # ids are unique: later keys can never matter
    else:
        keys.append(SortKey("id", False))  # ties always end by id asc
    return tuple(keys)


# ------------------------------------------------------------------ rank_feature functions
LINEAR, SATURATION, LOG = "linear", "saturation", "log"
_RANK_FUNCTIONS = (LINEAR, SATURATION, LOG)


def rank_feature_scores(function: str, parameter: np.ndarray, weight: np.ndarray, value: np.ndarray) -> np.ndarray:
    """float32 scores of Lucene 8.7's FeatureField functions (arrays broadcast), `value` the
    decoded (quantized) feature value, `weight` the query's boost, `parameter` the pivot
    (saturation) or the scaling factor (log), all float32:

        linear      w * S                             (float)
        saturation  w * (1 - pivot / (S + pivot))     (float, in this order)
        log         (float) (w * Math.log(a + S))     (a + S in float, then double)
    """
    return rank_feature_apply(function, weight, rank_feature_pre(function, parameter, value))


def rank_feature_pre(function: str, parameter: np.ndarray, value: np.ndarray) -> np.ndarray:
    """The part of a FeatureField function that does not depend on the weight: S (linear),
    the float32 1 - pivot / (S + pivot) (saturation), the double ln(a + S) (log)."""
    if function == LINEAR:
        return value
    if function == SATURATION:
        return ONE - parameter / (value + parameter)
    return np.log((parameter + value).astype(np.float64))


def rank_feature_apply(function: str, weight: np.ndarray, pre: np.ndarray,
                       out: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """float32 scores from `rank_feature_pre`'s values: w * pre in float32, or for log in
    double, rounded to float32 (Lucene's order of operations). `out`: (float64, float32)
    buffers of pre's size to compute into."""
    if out is None:
        if function == LOG:
            return (np.asarray(weight, np.float32).astype(np.float64) * pre).astype(np.float32)
        return weight * pre
    if function == LOG:
        np.multiply(pre, np.float64(np.float32(weight)), out=out[0])
        np.copyto(out[1], out[0], casting="same_kind")
        return out[1]
    return np.multiply(pre, np.float32(weight), out=out[1])


# ------------------------------------------------------------------ field_value_factor
_MODIFIERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # Elasticsearch's FieldValueFactorFunction.Modifier, in double
    "none": lambda n: n,
    "log": np.log10,
    "log1p": lambda n: np.log10(n + 1),
    "log2p": lambda n: np.log10(n + 2),
    "ln": np.log,
    "ln1p": np.log1p,
    "ln2p": lambda n: np.log1p(n + 1),
    "square": lambda n: n * n,  # Math.pow(n, 2)
    "sqrt": np.sqrt,
    "reciprocal": lambda n: 1.0 / n,
}
_COMBINE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    # Elasticsearch's CombineFunction (boost_mode): query score and min(function, max_boost), in double
    "multiply": lambda q, f: q * f,
    "replace": lambda q, f: f,
    "sum": lambda q, f: q + f,
    "avg": lambda q, f: (f + q) / 2.0,
    "max": np.maximum,
    "min": np.minimum,
}


_FeatureClause = tuple[str, str, str, np.float32, float, np.float32]
"""A rank_feature clause: (rank_features field, feature, function, its float32 parameter,
the clause's boost, the boost passed down to it)."""


@dataclass
class _Deferred:
    """A ScoringError for some documents, raised only if one of them is in the result (ES
    raises when it scores such a document, and it scores only the documents that match)."""

    path: str
    slots: np.ndarray
    message: Callable[[int], str]
    """The message for the i-th of `slots`."""


_FUNCTION_CACHE: dict[tuple, tuple[str, np.float32]] = {}


def _rank_function_of(kind: str, params: Any, path: str) -> tuple[str, np.float32]:
    """Evaluator._rank_function, remembered by value for parameter objects of plain numbers
    (a body parsed from JSON has one object per clause)."""
    if type(params) is dict and all(type(v) is float or type(v) is int for v in params.values()):
        key = (kind, *params.items())
        found = _FUNCTION_CACHE.get(key)
        if found is None:
            found = Evaluator._rank_function(kind, params, path)
            if len(_FUNCTION_CACHE) > 256:
                _FUNCTION_CACHE.clear()
            _FUNCTION_CACHE[key] = found
        return found
    return Evaluator._rank_function(kind, params, path)


class Evaluator:
    """Evaluates one query tree against one IndexView."""

    def __init__(self, view: IndexView, now_ms: int | None = None, threads: int = 1) -> None:
        self.view = view
        self.threads = threads
        """Threads scoring each long posting scan, by document range (kernels.split)."""
        self.schema = view.schema
        self.keywords = {"id", *view.schema.keyword_fields}
        self.features = frozenset(view.schema.feature_fields)
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self._functions: dict[tuple[str, int], tuple[str, np.float32]] = {}
        """Parsed rank_feature functions by (kind, id of the parameters object): the body is
        alive (and unchanged) while it is evaluated, and a builder shares one object."""
        self._deferred: list[_Deferred] = []
        self._within: np.ndarray | None = None
        """While a bool's scoring clauses run: the documents its (and its parents') filter and
        must_not clauses let through. A function_score computes its function for those only:
        the others are excluded above it, so their scores never count (nor fail)."""
        self._selective = False
        """Whether `_within` leaves out at least half the documents (the kernels check it then)."""

    # ------------------------------------------------------------------ entry points
    def run(self, query: Any, path: str = "query") -> tuple[np.ndarray, np.ndarray]:
        """(mask, float32 scores) of the query over all document slots (dead slots masked)."""
        res = self.eval(query, path, ONE, scoring=True)
        mask = res.mask if self.view.live is None else res.mask & self.view.live
        score = res.score if res.score is not None else np.zeros(self.view.n, np.float32)
        if self._deferred:
            self._raise_deferred(mask, score)
        return mask, score

    def _raise_deferred(self, mask: np.ndarray, score: np.ndarray) -> None:
        """Raise the ScoringError of the first matching document (in doc = id order) whose
        score failed: its NaN score reached the result."""
        failed = np.flatnonzero(mask & np.isnan(score))
        if failed.size == 0:
            return
        first = failed[np.argmin(self.view.id_rank[failed])]
        for d in self._deferred:  # innermost first: the order Elasticsearch evaluates them
            where = np.flatnonzero(d.slots == first)
            if where.size:
                raise ScoringError(d.path, d.message(int(where[0])))

    def eval(self, node: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        if not isinstance(node, dict) or len(node) != 1:
            raise UnsupportedQuery(path, "a query must be an object with exactly one query type")
        kind, spec = next(iter(node.items()))
        fn = getattr(self, f"_q_{kind}", None)
        if fn is None:
            raise UnsupportedQuery(
                f"{path}.{kind}",
                "unsupported query type (supported: bool, term, terms, ids, range, "
                "constant_score, exists, match_all, rank_feature, function_score)",
            )
        return fn(spec, f"{path}.{kind}", boost, scoring)

    # ------------------------------------------------------------------ helpers
    def _const(self, mask: np.ndarray, boost: np.float32, scoring: bool) -> _Result:
        if not scoring:
            return _Result(mask, None)
        return _Result(mask, np.where(mask, boost, np.float32(0)).astype(np.float32))

    def _boost(self, spec: dict, path: str, outer: np.float32) -> np.float32:
        raw = spec.get("boost", 1.0)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 0 or math.isnan(raw):
            raise UnsupportedQuery(f"{path}.boost", f"expected a non-negative number, got {raw!r}")
        # Lucene's BoostQuery multiplies its boost into the one passed down, in float32.
        return np.float32(np.float32(raw) * outer)

    def _keyword_field(self, field: Any, path: str) -> str:
        if field not in self.keywords:
            raise UnsupportedQuery(path, f"{field!r} is not a keyword field of this index")
        return field

    def _one_field(self, spec: Any, path: str, allowed_extra: set[str]) -> tuple[str, Any]:
        if not isinstance(spec, dict):
            raise UnsupportedQuery(path, "expected an object")
        fields = [k for k in spec if k not in allowed_extra]
        if len(fields) != 1:
            raise UnsupportedQuery(path, "expected exactly one field")
        return fields[0], spec[fields[0]]

    def _check_keys(self, spec: dict, path: str, allowed: set[str]) -> None:
        for key in spec:
            if key not in allowed:
                raise UnsupportedQuery(f"{path}.{key}", f"unsupported option (supported: {sorted(allowed)})")

    def _strings(self, values: Any, path: str) -> list[str]:
        if not isinstance(values, list):
            raise UnsupportedQuery(path, "expected a list of strings")
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise UnsupportedQuery(f"{path}[{i}]", f"expected a string, got {v!r}")
        return values

    # ------------------------------------------------------------------ BM25 terms
    def term_scores(self, field: str, doc_freq: np.ndarray, boosts: np.ndarray) -> np.ndarray:
        """float32 score of one matching doc per term clause, exactly as Lucene computes it.

        LegacyBM25Similarity.scorer passes boost * (1 + k1) to BM25Similarity, whose
        scorer holds weight = boost * idf and a cached 1 / (k1 * (1 - b + b * dl / avgdl));
        keyword fields have freq 1 and (no norms) dl 1, so score = weight - weight / (1 + normInverse).
        """
        doc_count, sum_doc_freq = self.view.field_stats(field)
        df = doc_freq.astype(np.float64)
        idf = np.log(1.0 + (doc_count - df + 0.5) / (df + 0.5)).astype(np.float32)
        avgdl = np.float32(sum_doc_freq / doc_count) if doc_count else np.float32(1)
        norm_inverse = ONE / (K1 * ((ONE - B) + B * ONE / avgdl))
        weight = (boosts.astype(np.float32) * (ONE + K1)) * idf
        return (weight - weight / (ONE + ONE * norm_inverse)).astype(np.float32)

    def _batch(self, terms: list, features: list, scoring: bool, need_counts: bool):
        """Term and rank_feature clauses over their posting lists, a field at a time, in the
        compiled kernels (`indexer.kernels`): (matching-clause counts per slot, or None unless
        `need_counts`; summed float64 scores, or None unless `scoring`; bool per slot: matches
        at least one clause)."""
        n = self.view.n
        # counting without scores (msm > 1 in filter context) adds into a scratch array
        sums = np.zeros(n, np.float64) if scoring or need_counts else None
        counts = np.zeros(n, np.int32) if need_counts else NO_COUNTS
        accumulate = sums is not None
        marks: list[Runs | np.ndarray] = []
        """What matched, in case "sum > 0" cannot tell: runs, and dense rows (> 0 where matched)."""
        positive = True
        # the documents outside the filters of the bools around (`_within`) are left out of
        # the sums when those filters leave out at least half (`_selective`): the bools
        # exclude them, so their scores and counts never count
        within = kernels.ALL if self._within is None or not self._selective else self._within
        by_field: dict[str, list[tuple[str, np.float32]]] = {}
        for field, value, boost in terms:
            by_field.setdefault(field, []).append((value, boost))
        for field, items in by_field.items():
            runs, lengths, rows = self.view.term_runs(field, [v for v, _ in items], dense=accumulate)
            marks += runs
            if sums is None:  # (= not accumulate)
                continue
            per_term = self.term_scores(field, lengths, np.array([b for _, b in items], np.float32))
            positive = positive and bool((per_term[lengths > 0] > 0).all())
            for r in runs:
                kernels.add_runs(sums, counts, r, per_term, within, self.threads)
            for w, row in rows:
                kernels.add_bool_row(sums, counts, row, per_term[w])
                marks.append(row)
        for runs, weights, rows in self._feature_runs(features, accumulate):
            marks += runs
            if sums is None:  # (= not accumulate)
                continue
            for r in runs:
                positive = kernels.add_feature_runs(sums, counts, r, weights, within, self.threads) and positive
            for codes, scores in rows:
                kernels.add_code_row(sums, counts, codes, scores)
                positive = positive and bool((scores[1:] > 0).all())
                marks.append(codes)
        if need_counts:
            hit = counts > 0
        elif scoring and positive and sums is not None:  # (scoring: sums is set)
            hit = sums > 0  # every matching clause adds a positive score: no count needed
        else:
            hit = np.zeros(n, bool)
            for m in marks:
                if isinstance(m, Runs):
                    kernels.mark_runs(hit, m)
                else:
                    hit[:m.size] |= m if m.dtype == bool else m > 0
        return (counts if need_counts else None), (sums if scoring else None), hit

    # ------------------------------------------------------------------ rank_feature
    def _feature_runs(self, clauses: list[_FeatureClause], scoring: bool):
        """Per field: (its rank_feature clauses' postings as runs (kernels.Runs) whose values,
        times the float32 weights, are the clauses' scores (see kernels.add_feature_runs);
        the weights; the hot features' dense rows [(codes, the float32 scores of the codes)]).
        The function of the feature values before the weight (`rank_feature_pre`) is computed
        once per version over the whole field (`BaseVersion.derived`); each clause's weight
        is applied in the kernel."""
        by_field: dict[str, list[_FeatureClause]] = {}
        for clause in clauses:
            by_field.setdefault(clause[0], []).append(clause)
        for field, items in by_field.items():
            features = [c[1] for c in items]
            if not scoring:
                yield self.view.feature_runs(field, features)[0], None, []
                continue
            with np.errstate(over="ignore"):
                # BoostQuery: the clause's boost times the one passed down, in float32
                weights = np.array([c[4] for c in items], np.float32) * np.array([c[5] for c in items], np.float32)
            kinds = {(c[2], float(c[3])) for c in items}
            if len(kinds) == 1:
                kind, param = items[0][2], items[0][3]
                # the function's value before the weight, cached per version, then each clause's
                # weight applied (history_decay < 1 gives every history item its own); mypy cannot
                # infer a lambda whose defaults bind the loop's values, hence the ignore
                derive = Derive(("pre", kind, float(param)),
                                lambda v, k=kind, p=param: rank_feature_pre(k, p, v))  # type: ignore[misc]
                runs, rows = self.view.feature_runs(field, features, derive, dense=True)
                scored = []
                for w, codes, table in rows:
                    # the row's distinct values scored (Lucene's arithmetic), gathered in the kernel
                    scores = rank_feature_apply(kind, np.full(table.size, weights[w]), table)
                    scores[0] = 0  # documents without the feature
                    scored.append((codes, scores))
                yield runs, weights, scored
                continue
            # clauses of several functions (never the builder's): each posting's final score,
            # computed here, is its value, and the kernel's weight 1 keeps it as it is
            runs, _ = self.view.feature_runs(field, features)
            gathered = []
            for r in runs:
                lengths = r.ends - r.starts
                positions = r.positions()
                assert r.values is not None  # view.feature_runs gives the values
                scores = self._feature_scores(items, weights, lengths, r.values[positions])
                ends = np.cumsum(lengths)
                gathered.append(Runs(r.docs[positions], scores, ends - lengths, ends, r.offset))
            yield gathered, np.ones(len(items), np.float32), []

    @staticmethod
    def _feature_scores(items: list[_FeatureClause], weights: np.ndarray, lengths: np.ndarray,
                        values: np.ndarray) -> np.ndarray:
        """float64 of each posting's float32 rank_feature score (clauses of several functions)."""
        w = np.repeat(weights, lengths)
        params = np.repeat(np.array([c[3] for c in items], np.float32), lengths)
        out = np.empty(values.size, np.float64)
        per_posting = np.repeat(np.array([_RANK_FUNCTIONS.index(c[2]) for c in items], np.int8), lengths)
        for kind in {c[2] for c in items}:
            m = per_posting == _RANK_FUNCTIONS.index(kind)
            out[m] = rank_feature_scores(kind, params[m], w[m], values[m])
        return out

    def _rank_feature_clause(self, spec: Any, path: str, boost: np.float32) -> _FeatureClause:
        """The _FeatureClause of a rank_feature query. As Elasticsearch's
        RankFeatureQueryBuilder: `field` is `<field>.<feature>`, split at the last dot; the
        boost is the FeatureQuery's weight (a BoostQuery around it).

        A builder sends a thousand of these in one bool: well-formed ones take a few dict
        look-ups (the function's parameters are checked once per parameter object), and
        anything else goes through _rank_feature_checked for the precise error."""
        if type(spec) is dict:
            name = spec.get("field")
            if type(name) is str:
                field, _, feature = name.rpartition(".")
                if field in self.features:
                    kind = params = None
                    for key, value in spec.items():
                        if key in _RANK_FUNCTIONS and kind is None:
                            kind, params = key, value
                        elif key != "field" and key != "boost":
                            kind = None
                            break
                    raw = spec.get("boost", 1.0)
                    if kind is not None and (type(raw) is float or type(raw) is int) and raw >= 0:
                        fn = self._functions.get((kind, id(params)))
                        if fn is None:
                            fn = self._functions[(kind, id(params))] = _rank_function_of(
                                kind, params, f"{path}.{kind}")
                        return field, feature, fn[0], fn[1], raw, boost
        return self._rank_feature_checked(spec, path, boost)

    def _rank_feature_checked(self, spec: Any, path: str, boost: np.float32) -> _FeatureClause:
        if type(spec) is not dict:
            raise UnsupportedQuery(path, "expected an object")
        name = spec.get("field")
        if type(name) is not str:
            raise UnsupportedQuery(f"{path}.field", f"expected `<rank_features field>.<feature>`, got {name!r}")
        field, dot, feature = name.rpartition(".")
        if field not in self.features:
            if name in self.features:
                problem = f"{name!r} is a rank_features field: name one of its features, `{name}.<feature>`"
            else:
                problem = f"{name!r} is not a feature of a rank_features field of this index"
            raise UnsupportedQuery(f"{path}.field", problem)
        kind = None
        for key in spec:
            if key != "field" and key != "boost":
                if kind is not None or key not in _RANK_FUNCTIONS:
                    kind = None
                    break
                kind = key
        if kind is None:
            self._rank_feature_keys(spec, path)  # raises the precise error
        fn = self._rank_function(kind, spec[kind], f"{path}.{kind}")
        return field, feature, fn[0], fn[1], float(self._boost(spec, path, ONE)), boost

    @staticmethod
    def _rank_feature_keys(spec: dict, path: str) -> NoReturn:
        functions = [k for k in spec if k in (*_RANK_FUNCTIONS, "sigmoid")]
        for key in spec:
            if key not in ("field", "boost", *_RANK_FUNCTIONS, "sigmoid"):
                raise UnsupportedQuery(f"{path}.{key}", "unsupported option (supported: field, boost, "
                                                        "linear, saturation, log)")
        if len(functions) > 1:
            raise UnsupportedQuery(path, "can only specify one of [log], [saturation], [sigmoid] and [linear]")
        if functions == ["sigmoid"]:
            raise UnsupportedQuery(f"{path}.sigmoid", "the sigmoid function is not supported "
                                                      "(supported: linear, saturation, log)")
        raise UnsupportedQuery(path, "give the function explicitly: linear, saturation with a pivot, or log; "
                                     "Elasticsearch's default (saturation with a pivot computed from "
                                     "index statistics) is not supported")

    @staticmethod
    def _rank_function(kind: str, params: Any, path: str) -> tuple[str, np.float32]:
        """(function, float32 parameter), checked as Lucene's FeatureField factories do."""
        if not isinstance(params, dict):
            raise UnsupportedQuery(path, "expected an object")
        allowed = {LINEAR: set(), SATURATION: {"pivot"}, LOG: {"scaling_factor"}}[kind]
        for key in params:
            if key not in allowed:
                raise UnsupportedQuery(f"{path}.{key}", f"unsupported option (supported: {sorted(allowed)})")
        if kind == LINEAR:
            return kind, np.float32(0)
        name = "pivot" if kind == SATURATION else "scaling_factor"
        if name not in params:
            if kind == SATURATION:
                raise UnsupportedQuery(path, "give the pivot: Elasticsearch's default pivot, computed from "
                                             "index statistics, is not supported")
            raise UnsupportedQuery(path, "[scaling_factor] is required")
        raw = params[name]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise UnsupportedQuery(f"{path}.{name}", f"expected a number, got {raw!r}")
        with np.errstate(over="ignore"):
            value = np.float32(raw)  # Elasticsearch parses both as float
        if kind == SATURATION and not (value > 0 and np.isfinite(value)):
            raise UnsupportedQuery(f"{path}.pivot", f"pivot must be > 0, got: {raw!r}")
        if kind == LOG and not (value >= 1 and np.isfinite(value)):
            raise UnsupportedQuery(f"{path}.scaling_factor", f"scalingFactor must be >= 1, got: {raw!r}")
        return kind, value

    def _q_rank_feature(self, spec: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        clause = self._rank_feature_clause(spec, path, boost)
        _, sums, hit = self._batch([], [clause], scoring, need_counts=False)
        return _Result(hit, None if sums is None else sums.astype(np.float32))

    # ------------------------------------------------------------------ function_score
    def _q_function_score(self, spec: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        """Elasticsearch's function_score with one field_value_factor function (no filter):
        its FunctionScoreQuery with CombineFunction `boost_mode`. The function_score's boost
        is passed down to its query (FunctionScoreQuery.createWeight), not applied after."""
        if not isinstance(spec, dict):
            raise UnsupportedQuery(path, "expected an object")
        self._check_keys(spec, path, {"query", "field_value_factor", "boost_mode", "max_boost", "boost"})
        if "field_value_factor" not in spec:
            raise UnsupportedQuery(path, "only one `field_value_factor` function is supported")
        boost = self._boost(spec, path, boost)
        mode = spec.get("boost_mode", "multiply")
        if not isinstance(mode, str) or mode.lower() not in _COMBINE:
            raise UnsupportedQuery(f"{path}.boost_mode", f"expected one of {list(_COMBINE)}, got {mode!r}")
        mode = mode.lower()
        max_boost = spec.get("max_boost", float(FLOAT32_MAX))
        if isinstance(max_boost, bool) or not isinstance(max_boost, (int, float)) or math.isnan(max_boost):
            raise UnsupportedQuery(f"{path}.max_boost", f"expected a number, got {max_boost!r}")
        field, factor, modifier, missing = self._field_value_factor(
            spec["field_value_factor"], f"{path}.field_value_factor")
        query = spec.get("query", {"match_all": {}})
        if not scoring:
            # no scores wanted: Elasticsearch runs just the query
            return self.eval(query, f"{path}.query", ONE, scoring=False)
        # `replace` ignores the query's score: Elasticsearch does not compute it
        inner = self.eval(query, f"{path}.query", boost, scoring=mode != "replace")
        if modifier == "none" and factor == ONE and mode == "multiply" and inner.score is not None \
                and inner.score.dtype == np.float32 and max_boost >= FLOAT32_MAX \
                and (missing is None or 0 <= missing <= FLOAT32_MAX):
            # the prior's shape: q * v in double, rounded to float32, in one compiled pass;
            # anything that could fail (a negative or missing value, an invalid score) takes
            # the full path
            within = kernels.ALL if self._within is None else self._within
            fast = kernels.multiply_values(inner.mask, within, inner.score, self.view.numbers(field), missing)
            if fast is not None:
                return _Result(inner.mask, fast)
        slots = np.flatnonzero(inner.mask if self._within is None else inner.mask & self._within)
        value = self.view.numbers(field)[slots].astype(np.float64)  # float doc values, as double
        absent = np.isnan(value)
        if missing is not None:
            value[absent] = missing
            absent[:] = False
        with np.errstate(all="ignore"):
            result = _MODIFIERS[modifier](value * np.float64(factor))
            q = inner.score[slots].astype(np.float64) if inner.score is not None else np.zeros(slots.size)
            with np.errstate(over="ignore"):
                combined = _COMBINE[mode](q, np.minimum(result, np.float64(np.float32(max_boost))))
            combined = combined.astype(np.float32)
        negative = ~absent & (result < 0)
        invalid = ~absent & ~negative & ((combined < 0) | np.isnan(combined))
        if absent.any() or negative.any() or invalid.any():
            self._defer(path, field, modifier, slots, value, result, combined, absent, negative, invalid)
            combined[absent | negative | invalid] = np.nan
        score = np.zeros(self.view.n, np.float32)
        score[slots] = combined
        return _Result(inner.mask, score)

    def _field_value_factor(self, spec: Any, path: str) -> tuple[str, np.float32, str, float | None]:
        """(number field, float32 factor, modifier, missing as double or None)."""
        if not isinstance(spec, dict):
            raise UnsupportedQuery(path, "expected an object")
        self._check_keys(spec, path, {"field", "factor", "modifier", "missing"})
        field = spec.get("field")
        if field not in self.schema.number_fields:
            raise UnsupportedQuery(f"{path}.field", f"{field!r} is not a number field of this index")
        factor = spec.get("factor", 1.0)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or math.isnan(factor):
            raise UnsupportedQuery(f"{path}.factor", f"expected a number, got {factor!r}")
        modifier = spec.get("modifier", "none")
        if not isinstance(modifier, str) or modifier.lower() not in _MODIFIERS:
            raise UnsupportedQuery(f"{path}.modifier", f"expected one of {list(_MODIFIERS)}, got {modifier!r}")
        missing = spec.get("missing")
        if missing is not None and (isinstance(missing, bool) or not isinstance(missing, (int, float))):
            raise UnsupportedQuery(f"{path}.missing", f"expected a number, got {missing!r}")
        with np.errstate(over="ignore"):
            f32 = np.float32(factor)  # parsed as a float, missing as a double
        return field, f32, modifier.lower(), None if missing is None else float(missing)

    def _defer(self, path, field, modifier, slots, value, result, combined, absent, negative, invalid) -> None:
        if absent.any():
            self._deferred.append(_Deferred(
                f"{path}.field_value_factor", slots[absent],
                lambda i: f"Missing value for field [{field}] (give `missing`)"))
        if negative.any():
            hint = {"ln": "; consider using ln1p or ln2p instead of ln to avoid negative scores",
                    "log": "; consider using log1p or log2p instead of log to avoid negative scores"}.get(modifier, "")
            r, v = result[negative], value[negative]
            self._deferred.append(_Deferred(
                f"{path}.field_value_factor", slots[negative],
                lambda i: f"field value function must not produce negative scores, but got: "
                          f"[{r[i]!r}] for field value: [{v[i]!r}]{hint}"))
        if invalid.any():
            c = combined[invalid]
            self._deferred.append(_Deferred(
                path, slots[invalid],
                lambda i: f"function score query returned an invalid score: {float(c[i])!r}"))

    def _term_clause(self, spec: Any, path: str, boost: np.float32) -> tuple[str, str, np.float32]:
        field, value = self._one_field(spec, path, set())
        fpath = f"{path}.{field}"
        field = self._keyword_field(field, fpath)
        if isinstance(value, dict):
            self._check_keys(value, fpath, {"value", "boost"})
            if "value" not in value:
                raise UnsupportedQuery(fpath, "missing `value`")
            boost = self._boost(value, fpath, boost)
            value = value["value"]
            fpath = f"{fpath}.value"
        if not isinstance(value, str):
            raise UnsupportedQuery(fpath, f"expected a string, got {value!r}")
        return field, value, boost

    # ------------------------------------------------------------------ query types
    def _q_term(self, spec: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        clause = self._term_clause(spec, path, boost)
        _, sums, hit = self._batch([clause], [], scoring, need_counts=False)
        return _Result(hit, None if sums is None else sums.astype(np.float32))

    def _q_terms(self, spec: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        field, values = self._one_field(spec, path, {"boost"})
        field = self._keyword_field(field, f"{path}.{field}")
        values = self._strings(values, f"{path}.{field}")
        boost = self._boost(spec, path, boost)
        docs, _ = self.view.term_postings(field, sorted(set(values)))
        mask = np.zeros(self.view.n, bool)
        mask[docs] = True
        return self._const(mask, boost, scoring)

    def _q_ids(self, spec: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        if not isinstance(spec, dict):
            raise UnsupportedQuery(path, "expected an object")
        self._check_keys(spec, path, {"values", "boost"})
        values = self._strings(spec.get("values"), f"{path}.values")
        boost = self._boost(spec, path, boost)
        mask = np.zeros(self.view.n, bool)
        mask[self.view.slots_of_ids(values)] = True
        return self._const(mask, boost, scoring)

    def _q_exists(self, spec: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        if not isinstance(spec, dict):
            raise UnsupportedQuery(path, "expected an object")
        self._check_keys(spec, path, {"field", "boost"})
        field = spec.get("field")
        if field in self.features:
            # as Elasticsearch's RankFeaturesFieldType.existsQuery
            raise UnsupportedQuery(f"{path}.field", "[rank_features] fields do not support [exists] queries")
        if field not in self.schema.all_fields():
            raise UnsupportedQuery(f"{path}.field", f"{field!r} is not a field of this index")
        boost = self._boost(spec, path, boost)
        return self._const(self.view.has_field(field), boost, scoring)

    def _q_match_all(self, spec: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        if not isinstance(spec, dict):
            raise UnsupportedQuery(path, "expected an object")
        self._check_keys(spec, path, {"boost"})
        return self._const(np.ones(self.view.n, bool), self._boost(spec, path, boost), scoring)

    def _q_constant_score(self, spec: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        if not isinstance(spec, dict) or "filter" not in spec:
            raise UnsupportedQuery(path, "expected {filter, boost}")
        self._check_keys(spec, path, {"filter", "boost"})
        boost = self._boost(spec, path, boost)
        inner = self.eval(spec["filter"], f"{path}.filter", ONE, scoring=False)
        return self._const(inner.mask, boost, scoring)

    def _q_range(self, spec: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        field, bounds = self._one_field(spec, path, set())
        fpath = f"{path}.{field}"
        if not isinstance(bounds, dict):
            raise UnsupportedQuery(fpath, "expected {gt, gte, lt, lte, boost}")
        self._check_keys(bounds, fpath, {"gt", "gte", "lt", "lte", "boost"})
        boost = self._boost(bounds, fpath, boost)
        if field in self.schema.date_fields:
            col = self.view.dates(field)
            mask = col != DATE_MISSING
            for op, value in bounds.items():
                if op == "boost":
                    continue
                try:
                    # Elasticsearch rounds missing components up for gt and lte.
                    ms = parse_date(value, round_up=op in ("gt", "lte"), now_ms=self.now_ms)
                except ValueError as e:
                    raise UnsupportedQuery(f"{fpath}.{op}", str(e)) from None
                mask &= _compare(col, op, np.int64(ms))
        elif field in self.schema.number_fields:
            col = self.view.numbers(field)
            mask = ~np.isnan(col)
            for op, value in bounds.items():
                if op == "boost":
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise UnsupportedQuery(f"{fpath}.{op}", f"expected a number, got {value!r}")
                # Number fields are float32 (the `float` mapping): compare as Elasticsearch does.
                mask &= _compare(col, op, np.float32(value))
        else:
            raise UnsupportedQuery(fpath, f"{field!r} is not a date or number field of this index")
        return self._const(mask, boost, scoring)

    def _q_bool(self, spec: Any, path: str, boost: np.float32, scoring: bool) -> _Result:
        if not isinstance(spec, dict):
            raise UnsupportedQuery(path, "expected an object")
        self._check_keys(spec, path, {"should", "must", "filter", "must_not", "minimum_should_match", "boost"})
        boost = self._boost(spec, path, boost)
        clauses = {occur: _clause_list(spec.get(occur, []), f"{path}.{occur}") for occur in
                   ("should", "must", "filter", "must_not")}
        should, must, filt, must_not = (clauses[o] for o in ("should", "must", "filter", "must_not"))
        n = self.view.n
        msm = self._min_should_match(spec, path, len(should), bool(must or filt))
        if not (should or must or filt or must_not):
            # Elasticsearch turns an empty bool into match_all.
            return self._const(np.ones(n, bool), boost, scoring)
        # the mask and the scores start as None (every document; no score yet), so that a
        # clause's own array is taken as it is instead of combined with a fresh array of n
        # ones or zeros: at 100k documents each float64 pass is a few dozen microseconds
        mask: np.ndarray | None = None
        # filter and must_not first: their mask bounds the documents whose function scores
        # the clauses below compute (`_within`); they add no score, so the order is free
        for i, q in enumerate(filt):
            m = self.eval(q, f"{path}.filter[{i}]", ONE, scoring=False).mask
            mask = m.copy() if mask is None else np.logical_and(mask, m, out=mask)
        for i, q in enumerate(must_not):
            ids = q.get("ids") if type(q) is dict and len(q) == 1 else None
            if type(ids) is dict and len(ids) == 1 and type(ids.get("values")) is list \
                    and all(type(v) is str for v in ids["values"]):
                if mask is None:
                    mask = np.ones(n, bool)
                mask[self.view.slots_of_ids(ids["values"])] = False  # the excluded items: no mask pass
                continue
            m = ~self.eval(q, f"{path}.must_not[{i}]", ONE, scoring=False).mask
            mask = m if mask is None else np.logical_and(mask, m, out=mask)
        outer_within, outer_selective = self._within, self._selective
        if scoring and mask is not None:
            self._within = mask if outer_within is None else mask & outer_within
            # a filter that keeps most documents (the history's must_not ids) saves the
            # kernels less than checking it costs: they then score every document, and the
            # excluded ones' sums go unread (this bool's mask already leaves them out)
            self._selective = 2 * int(np.count_nonzero(self._within)) < n
        try:
            mask, total = self._scored_clauses(path, boost, scoring, must, should, msm, mask)
        finally:
            self._within, self._selective = outer_within, outer_selective
        if mask is None:
            mask = np.ones(n, bool)
        if not scoring:
            return _Result(mask, None)
        # Lucene sums clause scores in double and rounds the bool's score to float32 (outside
        # `mask` the score means nothing: every consumer reads it where the mask is set).
        if total is None:
            return _Result(mask, np.zeros(n, np.float32))
        return _Result(mask, total if total.dtype == np.float32 else total.astype(np.float32))

    def _scored_clauses(self, path: str, boost: np.float32, scoring: bool, must: list, should: list,
                        msm: int, mask: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A bool's must and should clauses: (`mask` narrowed, in place when given; the sum of
        their scores when scoring, else None). The sum is float64 (Lucene's double sum), or
        one clause's own float32 scores when it is the only scoring clause (a float32 through
        a double and back is itself)."""
        total: np.ndarray | None = None
        owned = False
        """Whether `total` is an array of this bool's (else a clause's float32 scores, read only)."""

        def narrow(m: np.ndarray, fresh: bool) -> None:
            nonlocal mask
            if mask is None:
                mask = m if fresh else m.copy()
            else:
                np.logical_and(mask, m, out=mask)

        def add(score: np.ndarray, fresh: bool) -> None:
            # in clause order, as a sum from zeros would (0.0 + x is x, but for x = -0.0, which
            # then stays -0.0: equal to 0.0 wherever scores compare or sort)
            nonlocal total, owned
            if total is None:
                total, owned = score, fresh and score.dtype == np.float64
            else:
                if not owned:
                    total, owned = total.astype(np.float64), True
                total += score

        # must: every clause matches; term and rank_feature clauses are batched over the postings.
        must_terms, must_features, must_other = self._split_terms(must, f"{path}.must", boost)
        if must_terms or must_features:
            k = len(must_terms) + len(must_features)
            counts, sums, hit = self._batch(must_terms, must_features, scoring, need_counts=k > 1)
            narrow(hit if counts is None else counts == k, True)
            if scoring and sums is not None:
                add(sums, True)
        for p, q in must_other:
            r = self.eval(q, p, boost, scoring)
            narrow(r.mask, False)
            if scoring and r.score is not None:
                add(r.score, False)

        # should: count matching clauses per document for minimum_should_match (a mask of the
        # documents matching any is enough for 1, the builder's personal part)
        if should:
            should_terms, should_features, should_other = self._split_terms(should, f"{path}.should", boost)
            matched, sums, hit = self._batch(should_terms, should_features, scoring, need_counts=msm > 1)
            for p, q in should_other:
                r = self.eval(q, p, boost, scoring)
                if matched is not None:
                    matched += r.mask
                else:
                    hit |= r.mask
                if sums is not None and r.score is not None:  # (= scoring)
                    sums += np.where(r.mask, r.score, 0)
            if msm > 1:
                narrow(matched >= msm, True)
            elif msm == 1:
                narrow(hit, True)
            if scoring and sums is not None:
                add(sums, True)
        return mask, total

    def _split_terms(self, clauses: list[Any], path: str, boost: np.float32):
        """Term and rank_feature clauses (batched over posting lists) apart from the others."""
        terms: list[tuple[str, str, Any]] = []  # boosts made float32 below (`pending`)
        features: list[_FeatureClause] = []
        other: list[tuple[str, Any]] = []
        keywords = self.keywords
        feature_fields = self.features
        functions = self._functions
        pending: list[int] = []
        last_params: Any = None
        last_fn: tuple[str, np.float32] | None = None
        append = features.append
        for i, q in enumerate(clauses):
            # fast paths for well-formed clauses: a 500-item history over two fields makes
            # 1000 of them, and per-clause Python overhead would dominate the search
            rf = q.get("rank_feature") if type(q) is dict and len(q) == 1 else None
            if rf is not None:
                # the builder's shape {field, <function>: params, boost}: a few dict look-ups,
                # the parameters (one object shared by the builder's clauses) checked once
                name = rf.get("field") if type(rf) is dict else None
                if type(name) is str:
                    field, _, feature = name.rpartition(".")
                    raw = rf.get("boost", 1.0)
                    if field in feature_fields and len(rf) == (3 if "boost" in rf else 2) \
                            and (type(raw) is float or type(raw) is int) and raw >= 0:
                        params = rf.get("log")
                        kind = LOG
                        if params is None:
                            params, kind = rf.get("saturation"), SATURATION
                            if params is None:
                                params, kind = rf.get("linear"), LINEAR
                        if params is not None:
                            if params is not last_params or last_fn is None or last_fn[0] != kind:
                                last_fn = functions.get((kind, id(params)))
                                if last_fn is None:
                                    last_fn = functions[(kind, id(params))] = _rank_function_of(
                                        kind, params, f"{path}[{i}].rank_feature.{kind}")
                                last_params = params
                            append((field, feature, kind, last_fn[1], raw, boost))
                            continue
                append(self._rank_feature_clause(rf, f"{path}[{i}].rank_feature", boost))
                continue
            spec = q.get("term") if type(q) is dict and len(q) == 1 else None
            if type(spec) is dict and len(spec) == 1:
                ((field, value),) = spec.items()
                if field in keywords:
                    if type(value) is str:
                        terms.append((field, value, boost))
                        continue
                    if type(value) is dict and type(value.get("value")) is str and len(value) == 2:
                        raw = value.get("boost")
                        if (type(raw) is float or type(raw) is int) and raw >= 0:
                            # the boost times the one passed down, in float32, for all at once below
                            pending.append(len(terms))
                            terms.append((field, value["value"], raw))
                            continue
            p = f"{path}[{i}]"
            if isinstance(q, dict) and len(q) == 1 and "term" in q:
                terms.append(self._term_clause(q["term"], f"{p}.term", boost))
            else:
                other.append((p, q))
        if pending:
            # Lucene's BoostQuery: float32(boost) * the boost passed down, in float32 (as _boost)
            with np.errstate(over="ignore"):
                scaled = (np.array([terms[k][2] for k in pending], np.float32) * boost).tolist()
            for k, b in zip(pending, scaled, strict=True):
                terms[k] = (terms[k][0], terms[k][1], np.float32(b))
        return terms, features, other

    @staticmethod
    def _min_should_match(spec: dict, path: str, n_should: int, has_required: bool) -> int:
        raw = spec.get("minimum_should_match")
        if raw is None:
            msm = 0 if has_required else 1
        else:
            if isinstance(raw, str) and re.fullmatch(r"-?\d+", raw):
                raw = int(raw)
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise UnsupportedQuery(f"{path}.minimum_should_match", "only an integer is supported")
            msm = raw if raw >= 0 else max(0, n_should + raw)
            if not has_required and n_should:
                msm = max(msm, 1)  # a pure disjunction always needs one matching clause
        if n_should == 0:
            return 0
        return msm


def _clause_list(value: Any, path: str) -> list[Any]:
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise UnsupportedQuery(path, "expected a query or a list of queries")
    return value


def _compare(col: np.ndarray, op: str, bound) -> np.ndarray:
    if op == "gt":
        return col > bound
    if op == "gte":
        return col >= bound
    if op == "lt":
        return col < bound
    return col <= bound


def top_hits(view: IndexView, body: ParsedBody, mask: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slots and scores of the page of hits, in sort order."""
    want = body.start + body.size
    first = body.sort[0]
    if want and first.field == "_score" and first.descending:
        # only documents scoring at least the want-th best score can reach the page: found in
        # one compiled pass (`run` raised already if a NaN score matched)
        cand = np.flatnonzero(mask & (score >= kernels.kth_score(mask, score, want)))
    else:
        cand = np.flatnonzero(mask)
    if want == 0 or cand.size == 0:
        return cand[:0], score[:0]
    cscore = score[cand]
    keys = []
    for key in reversed(body.sort):
        if key.field == "_score":
            s = cscore.astype(np.float64)
            keys.append(-s if key.descending else s)
        elif key.field == "id":
            r = view.id_rank[cand]
            keys.append(-r if key.descending else r)
        elif key.field in view.schema.number_fields:
            v = view.numbers(key.field)[cand].astype(np.float64)
            missing = np.isnan(v)
            v = -v if key.descending else v
            keys.append(np.where(missing, np.inf, v))  # missing values sort last, as in ES
        else:
            v = view.dates(key.field)[cand]
            missing = v == DATE_MISSING
            v = v.astype(np.float64)
            v = -v if key.descending else v
            keys.append(np.where(missing, np.inf, v))
    order = np.lexsort(keys)[body.start:want]
    return cand[order], cscore[order]
