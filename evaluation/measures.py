"""Ranking measures over one user's ranked ids and held-out relevant items (precision, recall,
MAP, NDCG, hit rate at k; catalogue coverage), averaged over users by `score_rankings`.
Plain Python: definitions in docs/evaluation.md ("Metrics")."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass


def _hits(ranked: Sequence[str], relevant: set[str], k: int) -> list[bool]:
    return [item in relevant for item in ranked[:k]]


def precision_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Relevant items among the first k, divided by k (even when fewer than k came back)."""
    return sum(_hits(ranked, relevant, k)) / k


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Relevant items among the first k, divided by the number of relevant items."""
    if not relevant:
        return 0.0
    return sum(_hits(ranked, relevant, k)) / len(relevant)


def average_precision_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """AP@k = (1 / min(k, |relevant|)) * sum over ranks i <= k holding a relevant item of
    precision@i. The min() makes a perfect top-k score 1 even when |relevant| > k."""
    if not relevant:
        return 0.0
    total, found = 0.0, 0
    for i, hit in enumerate(_hits(ranked, relevant, k), 1):
        if hit:
            found += 1
            total += found / i
    return total / min(k, len(relevant))


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-gain NDCG@k: DCG = sum of 1/log2(i+1) over ranks i <= k holding a relevant
    item; divided by the DCG of an ideal list (min(k, |relevant|) hits at the top)."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 1) for i, hit in enumerate(_hits(ranked, relevant, k), 1) if hit)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal


def hit_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """1 when any of the first k items is relevant, else 0."""
    return 1.0 if any(_hits(ranked, relevant, k)) else 0.0


def coverage_at_k(rankings: Iterable[Sequence[str]], k: int, catalogue: int) -> float:
    """Distinct items in anyone's first k, divided by the catalogue size."""
    if catalogue <= 0:
        return 0.0
    seen: set[str] = set()
    for ranked in rankings:
        seen.update(ranked[:k])
    return len(seen) / catalogue


@dataclass(frozen=True)
class Metrics:
    """Metrics at one k, averaged over the evaluated users (coverage: over all of them)."""

    k: int
    precision: float
    recall: float
    map: float
    ndcg: float
    hit_rate: float
    coverage: float
    users: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def score_rankings(
    rankings: Mapping[str, Sequence[str]],
    relevant: Mapping[str, set[str]],
    ks: Sequence[int],
    catalogue: int,
) -> dict[int, Metrics]:
    """Every metric at every k over the users of `relevant` (a user missing from `rankings`
    got nothing and scores 0)."""
    users = sorted(relevant)
    out: dict[int, Metrics] = {}
    for k in ks:
        sums = [0.0] * 5
        for u in users:
            ranked, rel = rankings.get(u, ()), relevant[u]
            for j, fn in enumerate((precision_at_k, recall_at_k, average_precision_at_k, ndcg_at_k, hit_at_k)):
                sums[j] += fn(ranked, rel, k)
        n = max(len(users), 1)
        cov = coverage_at_k((rankings.get(u, ()) for u in users), k, catalogue)
        precision, recall, map_, ndcg, hit_rate = (s / n for s in sums)
        out[k] = Metrics(k, precision, recall, map_, ndcg, hit_rate, coverage=cov, users=len(users))
    return out
