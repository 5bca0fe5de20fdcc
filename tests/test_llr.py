"""LLR known answers (Apache Mahout's LogLikelihoodTest values) and an independent G^2."""

import numpy as np
import pytest

from indicators.llr import llr, llr_from_counts


def g2(k11, k12, k21, k22):
    """Textbook G^2 = 2 * sum O ln(O / E): an independent route to the same number."""
    table = np.array([[k11, k12], [k21, k22]], dtype=float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    nz = table > 0
    return 2 * float((table[nz] * np.log(table[nz] / expected[nz])).sum())


def test_perfect_association_known_answers():
    # k11 = k22 = n, k12 = k21 = 0: G^2 = 4 n ln 2 (worked by hand from the entropy form).
    assert llr(1, 0, 0, 1) == pytest.approx(4 * np.log(2), rel=1e-12)
    assert llr(10, 0, 0, 10) == pytest.approx(40 * np.log(2), rel=1e-12)


@pytest.mark.parametrize(
    "k",
    [(5, 1995, 0, 100000), (1000, 1995, 1000, 100000), (1000, 1000, 1000, 99000), (1, 40, 3, 7)],
)
def test_entropy_form_equals_textbook_g2(k):
    assert llr(*k) == pytest.approx(g2(*k), rel=1e-9)


def test_independent_tables_score_zero_not_negative():
    # Exactly independent tables score 0 up to round-off, never below.
    assert llr(10, 10, 10, 10) == pytest.approx(0.0, abs=1e-9)
    assert (llr([10, 3, 0], [10, 3, 5], [10, 3, 5], [10, 3, 0]) >= 0).all()


def test_from_counts_matches_table():
    # 4 users; a has users {0, 1}, b has {1, 2}: k11=1, k12=1, k21=1, k22=1.
    assert llr_from_counts(1, 2, 2, 4) == pytest.approx(g2(1, 1, 1, 1), abs=1e-12)
    assert llr_from_counts(3, 5, 4, 100) == pytest.approx(g2(3, 2, 1, 94), rel=1e-9)
