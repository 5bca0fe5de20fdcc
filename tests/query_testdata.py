"""A tiny hand-checkable item index shared by the query tests (not a test module)."""

from __future__ import annotations

import math

from indexer.backend import IndexSchema
from indexer.embedded import EmbeddedBackend

SCHEMA = IndexSchema(
    keyword_fields=("purchase", "view", "category"),
    date_fields=("date",),
    number_fields=("popular", "trending", "hot"),
)

DOCS = [
    {"id": "a", "category": ["z"], "popular": 3.0},
    {"id": "b", "category": ["z"], "popular": 2.0},
    {"id": "i1", "purchase": ["a", "b"], "view": ["a"], "category": ["x"], "popular": 5.0,
     "date": "2025-01-10T00:00:00Z"},
    {"id": "i2", "purchase": ["a"], "category": ["y"], "popular": 9.0, "date": "2025-02-10T00:00:00Z"},
    {"id": "i3", "purchase": ["c"], "view": ["b"], "category": ["x"], "popular": 1.0},
    {"id": "i4", "category": ["y"], "popular": 20.0},
    {"id": "i5", "category": ["x"]},
]


def make_backend(path, docs=DOCS) -> EmbeddedBackend:
    """An embedded index of DOCS under `path`."""
    backend = EmbeddedBackend(path, "items", keep_versions=2)
    backend.create_version(SCHEMA, [dict(d) for d in docs])
    return backend


def term_score(doc_count: int, doc_freq: int, sum_doc_freq: int, boost: float = 1.0) -> float:
    """One matching keyword `term` clause, as Elasticsearch scores it (DESIGN.md)."""
    idf = math.log(1 + (doc_count - doc_freq + 0.5) / (doc_freq + 0.5))
    avgdl = sum_doc_freq / doc_count
    return boost * 2.2 * idf / (1 + 1.2 * (0.25 + 0.75 / avgdl))


# purchase field: i1 [a, b], i2 [a], i3 [c] -> docCount 3, sumDocFreq 4
PURCHASE_A = term_score(3, 2, 4)
PURCHASE_B = term_score(3, 1, 4)
# view field: i1 [a], i3 [b] -> docCount 2, sumDocFreq 2
VIEW_A = term_score(2, 1, 2)
