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
