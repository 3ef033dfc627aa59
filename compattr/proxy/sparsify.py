"""Stage 3 of ProxySPEX: keep the top-k Fourier terms, with k chosen by cross-validation.

The candidates are the constant plus the ``k - 1`` terms of largest ``|F(T)|`` (:func:`top_terms`),
for ``k`` among powers of two (:func:`candidate_ks`), or the same number re-ranked by their
refitted coefficients: the largest candidate's terms (the pool) are refitted by ridge least
squares, and the ``k - 1`` of largest refitted ``|β(T)|`` are kept (:func:`refit_ranked_terms`),
which drops terms the trees rank high only because they spread a true term's weight; or those
re-ranked terms with every subset of theirs (their downward closure, :func:`closed_terms`),
refitted, which restores the lower-order terms of a hierarchy that the top k leave out.
:func:`sparsity_cv` scores every candidate, with the trees' coefficients and refitted by
(ridge) least squares at each ridge strength, on the same folds as the search: each fold with
the ranking of the ensemble that never saw it (and, re-ranked, of its own training refit).
:func:`grown_pool` grows the kept terms' hierarchy (the cliques of their pairs, and one order
up: ProxySPEX's stage 5), after :func:`pursued_terms` adds the trees' terms the kept terms'
residual correlates with most, and :func:`grown_cv` scores the terms chosen again from that
pool (stage 6 grows and scores the repeats' average the same way).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.sparse as sps
from scipy.linalg import solve_triangular
from scipy.linalg.lapack import get_lapack_funcs

from ..spectrum import Spectrum
from ..spectrum.supports import (
    csr_to_padded,
    find_rows,
    group_padded_rows,
    padded_to_csr,
    parity_blocks,
    parity_matrix,
    row_finder,
    widen_padded,
)
from .leastsquares import factor, gram_and_projection, gram_reusing, least_squares, least_squares_on, ridge_penalty
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


def refit_ranked_terms(spectrum: Spectrum, k: int, tilt: float, pool: int, X, y, ridge: float) -> Spectrum:
    """The constant and the ``k - 1`` terms of largest refitted ``|β(T)|`` among the ``pool``
    top terms of ``spectrum`` (:func:`top_terms` with ``tilt``), refitted on masks ``X`` (m, n)
    and outputs ``y`` (m,) by least squares with ridge strength ``ridge`` (per mask); the
    coefficients returned are those of that refit of the pool."""
    return top_terms(least_squares(top_terms(spectrum, pool, tilt), X, y, ridge), k)


def closed_terms(spectrum: Spectrum, k: int, tilt: float, pool: int, X, y, ridge: float, rank_ridge: float) -> Spectrum:
    """The terms :func:`refit_ranked_terms` keeps (re-ranked at ridge strength ``rank_ridge``)
    with every subset of theirs, refitted on masks ``X`` (m, n) and outputs ``y`` (m,) by
    least squares with ridge strength ``ridge`` (per mask). When that closure holds more than
    ``pool`` terms: the closure of the most of those terms, best first, that fits."""
    kept = refit_ranked_terms(spectrum, k, tilt, pool, X, y, rank_ridge)
    closure, _ = _closure_order(csr_to_padded(kept.supports, kept.n), kept.n, pool)
    return least_squares_on(closure, kept.n, X, y, ridge)


def _closure_order(rows: np.ndarray, n: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The ranked distinct padded supports ``rows`` (k, D), each preceded by its subsets not
    listed before it (by size, then as sorted tuples), as long as at most ``limit`` supports
    are listed.

    Returns
    -------
    closure : (K, D') int array
        The listed supports, padded with ``n``; K <= ``limit``.
    ends : (j,) int array
        ``ends[i]``: how many leading rows of ``closure`` hold the first ``i + 1`` ranked
        supports and all their subsets (the closure of the top ``i + 1``), for every ``i``
        whose closure fits in ``limit``.
    """
    # A support of 2^d > limit subsets ends the order (its closure cannot fit), and so does
    # the (limit + 1)-th support (a closure holds each of the distinct supports before it).
    degrees = np.sum(rows < n, axis=1)
    too_big = np.flatnonzero(degrees > np.log2(max(limit, 1)))
    rows = rows[: min(limit, too_big[0] if too_big.size else len(rows))]
    subsets, rank = _every_subset(rows, degrees[: len(rows)], n)
    unique, inverse = group_padded_rows(subsets, n)
    first = np.full(len(unique), len(rows), np.int64)  # the first ranked support holding each
    np.minimum.at(first, inverse, rank)
    ends = np.cumsum(np.bincount(first, minlength=len(rows)))
    fits = int(np.searchsorted(ends, limit, side="right"))  # ends never decrease
    size = np.sum(unique < n, axis=1)
    order = np.lexsort((*unique.T[::-1], size, first))  # by ranked support, size, tuple
    order = order[first[order] < fits]
    width = int(size[order].max(initial=0))
    return unique[order, :width].astype(np.int64), ends[:fits].astype(np.int64)


