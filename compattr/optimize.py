"""Pruning plans and feature removal: exact optimisation of a sparse spectrum.

Masks follow the library convention: ``True`` = feature **kept**. The spectrum is written in
the Möbius basis on the downward closure ``K⁺`` of its supports,
``f̂(x) = Σ_{R∈K⁺} I^M(R) Π_{i∈R} x_i``, and each product is linearised with a variable
``y_R`` (paper A.3): ``y_R <= y_Q`` for every ``Q ⊂ R`` with ``|Q| = |R| - 1``,
``Σ_{i∈R} x_i <= |R| - 1 + y_R``, ``y_∅ = 1`` and ``y_{i} = x_i``. The ``x_i`` are binary;
the ``y_R`` may be continuous in ``[0, 1]`` because these constraints already force
``y_R = Π_{i∈R} x_i`` for binary ``x`` (same optimum, far fewer integer variables).
PuLP's CBC solves the program, warm-started from a greedy search; the greedy answer is
returned instead, with a warning, when the program is too large or CBC stops on its time
limit without a solution.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pulp
import scipy.sparse as sparse

from ._validation import as_masks, as_outputs, check_format
from .indices import _check_int, _check_spectrum, _moebius_weight, _superset_transform, banzhaf
from .spectrum import Spectrum

class ValueRangeWarning(UserWarning):
    """A predicted value lies outside the range the value function can take (e.g. a positive
    log-probability): the surrogate extrapolates there, so trust measured values instead."""


#: Default cap on ILP variables (features + closure sets of order >= 2 + KV groups).
DEFAULT_MAX_VARIABLES = 20_000
# Swap moves of the local search pair this many best kept with this many best removed features.
_SWAP_CANDIDATES = 64
_SENSES = ("==", "<=", ">=")
_PLAN_FORMAT = "compattr.pruning_plan"
_PLAN_VERSION = 1


# ---------------------------------------------------------------------- constraints
@dataclass(frozen=True)
class _Constraints:
    """The feasible kept-sets, shared by the ILP, the greedy fallback and the checks.

    ``lo <= #kept <= hi``; every group ``g`` keeps at least ``group_min[g]`` features; at
    most ``kv_max_kept`` KV groups have a kept head (a KV group is removed only when all of
    its query heads are).
    """

    n: int
    lo: int
    hi: int
    group_ids: np.ndarray  # (n,) int codes (all 0 without groups)
    group_min: np.ndarray  # (G,) int
    kv_ids: np.ndarray | None  # (n,) int codes
    kv_max_kept: int | None

    @cached_property
    def _group_onehot(self) -> sparse.csr_array:
        return _onehot(self.group_ids, self.group_min.size)

    @cached_property
    def _kv_onehot(self) -> sparse.csr_array:
        return _onehot(self.kv_ids, int(self.kv_ids.max()) + 1)

    def group_counts(self, K: np.ndarray) -> np.ndarray:
        """(m, G) kept features per group for (m, n) kept-sets."""
        return np.asarray(K.astype(np.int64) @ self._group_onehot)

    def kv_kept(self, K: np.ndarray) -> np.ndarray:
        """(m,) number of KV groups with at least one kept head."""
        return (np.asarray(K.astype(np.int64) @ self._kv_onehot) > 0).sum(axis=1)

    def partial_ok(self, K: np.ndarray) -> np.ndarray:
        """(m,) whether removing more features can still reach a feasible set."""
        return (K.sum(axis=1) >= self.lo) & (self.group_counts(K) >= self.group_min).all(axis=1)

    def satisfied(self, K: np.ndarray) -> np.ndarray:
        """(m,) whether each kept-set meets every constraint."""
        ok = self.partial_ok(K) & (K.sum(axis=1) <= self.hi)
        if self.kv_ids is not None:
            ok &= self.kv_kept(K) <= self.kv_max_kept
        return ok


def _onehot(ids: np.ndarray, k: int) -> sparse.csr_array:
    """(n, k) 0/1 matrix with a single 1 per row, at column ``ids[i]``."""
    ones = np.ones(ids.size, np.int64)
    return sparse.csr_array((ones, (np.arange(ids.size), ids)), shape=(ids.size, k))


def _make_constraints(
    n: int, size, sense: str, groups, min_per_group, kv_groups, min_kv_removed
) -> _Constraints:
    size = _check_int(size, "size", 0, n)
    if sense not in _SENSES:
        raise ValueError(f"sense must be one of {_SENSES}, got {sense!r}.")
    lo = 0 if sense == "<=" else size
    hi = n if sense == ">=" else size
    group_ids, group_min = _group_minimums(n, groups, min_per_group)
    if (kv_groups is None) != (min_kv_removed is None):
        raise ValueError("kv_groups and min_kv_removed must be given together.")
    kv_ids = kv_max_kept = None
    if kv_groups is not None:
        kv_ids = _codes(kv_groups, n, "kv_groups")[1]
        n_kv = kv_ids.max() + 1
        kv_max_kept = n_kv - _check_int(min_kv_removed, "min_kv_removed", 0, n_kv)
    return _Constraints(n, lo, hi, group_ids, group_min, kv_ids, kv_max_kept)


def _group_minimums(n: int, groups, min_per_group) -> tuple[np.ndarray, np.ndarray]:
    if groups is None:
        if min_per_group is not None:
            raise ValueError("min_per_group needs groups (a label per feature).")
        return np.zeros(n, np.int64), np.zeros(1, np.int64)
    labels, ids = _codes(groups, n, "groups")
    if min_per_group is None:
        minimum = np.zeros(labels.size, np.int64)
    elif isinstance(min_per_group, Mapping):
        unknown = set(min_per_group) - set(labels.tolist())
        if unknown:
            raise ValueError(f"min_per_group names unknown groups {sorted(map(str, unknown))}.")
        minimum = np.array([min_per_group.get(g, 0) for g in labels.tolist()])
    else:
        minimum = np.full(labels.size, min_per_group)
    if minimum.dtype.kind not in "iu" or (minimum < 0).any():
        raise ValueError(f"min_per_group must hold non-negative integers, got {min_per_group!r}.")
    return ids, minimum.astype(np.int64)


def _codes(labels, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), a label per feature; got {labels.shape}.")
    return np.unique(labels, return_inverse=True)


def _as_kept(kept, n: int | None = None) -> np.ndarray:
    """``kept`` as an (n,) bool vector, or ValueError."""
    if hasattr(kept, "detach"):
        kept = kept.detach().cpu().numpy()
    kept = np.asarray(kept)
    if kept.ndim != 1:
        raise ValueError(f"kept must be a 1-D (n,) mask, got shape {kept.shape}.")
    return as_masks(kept[None, :], n, name="kept")[0]


# ---------------------------------------------------------------------- exact ILP
def best_subset(
    sp: Spectrum,
    size: int,
    maximize: bool = True,
    *,
    sense: str = "==",
    groups: Sequence | np.ndarray | None = None,
    min_per_group: int | Mapping | None = None,
    kv_groups: Sequence | np.ndarray | None = None,
    min_kv_removed: int | None = None,
    time_limit: float | None = None,
    max_variables: int = DEFAULT_MAX_VARIABLES,
) -> np.ndarray:
    """The kept-set that maximises (or minimises) ``f̂`` under constraints, solved exactly.

    Parameters
    ----------
    sp : Spectrum
        The function ``f̂`` to optimise.
    size : int
        Number of features kept: exactly (``sense="=="``), at most (``"<="``) or at least
        (``">="``).
    maximize : bool
        Maximise (default) or minimise ``f̂``.
    sense : {"==", "<=", ">="}
        How ``size`` bounds the number of kept features.
    groups : (n,) array_like, optional
        A label per feature (for attention heads: the layer, ``heads.groups``).
    min_per_group : int or mapping label -> int, optional
        Keep at least this many features in every group (or in the named groups).
    kv_groups : (n,) array_like, optional
        For grouped-query attention: the KV group of each query head. Ids must be distinct
        across layers (e.g. ``layer * n_kv_heads + kv_head``).
    min_kv_removed : int, optional
        Remove at least this many whole KV groups. A KV group counts as removed (its keys and
        values need not be computed or cached) only when **all** of its query heads are
        removed, so this is the constraint that turns head pruning into KV-cache savings.
        Must be given together with ``kv_groups``.
    time_limit : float, optional
        Seconds for CBC (default: no limit). When it runs out, the best kept-set found so far
        is returned with a warning that it is not proven optimal; the search starts from the
        greedy answer, so it is never worse than that.
    max_variables : int
        Above this many ILP variables, skip the ILP and return the greedy answer (with a
        warning).

    Returns
    -------
    (n,) bool array
        ``True`` = kept.

    Raises
    ------
    ValueError
        When no kept-set satisfies the constraints.

    Notes
    -----
    The greedy answer removes features one at a time from the full set (whole KV groups
    first when ``min_kv_removed`` asks for it), always the one that helps the objective most,
    then improves the result by single flips and swaps until no move helps.
    """
    _check_spectrum(sp)
    cons = _make_constraints(sp.n, size, sense, groups, min_per_group, kv_groups, min_kv_removed)
    start = _greedy(sp, cons, maximize)
    closure = _closure(sp, cons, max_variables)
    if closure is None:
        warnings.warn(
            f"the ILP would need more than max_variables={max_variables} variables; returning "
            "the greedy answer instead (not guaranteed optimal). Truncate the spectrum "
            "(sp.top(k)) or raise max_variables for an exact answer.",
            stacklevel=2,
        )
        return _require_feasible(start)
    kept, status = _solve_ilp(closure, cons, maximize, time_limit, start)
    if status == pulp.LpSolutionInfeasible:
        raise ValueError(
            "no kept-set satisfies the constraints (size, sense, min_per_group, "
            "min_kv_removed); loosen them."
        )
    if status == pulp.LpSolutionIntegerFeasible:
        warnings.warn(
            f"CBC hit time_limit={time_limit}s; returning the best kept-set found, which is "
            "not proven optimal.",
            stacklevel=2,
        )
    elif status != pulp.LpSolutionOptimal:
        warnings.warn(
            f"CBC found no solution within time_limit={time_limit}s; returning the greedy "
            "answer instead (not guaranteed optimal).",
            stacklevel=2,
        )
        return _require_feasible(start)
    return kept


def _closure(sp: Spectrum, cons: _Constraints, max_variables: int):
    """Möbius coefficients on ``K⁺`` as ``(sets, values)``, or None if the ILP is too big."""
    if 2.0**sp.max_order > max_variables:
        return None
    rows, values = _superset_transform(sp, _moebius_weight, max_subsets=max_variables)
    lengths = (rows < sp.n).sum(axis=1)
    n_kv = 0 if cons.kv_ids is None else cons.kv_ids.max() + 1
    if sp.n + int((lengths >= 2).sum()) + n_kv > max_variables:
        return None
    order = np.argsort(lengths, kind="stable")  # subsets before their supersets
    sets = [tuple(r[:m]) for r, m in zip(rows[order].tolist(), lengths[order].tolist())]
    return sets, values[order]


def _solve_ilp(closure, cons: _Constraints, maximize: bool, time_limit, start):
    """Solve the linearised program, warm-started from ``start`` when given.

    Returns ``(kept or None, PuLP solution status)``.
    """
    prob, var, z = _build_program(closure, cons, maximize)
    if start is not None:
        for R, v in var.items():
            v.setInitialValue(float(start[list(R)].all()))
        for g, v in enumerate(z):
            v.setInitialValue(float(start[cons.kv_ids == g].any()))
    prob.solve(_cbc(time_limit, warm_start=start is not None))
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return None, prob.sol_status
    return np.array([(var[(i,)].value() or 0.0) > 0.5 for i in range(cons.n)]), prob.sol_status


def _build_program(closure, cons: _Constraints, maximize: bool):
    """The program of the module docstring; returns (problem, {set: variable}, KV variables)."""
    sets, values = closure
    # Always minimise: CBC mishandles a warm start under "-max" (it kept a worse incumbent).
    prob = pulp.LpProblem("best_subset", pulp.LpMinimize)
    x = [_variable(prob, f"x{i}", pulp.LpBinary) for i in range(cons.n)]
    var: dict[tuple[int, ...], pulp.LpVariable] = {(i,): x[i] for i in range(cons.n)}
    for j, R in enumerate(sets):
        if len(R) >= 2:
            var[R] = y = _variable(prob, f"y{j}", pulp.LpContinuous)
            for drop in range(len(R)):
                prob += y <= var[R[:drop] + R[drop + 1 :]]
            prob += pulp.lpSum(x[i] for i in R) <= len(R) - 1 + y
    sign = -1.0 if maximize else 1.0
    prob += pulp.lpSum(sign * a * var[R] for R, a in zip(sets, values.tolist()) if R and a != 0.0)
    return prob, var, _add_side_constraints(prob, x, cons)


def _variable(prob: pulp.LpProblem, name: str, cat: str) -> pulp.LpVariable:
    """A variable in [0, 1] (PuLP >= 3.3 wants it created through the problem)."""
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, 0, 1, cat=cat)
    return pulp.LpVariable(name, 0, 1, cat=cat)


def _cbc(time_limit: float | None, warm_start: bool):
    """CBC on one thread: a system ``cbc`` if installed, else the one bundled with PuLP."""
    options = dict(msg=False, timeLimit=time_limit, threads=1, warmStart=warm_start)
    system = pulp.COIN_CMD(**options)
    if system.available():
        return system
    with warnings.catch_warnings():  # PuLP 3.3 deprecates the bundled binary, still ships it
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(**options)


def _add_side_constraints(prob: pulp.LpProblem, x: list, cons: _Constraints) -> list:
    """Cardinality, group minimums and the KV budget; returns the KV-group variables."""
    total = pulp.lpSum(x)
    if cons.lo == cons.hi:
        prob += total == cons.lo
    else:
        prob += total >= cons.lo
        prob += total <= cons.hi
    for g, minimum in enumerate(cons.group_min.tolist()):
        if minimum > 0:
            prob += pulp.lpSum(x[i] for i in np.flatnonzero(cons.group_ids == g)) >= minimum
    if cons.kv_ids is None:
        return []
    # z_g >= x_i for each head of group g: z_g is 1 when any of its heads is kept
    z = [_variable(prob, f"z{g}", pulp.LpContinuous) for g in range(cons.kv_ids.max() + 1)]
    for i, g in enumerate(cons.kv_ids.tolist()):
        prob += z[g] >= x[i]
    prob += pulp.lpSum(z) <= cons.kv_max_kept
    return z


# ---------------------------------------------------------------------- greedy search
def _greedy(sp: Spectrum, cons: _Constraints, maximize: bool) -> np.ndarray | None:
    """A good feasible kept-set (see :func:`best_subset` Notes), or None if none was found."""
    sign = 1.0 if maximize else -1.0
    S = sp.supports.astype(np.float64).tocsc()
    kept = np.ones(sp.n, dtype=bool)
    if cons.kv_ids is not None:
        kept = _drop_kv_groups(sp, kept, cons, sign)
    kept = _drop_features(S, sp.coefs, kept, cons, sign)
    if not cons.satisfied(kept[None])[0]:
        return None
    return _local_search(S, sp.coefs, kept, cons, sign)


def _require_feasible(kept: np.ndarray | None) -> np.ndarray:
    if kept is None:
        raise ValueError(
            "the greedy search found no kept-set satisfying the constraints; they may be "
            "infeasible (or raise max_variables / time_limit for the exact ILP)."
        )
    return kept


def _flip_effects(S, coefs: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Change of ``f̂`` when flipping each feature alone, ``-2 Σ_{T∋i} F(T) χ_T(kept)``.

    Returns
    -------
    flip : (n,) float64 array
    weighted : (k,) float64 array
        ``F(T) χ_T(kept)`` for every term.
    """
    weighted = coefs * (1.0 - 2.0 * np.mod(S @ kept.astype(np.float64), 2.0))
    return -2.0 * np.asarray(S.T @ weighted), weighted


