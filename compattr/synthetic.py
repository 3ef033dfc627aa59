"""The paper's synthetic benchmark functions (appendix B.4), with known spectra.

Both are sparse Boolean functions over ``n`` features built from ``n_sets`` random sets of
``order`` features:

* **Synthetic Complete Hierarchy**: every subset of every set carries a coefficient, so
  high-order terms come with all their lower-order subsets (what GBTs learn well).
* **Synthetic Peak**: only the sets themselves carry coefficients (no hierarchy; a known
  failure case of tree proxies).

Coefficients are Uniform(-1, 1). Evaluate with ``spectrum.predict(X)``; add measurement
noise with :func:`add_noise` (its level: :func:`noise_sd`).
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

from ._validation import check_int, is_real
from .spectrum import Spectrum


def _random_sets(n: int, n_sets: int, order: int, rng: np.random.Generator) -> list[tuple]:
    """``n_sets`` distinct random sets of ``order`` features (a set drawn again is drawn
    anew: a repeat would merge two coefficients into one outside (-1, 1))."""
    n_sets, order = check_int(n_sets, "n_sets", 1), check_int(order, "order", 1)
    if order > n:
        raise ValueError(f"sets of order {order} need n >= {order} features, got n={n}.")
    if comb(n, order) < n_sets:
        raise ValueError(f"{n} features have only {comb(n, order)} sets of order {order}; asked for {n_sets}.")
    sets: list[tuple] = []
    while len(sets) < n_sets:
        drawn = tuple(sorted(rng.choice(n, size=order, replace=False)))
        if drawn not in sets:
            sets.append(drawn)
    return sets


def complete_hierarchy(n: int, n_sets: int = 10, order: int = 5, seed: int | None = 0) -> Spectrum:
    """Synthetic Complete Hierarchy ``f^SCH``: all subsets of ``n_sets`` random ``order``-sets.

    Returns
    -------
    Spectrum
        The ground-truth spectrum (the constant term is one of the subsets).
    """
    rng = np.random.default_rng(seed)
    sets = _random_sets(n, n_sets, order, rng)
    hierarchy = sorted({sub for s in sets for r in range(order + 1) for sub in combinations(s, r)})
    return Spectrum(n, hierarchy, rng.uniform(-1.0, 1.0, len(hierarchy)))


def peak(n: int, n_sets: int = 10, order: int = 5, seed: int | None = 0) -> Spectrum:
    """Synthetic Peak ``f^SP``: ``n_sets`` random ``order``-sets and nothing below them."""
    rng = np.random.default_rng(seed)
    sets = _random_sets(n, n_sets, order, rng)
    return Spectrum(n, sets, rng.uniform(-1.0, 1.0, len(sets)))


def noise_sd(spectrum: Spectrum, snr_db: float) -> float:
    """Standard deviation of Gaussian noise at ``snr_db`` for the function ``spectrum``.

    The signal power is the exact variance of the function under uniform masks,
    ``Σ_{T≠∅} F(T)²``, so the noise level does not depend on a sample.
    """
    if not is_real(snr_db) or np.isnan(snr_db) or snr_db == -np.inf:
        raise ValueError(f"snr_db must be a number of decibels (inf: no noise), got {snr_db!r}.")
    signal = float(np.sum(spectrum.coefs[spectrum.degrees > 0] ** 2))
    return float(np.sqrt(signal / 10.0 ** (snr_db / 10.0)))


def add_noise(y, spectrum: Spectrum, snr_db: float, seed: int | None = 0) -> np.ndarray:
    """Add Gaussian noise at a given signal-to-noise ratio.

    The noise's standard deviation is :func:`noise_sd`: it does not depend on the sample.

    Parameters
    ----------
    y : (m,) array
        Noise-free outputs ``spectrum.predict(X)``.
    spectrum : Spectrum
        The function that produced ``y``.
    snr_db : float
        ``10 log10(signal variance / noise variance)``.
    seed : int or None
        Seeds the noise. The default 0 draws the same noise sequence on every call: noising
        two sets of outputs (fitting and held-out masks, say) needs two seeds.
    """
    sigma = noise_sd(spectrum, snr_db)
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=np.float64)
    return y + rng.normal(0.0, sigma, y.shape)
