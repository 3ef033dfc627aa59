"""Least squares on ±1 parity features: Gram matrices and their reuse."""

import numpy as np

import compattr
from compattr.proxy.leastsquares import gram_and_projection, gram_reusing
from compattr.spectrum.supports import pad_supports


def _whole(lower: np.ndarray) -> np.ndarray:
    """A Gram matrix from its lower triangle."""
    return lower + np.tril(lower, -1).T


def test_gram_reusing_equals_the_gram_computed_afresh():
    """Rows known (in another order, among others) and rows not known, over several blocks of
    masks: the reused Gram matrix and projection are those computed from scratch."""
    n, rng = 12, np.random.default_rng(3)
    X = compattr.sample_masks(n, 1100, seed=4)  # three blocks of 512 masks
    y = rng.standard_normal(len(X))
    known = pad_supports([(), (0,), (3,), (0, 3), (5, 7, 9), (2,), (1, 2, 11), (4, 8)], n)
    rows = pad_supports([(4, 8), (), (6,), (0, 3), (1, 6, 10, 11), (2,), (7, 9)], n)  # 3 not known
    known_gram, known_projection = gram_and_projection(X, known, y)
    gram, projection = gram_reusing(X, rows, y, known, _whole(known_gram), known_projection)
    expected_gram, expected_projection = gram_and_projection(X, rows, y)
    np.testing.assert_array_equal(gram, _whole(expected_gram))
    np.testing.assert_allclose(projection, expected_projection, rtol=1e-12)
    every_known = gram_reusing(X, rows[[0, 1, 3, 5]], y, known, _whole(known_gram), known_projection)
    np.testing.assert_array_equal(every_known[0], _whole(expected_gram)[np.ix_([0, 1, 3, 5], [0, 1, 3, 5])])


def test_a_float32_factor_of_a_rank_deficient_gram_is_redone_in_float64():
    """48 masks and 48 parity features of rank 45: float32's Cholesky "succeeded" with pivots
    of rounding alone, and the prefix solutions from it were off by up to 17x. The factor is
    redone in float64 where a squared pivot falls below FLOAT32_PIVOT of the mean diagonal."""
    import itertools

    from compattr.proxy.leastsquares import FLOAT32_PIVOT, factor, gram_and_projection, ridge_penalty
    from compattr.spectrum.supports import pad_supports, parity_matrix

    rng = np.random.default_rng(0)
    n = 8
    X = rng.random((48, n)) < 0.5
    y = 1.0 + 2 * (1 - 2 * X[:, 0]) + (1 - 2 * X[:, 1]) * (1 - 2 * X[:, 2]) + rng.normal(0, 0.3, 48)
    rows = pad_supports([()] + [T for d in (1, 2, 3) for T in itertools.combinations(range(n), d)], n)[:48]
    P = parity_matrix(X, rows)
    assert np.linalg.matrix_rank(P) == 45  # the case this test is for
    gram, projection = gram_and_projection(X, rows, y)
    L, z = factor(gram, projection, ridge_penalty(rows, n, 0.0), dtype=np.float32)
    assert L.dtype == np.float64 and np.diagonal(L).min() ** 2 < FLOAT32_PIVOT * np.diagonal(gram).mean()
    for k in (44, 46, 48):  # each prefix's fitted values are the least-squares ones
        beta = np.linalg.solve(L[:k, :k].T, z[:k])
        expected = P[:, :k] @ np.linalg.lstsq(P[:, :k], y, rcond=None)[0]
        np.testing.assert_allclose(P[:, :k] @ beta, expected, atol=1e-3)