def _drop_features(S, coefs, kept: np.ndarray, cons: _Constraints, sign: float) -> np.ndarray:
    """Remove the most helpful feature while the count is too high or a removal helps."""
    kept = kept.copy()
    while kept.sum() > cons.lo:
        slack = cons.group_counts(kept[None])[0] > cons.group_min
        removable = kept & slack[cons.group_ids]
        if not removable.any():
            break
        gains = np.where(removable, sign * _flip_effects(S, coefs, kept)[0], -np.inf)
        best = int(np.argmax(gains))
        if kept.sum() <= cons.hi and gains[best] <= 0.0:
            break
        kept[best] = False
    return kept


def _drop_kv_groups(sp: Spectrum, kept: np.ndarray, cons: _Constraints, sign: float) -> np.ndarray:
    """Remove the most helpful whole KV group until enough are removed."""
    while cons.kv_kept(kept[None])[0] > cons.kv_max_kept:
        candidates = np.unique(cons.kv_ids[kept])
        trials = kept[None, :] & (cons.kv_ids[None, :] != candidates[:, None])
        trials = trials[cons.partial_ok(trials)]
        if not len(trials):
            break
        kept = trials[int(np.argmax(sign * sp.predict(trials)))]
    return kept


def _local_search(S, coefs, kept: np.ndarray, cons: _Constraints, sign: float) -> np.ndarray:
    """Apply the best improving feasible flip or swap until none is left."""
    tol = 1e-10 * float(np.abs(coefs).sum())
    for _ in range(4 * kept.size):
        move = _best_move(S, coefs, kept, cons, sign, tol)
        if move is None:
            break
        kept = kept.copy()
        kept[move] = ~kept[move]
    return kept


