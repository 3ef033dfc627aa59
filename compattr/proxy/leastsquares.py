"""Least squares on ±1 parity features, in raw BLAS/LAPACK: ProxySPEX's refit and its CV.

The parity features ``P`` (masks × supports) are never held whole: their Gram matrix ``PᵀP``
is accumulated a block of masks at a time (BLAS ``syrk``) and factored once (LAPACK
``potrf``). The factor of a leading block of the Gram matrix is the leading block of the
factor, so one factorisation solves the least squares of every prefix of the supports.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas, lapack, solve_triangular

from ..spectrum import Spectrum
from ..spectrum.supports import csr_to_padded, find_rows, padded_to_csr, parity_matrix

_POTRF = {np.dtype(np.float64): lapack.dpotrf, np.dtype(np.float32): lapack.spotrf}


def _cholesky(gram: np.ndarray, dtype=np.float64, penalty: np.ndarray | None = None) -> np.ndarray:
    """Lower Cholesky factor, in ``dtype``, of a Gram matrix (only its lower triangle is
    read) plus ``diag(penalty)``, with a tiny ridge against exact collinearity (below
    float32's resolution). ``gram`` is left unchanged.

    Only the lower triangle of the result is the factor (its strict upper triangle is left
    as it was): read it with ``solve_triangular(..., lower=True)`` or its transpose with
    ``lower=False``.
    """
    gram = gram.astype(dtype)
    diagonal = gram.flat[:: len(gram) + 1]
    gram.flat[:: len(gram) + 1] = diagonal + 1e-9 * diagonal.mean() + (0.0 if penalty is None else penalty)
    factor, info = _POTRF[gram.dtype](gram, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"the Gram matrix is not positive definite (LAPACK potrf info={info}).")
    return factor


def normal_equations(
    X, rows: np.ndarray, y, block: int = 512, dtype=np.float64, ridge: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of ``y`` (m,) on the ±1 parity features ``P`` of the padded supports
    ``rows`` (k, D) over masks ``X`` (m, n): the lower Cholesky factor ``L`` of ``PᵀP + Λ``
    (see :func:`_cholesky`) and ``z = L⁻¹ Pᵀ y``. The coefficients of the first j supports
    solve ``L[:j, :j]ᵀ β = z[:j]``.

    ``Λ`` is the ridge penalty (:func:`ridge_penalty`): ``ridge · m`` on every non-constant
    support, nothing on the constant; ``ridge=0`` is plain least squares.
    ``dtype`` is that of ``L`` and ``z``: float32 halves the factorisation's cost for about
    1e-6 relative accuracy (the Gram of parity features is well conditioned), enough to
    choose k; a Gram that float32 cannot factor is factored in float64.
    """
    gram, projection = gram_and_projection(X, rows, y, block)
    return factor(gram, projection, ridge_penalty(rows, X.shape[1], ridge * X.shape[0]), dtype)


def gram_and_projection(X, rows: np.ndarray, y, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The Gram matrix ``PᵀP`` (k, k) float32, lower triangle only (the rest zero), and ``Pᵀy`` (k,) float64
    of the ±1 parity features ``P`` of the padded supports ``rows`` (k, D) over masks ``X``.

    ``P`` is made and consumed a block of masks at a time, never held whole: its Gram
    accumulates in float32 (exact: ±1 products sum to integers below 2^24), ``Pᵀy`` in
    float64.
    """
    k = rows.shape[0]
    gram = np.zeros((k, k), np.float32, order="F")  # lower triangle, updated in place
    projection = np.zeros(k)
    for lo in range(0, X.shape[0], block):
        P = parity_matrix(X[lo : lo + block], rows, dtype=np.float32)  # (b, k), column-major
        gram = blas.ssyrk(1.0, P, beta=1.0, c=gram, trans=1, lower=1, overwrite_c=1)
        projection += P.T.astype(np.float64) @ y[lo : lo + block]
    return gram, projection


def gram_reusing(
    X,
    rows: np.ndarray,
    y,
    known_rows: np.ndarray,
    known_gram: np.ndarray,
    known_projection: np.ndarray,
    block: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gram_and_projection` of the padded supports ``rows`` (k, D), whole (both
    triangles), reusing the entries of those among ``known_rows`` (K, D'), whose whole Gram
    matrix ``known_gram`` (K, K) and projection ``known_projection`` (K,) on the same masks
    ``X`` and outputs ``y`` are given: only the rows and columns of the supports not known
    are computed, a block of masks at a time."""
    n = X.shape[1]
    at = find_rows(known_rows, rows, n)
    old, new = np.flatnonzero(at >= 0), np.flatnonzero(at < 0)
    gram = np.empty((len(rows), len(rows)), np.float32, order="F")
    gram[np.ix_(old, old)] = known_gram[np.ix_(at[old], at[old])]
    projection = np.empty(len(rows))
    projection[old] = known_projection[at[old]]
    if new.size:
        cross, projection[new] = np.zeros((new.size, len(rows)), np.float32), 0.0
        for lo in range(0, X.shape[0], block):
            P = parity_matrix(X[lo : lo + block], rows, dtype=np.float32)  # (b, k), column-major
            cross += P[:, new].T @ P
            projection[new] += P[:, new].T.astype(np.float64) @ y[lo : lo + block]
        gram[new, :] = cross
        gram[:, new] = cross.T
    return gram, projection


def ridge_penalty(rows: np.ndarray, n: int, strength: float) -> np.ndarray:
    """The ridge penalty (k,) of padded supports ``rows`` (k, D): ``strength`` on each
    non-constant support, 0 on the constant (a row of padding ``n`` only)."""
    return np.where(np.all(rows == n, axis=1), 0.0, strength)


#: A float32 factor whose smallest squared pivot is below this share of the Gram's mean
#: diagonal is refactored in float64: float32 rounds at about 1e-7 relative, so such a pivot
#: may be rounding alone (a rank-deficient Gram that float32 still "factors"), and the CV
#: errors from it were off by up to 17×. Parity Grams of at most half as many terms as
#: masks keep their squared pivots above about 0.08 of the mean diagonal.
FLOAT32_PIVOT = 1e-4


def factor(
    gram: np.ndarray, projection: np.ndarray, penalty: np.ndarray, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """``L``, the lower Cholesky factor of ``gram + diag(penalty)``, and ``z = L⁻¹ projection``,
    in ``dtype`` (float64 when float32 cannot factor it, or leaves a pivot it cannot resolve:
    :data:`FLOAT32_PIVOT`); ``gram`` is left unchanged."""
    try:
        L = _cholesky(gram, dtype, penalty)
    except np.linalg.LinAlgError:
        if np.dtype(dtype) == np.float64:
            raise
        L = _cholesky(gram, np.float64, penalty)
    if L.dtype == np.float32:
        pivots = np.diagonal(L).astype(np.float64) ** 2
        scale = float(np.mean(np.diagonal(gram).astype(np.float64) + penalty))
        if len(pivots) and pivots.min() < FLOAT32_PIVOT * scale:
            L = _cholesky(gram, np.float64, penalty)
    return L, solve_triangular(L, projection.astype(L.dtype), lower=True)


def least_squares(kept: Spectrum, X, y, ridge: float = 0.0) -> Spectrum:
    """Refit the kept supports' coefficients by least squares (constant included), with a
    ridge penalty ``ridge · m`` on the non-constant coefficients (see :func:`normal_equations`)."""
    return least_squares_on(csr_to_padded(kept.supports, kept.n), kept.n, X, y, ridge)


def least_squares_on(rows: np.ndarray, n: int, X, y, ridge: float = 0.0) -> Spectrum:
    """The spectrum fitted by least squares on the distinct padded supports ``rows`` (k, D)
    over ``n`` features (the constant added when absent), with a ridge penalty ``ridge · m``
    on the non-constant coefficients (see :func:`normal_equations`). Unlike
    :func:`least_squares`, supports need no coefficient beforehand."""
    if not np.all(rows == n, axis=1).any():
        rows = np.vstack([np.full((1, rows.shape[1]), n), rows])
    L, z = normal_equations(X, rows, y, ridge=ridge)
    return Spectrum(n, padded_to_csr(rows, n), solve_triangular(L.T, z, lower=False))
