"""Shared fixtures: brute-force helpers computed from the set function itself."""

from __future__ import annotations

import itertools

import numpy as np
import pytest


def all_masks(n: int) -> np.ndarray:
    """Every mask over n features, (2^n, n) bool, in binary counting order."""
    return np.array(list(itertools.product([False, True], repeat=n)), dtype=bool)


def brute_force_fourier(values: np.ndarray, masks: np.ndarray) -> dict[tuple, float]:
    """F(T) = 2^-n Σ_S (-1)^{|S ∩ T|} f(S), by the definition, for every T."""
    n = masks.shape[1]
    M = masks.astype(np.int64)
    chi = 1 - 2 * ((M @ M.T) % 2)  # rows: T, columns: S
    F = chi @ values / 2**n
    return {tuple(np.flatnonzero(t)): float(c) for t, c in zip(masks, F)}


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
