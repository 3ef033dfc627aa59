"""Attribution indices read off a sparse Fourier spectrum (paper table A.1, corrected).

Conventions
-----------
A mask bit 1 means the feature is **kept**; ``S`` is the kept set and the spectrum represents
``f(S) = Σ_T F(T) (-1)^{|S ∩ T|}``. Writing ``x_i = 1`` for kept, ``(-1)^{x_i} = 1 - 2 x_i``,
so every parity expands into monomials ``Π_{i∈R} x_i`` with factor ``(-2)^{|R|}``: this is
where the ``-2`` of every formula below comes from.

=====================  ==============================================================
index                  value from the Fourier coefficients
=====================  ==============================================================
Banzhaf ``ψ_i``        ``-2 F({i})``
Shapley ``φ_i``        ``-2 Σ_{S∋i, |S| odd} F(S) / |S|``
influence ``ξ_i``      ``Σ_{S∋i} F(S)²``
Möbius ``I^M(T)``      ``(-2)^{|T|} Σ_{S⊇T} F(S)``
OR ``I^O(T)``          ``Σ_S F(S)`` if ``T = ∅``, else
                       ``-(-2)^{|T|} Σ_{S⊇T} (-1)^{|S|} F(S)``
Banzhaf int. ``I^B``   ``(-2)^{|T|} F(T)``
Shapley int. ``I^S``   ``(-2)^{|T|} Σ_{S⊇T, |S|-|T| even} F(S) / (|S| - |T| + 1)``
Shapley–Taylor         ``I^M(T)`` if ``|T| < ℓ``; ``Σ_{S⊇T} I^M(S) / C(|S|, ℓ)`` if ``|T| = ℓ``
Faith-Banzhaf          ``(-2)^{|T|} Σ_{S⊇T, |S|≤ℓ} F(S)``
k-SII                  ``Σ_{S⊇T, |S|≤k} B_{|S|-|T|} I^S(S)`` (Bernoulli numbers ``B_j``)
Faith-Shapley          ``I^M(T) + (-1)^{ℓ-|T|} |T|/(ℓ+|T|) C(ℓ,|T|)``
                       ``· Σ_{S⊃T, |S|>ℓ} C(|S|-1, ℓ) / C(|S|+ℓ-1, ℓ+|T|) · I^M(S)``
=====================  ==============================================================

Every index except influence is linear and symmetric, so it has the form
``I(T) = Σ_{U ⊇ T} F(U) · w(|U|, |T|)``: each index is a scalar weight ``w(u, t)`` fed to one
sparse engine that expands each support ``U`` into the subsets ``T`` it contributes to.
A support of order ``d`` has ``2^d`` subsets, so the set-valued indices refuse (``ValueError``)
a support that would expand into more than ``max_subsets`` sets (default ``2^12``); pass
``max_order`` to report only interactions with ``|T| <= max_order``, which also bounds the
expansion. Set-valued indices are returned as ``{sorted feature tuple: value}`` (``()`` is the
empty set), in order of decreasing ``|value|``, without exact zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from functools import cache, lru_cache, partial
from itertools import combinations
from math import comb

import numpy as np

from .._validation import check_int, check_spectrum
from .spectrum import Spectrum
from .supports import group_padded_rows

#: Largest number of subsets one support may expand into (a full order-12 support).
DEFAULT_MAX_SUBSETS = 1 << 12
# Rows of expanded subsets materialised at once (bounds memory).
_CHUNK_ROWS = 1 << 20

Weight = Callable[[int, int], float]


# ---------------------------------------------------------------------- weights w(|U|, |T|)
def moebius_weight(u: int, t: int) -> float:
    """The Möbius transform's weight ``(-2)^t`` (also the ILP objective of :mod:`compattr.optimize`)."""
    return float((-2) ** t)


def _or_weight(u: int, t: int) -> float:
    return 1.0 if t == 0 else float(-((-2) ** t) * (-1) ** u)


def _banzhaf_interaction_weight(u: int, t: int) -> float:
    return float((-2) ** t) if u == t else 0.0


def _shapley_interaction_weight(u: int, t: int) -> float:
    return (-2) ** t / (u - t + 1) if (u - t) % 2 == 0 else 0.0