def _every_subset(rows: np.ndarray, degrees: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every subset of each padded support of ``rows`` (k, D) with ``degrees`` (k,) features,
    padded with ``n`` (Σ 2^degree, D), and the row each came from."""
    blocks, ranks = [np.zeros((0, rows.shape[1]), np.int64)], [np.zeros(0, np.int64)]
    for d in np.unique(degrees):
        which = np.flatnonzero(degrees == d)
        chosen = (np.arange(2**d)[:, None] >> np.arange(d)) & 1 == 1  # (2^d, d): each subset's features
        picked = np.where(chosen, rows[which, None, :d], n)  # (rows, 2^d, d)
        picked = np.sort(picked, axis=2).reshape(len(which) * 2**d, d)  # the padding n sorts last
        blocks.append(widen_padded(picked, rows.shape[1], n))
        ranks.append(np.repeat(which, 2**d))
    return np.vstack(blocks), np.concatenate(ranks)


def grown_pool(
    spectrum: Spectrum, limit: int, max_order: int | None = None, cliques: bool = True, missing_subsets: int = 0
) -> np.ndarray:
    """The terms of ``spectrum`` with their hierarchy grown, to re-select from.

    First its terms by decreasing ``|F(T)|``, each preceded by its subsets (the downward
    closure, as long as it holds at most ``limit`` terms); with ``cliques``, then every set
    of three or more features all of whose pairs are listed, by decreasing sum of those
    pairs' ``|F|`` (the cliques of the listed pairs' graph, :func:`_pair_cliques`: a
    hierarchy's higher-order terms whose subsets in between the fit missed); then every set
    one order above a listed term all of whose subsets one order below are listed, but
    ``missing_subsets`` (0 or 1) of them for sets of three or more features (the candidates
    a hierarchy would hold next: the features not listed, the pairs of listed features, ...;
    :func:`_one_order_up`), by decreasing sum of the listed subsets' ``|F|`` (ties in the
    order of their sorted feature tuples), up to ``limit`` terms in all. A term whose subsets
    the trees found, but which they split too shallowly to hold, is a candidate. No
    candidate is above ``max_order``.

    Returns
    -------
    (K, D) int array
        Padded supports (padding ``n``), the constant first; ``K <= limit``.
    """
    n = spectrum.n
    rows = csr_to_padded(spectrum.supports, n)
    closure, _ = _closure_order(rows[np.argsort(-np.abs(spectrum.coefs), kind="stable")], n, limit)
    found = find_rows(rows, closure, n)
    strength = np.where(found >= 0, np.abs(spectrum.coefs)[found], 0.0)  # |F| of each listed set
    joined, score = _one_order_up(closure, strength, n, missing_subsets)
    if max_order is not None:
        within = np.sum(joined < n, axis=1) <= max_order
        joined, score = joined[within], score[within]
    as_tuples = np.where(joined == n, -1, joined)  # a shorter tuple sorts before its extensions
    joined = joined[np.lexsort((*as_tuples.T[::-1], -score))]
    room = max(0, limit - len(closure))
    cliqued = _pair_cliques(closure, strength, n, limit, max_order) if cliques and room else np.zeros((0, 0), np.int64)
    joined = joined[find_rows(cliqued, joined, n) < 0] if len(cliqued) else joined  # triangles are both
    return _stacked([closure, cliqued[:room], joined[: max(0, room - len(cliqued))]], n)  # constant first


def _pair_cliques(closed: np.ndarray, strength: np.ndarray, n: int, limit: int, max_order: int | None) -> np.ndarray:
    """The sets of three or more of ``n`` features not among the padded supports ``closed``
    (K, D) all of whose pairs are among them (the cliques of their pairs' graph), up to
    ``max_order`` features, by decreasing sum of their pairs' ``strength`` (K,).

    The cliques of each size extend those one smaller by a larger feature adjacent to all
    their members; only the ``limit`` strongest of each size are listed and extended, which
    bounds the cost where the graph is dense. The graph holds only the features of some
    pair, so its size does not grow with ``n``.

    Returns
    -------
    (p, D') int array
        The cliques, padded with ``n``; the same set never twice.
    """
    degrees = np.sum(closed < n, axis=1)
    pairs = np.flatnonzero(degrees == 2)
    if not pairs.size:
        return np.zeros((0, 3), np.int64)
    # the graph on the features of some pair only, numbered in order (cliques stay sorted)
    features, ends = np.unique(closed[pairs, :2], return_inverse=True)
    a, b = ends.reshape(-1, 2).T
    v = len(features)
    adjacent, weight = np.zeros((v, v), bool), np.zeros((v, v))
    adjacent[a, b] = adjacent[b, a] = True
    weight[a, b] = weight[b, a] = strength[pairs]
    members, score = np.stack([a, b], axis=1), strength[pairs]
    listed_at = row_finder(closed, n)
    found, scores = [np.zeros((0, 2), np.int64)], [np.zeros(0)]
    largest = n if max_order is None else max_order
    for _ in range(3, largest + 1):  # the cliques of 3, 4, ... features
        joins = np.logical_and.reduce(adjacent[members], axis=1) & (np.arange(v) > members[:, -1:])
        if not joins.any():
            break
        clique, added = np.nonzero(joins)  # each clique extended by a larger feature: no repeats
        score = score[clique] + weight[members[clique], added[:, None]].sum(axis=1)
        members = np.hstack([members[clique], added[:, None]])
        strongest = np.argsort(-score, kind="stable")[:limit]
        members, score = members[strongest], score[strongest]
        fresh = listed_at(features[members]) < 0
        found.append(features[members[fresh]])
        scores.append(score[fresh])
    cliques = _stacked(found, n)
    return cliques[np.argsort(-np.concatenate(scores), kind="stable")]


def _one_order_up(
    closed: np.ndarray, strength: np.ndarray, n: int, missing_subsets: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The sets of ``n`` features not among the downward-closed padded supports ``closed``
    (K, D) whose subsets one order below are all among them, or (sets of three or more
    features, ``missing_subsets=1``) all but one, and the sum of the listed subsets'
    ``strength`` (K,) each: the features not listed (when the constant is), the pairs of
    listed features, and the unions of two listed members of the same order that share all
    but one feature.

    With ``missing_subsets=0`` those unions are the Apriori algorithm's candidates (joined
    from the members sharing all but their last feature, which lists each once); with
    ``missing_subsets=1`` a hierarchy's term is a candidate even where the fit missed one of
    its subsets, which the closure ranking then restores.

    Returns
    -------
    rows : (p, D + 1) int array
        The candidates, padded with ``n``; the same set never twice.
    score : (p,) float array
    """
    degrees = np.sum(closed < n, axis=1)
    width = closed.shape[1] + 1
    listed_at = row_finder(closed, n)
    rows, scores = [np.zeros((0, width), np.int64)], [np.zeros(0)]
    constant = np.flatnonzero(degrees == 0)
    if constant.size:
        singles = np.setdiff1d(np.arange(n), closed[degrees == 1, :1].ravel())
        rows.append(widen_padded(singles[:, None], width, n))
        scores.append(np.full(len(singles), strength[constant[0]]))
    for d in range(1, width):
        members = closed[degrees == d, :d]
        allowed = missing_subsets if d >= 2 else 0  # a pair needs both its features
        joined = _joins_sharing_all_but_one(members) if allowed else _apriori_joins(members)
        # the subsets one order below, in the order itertools.combinations lists them
        score, listed = np.zeros(len(joined)), np.zeros(len(joined), np.int64)
        for left_out in range(d, -1, -1):
            where = listed_at(np.delete(joined, left_out, axis=1))
            listed += where >= 0
            score = score + np.where(where >= 0, strength[where], 0.0)
        fresh = (listed >= d + 1 - allowed) & (listed_at(joined) < 0)
        rows.append(widen_padded(joined[fresh], width, n))
        scores.append(score[fresh])
    return np.vstack(rows), np.concatenate(scores)


def _apriori_joins(members: np.ndarray) -> np.ndarray:
    """The unions (p, d + 1), sorted, of two distinct sorted sets ``members`` (c, d) that
    share their first ``d - 1`` features: each once."""
    members = members[np.lexsort(members.T[::-1])]
    first, second = _prefix_pairs(members)
    d = members.shape[1]
    return np.hstack([members[first], members[second, d - 1 :]])  # sorted: second's last is larger


def _joins_sharing_all_but_one(members: np.ndarray) -> np.ndarray:
    """The distinct unions (p, d + 1), sorted, of two sorted sets ``members`` (c, d) that
    share all but one feature: each member is listed once per feature it leaves out, after
    the ``d - 1`` it keeps, and the rows of equal prefixes are joined."""
    d = members.shape[1]
    kept = np.vstack([np.delete(members, j, axis=1) for j in range(d)])  # (d * c, d - 1)
    table = np.hstack([kept, members.T.reshape(-1, 1)])  # the left-out feature last
    table = table[np.lexsort(table.T[::-1])]
    first, second = _prefix_pairs(table)
    joined = np.sort(np.hstack([table[first], table[second, -1:]]), axis=1)
    return np.unique(joined, axis=0) if len(joined) else joined.reshape(0, d + 1)


def _prefix_pairs(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of rows of the lexicographically sorted ``members`` (c, d) that
    share their first ``d - 1`` entries, as two index arrays."""
    c = len(members)
    same = np.all(members[1:, :-1] == members[:-1, :-1], axis=1)
    run = np.r_[0, np.cumsum(~same)]  # the run of equal prefixes each row is in
    run_end = np.searchsorted(run, run, side="right")  # one past each row's run
    after = run_end - np.arange(c) - 1  # partners after each row in its run
    first = np.repeat(np.arange(c), after)
    offset = np.arange(len(first)) - np.repeat(np.cumsum(after) - after, after)
    return first, first + 1 + offset


def _stacked(blocks: list[np.ndarray], n: int) -> np.ndarray:
    """Padded supports of several widths stacked, as wide as their largest support."""
    width = max((int(np.max(np.sum(b < n, axis=1), initial=0)) for b in blocks), default=0)
    return np.vstack([widen_padded(b[:, :width], width, n) for b in blocks])


def pursued_terms(
    kept: Spectrum, candidates: Spectrum, X, y, add: int, rounds: int, limit: int, ridge: float
) -> Spectrum:
    """``kept`` with the terms of ``candidates`` its residual correlates with most.

    Each of ``rounds`` rounds (matching pursuit in blocks) adds the ``add`` terms, among the
    ``limit`` of largest ``|F(T)|`` in ``candidates`` (the trees' spectrum) and not held yet,
    whose Walsh features correlate most with the residual ``r = y - current(X)`` on masks
    ``X`` (m, n) and outputs ``y`` (m,): largest ``|c(T)|``, ``c(T) = Σ_i r_i χ_T(x_i) / m``.
    Between rounds the terms are refitted by least squares with ridge strength ``ridge``
    (per mask). Trees rank a hierarchy's high-order terms below their own fragments, and the
    kept terms' strong ones hide the weaker ones in ``y``; in the residual these stand out.

    Returns
    -------
    Spectrum
        The terms after the last round: those of the last refit (``kept``'s own with one
        round) with their coefficients, and the last round's with ``c(T)``, their least-squares
        coefficient were they orthogonal to the rest (the Walsh features of uniform masks
        nearly are).
    """
    n = kept.n
    ranked = np.argsort(-np.abs(candidates.coefs), kind="stable")[:limit]
    rows = csr_to_padded(candidates.supports[ranked[candidates.degrees[ranked] > 0]], n)
    current = kept
    for round_ in range(rounds):
        if round_:
            current = least_squares(current, X, y, ridge)
        fresh = find_rows(csr_to_padded(current.supports, n), rows, n) < 0  # not held yet
        if not fresh.any():  # e.g. every tree term kept (k = 0): nothing to add
            break
        residual = (y - current.predict(X)).astype(np.float32)
        corr = np.empty(len(rows))
        for lo, hi, parity in parity_blocks(X, rows):
            corr[lo:hi] = residual @ parity / len(y)
        by_corr = np.argsort(-np.abs(corr), kind="stable")
        picks = by_corr[fresh[by_corr]][:add]
        supports = sps.vstack([current.supports, padded_to_csr(rows[picks], n)], format="csr")
        current = Spectrum(n, supports, np.r_[current.coefs, corr[picks]])
    return current


def grown_cv(
    X,
    y,
    folds,
    pools: list[np.ndarray],
    ks: list[int],
    ridges: tuple[float, ...],
    max_rows: int,
    seed: int,
    rankings: tuple[str, ...] = ("refit", "closure"),
) -> pd.DataFrame:
    """CV mean squared error of choosing terms again from grown pools (padded supports (K, D),
    the constant first; :func:`grown_pool`), one per fold (grown from the terms kept on that
    fold's training masks): on each fold its pool is refitted on the training masks at each
    ridge strength, and the top k by refitted ``|β(T)|`` are refitted at that
    strength ("refit"), or the top k re-ranked at the first strength with all their subsets,
    refitted at each ("closure"; :func:`sparsity_cv` does the same with the trees' terms), for
    the ``rankings`` asked. Beyond ``max_rows`` masks the CV runs on the same random subset as
    :func:`sparsity_cv`.

    Returns
    -------
    pandas.DataFrame
        One row per candidate: ``k``, ``ranking`` ("refit" or "closure"), ``ridge`` and ``cv_mse``.
    """
    subset = cv_subset(X.shape[0], max_rows, seed)
    closed = "closure" in rankings
    shape = (len(ridges), len(ks))
    sq_refit, sq_closed, count = np.zeros(shape), np.zeros(shape), 0
    for pool, (train, valid) in zip(pools, folds):
        train, valid = np.intersect1d(train, subset), np.intersect1d(valid, subset)
        _, _, refit, closure = _fold_errors(X, y, train, valid, (pool, np.zeros(len(pool))), ks, ridges, True, closed)
        sq_refit += refit
        sq_closed += closure
        count += len(valid)
    return pd.DataFrame(
        [
            {"k": k, "ranking": ranking, "ridge": ridge, "cv_mse": s / count}
            for ranking, sq in (("refit", sq_refit), ("closure", sq_closed))
            if ranking in rankings
            for ridge, row in zip(ridges, sq)
            for k, s in zip(ks, row)
        ]
    )


def cv_subset(m: int, max_rows: int, seed: int) -> np.ndarray:
    """The masks a CV scores: all ``m``, or a random ``max_rows`` of them, sorted."""
    return np.sort(np.random.default_rng(seed).permutation(m)[:max_rows]) if m > max_rows else np.arange(m)


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
    rankings: tuple[str, ...] = ("trees",),
    memo: dict | None = None,
) -> pd.DataFrame:
    """CV mean squared error of top-k truncation, as the trees give it and refitted at each
    ridge strength, for each k and each ranking tilt (terms ranked by ``|F(T)| * tilt ** |T|``);
    with ``"refit"`` among ``rankings``, also refitted after re-ranking the top ``max(ks)``
    terms by their coefficients refitted on the fold's training masks, at each ridge strength
    (:func:`refit_ranked_terms`); with ``"closure"``, also the top k re-ranked at the first
    ridge strength with all their subsets, refitted at each ridge strength, for the k whose
    closure holds at most ``max(ks)`` terms (the others score ``inf``; :func:`closed_terms`).

    Every fold is scored with the ranking of the ensemble trained without it. One Cholesky
    factor of the fold's (penalised) Gram matrix gives the refit of every prefix k (the factor
    of a leading block is the leading block of the factor), so each ridge strength costs one
    factorisation per fold. A ridge strength ``r`` penalises each non-constant coefficient by
    ``r`` times the fold's training masks. Beyond ``max_rows`` masks the CV runs on a random
    subset of them, bounding its cost. The untruncated ensembles (k = 0) are scored by their
    early-stopping validation error, on all of each fold's held-out masks. A ``memo`` dict
    shared by calls on the same ``X``, ``y``, folds, ``max_rows`` and ``seed`` keeps each
    fold's errors, so a fold scored again with the same fit and settings is not recomputed
    (ProxySPEX's settle check scores the first fold, then its full CV scores every fold).

    Returns
    -------
    pandas.DataFrame
        One row per candidate: ``k``, ``tilt``, ``ranking`` ("trees", "refit" or "closure"), ``refit``
        (bool), ``ridge`` (NaN without refit) and ``cv_mse``.
    """
    m = X.shape[0]
    subset = cv_subset(m, max_rows, seed)
    closed = "closure" in rankings
    reranked = closed or "refit" in rankings
    shape = (len(tilts), len(ridges), len(ks))
    sq_refit, sq_reranked, sq_closed = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    sq_trunc = np.zeros((len(tilts), len(ks)))
    count = 0
    for i, (spectrum, fit, (train, valid)) in enumerate(zip(fold_spectra, fits, folds)):
        train, valid = np.intersect1d(train, subset), np.intersect1d(valid, subset)
        key = (i, fit, tuple(ks), tuple(ridges), tuple(tilts), tuple(rankings))
        per_tilt = None if memo is None else memo.get(key)
        if per_tilt is None:
            per_tilt = [
                _fold_errors(X, y, train, valid, _ranked_terms(spectrum, max(ks), tilt), ks, ridges, reranked, closed)
                for tilt in tilts
            ]
            if memo is not None:
                memo[key] = per_tilt
        for t, errors in enumerate(per_tilt):
            sq_refit[t] += errors[0]
            sq_trunc[t] += errors[1]
            sq_reranked[t] += errors[2]
            sq_closed[t] += errors[3]
        count += len(valid)
    table = [
        {"k": k, "tilt": tilt, "ranking": ranking, "refit": True, "ridge": ridge, "cv_mse": s / count}
        for ranking, sq in (("trees", sq_refit), ("refit", sq_reranked), ("closure", sq_closed))
        if ranking in rankings
        for tilt, per_tilt in zip(tilts, sq)
        for ridge, row in zip(ridges, per_tilt)
        for k, s in zip(ks, row)
    ]
    table += [
        {"k": k, "tilt": tilt, "ranking": "trees", "refit": False, "ridge": np.nan, "cv_mse": s / count}
        for tilt, row in zip(tilts, sq_trunc)
        for k, s in zip(ks, row)
    ]
    every = cv_mse(fits, folds)  # k = 0: every tree term
    table.append({"k": 0, "tilt": 1.0, "ranking": "trees", "refit": False, "ridge": np.nan, "cv_mse": every})
    return pd.DataFrame(table)


def _fold_errors(X, y, train, valid, ranked, ks, ridges, reranked: bool, closed: bool) -> tuple[np.ndarray, ...]:
    """One fold's squared validation errors of every top-k of ``ranked`` (padded supports and
    coefficients, best first): refitted at each ridge strength (ridges × ks), as the trees give
    them (ks), refitted after re-ranking all of ``ranked`` by their refit at that strength
    (ridges × ks; zeros unless ``reranked``), and the top k re-ranked at the first strength
    with all their subsets, refitted at each (ridges × ks, :func:`_closure_errors`; zeros
    unless ``closed``, which needs ``reranked``).

    Only the leading ``max(ks)`` rows of a ranking are factored (the factor of a leading
    block is the leading block of the factor), except the refit that re-ranks: it needs
    every coefficient. A re-ranked top k that holds every row is the whole pool: its error is
    the refit's, not factored again (at ``max_k`` rows, the largest factor of the fold)."""
    rows, coefs = ranked
    gram, projection = gram_and_projection(X[train], rows, y[train])
    P_valid, y_valid = parity_matrix(X[valid], rows), y[valid]
    if reranked:  # whole: its rows and columns are permuted (its strict upper triangle is zero)
        gram = gram + gram.T
        gram.flat[:: len(gram) + 1] *= 0.5
    sq_refit, sq_reranked, sq_closed = (np.zeros((len(ridges), len(ks))) for _ in range(3))
    prefixes = np.minimum(ks, len(rows))
    lead = int(prefixes.max())  # the rows a prefix reaches
    factored = slice(None) if reranked else slice(lead)
    for r, ridge in enumerate(ridges):
        penalty = ridge_penalty(rows, X.shape[1], ridge * len(train))
        # float32: the factor only chooses k and the ridge
        L, z = factor(gram[factored, factored], projection[factored], penalty[factored], dtype=np.float32)
        sq_refit[r] = _prefix_errors(L, z, P_valid, y_valid, prefixes)
        if reranked:  # the constant first, then by decreasing refitted |β|
            beta = solve_triangular(L.T, z, lower=False)
            order = np.r_[0, 1 + np.argsort(-np.abs(beta[1:]), kind="stable")]
            # a prefix of every row is the whole pool, refitted above in another order
            whole = prefixes == len(rows)
            sq_reranked[r, whole] = sq_refit[r, whole]
            top = order[: int(prefixes[~whole].max(initial=0))]
            if top.size:
                L, z = factor(gram[np.ix_(top, top)], projection[top], penalty[top], dtype=np.float32)
                sq_reranked[r, ~whole] = _prefix_errors(L, z, P_valid[:, top], y_valid, prefixes[~whole])
            if closed and r == 0:  # ranked by the refit at the first strength, refitted at each
                sq_closed = _closure_errors(X, y, train, valid, rows[order], ks, ridges, (rows, gram, projection))
    sq_trunc = np.array([np.sum((P_valid[:, :k] @ coefs[:k] - y_valid) ** 2) for k in prefixes])
    return sq_refit, sq_trunc, sq_reranked, sq_closed


def _closure_errors(X, y, train, valid, rows: np.ndarray, ks, ridges, known: tuple) -> np.ndarray:
    """One fold's squared validation errors (ridges × ks) of the top k of the ranked padded
    supports ``rows`` with all their subsets, refitted at each ridge strength; ``inf`` for
    the k whose closure holds more than ``max(ks)`` supports. ``known``: padded supports,
    their whole Gram matrix and projection on the fold's training masks, whose entries the
    closure's reuse (:func:`~compattr.proxy.leastsquares.gram_reusing`)."""
    n = X.shape[1]
    closure, ends = _closure_order(rows, n, max(ks))
    prefixes = np.minimum(ks, len(rows))
    fits = prefixes <= len(ends)
    out = np.full((len(ridges), len(ks)), np.inf)
    if fits.any():
        gram, projection = gram_reusing(X[train], closure, y[train], *known)
        P_valid = parity_matrix(X[valid], closure)
        for r, ridge in enumerate(ridges):
            L, z = factor(gram, projection, ridge_penalty(closure, n, ridge * len(train)), dtype=np.float32)
            out[r, fits] = _prefix_errors(L, z, P_valid, y[valid], ends[prefixes[fits] - 1])
    return out


def _prefix_errors(L: np.ndarray, z: np.ndarray, P_valid: np.ndarray, y_valid: np.ndarray, lengths) -> np.ndarray:
    """Squared validation errors (len(lengths),) of the least squares of the first j columns
    for each j in ``lengths``, from the Cholesky factor ``L`` of the training Gram matrix and
    ``z = L⁻¹ Pᵀy``."""
    trtrs = get_lapack_funcs("trtrs", (L,))  # LAPACK itself: scipy's checks cost more than these small solves
    out = np.empty(len(lengths))
    for i, j in enumerate(lengths):
        beta, info = trtrs(L[:j, :j], z[:j], lower=1, trans=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"the Cholesky factor is singular (LAPACK trtrs info={info}).")
        out[i] = np.sum((P_valid[:, :j] @ beta - y_valid) ** 2)
    return out
