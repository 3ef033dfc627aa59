"""Stage 8 of ProxySPEX: extend the kept terms one feature at a time, led by their residual.

A term of a hierarchy hides behind its subsets: trees split on its features one after
another, led by the subsets' marginal effects, and rank it below its own fragments. But once
the kept terms are fitted, the term stands out in their residual ``r = y - P β``, and its
Walsh feature is the product of a kept term's and one feature's: the correlations of every
kept term ``S`` extended by every feature ``i`` are the entries of one matrix product,

    ``C[S, i] = Σ_j r_j χ_S(x_j) χ_{i}(x_j) / m = ((P ∘ r)ᵀ X±)[S, i] / m``,

with ``X± = 1 - 2 X`` the masks' ±1 features (for ``i`` in ``S`` the product is ``S``
less ``i``, not an extension: left out; nor is a feature the masks never vary, whose
extension is the term itself up to sign). A round (matching pursuit over one-feature
extensions, in blocks) adds the ``add`` sets not held of largest ``|C|``
(:func:`extended_rows`) and refits every term by least squares; :func:`extension_cv` scores
each round at each ridge strength by cross-validation, every fold's path run on its
training masks alone, and :func:`extended` runs the chosen number of rounds on every mask.
A round's Gram matrix reuses the last one's: only the new sets' rows are computed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular

from ..spectrum import Spectrum
from ..spectrum.supports import find_rows, padded_to_csr, parity_matrix, widen_padded
from .leastsquares import factor, ridge_penalty

#: (set, correlation) pairs read per set added, at least: a set is reached from up to its
#: order of parents, so sets of a higher order read as many pairs as their order.
_SHORTLIST = 6


def extended_rows(
    rows: np.ndarray, P: np.ndarray, coefs: np.ndarray, X, y, add: int, max_order: int | None = None
) -> np.ndarray:
    """The ``add`` one-feature extensions of ``rows`` that their residual correlates with most.

    Parameters
    ----------
    rows : (K, D) int array
        Padded supports held (see :func:`~compattr.spectrum.supports.group_padded_rows`).
    P : (m, K) float array
        Their ±1 Walsh features on ``X``.
    coefs : (K,) float array
        Their coefficients.
    X : (m, n) bool array
        Masks.
    y : (m,) float array
        Outputs.
    add : int
        How many sets at most (fewer where fewer are new).
    max_order : int or None
        No set above this order is offered.

    Returns
    -------
    (a, D') int array
        The new sets, padded, largest ``|C|`` first; ``D'`` is ``D`` or ``D + 1``.
    """
    n = X.shape[1]
    residual = (y - P @ coefs).astype(P.dtype)
    C = np.abs((P * residual[:, None]).T @ (1 - 2 * X.astype(P.dtype)))  # (K, n)
    held, at = np.nonzero(rows < n)
    C[held, rows[held, at]] = 0.0  # a member: no extension
    C[:, X.all(axis=0) | ~X.any(axis=0)] = 0.0  # a feature these masks never vary: an alias of the term
    if max_order is not None:
        C[np.sum(rows < n, axis=1) >= max_order] = 0.0
    highest = int(np.max(np.sum(rows < n, axis=1), initial=0)) + 1  # the order of the largest extension
    shortlist = min(C.size, max(_SHORTLIST, highest) * add)
    while True:
        sets, strength, exhausted = _new_sets(C, rows, shortlist)
        # pairs that land on sets held can fill a shortlist (a residual the ridge left
        # correlated with them): read twice as many until enough are new
        if len(sets) >= add or exhausted or shortlist == C.size:
            return sets[np.argsort(-strength, kind="stable")[:add]]
        shortlist = min(C.size, 2 * shortlist)


def _new_sets(C: np.ndarray, rows: np.ndarray, shortlist: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """The distinct sets not held among the ``shortlist`` (parent, feature) pairs of largest
    ``C`` (K, n): padded, with their correlation, and whether the pairs of positive ``C``
    ran out within the shortlist."""
    n = C.shape[1]
    top = np.argpartition(-C.ravel(), shortlist - 1)[:shortlist]
    strength = C.ravel()[top]
    exhausted = bool(np.any(strength <= 0))
    top, strength = top[strength > 0], strength[strength > 0]
    parent, feature = np.divmod(top, n)
    sets = np.sort(np.c_[rows[parent], feature], axis=1)
    sets = sets[:, : max(1, int(np.max(np.sum(sets < n, axis=1), initial=1)))]
    sets, first = np.unique(sets, axis=0, return_index=True)
    fresh = find_rows(rows, sets, n) < 0
    return sets[fresh], strength[first][fresh], exhausted


class _Path:
    """An extension path on masks ``X`` and outputs ``y``: the rows held, their Walsh
    features on ``X`` (and on held-out masks ``X_valid``), their Gram matrix and projection,
    and their coefficients ``coefs`` at the path's ridge strength as of the last :meth:`fits`."""

    def __init__(self, rows: np.ndarray, X, y, path_ridge: float, X_valid=None, dtype=np.float32) -> None:
        self.X, self.y, self.path_ridge, self.dtype = X, y, path_ridge, dtype
        self.X_valid = X[:0] if X_valid is None else X_valid
        n = X.shape[1]
        if not np.all(rows == n, axis=1).any():  # the constant joins the terms
            rows = np.vstack([np.full((1, rows.shape[1]), n), rows])
        self.rows = rows
        self.P = parity_matrix(X, rows, dtype)
        self.P_valid = parity_matrix(self.X_valid, rows, dtype)
        self.gram = self.P.T @ self.P
        self.projection = self.P.T.astype(np.float64) @ y
        self.fits(())

    def fits(self, ridges) -> list[np.ndarray]:
        """The coefficients (K,) at each of ``ridges`` (per mask), from one Cholesky
        factorisation each; those at the path's own strength become ``coefs``."""
        m, n = self.X.shape
        fits = {}
        for ridge in dict.fromkeys((*ridges, self.path_ridge)):
            L, z = factor(self.gram, self.projection, ridge_penalty(self.rows, n, ridge * m), self.dtype)
            fits[ridge] = solve_triangular(L.T, z, lower=False).astype(np.float64)
        self.coefs = fits[self.path_ridge]
        return [fits[ridge] for ridge in ridges]

    def step(self, add: int, max_order: int | None) -> bool:
        """Extend the rows by one round from ``coefs``' residual (call :meth:`fits` before the
        next); False where nothing new was found."""
        n = self.X.shape[1]
        sets = extended_rows(self.rows, self.P, self.coefs, self.X, self.y, add, max_order)
        if not len(sets):
            return False
        width = max(self.rows.shape[1], sets.shape[1])
        self.rows = np.vstack([widen_padded(self.rows, width, n), widen_padded(sets, width, n)])
        P_new = parity_matrix(self.X, sets, self.dtype)
        cross = P_new.T @ self.P
        corner = P_new.T @ P_new
        self.gram = np.block([[self.gram, cross.T], [cross, corner]])
        self.projection = np.r_[self.projection, P_new.T.astype(np.float64) @ self.y]
        self.P = np.hstack([self.P, P_new])
        self.P_valid = np.hstack([self.P_valid, parity_matrix(self.X_valid, sets, self.dtype)])
        return True


def extension_cv(
    rows: np.ndarray,
    X,
    y,
    folds,
    add: int,
    ridges: tuple[float, ...],
    path_ridge: float,
    max_rounds: int,
    patience: int = 2,
    max_order: int | None = None,
    max_terms: int | None = None,
) -> pd.DataFrame:
    """CV mean squared error of the terms ``rows`` extended by 0, 1, … rounds.

    On each fold the terms are refitted on the training masks at ``path_ridge`` and extended
    (:func:`extended_rows`, ``add`` sets a round) from their training residual; every round
    is scored on the held-out masks at each of ``ridges``. The rounds stop after
    ``max_rounds``, once ``patience`` rounds in a row have not lowered the best CV error, or
    before a round would hold more than ``max_terms`` terms.

    Parameters
    ----------
    rows : (K, D) int array
        Padded supports (the constant joins them where absent).
    X : (m, n) bool array
    y : (m,) float array
    folds : sequence of (train, valid) index arrays

    Returns
    -------
    pandas.DataFrame
        One row per round and ridge strength: ``rounds``, ``ridge``, ``terms`` (on the
        first fold) and ``cv_mse``.
    """
    paths = [_Path(rows, X[train], y[train], path_ridge, X[valid]) for train, valid in folds]
    records: list[dict] = []
    best, best_round = np.inf, 0
    for round_ in range(max_rounds + 1):
        squared = np.zeros(len(ridges))
        for path, (_, valid) in zip(paths, folds):
            if round_ and not path.step(add, max_order):
                return pd.DataFrame(records)
            squared += [np.sum((path.P_valid @ coefs - y[valid]) ** 2) for coefs in path.fits(ridges)]
        errors = squared / sum(len(valid) for _, valid in folds)
        terms = len(paths[0].rows)
        records += [{"rounds": round_, "ridge": r, "terms": terms, "cv_mse": e} for r, e in zip(ridges, errors)]
        if errors.min() < best:
            best, best_round = errors.min(), round_
        if round_ - best_round >= patience or (max_terms is not None and terms + add > max_terms):
            break
    return pd.DataFrame(records)


def extended(
    rows: np.ndarray, X, y, add: int, rounds: int, path_ridge: float, ridge: float, max_order: int | None = None
) -> Spectrum:
    """The terms ``rows`` (padded; the constant joins them where absent) extended by
    ``rounds`` rounds of :func:`extended_rows` on masks ``X`` (m, n) and outputs ``y`` (m,)
    (refitted at ``path_ridge`` between rounds), then refitted at ``ridge``."""
    path = _Path(rows, X, y, path_ridge, dtype=np.float64)
    for _ in range(rounds):
        if not path.step(add, max_order):
            break
        path.fits(())
    return Spectrum(X.shape[1], padded_to_csr(path.rows, X.shape[1]), path.fits((ridge,))[0])
