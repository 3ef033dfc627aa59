"""Stage 3 of ProxySPEX: keep the top-k Fourier terms, with k chosen by cross-validation.

The candidates are the constant plus the ``k - 1`` terms of largest ``|F(T)|`` (:func:`top_terms`),
for ``k`` among powers of two (:func:`candidate_ks`). :func:`sparsity_cv` scores every
candidate, with the trees' coefficients and refitted by (ridge) least squares at each ridge
strength, on the same folds as the search: each fold with the ranking of the ensemble that
never saw it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular

from ..spectrum import Spectrum
from ..spectrum.supports import csr_to_padded, padded_to_csr, parity_matrix
from .leastsquares import factor, gram_and_projection, ridge_penalty
from .search import Fit, cv_mse


def candidate_ks(k_max: int) -> list[int]:
    """The powers of two from 8 up to ``k_max``, and ``k_max`` itself."""
    ks = [2**e for e in range(3, int(math.log2(k_max)) + 1)]
    return sorted({*ks, k_max})


def _ranked_terms(spectrum: Spectrum, k: int, tilt: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The constant, then the ``k - 1`` other terms of largest ``|F(T)| * tilt ** |T|``: (k', D)
    supports padded with ``n`` and their coefficients."""
    nonconst = np.flatnonzero(spectrum.degrees > 0)  # ranked by |F(T)|
    if tilt != 1.0:
        score = np.abs(spectrum.coefs[nonconst]) * tilt ** spectrum.degrees[nonconst].astype(float)
        nonconst = nonconst[np.argsort(-score, kind="stable")]
    nonconst = nonconst[: k - 1]
    rows = csr_to_padded(spectrum.supports[nonconst], spectrum.n)
    constant = np.full((1, rows.shape[1]), spectrum.n)
    return np.vstack([constant, rows]), np.r_[spectrum.constant, spectrum.coefs[nonconst]]


def top_terms(spectrum: Spectrum, k: int, tilt: float = 1.0) -> Spectrum:
    """The spectrum truncated to the constant and its ``k - 1`` other terms of largest
    ``|F(T)| * tilt ** |T|`` (``tilt`` 1: the largest ``|F(T)|``, the paper's rule)."""
    rows, coefs = _ranked_terms(spectrum, k, tilt)
    return Spectrum(spectrum.n, padded_to_csr(rows, spectrum.n), coefs)


def sparsity_cv(
    X,
    y,
    folds,
    fold_spectra: list[Spectrum],
    fits: list[Fit],
    ks: list[int],
    max_rows: int,
    seed: int,
    ridges: tuple[float, ...] = (0.0,),
    tilts: tuple[float, ...] = (1.0,),
) -> pd.DataFrame:
    """CV mean squared error of top-k truncation, as the trees give it and refitted at each
    ridge strength, for each k and each ranking tilt (terms ranked by ``|F(T)| * tilt ** |T|``).

    Every fold is scored with the ranking of the ensemble trained without it. One Cholesky
    factor of the fold's (penalised) Gram matrix gives the refit of every prefix k (the factor
    of a leading block is the leading block of the factor), so each ridge strength costs one
    factorisation per fold. A ridge strength ``r`` penalises each non-constant coefficient by
    ``r`` times the fold's training masks. Beyond ``max_rows`` masks the CV runs on a random
    subset of them, bounding its cost. The untruncated ensembles (k = 0) are scored by their
    early-stopping validation error, on all of each fold's held-out masks.

    Returns
    -------
    pandas.DataFrame
        One row per candidate: ``k``, ``tilt``, ``refit`` (bool), ``ridge`` (NaN without
        refit) and ``cv_mse``.
    """
    m = X.shape[0]
    subset = np.sort(np.random.default_rng(seed).permutation(m)[:max_rows]) if m > max_rows else np.arange(m)
    sq_refit, sq_trunc = np.zeros((len(tilts), len(ridges), len(ks))), np.zeros((len(tilts), len(ks)))
    count = 0
    for spectrum, (train, valid) in zip(fold_spectra, folds):
        train, valid = np.intersect1d(train, subset), np.intersect1d(valid, subset)
        for t, tilt in enumerate(tilts):
            _fold_errors(
                X, y, train, valid, _ranked_terms(spectrum, max(ks), tilt), ks, ridges, sq_refit[t], sq_trunc[t]
            )
        count += len(valid)
    table = [
        {"k": k, "tilt": tilt, "refit": True, "ridge": ridge, "cv_mse": s / count}
        for tilt, per_tilt in zip(tilts, sq_refit)
        for ridge, row in zip(ridges, per_tilt)
        for k, s in zip(ks, row)
    ]
    table += [
        {"k": k, "tilt": tilt, "refit": False, "ridge": np.nan, "cv_mse": s / count}
        for tilt, row in zip(tilts, sq_trunc)
        for k, s in zip(ks, row)
    ]
    every = cv_mse(fits, folds)  # k = 0: every tree term
    table.append({"k": 0, "tilt": 1.0, "refit": False, "ridge": np.nan, "cv_mse": every})
    return pd.DataFrame(table)


def _fold_errors(X, y, train, valid, ranked, ks, ridges, sq_refit, sq_trunc) -> None:
    """Add one fold's squared validation errors of every top-k of ``ranked`` (padded supports
    and coefficients, best first), refitted at each ridge strength (``sq_refit``, one row per
    strength) and as the trees give them (``sq_trunc``)."""
    rows, coefs = ranked
    gram, projection = gram_and_projection(X[train], rows, y[train])
    P_valid = parity_matrix(X[valid], rows)
    for r, ridge in enumerate(ridges):
        penalty = ridge_penalty(rows, X.shape[1], ridge * len(train))
        L, z = factor(gram, projection, penalty, dtype=np.float32)  # only chooses k and the ridge
        for i, k in enumerate(ks):
            k = min(k, len(rows))
            beta = solve_triangular(L[:k, :k].T, z[:k], lower=False)
            sq_refit[r, i] += np.sum((P_valid[:, :k] @ beta - y[valid]) ** 2)
    for i, k in enumerate(ks):
        k = min(k, len(rows))
        sq_trunc[i] += np.sum((P_valid[:, :k] @ coefs[:k] - y[valid]) ** 2)
