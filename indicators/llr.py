"""Dunning's log-likelihood ratio (G^2), vectorised.

Ted Dunning, "Accurate Methods for the Statistics of Surprise and Coincidence",
Computational Linguistics 19(1), 1993. The unnormalised-entropy form below is Apache
Mahout's LogLikelihood.logLikelihoodRatio, so scores match Mahout's and the Universal
Recommender's: LLR = 2 * (H(rows) + H(cols) - H(matrix)), H(k...) = xlogx(sum k) - sum xlogx(k).
"""

from __future__ import annotations

import numpy as np


def _xlogx(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    pos = x > 0
    out[pos] = x[pos] * np.log(x[pos])
    return out


def llr(k11, k12, k21, k22) -> np.ndarray:
    """LLR of 2x2 contingency tables (arrays of counts); round-off negatives clamp to 0."""
    k11, k12, k21, k22 = (np.asarray(k, dtype=np.float64) for k in (k11, k12, k21, k22))
    row = _xlogx(k11 + k12 + k21 + k22) - _xlogx(k11 + k12) - _xlogx(k21 + k22)
    col = _xlogx(k11 + k12 + k21 + k22) - _xlogx(k11 + k21) - _xlogx(k12 + k22)
    mat = _xlogx(k11 + k12 + k21 + k22) - _xlogx(k11) - _xlogx(k12) - _xlogx(k21) - _xlogx(k22)
    return np.maximum(2.0 * (row + col - mat), 0.0)


def llr_from_counts(k11, a_count, b_count, n_users) -> np.ndarray:
    """LLR from co-occurrence counts: k11 users with a and b, a_count users with a,
    b_count users with b, n_users users in all."""
    k11 = np.asarray(k11, dtype=np.float64)
    k12 = np.asarray(a_count, dtype=np.float64) - k11
    k21 = np.asarray(b_count, dtype=np.float64) - k11
    k22 = float(n_users) - k11 - k12 - k21
    return llr(k11, k12, k21, k22)


class LlrTable:
    """LLR for many pairs with the same N: x log x of every count 0..N looked up once.

    With a = users of item a, b = users of item b, the row and column entropies depend on
    one item each, so a pair costs four lookups (its four cells) instead of ten logs.
    Tables above `max_table` entries fall back to computing x log x directly."""

    def __init__(self, n_users: int, max_table: int = 50_000_000) -> None:
        self.n = int(n_users)
        self.table = _xlogx(np.arange(self.n + 1)) if self.n <= max_table else None
        self._xlogx_n = float(_xlogx(np.array([self.n]))[0])

    def xlogx(self, k: np.ndarray) -> np.ndarray:
        return self.table[k] if self.table is not None else _xlogx(k)

    def marginal_entropy(self, count: np.ndarray) -> np.ndarray:
        """H(count, N - count) of items (the row or column part of the LLR)."""
        count = np.asarray(count, dtype=np.int64)
        return self._xlogx_n - self.xlogx(count) - self.xlogx(self.n - count)

    def scores(self, k11, a_count, b_count, h_a, h_b) -> np.ndarray:
        """LLR of pairs: k11 users with both, item counts, their marginal entropies.

        In place on two buffers: this runs once per co-occurring pair, the job's hot loop."""
        k11 = np.asarray(k11, dtype=np.int64)
        k = np.subtract(a_count, k11)  # k12
        tmp = np.empty(len(k11))
        mat = self._lookup(k11, np.empty(len(k11)))
        mat += self._lookup(k, tmp)
        np.subtract(b_count, k11, out=k)  # k21
        mat += self._lookup(k, tmp)
        np.add(k, a_count, out=k)
        np.subtract(self.n, k, out=k)  # k22 = N - k12 - k21 - k11
        mat += self._lookup(k, tmp)
        # 2 * (H(rows) + H(cols) - H(matrix)), H(matrix) = xlogx(N) - sum xlogx(cells)
        mat += h_a
        mat += h_b
        mat -= self._xlogx_n
        mat *= 2.0
        return np.maximum(mat, 0.0, out=mat)

    def _lookup(self, k: np.ndarray, out: np.ndarray) -> np.ndarray:
        if self.table is not None:
            # mode="clip" skips the bounds check that makes `out=` buffer (counts are in range).
            return np.take(self.table, k, out=out, mode="clip")
        out[:] = _xlogx(k)
        return out
