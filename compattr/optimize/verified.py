"""Kept-sets measured on the model: a counted oracle, a surrogate-guided search that checks
its own candidates (the verification loop), and the baselines a researcher would otherwise
run (greedy backward elimination, single-feature ablation).

Every function here spends model calls through one :class:`MaskOracle`, which evaluates each
distinct mask once and counts it, so methods are compared at equal calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._validation import as_masks, as_outputs, check_bool, check_int
from ..spectrum.spectrum import Spectrum
from .constraints import Constraints, make_constraints, meets_group_minimum
from .ilp import best_subset

#: Seconds each round's integer program may take in :func:`verified_plan`. At 5,000 masks of
#: 27 heads the spectrum held 1,000 terms and the exact program took 99-115 s; cut at 20 s, its
#: kept-set's predicted value was at most 0.019 below the exact optimum's (docs/results.md).
ROUND_TIME_LIMIT = 20.0


class BudgetExhausted(RuntimeError):
    """A :class:`MaskOracle` was asked for more model calls than its budget allows."""


class MaskOracle:
    """Model calls on kept-sets, each distinct mask evaluated once and counted.

    Parameters
    ----------
    evaluate : callable
        Masks ``(m, n)`` bool (True = kept) to outputs ``(m,)``: a feature set's
        ``evaluate``, or ``lambda K: compattr.run_queries(query, K, cache_dir=...)``.
    n : int
        Number of features.
    budget : int, optional
        Most distinct masks this oracle may evaluate (``calls``); None = no limit.
    known : tuple of (m, n) masks and (m,) outputs, optional
        Outputs already paid for (an explanation's queries): served without a call.

    Attributes
    ----------
    calls : int
        Distinct masks evaluated so far (not counting ``known`` ones).
    """

    def __init__(self, evaluate: Callable[[np.ndarray], np.ndarray], n: int, budget: int | None = None, known=None):
        self.evaluate, self.n = evaluate, check_int(n, "n", 1)
        self.budget = None if budget is None else check_int(budget, "budget", 0)
        self.calls = 0
        self._outputs: dict[bytes, float] = {}
        if known is not None:
            X, y = known
            X = as_masks(X, self.n, name="known masks")
            for key, value in zip(np.packbits(X, axis=1), as_outputs(y, len(X), name="known outputs")):
                self._outputs[key.tobytes()] = float(value)

    @property
    def remaining(self) -> int | None:
        """Calls left in the budget (None without one)."""
        return None if self.budget is None else self.budget - self.calls

    def new(self, K: np.ndarray) -> np.ndarray:
        """(m,) whether each mask of ``K`` would cost a call (never evaluated, first in ``K``)."""
        keys = [k.tobytes() for k in np.packbits(as_masks(K, self.n), axis=1)]
        seen: set[bytes] = set()
        fresh = []
        for k in keys:
            fresh.append(k not in self._outputs and k not in seen)
            seen.add(k)
        return np.array(fresh, bool)

    def __call__(self, K) -> np.ndarray:
        """Outputs ``(m,)`` of kept-sets ``K`` ``(m, n)``; raises :class:`BudgetExhausted`
        (evaluating nothing) when the new ones exceed the budget."""
        K = as_masks(np.atleast_2d(K), self.n, name="kept-sets")
        fresh = self.new(K)
        if self.remaining is not None and fresh.sum() > self.remaining:
            raise BudgetExhausted(f"{int(fresh.sum())} new masks, {self.remaining} calls left of {self.budget}.")
        if fresh.any():
            y = as_outputs(self.evaluate(K[fresh]), int(fresh.sum()), name="outputs")
            for key, value in zip(np.packbits(K[fresh], axis=1), y):
                self._outputs[key.tobytes()] = float(value)
            self.calls += int(fresh.sum())
        return np.array([self._outputs[k.tobytes()] for k in np.packbits(K, axis=1)])

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """Every mask with a known output ``(m, n)`` bool and the outputs ``(m,)``."""
        keys = list(self._outputs)
        if not keys:
            return np.zeros((0, self.n), bool), np.zeros(0)
        X = np.unpackbits(np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), -1), axis=1, count=self.n)
        return X.astype(bool), np.array([self._outputs[k] for k in keys])


def single_feature_ablation(
    oracle: MaskOracle,
    size: int,
    *,
    groups=None,
    min_per_group: int | Mapping | None = None,
    kinds=None,
    maximize: bool = True,
) -> np.ndarray:
    """Keep the ``size`` features whose removal alone costs the most (``n + 1`` calls).

    Each feature is removed on its own from the full set; features are ranked by the output
    lost, and the top ``size`` kept (then, if ``min_per_group`` asks, the best-ranked of a
    group short of its minimum replace the worst-ranked kept features of groups above it).
    ``groups``, ``min_per_group`` and ``kinds`` are read as by
    :func:`compattr.optimize.best_subset`.

    Returns
    -------
    (n,) bool array
        True = kept.
    """
    n = oracle.n
    size = check_int(size, "size", 1, n)
    maximize = check_bool(maximize, "maximize")
    full = np.ones((1, n), bool)
    alone = ~np.eye(n, dtype=bool)
    values = oracle(np.vstack([full, alone]))
    loss = values[0] - values[1:] if maximize else values[1:] - values[0]
    order = np.argsort(-loss, kind="stable")
    kept = np.zeros(n, bool)
    kept[order[:size]] = True
    if min_per_group:
        cons = make_constraints(n, size, "==", groups, min_per_group, None, None, kinds)
        kept = _meet_group_minimum(kept, order, cons)
    return kept


def _meet_group_minimum(kept: np.ndarray, order: np.ndarray, cons: Constraints) -> np.ndarray:
    """``kept`` with, for each group short of its minimum, its best-ranked dropped features
    swapped in for the worst-ranked kept features of groups that can spare one."""
    rank = np.empty(len(order), int)
    rank[order] = np.arange(len(order))
    ids, need = cons.group_ids, cons.group_min
    kept = kept.copy()
    for g in np.flatnonzero(need):
        while kept[ids == g].sum() < need[g]:
            counts = cons.group_counts(kept[None])[0]
            spare = [i for i in np.flatnonzero(kept) if counts[ids[i]] > need[ids[i]]]
            add = [i for i in np.flatnonzero(~kept & (ids == g))]
            if not spare or not add:
                raise ValueError(f"no kept-set of {kept.sum()} features keeps the minimum of every group.")
            kept[min(add, key=lambda i: rank[i])] = True
            kept[max(spare, key=lambda i: rank[i])] = False
    return kept


def greedy_elimination(
    oracle: MaskOracle,
    size: int,
    *,
    groups=None,
    min_per_group: int | Mapping | None = None,
    kinds=None,
    maximize: bool = True,
) -> np.ndarray:
    """Backward elimination measured on the model: drop the feature whose removal costs least.

    From the full set, every step evaluates each kept feature's removal (one call each) and
    drops the best; it stops at ``size`` kept. When the oracle's budget cannot pay for the
    next step, the features still to drop are those whose removal cost least in the last
    step measured (with a full step of ``k`` removals on ``k`` kept features, the exact
    greedy path costs ``sum(k for k in size+1 .. n)`` calls). ``groups``, ``min_per_group``
    and ``kinds`` are read as by :func:`compattr.optimize.best_subset`.

    Returns
    -------
    (n,) bool array
        True = kept.
    """
    n = oracle.n
    size = check_int(size, "size", 1, n)
    maximize = check_bool(maximize, "maximize")
    kept = np.ones(n, bool)
    if not meets_group_minimum(kept[None], groups, min_per_group, kinds)[0]:  # nor any subset
        raise ValueError(f"even all {n} features kept do not keep {min_per_group} per group.")
    sign = 1.0 if maximize else -1.0
    last: tuple[np.ndarray, np.ndarray] | None = None  # (candidate features, their values)
    while kept.sum() > size:
        candidates = np.flatnonzero(kept)
        K = np.repeat(kept[None], len(candidates), 0)
        K[np.arange(len(candidates)), candidates] = False
        ok = meets_group_minimum(K, groups, min_per_group, kinds)
        candidates, K = candidates[ok], K[ok]
        if not len(candidates):
            raise ValueError(f"no feature can be dropped below {kept.sum()} kept and keep {min_per_group} per group.")
        try:
            values = sign * oracle(K)
        except BudgetExhausted:
            break
        kept[candidates[np.argmax(values)]] = False
        last = (np.delete(candidates, np.argmax(values)), np.delete(values, np.argmax(values)))
    while kept.sum() > size:  # budget spent: follow the last measured step's ranking
        if last is None:
            raise BudgetExhausted("greedy elimination needs at least one full step of calls.")
        candidates, values = last
        for i in candidates[np.argsort(-values, kind="stable")]:
            trial = kept.copy()
            trial[i] = False
            if meets_group_minimum(trial[None], groups, min_per_group, kinds)[0]:
                kept = trial
                break
        else:
            raise ValueError(f"no feature can be dropped below {kept.sum()} kept and keep {min_per_group} per group.")
        last = (candidates[candidates != i], values[candidates != i])
    return kept


@dataclass
class PlanSearch:
    """The outcome of :func:`verified_plan`.

    Attributes
    ----------
    kept : (n,) bool array
        The best kept-set measured on the model (True = kept).
    value : float
        Its measured output.
    calls : int
        Model calls the search spent (its own candidates, not the fitting data it was given).
    rounds : pandas.DataFrame
        One row per candidate: ``round``, ``source`` (``"ILP"``, ``"ILP (time limit)"``,
        ``"greedy (too large)"``: a spectrum whose program needs more than
        :func:`best_subset`'s ``max_variables``, or ``"trust region"``),
        ``predicted`` (the round's surrogate), ``measured``, and ``best`` (the incumbent's
        measured value after the round).
    """

    kept: np.ndarray
    value: float
    calls: int
    rounds: pd.DataFrame = field(repr=False)


def verified_plan(
    oracle: MaskOracle,
    size: int,
    *,
    spectrum: Spectrum | None = None,
    fit: Callable[[np.ndarray, np.ndarray], Spectrum] | None = None,
    rounds: int = 8,
    per_round: int = 8,
    groups=None,
    min_per_group: int | Mapping | None = None,
    kinds=None,
    maximize: bool = True,
    seed: int = 0,
    time_limit: float | None = ROUND_TIME_LIMIT,
    local_correction: bool = True,
) -> PlanSearch:
    """A kept-set of ``size`` features chosen by a surrogate and checked on the model.

    The surrogate is trustworthy only near its data, so the search spends a few counted
    calls on its own candidates and learns from them. Each round: the surrogate (``spectrum``
    in the first round, then ``fit(X, y)`` on every output known so far) proposes its exact
    optimum (integer programming) and the kept-sets one swap away from the best measured
    kept-set that it predicts best (a trust region); the ``per_round`` of them not yet
    measured are queried. The result is the best *measured* kept-set, so it is never worse
    than any candidate the search measured.

    Parameters
    ----------
    oracle : MaskOracle
        Model calls, counted (its ``known`` outputs are the surrogate's first data).
    size : int
        Features kept.
    spectrum : Spectrum, optional
        The first round's surrogate (an explanation's); default ``fit`` on the known data.
    fit : callable, optional
        ``(X, y) -> Spectrum`` refitted every round; default
        ``compattr.ProxySPEX(seed=seed).fit(X, y).spectrum_``, from the round where the oracle
        knows as many outputs as ProxySPEX needs (``min_masks``; until then the last
        surrogate goes on).
    rounds, per_round : int
        Rounds, and new kept-sets queried per round (at most ``rounds * per_round`` calls,
        and never more than the ``oracle``'s budget: a round takes the candidates that fit
        what is left, and the search ends when the budget is spent).
    groups, min_per_group, kinds
        Keep at least ``min_per_group`` features of every group (e.g. heads per layer); read
        as by :func:`compattr.optimize.best_subset` (with ``kinds``, per kind of feature).
    maximize : bool
        Maximise (default) or minimise the output.
    seed : int
        Seeds the default surrogate fit.
    time_limit : float, optional
        Seconds the integer program may take per round (a refitted spectrum can make it
        hard); when it runs out, the best kept-set found so far is the candidate, and its
        ``source`` says ``"ILP (time limit)"``. None: no limit.
    local_correction : bool
        Rank the trust region's swaps by the surrogate plus a ridge model of its errors on
        the kept-sets of ``size`` measured so far (linear in the mask: which features it
        over- or under-rates near the plans), so each round learns from the last one's
        measurements.

    Returns
    -------
    PlanSearch
    """
    from ..proxy import ProxySPEX

    n = oracle.n
    size = check_int(size, "size", 1, n)
    maximize = check_bool(maximize, "maximize")
    rounds, per_round = check_int(rounds, "rounds", 1), check_int(per_round, "per_round", 1)
    # the default fit needs ProxySPEX's fewest masks: until the oracle knows as many outputs,
    # the last surrogate goes on
    fewest = ProxySPEX().min_masks if fit is None else 1
    fit = fit or (lambda X, y: ProxySPEX(seed=seed).fit(X, y).spectrum_)
    if spectrum is None and len(oracle.data()[1]) < fewest:
        raise ValueError(
            f"verified_plan needs a first surrogate: pass spectrum= or an oracle with at least {fewest} known "
            f"outputs (it has {len(oracle.data()[1])})."
        )
    sign = 1.0 if maximize else -1.0
    constraints = {} if not min_per_group else {"groups": groups, "min_per_group": min_per_group, "kinds": kinds}
    feasible: Callable[[np.ndarray], np.ndarray] = lambda K: meets_group_minimum(K, groups, min_per_group, kinds)
    start_calls, rows = oracle.calls, []
    surrogate = last = spectrum
    for r in range(rounds):
        if surrogate is None:
            X, y = oracle.data()
            surrogate = fit(X, y) if len(y) >= fewest else last
        assert surrogate is not None  # the first round has one (checked above), later ones the last
        last = surrogate
        incumbent = _incumbent(oracle, size, feasible, sign)
        candidates = [_ilp_candidate(surrogate, size, maximize, time_limit, constraints)]
        if incumbent is not None:
            swaps = _swaps(incumbent[0], feasible)
            predicted = surrogate.predict(swaps)
            if local_correction:
                predicted = predicted + _local_residual(surrogate, oracle, size, swaps)
            order = np.argsort(-sign * predicted, kind="stable")
            candidates += [("trust region", swaps[i]) for i in order]
        # each chosen kept-set is new, so costs one call: never more than the budget left
        limit = per_round if oracle.remaining is None else min(per_round, oracle.remaining)
        chosen: list[tuple[str, np.ndarray]] = []
        seen: set[bytes] = set()
        for source, K in candidates:
            if len(chosen) == limit:
                break
            key = K.tobytes()
            if key not in seen and oracle.new(K[None])[0]:
                chosen.append((source, K))
                seen.add(key)
        if not chosen:
            break
        K = np.stack([k for _, k in chosen])
        measured = oracle(K)
        predicted = surrogate.predict(K)
        best = _best_measured(oracle, size, feasible, sign)[1]
        rows += [
            {"round": r + 1, "source": s, "predicted": p, "measured": v, "best": best}
            for (s, _), p, v in zip(chosen, predicted, measured)
        ]
        surrogate = None
    kept, value = _best_measured(oracle, size, feasible, sign)
    return PlanSearch(kept, value, oracle.calls - start_calls, pd.DataFrame(rows))


def _local_residual(surrogate: Spectrum, oracle: MaskOracle, size: int, K: np.ndarray) -> np.ndarray:
    """(s,) the surrogate's error at kept-sets ``K`` predicted by a ridge regression of its
    errors on the measured kept-sets of ``size`` features (zero with fewer than two)."""
    from sklearn.linear_model import Ridge

    X, y = oracle.data()
    near = X.sum(1) == size
    if near.sum() < 2 or len(K) == 0:  # no swap may be feasible (a group at its minimum)
        return np.zeros(len(K))
    errors = y[near] - surrogate.predict(X[near])
    return Ridge(alpha=1.0).fit(X[near].astype(float), errors).predict(K.astype(float))


def _ilp_candidate(surrogate, size, maximize, time_limit, constraints) -> tuple[str, np.ndarray]:
    """``(source, kept-set)``: the surrogate's optimum ("ILP"), its best within
    ``time_limit`` ("ILP (time limit)"), or the greedy answer where the program would need
    more than its variables ("greedy (too large)", warned as :func:`best_subset` warns)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = best_subset(surrogate, size, maximize, time_limit=time_limit, **constraints)
    limited = any("time_limit" in str(w.message) for w in caught)
    too_large = any("max_variables" in str(w.message) for w in caught)
    for w in caught:
        if "time_limit" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ("greedy (too large)" if too_large else "ILP (time limit)" if limited else "ILP"), kept


def _incumbent(oracle, size, feasible, sign) -> tuple[np.ndarray, float] | None:
    """The best measured kept-set of ``size`` features that is ``feasible``, and its value."""
    X, y = oracle.data()
    ok = (X.sum(1) == size) & feasible(X)
    if not ok.any():
        return None
    i = np.flatnonzero(ok)[np.argmax(sign * y[ok])]
    return X[i].copy(), float(y[i])


def _best_measured(oracle, size, feasible, sign) -> tuple[np.ndarray, float]:
    """:func:`_incumbent`, which exists once any kept-set of ``size`` was measured."""
    best = _incumbent(oracle, size, feasible, sign)
    if best is None:
        raise RuntimeError(f"no kept-set of {size} features meeting the constraints was measured.")
    return best


def _swaps(kept: np.ndarray, feasible) -> np.ndarray:
    """Every kept-set one swap (drop a kept feature, add a dropped one) from ``kept`` that is
    ``feasible``, ``(s, n)`` bool."""
    out_, in_ = np.flatnonzero(kept), np.flatnonzero(~kept)
    drop, add = np.repeat(out_, len(in_)), np.tile(in_, len(out_))
    K = np.repeat(kept[None], len(drop), 0)
    K[np.arange(len(drop)), drop] = False
    K[np.arange(len(drop)), add] = True
    return K[feasible(K)]
