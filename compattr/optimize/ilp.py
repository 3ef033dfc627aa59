"""The best kept-set of a sparse spectrum under constraints, by exact integer programming.

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

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pulp

from .._validation import check_bool, check_spectrum, is_real
from ..spectrum import Spectrum
from ..spectrum.indices import moebius_weight, superset_transform
from .constraints import Constraints, make_constraints

#: Default cap on ILP variables (features + closure sets of order >= 2 + KV groups).
DEFAULT_MAX_VARIABLES = 20_000
# Swap moves of the local search pair this many best kept with this many best removed features.
_SWAP_CANDIDATES = 64


def best_subset(
    sp: Spectrum,
    size: int,
    maximize: bool = True,
    *,
    sense: str = "==",
    groups: Sequence | np.ndarray | None = None,
    min_per_group: int | Mapping | None = None,
    kinds: Sequence | np.ndarray | None = None,
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
    min_per_group : int or mapping, optional
        Keep at least this many features in every group (an int), or in the groups a mapping
        names (label -> int; groups it leaves out are free). With ``kinds``, see there.
    kinds : (n,) array_like, optional
        The kind of each feature, e.g. ``Components.kinds`` (``"AttentionHeads"``,
        ``"MLPBlocks"``) for heads and MLP blocks explained together. The minimums then apply
        per kind: a group is a (kind, group label) pair, so an MLP block does not count
        towards the heads of its layer. An int ``min_per_group`` applies to every pair
        present; a mapping is keyed by kind (``{"AttentionHeads": 1}``: at least one head of
        every layer, MLP blocks free) or by ``(kind, label)`` pair (overriding its kind's
        minimum). Without ``kinds`` every feature of a group counts alike.
    kv_groups : (n,) array_like, optional
        For grouped-query attention: the KV group of each query head. Ids must be distinct
        across layers (e.g. ``layer * n_kv_heads + kv_head``). A negative id puts a feature in
        no KV group (an MLP block in ``Components.kv_groups``): it never counts towards the
        kept or removed KV groups.
    min_kv_removed : int, optional
        Remove at least this many whole KV groups. A KV group counts as removed (its keys and
        values need not be computed or cached) only when **all** of its query heads are
        removed, so this is the constraint that turns head pruning into KV-cache savings.
        Must be given together with ``kv_groups``; at most the number of KV groups.
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
        When no kept-set satisfies the constraints, or a setting is not valid: labels of
        another shape than ``(n,)``, ``min_per_group`` without ``groups``, a mapping naming
        groups (or kinds, or (kind, label) pairs) that no feature has, a negative minimum.

    Notes
    -----
    The greedy answer removes features one at a time from the full set (whole KV groups
    first when ``min_kv_removed`` asks for it), always the one that helps the objective most,
    then improves the result by single flips and swaps until no move helps.
    """
    check_spectrum(sp)
    maximize = check_bool(maximize, "maximize")
    if time_limit is not None and not (is_real(time_limit) and 0 < time_limit < float("inf")):
        raise ValueError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}.")
    cons = make_constraints(sp.n, size, sense, groups, min_per_group, kv_groups, min_kv_removed, kinds)
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
            "no kept-set satisfies the constraints (size, sense, min_per_group, min_kv_removed); loosen them."
        )
    if status == pulp.LpSolutionIntegerFeasible:
        warnings.warn(
            f"CBC hit time_limit={time_limit}s; returning the best kept-set found, which is not proven optimal.",
            stacklevel=2,
        )
    elif status != pulp.LpSolutionOptimal:
        warnings.warn(
            f"CBC found no solution within time_limit={time_limit}s; returning the greedy "
            "answer instead (not guaranteed optimal).",
            stacklevel=2,
        )
        return _require_feasible(start)
    return _better(sp, kept, start, maximize)


def _better(sp: Spectrum, kept: np.ndarray, start: np.ndarray | None, maximize: bool) -> np.ndarray:
    """CBC's kept-set, or the greedy ``start`` where ``f̂`` is strictly better there (CBC
    stops within its tolerances of the optimum; a warm start it could not improve on by more
    is kept, so this only guards rounding)."""
    if start is None:
        return kept
    ours, greedy = sp.predict(np.vstack([kept, start]))
    return start if (greedy > ours if maximize else greedy < ours) else kept


def _closure(sp: Spectrum, cons: Constraints, max_variables: int):
    """Möbius coefficients on ``K⁺`` as ``(sets, values)``, or None if the ILP is too big."""
    if 2.0**sp.max_order > max_variables:
        return None
    rows, values = superset_transform(sp, moebius_weight, max_subsets=max_variables)
    lengths = (rows < sp.n).sum(axis=1)
    if sp.n + int((lengths >= 2).sum()) + cons.n_kv > max_variables:
        return None
    order = np.argsort(lengths, kind="stable")  # subsets before their supersets
    sets = [tuple(r[:m]) for r, m in zip(rows[order].tolist(), lengths[order].tolist())]
    return sets, values[order]


def _solve_ilp(closure, cons: Constraints, maximize: bool, time_limit, start):
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
    if prob.status == pulp.LpStatusInfeasible:  # CBC proves it so with sol_status 0 (no solution found)
        return None, pulp.LpSolutionInfeasible
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return None, prob.sol_status
    return np.array([(var[(i,)].value() or 0.0) > 0.5 for i in range(cons.n)]), prob.sol_status


