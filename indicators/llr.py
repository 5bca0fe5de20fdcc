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