def _best_move(S, coefs, kept, cons: _Constraints, sign: float, tol: float) -> list | None:
    """Features to flip for the best feasible move that improves the objective by > tol.

    Moves are single flips (when the count allows) and swaps of one of the
    ``_SWAP_CANDIDATES`` most promising kept features with one of the most promising removed
    ones; a swap changes ``f̂`` by ``flip_i + flip_j + 4 Σ_{T∋i,j} F(T) χ_T``.
    """
    raw, weighted = _flip_effects(S, coefs, kept)
    flip = sign * raw
    count = kept.sum()
    single_ok = np.where(kept, count - 1 >= cons.lo, count + 1 <= cons.hi)
    out = _top(np.flatnonzero(kept), flip)
    into = _top(np.flatnonzero(~kept), flip)
    both = (S[:, out].T @ S[:, into].multiply(weighted[:, None])).toarray()
    pair = flip[out][:, None] + flip[into][None, :] + sign * 4.0 * both
    gains = np.concatenate([np.where(single_ok, flip, -np.inf), pair.ravel()])
    for m in np.argsort(-gains, kind="stable"):
        if gains[m] <= tol:
            return None
        move = [m] if m < kept.size else list(_pair(m - kept.size, out, into))
        trial = kept.copy()
        trial[move] = ~trial[move]
        if cons.satisfied(trial[None])[0]:
            return move
    return None