def _faith_banzhaf_weight(u: int, t: int, order: int) -> float:
    return float((-2) ** t) if u <= order else 0.0


# The two weights below sum alternating terms as large as 2^u C(u, u/2): they are computed in
# exact rational arithmetic (in floats they are already wrong for u ≈ 30).
def _shapley_taylor_weight(u: int, t: int, order: int) -> float:
    if t < order:
        return float((-2) ** t)
    if t > order:
        return 0.0
    # Σ over the sets R with T ⊆ R ⊆ U of (-2)^{|R|} / C(|R|, ℓ)
    terms = (Fraction(comb(u - t, s - t) * (-2) ** s, comb(s, order)) for s in range(t, u + 1))
    return float(sum(terms))


def _faith_shapley_weight(u: int, t: int, order: int) -> float:
    if t > order:
        return 0.0
    scale = Fraction((-1) ** (order - t) * t * comb(order, t), order + t)
    tail = sum(
        Fraction(comb(u - t, s - t) * (-2) ** s * comb(s - 1, order)) / comb(s + order - 1, order + t)
        for s in range(order + 1, u + 1)
    )
    return float((-2) ** t + scale * tail)


@cache
def _bernoulli(j: int) -> Fraction:
    """The Bernoulli number ``B_j`` with ``B_1 = -1/2`` (``B_0 = 1``, ``B_2 = 1/6``, ...)."""
    if j == 0:
        return Fraction(1)
    return -sum((comb(j + 1, i) * _bernoulli(i) for i in range(j)), Fraction(0)) / (j + 1)


def _k_sii_weight(u: int, t: int, order: int) -> float:
    if t == 0:
        return 1.0  # k-SII(∅) = f(∅) = Σ_U F(U)
    if t > order:
        return 0.0
    # Σ over the sets S with T ⊆ S ⊆ U, |S| <= k, of B_{|S|-|T|} · (Shapley interaction weight)
    terms = (
        comb(u - t, s - t) * _bernoulli(s - t) * Fraction((-2) ** s, u - s + 1)
        for s in range(t, min(order, u) + 1)
        if (u - s) % 2 == 0
    )
    return float(sum(terms, Fraction(0)))


# ---------------------------------------------------------------------- sparse engine
def superset_transform(
    sp: Spectrum,
    weight: Weight,
    max_order: int | None = None,
    max_subsets: int = DEFAULT_MAX_SUBSETS,
) -> tuple[np.ndarray, np.ndarray]:
    """``I(T) = Σ_{U ⊇ T} F(U) · weight(|U|, |T|)`` for every subset ``T`` of every support.

    Parameters
    ----------
    sp : Spectrum
        The coefficients ``F(U)``.
    weight : callable ``(u, t) -> float``
        Contribution factor of a support of order ``u`` to a subset of order ``t``; pairs with
        weight 0 are never expanded.
    max_order : int, optional
        Only subsets with ``|T| <= max_order``.
    max_subsets : int
        Refuse a support that would expand into more subsets than this.

    Returns
    -------
    rows : (K, D) int64 array
        The subsets ``T``, sorted, padded at the end with ``n``, in lexicographic order. Every
        subset reached with a non-zero weight is listed, even when its sum cancels to zero (the
        ILP of :mod:`compattr.optimize` needs the whole downward closure).
    values : (K,) float64 array
    """
    top = sp.max_order if max_order is None else min(sp.max_order, max_order)
    parts = []
    for u in np.unique(sp.degrees).tolist():
        weights_u = np.array([weight(u, t) for t in range(min(u, top) + 1)])
        sizes = tuple(np.flatnonzero(weights_u).tolist())
        if sizes:
            _check_expansion(u, sizes, max_subsets)
            parts += _expand_degree(sp, u, sizes, top, weights_u)
    if not parts:
        return np.zeros((0, top), np.int64), np.zeros(0)
    rows, values = zip(*parts)
    return _group_sum(np.concatenate(rows), np.concatenate(values), sp.n)


