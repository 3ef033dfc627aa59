"""Sampling the masks that ProxySPEX queries, and the paper's budget rule."""

from __future__ import annotations

import math

import numpy as np

_CHUNK_CELLS = 1 << 22  # uniforms drawn at a time (32 MB of float64) instead of m·n at once


def budget(n: int, alpha: float = 4.0) -> int:
    """Number of model queries ``m = ceil(alpha * n * log2 n)`` (paper §4).

    Parameters
    ----------
    n : int
        Number of features (n >= 2).
    alpha : float
        Queries per ``n log2 n``; the paper uses 2, 4, 6 and 8.
    """
    if n < 2:
        raise ValueError(f"budget needs n >= 2 features, got n={n}.")
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}.")
    return int(math.ceil(alpha * n * math.log2(n)))


def sample_masks(n: int, m: int, seed: int | None = 0, p: float = 0.5) -> np.ndarray:
    """Draw ``m`` random masks over ``n`` features, each bit kept with probability ``p``.

    Parameters
    ----------
    n, m : int
        Number of features and of masks.
    seed : int or None
        Seed of the NumPy generator; the same seed always gives the same masks.
    p : float
        Probability that a feature is kept; 0.5 gives the uniform distribution that the
        Fourier estimates assume.

    Returns
    -------
    numpy.ndarray of bool, shape (m, n)
        ``True`` = feature kept.
    """
    if n < 1 or m < 1:
        raise ValueError(f"need n >= 1 and m >= 1, got n={n}, m={m}.")
    if not 0.0 < p < 1.0:
        raise ValueError(f"keep probability p must lie in (0, 1), got {p}.")
    rng = np.random.default_rng(seed)
    masks = np.empty((m, n), dtype=bool)
    rows = max(1, _CHUNK_CELLS // n)  # the generator's stream does not depend on the chunking
    for start in range(0, m, rows):
        masks[start : start + rows] = rng.random((min(rows, m - start), n)) < p
    return masks
