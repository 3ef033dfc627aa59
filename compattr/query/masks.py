"""Sampling the masks that ProxySPEX queries, and the paper's budget rule."""

from __future__ import annotations

import math

import numpy as np

from .._validation import check_int, check_positive

_CHUNK_CELLS = 1 << 22  # uniforms drawn at a time (32 MB of float64) instead of m·n at once

#: The pairs' size distribution (``kernel_power``) from :data:`FEW_PAIRS` pairs on: nearly
#: flat, so that pairs of every size hold the higher-order odd terms a hierarchy has.
KERNEL_POWER = 0.25

#: Below this many pairs, ``kernel_power="auto"`` draws :data:`FEW_PAIRS_KERNEL_POWER`: sizes
#: near empty and full, which pin the single features' effects down, more often. Tuning
#: functions (complete hierarchies, mean Shapley error of :class:`compattr.PairedShapley`,
#: docs/results.md): 0.5 was lower at n = 100, α = 1 (332 pairs; seeds 1–5 0.275 → 0.231,
#: with 10 dB noise 0.382 → 0.299), at n = 20 and 40, α = 1 and 2 (43–212 pairs), and level
#: at n = 200, α = 1 (764 pairs); 0.25 was lower at n = 100, α = 1.5 and 2 (498 and 664
#: pairs) and at n = 500, α = 1.
FEW_PAIRS = 400

#: The ``kernel_power`` that ``"auto"`` draws below :data:`FEW_PAIRS` pairs.
FEW_PAIRS_KERNEL_POWER = 0.5


def budget(n: int, alpha: float = 4.0) -> int:
    """Number of model queries ``m = ceil(alpha * n * log2 n)`` (paper §4).

    Parameters
    ----------
    n : int
        Number of features (n >= 2).
    alpha : float
        Queries per ``n log2 n``; the paper uses 2, 4, 6 and 8.
    """
    n = check_int(n, "n", 2)
    return int(math.ceil(check_positive(alpha, "alpha") * n * math.log2(n)))


def resolve_budget(n: int, asked: int | None, alpha: float | None, *, default_alpha: float, low: int) -> int:
    """The queries to make: ``asked`` (a budget given, an int of at least ``low``), or
    :func:`budget` of ``n`` at ``alpha`` (``default_alpha`` when None); ValueError for both
    at once (``alpha`` would be ignored)."""
    if asked is not None and alpha is not None:
        raise ValueError(f"pass budget= or alpha=, not both: budget={asked!r} would ignore alpha={alpha!r}.")
    if asked is not None:
        return check_int(asked, "budget", low)
    return budget(n, default_alpha if alpha is None else alpha)


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


def resolve_kernel_power(kernel_power: float | str, pairs: int) -> float:
    """The power of the pairs' size distribution: ``kernel_power`` itself, checked to lie in
    [0, 1], or for ``"auto"`` the one for ``pairs`` complementary pairs (the masks'
    ``m // 2``): :data:`FEW_PAIRS_KERNEL_POWER` below :data:`FEW_PAIRS` pairs, else
    :data:`KERNEL_POWER`. :func:`paired_masks` and :class:`compattr.PairedShapley` resolve
    ``"auto"`` by it alike, so masks drawn with the default are weighted as drawn."""
    if isinstance(kernel_power, str):
        if kernel_power != "auto":
            raise ValueError(f'kernel_power must be "auto" or lie in [0, 1], got {kernel_power!r}.')
        return FEW_PAIRS_KERNEL_POWER if pairs < FEW_PAIRS else KERNEL_POWER
    if isinstance(kernel_power, bool) or not 0.0 <= kernel_power <= 1.0:
        raise ValueError(f'kernel_power must be "auto" or lie in [0, 1], got {kernel_power!r}.')
    return float(kernel_power)


def paired_masks(n: int, m: int, seed: int | None = 0, kernel_power: float | str = "auto") -> np.ndarray:
    """Draw complementary pairs of masks ``S, Sᶜ`` for Shapley estimation (paired sampling).

    Row ``2j + 1`` is the complement of row ``2j``. The first pair is ``([n], ∅)``: all kept,
    then none kept (the efficiency constraint ``Σ_i φ_i = f([n]) - f(∅)``). Every other
    pair draws the size ``k = |S|`` of its first mask from ``{1, ..., n - 1}`` with
    probability proportional to ``(k (n - k))^(-kernel_power)``, then ``S`` uniformly among
    the sets of that size.

    Parameters
    ----------
    n : int
        Number of features (n >= 2).
    m : int
        Number of masks, at least 2; an odd ``m`` is rounded down to ``m - 1`` so that every
        mask has its complement and no more than ``m`` model calls are spent.
    seed : int or None
        Seed of the NumPy generator; the same seed always gives the same masks.
    kernel_power : float or "auto"
        ``0`` draws every size equally often (the sizes the Shapley value averages over);
        ``1`` draws them by the Shapley kernel (most masks near empty or full). "auto"
        (default): :func:`resolve_kernel_power` of the ``m // 2`` pairs (0.5 below
        :data:`FEW_PAIRS` pairs, else 0.25). Pass the same value to
        :class:`compattr.PairedShapley`, which weights the pairs by it (its default, "auto",
        resolves alike on these masks).

    Returns
    -------
    numpy.ndarray of bool, shape (2 ⌊m / 2⌋, n)
        ``True`` = feature kept; ``X[1::2] == ~X[0::2]``.
    """
    if n < 2 or m < 2:
        raise ValueError(f"paired masks need n >= 2 and m >= 2, got n={n}, m={m}.")
    pairs = m // 2
    kernel_power = resolve_kernel_power(kernel_power, pairs)
    rng = np.random.default_rng(seed)
    sizes = np.arange(1, n)
    p = (sizes * (n - sizes)).astype(np.float64) ** -kernel_power
    k = np.r_[n, rng.choice(sizes, size=pairs - 1, p=p / p.sum())]
    first = np.empty((pairs, n), dtype=bool)
    rows = max(1, _CHUNK_CELLS // n)
    for start in range(0, pairs, rows):
        stop = min(pairs, start + rows)
        # the ranks of i.i.d. uniforms are a uniform random permutation: keep the k smallest
        ranks = np.argsort(np.argsort(rng.random((stop - start, n)), axis=1), axis=1)
        first[start:stop] = ranks < k[start:stop, None]
    masks = np.empty((2 * pairs, n), dtype=bool)
    masks[0::2], masks[1::2] = first, ~first
    return masks


def check_pairs(X: np.ndarray) -> None:
    """Raise ValueError unless the masks ``X`` (m, n) are complementary pairs, row
    ``2j + 1`` the complement of row ``2j`` (as :func:`paired_masks` draws them)."""
    if X.shape[0] % 2:
        raise ValueError(f"paired masks come in pairs: got an odd number of masks ({X.shape[0]}).")
    bad = np.flatnonzero((X[0::2] == X[1::2]).any(axis=1))
    if bad.size:
        j = int(bad[0])
        raise ValueError(
            f"masks {2 * j} and {2 * j + 1} are not complements: row 2j + 1 must be the complement "
            "of row 2j (draw them with compattr.paired_masks(n, m))."
        )