def _check_expansion(u: int, sizes: tuple[int, ...], max_subsets: int) -> None:
    count = sum(comb(u, t) for t in sizes)
    if count > max_subsets:
        raise ValueError(
            f"a support of order {u} would expand into {count} subsets, more than "
            f"max_subsets={max_subsets}. Pass max_order=... to report only low-order "
            "interactions, truncate the spectrum (sp.restrict_order / sp.top), or raise "
            "max_subsets."
        )


@lru_cache(maxsize=256)
def _subset_patterns(u: int, sizes: tuple[int, ...], width: int) -> np.ndarray:
    """(p, width) column indices selecting each subset of the given sizes; ``u`` pads."""
    patterns = [c + (u,) * (width - len(c)) for t in sizes for c in combinations(range(u), t)]
    return np.array(patterns, dtype=np.int64).reshape(len(patterns), width)


def _expand_degree(sp: Spectrum, u: int, sizes, width: int, weights_u: np.ndarray) -> list:
    """Expand all order-``u`` supports into their subsets, grouped chunk by chunk."""
    patterns = _subset_patterns(u, sizes, width)
    pattern_weight = weights_u[(patterns < u).sum(axis=1)]
    terms = np.flatnonzero(sp.degrees == u)
    starts = sp.supports.indptr[terms]
    supports = np.full((terms.size, u + 1), sp.n, dtype=np.int64)  # last column = padding
    supports[:, :u] = sp.supports.indices[starts[:, None] + np.arange(u)]
    step = max(1, _CHUNK_ROWS // len(patterns))
    out = []
    for lo in range(0, terms.size, step):
        values = (sp.coefs[terms[lo : lo + step], None] * pattern_weight).ravel()
        rows = supports[lo : lo + step][:, patterns].reshape(values.size, width)
        out.append(_group_sum(rows, values, sp.n))
    return out


def _group_sum(rows: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = group_padded_rows(rows, n)
    return unique, np.bincount(inverse, weights=values, minlength=unique.shape[0])


def _as_dict(rows: np.ndarray, values: np.ndarray, n: int) -> dict[tuple[int, ...], float]:
    """``{tuple: value}`` without exact zeros, by decreasing ``|value|``."""
    keep = np.flatnonzero(values != 0.0)
    keep = keep[np.argsort(-np.abs(values[keep]), kind="stable")]
    lengths = (rows[keep] < n).sum(axis=1).tolist()
    return {tuple(r[:length]): v for r, length, v in zip(rows[keep].tolist(), lengths, values[keep].tolist())}


def _set_index(sp: Spectrum, weight: Weight, max_order: int | None, max_subsets: int) -> dict:
    check_spectrum(sp)
    if max_order is not None:
        check_int(max_order, "max_order", 0)
    return _as_dict(*superset_transform(sp, weight, max_order, max_subsets), sp.n)


def _per_feature(sp: Spectrum, coefs: np.ndarray) -> np.ndarray:
    """``Σ_{U ∋ i} coefs[U]`` for every feature: one sparse product, (n,) float64."""
    return np.asarray(sp.supports.T.astype(np.float64) @ coefs)


def _singleton_index(sp: Spectrum, weight: Weight) -> np.ndarray:
    """``I({i}) = Σ_{U ∋ i} F(U) weight(|U|, 1)`` for every feature, without expansion."""
    check_spectrum(sp)
    w = np.array([weight(u, 1) if u else 0.0 for u in range(sp.max_order + 1)])
    return _per_feature(sp, sp.coefs * w[sp.degrees])


def _check_order(sp: Spectrum, order) -> int:
    """The order ``ℓ`` of an interaction index as an int in ``[1, n]``, or ValueError."""
    check_spectrum(sp)
    return check_int(order, "order", 1, sp.n)


# ---------------------------------------------------------------------- per-feature indices
def banzhaf(sp: Spectrum) -> np.ndarray:
    """Banzhaf values ``ψ_i = -2 F({i})``.

    ``ψ_i`` is the average of ``f(S ∪ {i}) - f(S)`` over all ``S ⊆ [n] ∖ {i}``.

    Returns
    -------
    (n,) float64 array
    """
    return _singleton_index(sp, _banzhaf_interaction_weight)


def shapley(sp: Spectrum) -> np.ndarray:
    """Shapley values ``φ_i = -2 Σ_{S∋i, |S| odd} F(S) / |S|``.

    ``φ_i`` is the average of ``f(S ∪ {i}) - f(S)`` over uniformly random orderings of the
    features, ``S`` being the features before ``i``; ``Σ_i φ_i = f([n]) - f(∅)``.

    Returns
    -------
    (n,) float64 array
    """
    return _singleton_index(sp, _shapley_interaction_weight)


def influence(sp: Spectrum) -> np.ndarray:
    """Influence ``ξ_i = Σ_{S∋i} F(S)²``.

    Equals ``E_S[((f(S ∪ {i}) - f(S ∖ {i})) / 2)²]`` under uniform masks: for a ±1-valued
    ``f``, the probability that flipping feature ``i`` changes the output.

    Returns
    -------
    (n,) float64 array
    """
    check_spectrum(sp)
    return _per_feature(sp, sp.coefs**2)


# ---------------------------------------------------------------------- set-valued indices
def moebius(
    sp: Spectrum, max_order: int | None = None, *, max_subsets: int = DEFAULT_MAX_SUBSETS
) -> dict[tuple[int, ...], float]:
    """Möbius transform ``I^M(T) = (-2)^{|T|} Σ_{S⊇T} F(S)``.

    The unique coefficients with ``f(S) = Σ_{T⊆S} I^M(T)`` (inclusion–exclusion:
    ``I^M(T) = Σ_{L⊆T} (-1)^{|T|-|L|} f(L)``). Supported on the downward closure of the
    spectrum's supports.

    Parameters
    ----------
    sp : Spectrum
    max_order : int, optional
        Report only ``|T| <= max_order`` (values are exact, not truncated).
    max_subsets : int
        Refuse a support that expands into more subsets than this.

    Returns
    -------
    dict ``{sorted feature tuple: value}``
    """
    return _set_index(sp, moebius_weight, max_order, max_subsets)


def or_index(
    sp: Spectrum, max_order: int | None = None, *, max_subsets: int = DEFAULT_MAX_SUBSETS
) -> dict[tuple[int, ...], float]:
    """OR interactions (co-Möbius transform, Li & Zhang 2023).

    The unique coefficients with ``f(S) = I^O(∅) + Σ_{T≠∅, T∩S≠∅} I^O(T)``: ``I^O(∅) =
    f(∅) = Σ_S F(S)`` and ``I^O(T) = -(-2)^{|T|} Σ_{S⊇T} (-1)^{|S|} F(S)``. By
    inclusion–exclusion over removed sets, ``I^O(T) = -Σ_{L⊆T} (-1)^{|T|-|L|} f([n] ∖ L)``.

    Parameters and return value as in :func:`moebius`.
    """
    return _set_index(sp, _or_weight, max_order, max_subsets)


def banzhaf_interaction(
    sp: Spectrum, max_order: int | None = None, *, max_subsets: int = DEFAULT_MAX_SUBSETS
) -> dict[tuple[int, ...], float]:
    """Banzhaf interaction index ``I^B(T) = (-2)^{|T|} F(T)``.

    The average over ``S ⊆ [n] ∖ T`` of the discrete derivative
    ``Δ_T f(S) = Σ_{L⊆T} (-1)^{|T|-|L|} f(S ∪ L)``; ``I^B({i})`` is the Banzhaf value.

    Parameters and return value as in :func:`moebius`.
    """
    return _set_index(sp, _banzhaf_interaction_weight, max_order, max_subsets)


def shapley_interaction(
    sp: Spectrum, max_order: int | None = None, *, max_subsets: int = DEFAULT_MAX_SUBSETS
) -> dict[tuple[int, ...], float]:
    """Shapley interaction index (Grabisch 1997).

    ``I^S(T) = (-2)^{|T|} Σ_{S⊇T, |S|-|T| even} F(S) / (|S| - |T| + 1)``, the average of
    ``Δ_T f(S)`` over ``S ⊆ [n] ∖ T`` with weights ``(n-|S|-|T|)! |S|! / (n-|T|+1)!``;
    ``I^S({i})`` is the Shapley value.

    Parameters and return value as in :func:`moebius`.
    """
    return _set_index(sp, _shapley_interaction_weight, max_order, max_subsets)


def shapley_taylor(sp: Spectrum, order: int, *, max_subsets: int = DEFAULT_MAX_SUBSETS) -> dict[tuple[int, ...], float]:
    """Shapley–Taylor interaction index of order ``ℓ`` (Sundararajan et al. 2020).

    ``I^M(T)`` for ``|T| < ℓ`` and ``Σ_{S⊇T} I^M(S) / C(|S|, ℓ)`` for ``|T| = ℓ``: each
    Möbius term of order above ``ℓ`` is shared equally among its ``ℓ``-subsets. The values
    sum to ``f([n])``.

    Parameters
    ----------
    sp : Spectrum
    order : int
        ``1 <= ℓ <= n``; the result holds sets with ``|T| <= ℓ``. An order at or above the
        spectrum's degree (``sp.max_order``) leaves nothing to share out or fit: the result
        is then the Möbius transform (:func:`moebius`), exact. An order above ``n`` is
        refused (``ValueError``), like one below 1 or one that is not an int.
    max_subsets : int
        Refuse a support that expands into more subsets than this.

    Returns
    -------
    dict ``{sorted feature tuple: value}``
    """
    _check_order(sp, order)
    return _set_index(sp, partial(_shapley_taylor_weight, order=order), order, max_subsets)


def faith_banzhaf(sp: Spectrum, order: int, *, max_subsets: int = DEFAULT_MAX_SUBSETS) -> dict[tuple[int, ...], float]:
    """Faith-Banzhaf interaction index of order ``ℓ`` (Tsai et al. 2023).

    The best ``L2`` fit ``f(S) ≈ Σ_{T⊆S, |T|≤ℓ} I(T)`` under uniform weights over all
    ``2^n`` masks; the fit is the spectrum truncated to order ``ℓ``, written in the Möbius
    basis: ``(-2)^{|T|} Σ_{S⊇T, |S|≤ℓ} F(S)``.

    Parameters and return value as in :func:`shapley_taylor`.
    """
    _check_order(sp, order)
    return _set_index(sp, partial(_faith_banzhaf_weight, order=order), order, max_subsets)


def faith_shapley(sp: Spectrum, order: int, *, max_subsets: int = DEFAULT_MAX_SUBSETS) -> dict[tuple[int, ...], float]:
    """Faith-Shapley interaction index of order ``ℓ`` (Tsai et al. 2023).

    The best fit ``f(S) ≈ Σ_{T⊆S, |T|≤ℓ} I(T)`` weighted by the Shapley kernel
    ``(n-1) / (C(n,|S|) |S| (n-|S|))``, exact on ``∅`` and ``[n]``. From the Möbius
    transform: ``I^M(T) + (-1)^{ℓ-|T|} |T|/(ℓ+|T|) C(ℓ,|T|) Σ_{S⊃T, |S|>ℓ}
    C(|S|-1, ℓ) / C(|S|+ℓ-1, ℓ+|T|) I^M(S)``.

    Parameters and return value as in :func:`shapley_taylor`.
    """
    _check_order(sp, order)
    return _set_index(sp, partial(_faith_shapley_weight, order=order), order, max_subsets)


def k_sii(sp: Spectrum, order: int, *, max_subsets: int = DEFAULT_MAX_SUBSETS) -> dict[tuple[int, ...], float]:
    """k-Shapley interaction index of order ``k`` (k-SII; Bordt & von Luxburg 2023).

    The Shapley interactions of order up to ``k`` aggregated with the Bernoulli numbers
    ``B_j`` (``B_1 = -1/2``): ``k-SII(T) = Σ_{S⊇T, |S|≤k} B_{|S|-|T|} I^S(S)`` for
    ``1 <= |T| <= k`` and ``k-SII(∅) = f(∅)``. The values sum to ``f([n])`` (efficiency);
    order 1 gives the Shapley values, an order at or above the spectrum's degree the Möbius
    transform. This is the aggregation shapiq's ``index="k-SII"`` reports.

    Parameters and return value as in :func:`shapley_taylor`.
    """
    _check_order(sp, order)
    return _set_index(sp, partial(_k_sii_weight, order=order), order, max_subsets)
