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


@pytest.mark.parametrize("args", [(1, 4), (10, 0), (10, -1), (10.7, 1), (True, 4)])
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


@pytest.mark.parametrize("kernel_power", [0.0, 0.25, 1.0])
def test_paired_masks_are_complementary_pairs_starting_with_all_and_none(kernel_power):
    X = compattr.paired_masks(12, 301, seed=2, kernel_power=kernel_power)
    assert X.shape == (300, 12) and X.dtype == bool  # an odd m is rounded down
    np.testing.assert_array_equal(X[1::2], ~X[0::2])
    assert X[0].all() and not X[1].any()
    sizes = X[2::2].sum(axis=1)
    assert sizes.min() >= 1 and sizes.max() <= 11


def test_paired_masks_seed_and_size_distribution():
    n = 10
    X = compattr.paired_masks(n, 40_000, seed=3, kernel_power=0.0)
    np.testing.assert_array_equal(X, compattr.paired_masks(n, 40_000, seed=3, kernel_power=0.0))
    assert not np.array_equal(X, compattr.paired_masks(n, 40_000, seed=4, kernel_power=0.0))
    counts = np.bincount(X[2::2].sum(axis=1), minlength=n + 1)[1:n] / (X.shape[0] / 2 - 1)
    np.testing.assert_allclose(counts, 1 / (n - 1), atol=0.01)  # every size equally often
    assert abs(X[2::2].mean(axis=0) - 0.5).max() < 0.02  # no feature favoured
    k = np.arange(1, n)
    p = 1.0 / (k * (n - k))
    X = compattr.paired_masks(n, 40_000, seed=3, kernel_power=1.0)
    counts = np.bincount(X[2::2].sum(axis=1), minlength=n + 1)[1:n] / (X.shape[0] / 2 - 1)
    np.testing.assert_allclose(counts, p / p.sum(), atol=0.01)  # the Shapley kernel


def test_paired_masks_auto_draws_sizes_nearer_empty_and_full_below_few_pairs():
    """ "auto" (the default) is FEW_PAIRS_KERNEL_POWER below FEW_PAIRS pairs and KERNEL_POWER
    from there on, counted in whole pairs (an odd m loses its last mask)."""
    from compattr.query.masks import FEW_PAIRS, FEW_PAIRS_KERNEL_POWER, KERNEL_POWER

    n = 10
    for m, power in (
        (2 * FEW_PAIRS - 1, FEW_PAIRS_KERNEL_POWER),
        (2 * FEW_PAIRS - 2, FEW_PAIRS_KERNEL_POWER),
        (2 * FEW_PAIRS, KERNEL_POWER),
        (2 * FEW_PAIRS + 1, KERNEL_POWER),
    ):
        X = compattr.paired_masks(n, m, seed=5)
        np.testing.assert_array_equal(X, compattr.paired_masks(n, m, seed=5, kernel_power=power))
        other = KERNEL_POWER if power == FEW_PAIRS_KERNEL_POWER else FEW_PAIRS_KERNEL_POWER
        assert not np.array_equal(X, compattr.paired_masks(n, m, seed=5, kernel_power=other))
    assert FEW_PAIRS_KERNEL_POWER > KERNEL_POWER  # more pairs near empty and full with few pairs


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n=1, m=4),
        dict(n=3, m=1),
        dict(n=3, m=4, kernel_power=-0.1),
        dict(n=3, m=4, kernel_power="shapley"),
        dict(n=3, m=4, kernel_power=True),
    ],
)
def test_paired_masks_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        compattr.paired_masks(**kwargs)