def _build_program(closure, cons: Constraints, maximize: bool):
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
    # the objective scaled by a power of two (exactly) to a largest |coefficient| in [1, 2):
    # CBC's tolerances are absolute, and below about 1e-5 it kept a worse warm start as
    # optimal. The constant (the empty set) is no term of it: an output's large offset
    # would shrink every term below those tolerances.
    sign = (-1.0 if maximize else 1.0) * _unit_scale(values[[bool(R) for R in sets]])
    prob += pulp.lpSum(sign * a * var[R] for R, a in zip(sets, values.tolist()) if R and a != 0.0)
    return prob, var, _add_side_constraints(prob, x, cons)


def _unit_scale(values: np.ndarray) -> float:
    """The power of two that brings the largest ``|values|`` into [1, 2) (1 when all are 0)."""
    largest = float(np.abs(values).max(initial=0.0))
    return 1.0 if largest == 0.0 else 2.0 ** -np.floor(np.log2(largest))


def _variable(prob: pulp.LpProblem, name: str, cat: str) -> pulp.LpVariable:
    """A variable in [0, 1] (PuLP >= 3.3 wants it created through the problem)."""
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, 0, 1, cat=cat)
    return pulp.LpVariable(name, 0, 1, cat=cat)


def _cbc(time_limit: float | None, warm_start: bool):
    """CBC on one thread: a system ``cbc`` if installed, else the one bundled with PuLP.

    With ``increment 0``: CBC otherwise prunes nodes that cannot beat the incumbent by an
    increment it derives from the objective's coefficients, and where one term is 1e5
    times the others' size, that increment hid their differences (8 of 60 random cases lost
    up to 0.77 on terms of size 1, CBC reporting an optimum)."""
    options = dict(
        msg=False,
        timeLimit=None if time_limit is None else float(time_limit),
        threads=1,
        warmStart=warm_start,
        options=["increment 0"],
    )
    system = pulp.COIN_CMD(**options)
    if system.available():
        return system
    with warnings.catch_warnings():  # PuLP 3.3 deprecates the bundled binary, still ships it
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(**options)


def _add_side_constraints(prob: pulp.LpProblem, x: list, cons: Constraints) -> list:
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
    if cons.kv_ids is None or cons.n_kv == 0:  # no KV groups (or no feature in one)
        return []
    # z_g >= x_i for each head of group g: z_g is 1 when any of its heads is kept
    z = [_variable(prob, f"z{g}", pulp.LpContinuous) for g in range(cons.n_kv)]
    for i, g in enumerate(cons.kv_ids.tolist()):
        if g >= 0:  # -1: in no KV group
            prob += z[g] >= x[i]
    prob += pulp.lpSum(z) <= cons.kv_max_kept
    return z


# ---------------------------------------------------------------------- greedy search
def _greedy(sp: Spectrum, cons: Constraints, maximize: bool) -> np.ndarray | None:
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


def _drop_features(S, coefs, kept: np.ndarray, cons: Constraints, sign: float) -> np.ndarray:
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


def _drop_kv_groups(sp: Spectrum, kept: np.ndarray, cons: Constraints, sign: float) -> np.ndarray:
    """Remove the most helpful whole KV group until enough are removed, never one whose
    removal leaves too few features to keep (:func:`_can_still_fill`)."""
    assert cons.kv_ids is not None  # called only with KV groups
    while cons.kv_kept(kept[None])[0] > cons.kv_max_kept:
        candidates = np.unique(cons.kv_ids[kept & (cons.kv_ids >= 0)])
        trials = kept[None, :] & (cons.kv_ids[None, :] != candidates[:, None])
        trials = trials[cons.partial_ok(trials) & _can_still_fill(trials, cons)]
        if not len(trials):
            break
        kept = trials[int(np.argmax(sign * sp.predict(trials)))]
    return kept


def _can_still_fill(K: np.ndarray, cons: Constraints) -> np.ndarray:
    """(m,) whether each kept-set of ``K`` (m, n), its KV groups cut down to the largest
    ``kv_max_kept``, still keeps at least ``lo`` features: else removing groups greedily
    would end below the size asked (a feasible answer needed another group removed)."""
    assert cons.kv_ids is not None
    outside = (K & (cons.kv_ids < 0)).sum(axis=1)
    sizes = np.stack([(K & (cons.kv_ids == g)).sum(axis=1) for g in range(cons.n_kv)], axis=1)
    largest = -np.sort(-sizes, axis=1)[:, : cons.kv_max_kept].sum(axis=1)
    return outside + largest >= cons.lo


def _local_search(S, coefs, kept: np.ndarray, cons: Constraints, sign: float) -> np.ndarray:
    """Apply the best improving feasible flip or swap until none is left."""
    tol = 1e-10 * float(np.abs(coefs).sum())
    for _ in range(4 * kept.size):
        move = _best_move(S, coefs, kept, cons, sign, tol)
        if move is None:
            break
        kept = kept.copy()
        kept[move] = ~kept[move]
    return kept


def _best_move(S, coefs, kept, cons: Constraints, sign: float, tol: float) -> list | None:
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
