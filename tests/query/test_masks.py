import math

import numpy as np
import pytest

import compattr


def test_sample_masks_shape_dtype_and_seed():
    X = compattr.sample_masks(30, 500, seed=3)
    assert X.shape == (500, 30) and X.dtype == bool
    assert np.array_equal(X, compattr.sample_masks(30, 500, seed=3))
    assert not np.array_equal(X, compattr.sample_masks(30, 500, seed=4))


def test_sample_masks_is_uniform():
    X = compattr.sample_masks(50, 20_000, seed=0)
    assert abs(X.mean() - 0.5) < 0.01
    assert np.abs(X.mean(axis=0) - 0.5).max() < 0.02


def test_budget_matches_formula():
    assert compattr.budget(500, 4) == math.ceil(4 * 500 * math.log2(500))
    assert compattr.budget(2, 1) == 2


@pytest.mark.parametrize("args", [(1, 4), (10, 0), (10, -1)])
def test_budget_rejects_bad_input(args):
    with pytest.raises(ValueError):
        compattr.budget(*args)


@pytest.mark.parametrize("kwargs", [dict(n=0, m=3), dict(n=3, m=0), dict(n=3, m=3, p=1.0)])
def test_sample_masks_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        compattr.sample_masks(**kwargs)


def test_sample_masks_draws_in_chunks_without_changing_the_masks():
    """Chunked drawing (bounded memory) gives exactly the one-shot draw of the same seed."""
    n, m = 1000, 9000  # 9e6 cells: three chunks
    expected = np.random.default_rng(7).random((m, n)) < 0.5
    np.testing.assert_array_equal(compattr.sample_masks(n, m, seed=7), expected)