def _pair(q: int, out: np.ndarray, into: np.ndarray) -> tuple[int, int]:
    return out[q // into.size], into[q % into.size]


def _top(candidates: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The ``_SWAP_CANDIDATES`` candidates of highest score."""
    return candidates[np.argsort(-score[candidates], kind="stable")[:_SWAP_CANDIDATES]]


# ---------------------------------------------------------------------- removal (paper eq. 4)
@dataclass(frozen=True)
class Removal:
    """The result of :func:`removal`.

    Attributes
    ----------
    kept : (n,) bool array
        The ``n - r`` features left in place (``True`` = kept).
    value : float
        ``f̂(kept)``, the predicted output once the others are removed.
    full_value : float
        ``f̂([n])``, the predicted output with every feature kept.
    """

    kept: np.ndarray
    value: float
    full_value: float

    @property
    def removed(self) -> np.ndarray:
        """(n,) bool array: ``True`` for the ``r`` removed features."""
        return ~self.kept

    @property
    def predicted_change(self) -> float:
        """``f̂(kept) - f̂([n])``: how much removing them moves the predicted output."""
        return self.value - self.full_value


def removal(sp: Spectrum, r: int, **options) -> Removal:
    """The ``r`` features whose removal moves ``f̂`` farthest from ``f̂([n])`` (paper eq. 4).

    Solves ``argmax_{|S| = n - r} |f̂([n]) - f̂(S)|`` over kept-sets ``S`` by maximising and
    minimising ``f̂`` over kept-sets of size ``n - r`` and taking the one farther from
    ``f̂([n])``. The features to remove are the complement of that kept-set.

    Parameters
    ----------
    sp : Spectrum
    r : int
        Number of features to remove, ``0 <= r <= n``.
    **options
        Passed to :func:`best_subset` (``groups``, ``min_per_group``, ``kv_groups``,
        ``min_kv_removed``, ``time_limit``, ``max_variables``).

    Returns
    -------
    Removal
        ``.removed`` is the (n,) bool mask of removed features, ``.kept`` its complement,
        ``.predicted_change`` the predicted ``f̂(kept) - f̂([n])``.
    """
    _check_spectrum(sp)
    r = _check_int(r, "r", 0, sp.n)
    candidates = np.stack([best_subset(sp, sp.n - r, m, **options) for m in (True, False)])
    values = sp.predict(candidates)
    full_value = float(sp.predict(np.ones((1, sp.n), dtype=bool))[0])
    best = int(np.argmax(np.abs(values - full_value)))
    return Removal(candidates[best], float(values[best]), full_value)


# ---------------------------------------------------------------------- baselines
def lasso_subset(lasso_spectrum: Spectrum, size: int, maximize: bool = True) -> np.ndarray:
    """Keep the ``size`` features of largest marginal effect (the LASSO baseline).

    Ranks features by their Banzhaf value ``-2 F({i})`` (the effect of keeping ``i``) and
    ignores interactions, so it is exact for a linear spectrum such as a LASSO fit on masks.

    Returns
    -------
    (n,) bool array
        ``True`` = kept.
    """
    _check_spectrum(lasso_spectrum)
    size = _check_int(size, "size", 0, lasso_spectrum.n)
    score = banzhaf(lasso_spectrum) * (1.0 if maximize else -1.0)
    kept = np.zeros(lasso_spectrum.n, dtype=bool)
    kept[np.argsort(-score, kind="stable")[:size]] = True
    return kept


def best_of_n(
    sp_or_value_fn: Spectrum | Callable[[np.ndarray], np.ndarray],
    size: int,
    n_samples: int = 5000,
    seed: int | None = 0,
    *,
    n: int | None = None,
    maximize: bool = True,
) -> np.ndarray:
    """The best of ``n_samples`` random kept-sets of exactly ``size`` features (paper C.2).

    Parameters
    ----------
    sp_or_value_fn : Spectrum, object with ``predict``, or callable
        Scores a ``(m, n)`` bool mask matrix (``True`` = kept) with ``(m,)`` values; called
        once with all samples, so a model-backed callable should batch internally.
    size : int
        Features kept in every sample.
    n_samples : int
        Number of random kept-sets (the paper uses 5,000).
    seed : int or None
        Seed of the NumPy generator.
    n : int, optional
        Number of features; read from ``.n`` when the scorer has it (a Spectrum does).
    maximize : bool
        Take the highest (default) or lowest value.

    Returns
    -------
    (n,) bool array
        ``True`` = kept.
    """
    score = getattr(sp_or_value_fn, "predict", sp_or_value_fn)
    if not callable(score):
        raise TypeError("sp_or_value_fn must be a Spectrum, have predict(), or be callable.")
    n = getattr(sp_or_value_fn, "n", n)
    if n is None:
        raise ValueError("pass n (the number of features) with a plain value function.")
    size = _check_int(size, "size", 0, n)
    n_samples = _check_int(n_samples, "n_samples", 1)
    rng = np.random.default_rng(seed)
    chosen = rng.random((n_samples, n)).argsort(axis=1)[:, :size]
    X = np.zeros((n_samples, n), dtype=bool)
    np.put_along_axis(X, chosen, True, axis=1)
    values = as_outputs(score(X), n_samples, name="values")
    return X[int(np.argmax(values if maximize else -values))].copy()


# ---------------------------------------------------------------------- pruning plans
@dataclass
class PruningPlan:
    """Which features (e.g. attention heads) to keep, with enough context to apply it later.

    Attributes
    ----------
    kept : (n,) bool array
        ``True`` = kept.
    names : list of str, optional
        A name per feature (e.g. ``heads.names``: ``'L3.H5'``).
    groups : (n,) array, optional
        A group label per feature (e.g. ``heads.groups``: the layer).
    value : float, optional
        The predicted value ``f̂(kept)``.
    """

    kept: np.ndarray
    names: list[str] | None = None
    groups: np.ndarray | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        self.kept = _as_kept(self.kept)
        n = self.kept.size
        if self.names is not None:
            self.names = [str(s) for s in self.names]
            if len(self.names) != n:
                raise ValueError(f"names must have {n} entries, got {len(self.names)}.")
        if self.groups is not None:
            self.groups = np.asarray(self.groups)
            if self.groups.shape != (n,):
                raise ValueError(f"groups must have shape ({n},), got {self.groups.shape}.")
        if self.value is not None:
            self.value = float(self.value)

    @classmethod
    def from_spectrum(cls, sp: Spectrum, kept, names=None, groups=None) -> "PruningPlan":
        """A plan for ``kept`` with its predicted value ``sp.predict(kept)``."""
        kept = _as_kept(kept, sp.n)
        return cls(kept, names, groups, float(sp.predict(kept[None])[0]))

    @property
    def n(self) -> int:
        return self.kept.size

    @property
    def removed(self) -> np.ndarray:
        """(n,) bool array: ``True`` = removed."""
        return ~self.kept

    def kept_per_group(self) -> pd.DataFrame:
        """Per group: ``kept`` and ``total`` feature counts (needs ``groups``)."""
        if self.groups is None:
            raise ValueError("this plan has no groups; build it with groups=heads.groups.")
        frame = pd.DataFrame({"group": self.groups, "kept": self.kept})
        return frame.groupby("group")["kept"].agg(kept="sum", total="size")

    def to_json(self, path) -> Path:
        """Write the plan to a JSON file; :meth:`from_json` reads it back."""
        payload = {
            "format": _PLAN_FORMAT,
            "version": _PLAN_VERSION,
            "kept": self.kept.tolist(),
            "names": self.names,
            "groups": None if self.groups is None else self.groups.tolist(),
            "value": self.value,
        }
        path = Path(path)
        path.write_text(json.dumps(payload, indent=1))
        return path

    @classmethod
    def from_json(cls, path) -> "PruningPlan":
        """Read a plan written by :meth:`to_json`."""
        payload = json.loads(Path(path).read_text())
        check_format(payload.get("format"), payload.get("version"), _PLAN_FORMAT, _PLAN_VERSION, path, "compattr pruning plan")
        return cls(payload["kept"], payload["names"], payload["groups"], payload["value"])

    def apply(self, heads):
        """Context manager that runs the model with only the kept features:
        ``with plan.apply(heads): model(...)`` (calls ``heads.masked(plan.kept)``)."""
        n = getattr(heads, "n", self.n)
        if n != self.n:
            raise ValueError(f"the plan covers {self.n} features but heads has {n}.")
        return heads.masked(self.kept)
