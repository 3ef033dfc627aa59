"""The ILP against brute force over all kept-sets, removal's kept/removed sign, fallbacks, plans."""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pulp
import pytest
from conftest import random_spectrum

from compattr import Spectrum, optimize, synthetic
from compattr.indices import moebius
from compattr.optimize import PruningPlan, best_of_n, best_subset, lasso_subset, removal


# ---------------------------------------------------------------------- helpers
def from_moebius(terms: dict, n: int) -> Spectrum:
    """The spectrum of ``Σ_R a_R Π_{i∈R} x_i``, using ``x_i = (1 - χ_i) / 2``."""
    fourier: dict = {}
    for R, a in terms.items():
        for mask in range(1 << len(R)):
            T = tuple(R[j] for j in range(len(R)) if mask >> j & 1)
            fourier[T] = fourier.get(T, 0.0) + a * (-1) ** len(T) / 2 ** len(R)
    return Spectrum.from_dict(fourier, n)


def all_masks(n: int) -> np.ndarray:
    return ((np.arange(1 << n)[:, None] >> np.arange(n)) & 1).astype(bool)


def feasible(X, size, sense="==", groups=None, min_per_group=0, kv_groups=None, min_kv_removed=0):
    """Brute-force constraint check, written independently of compattr.optimize."""
    count = X.sum(axis=1)
    ok = {"==": count == size, "<=": count <= size, ">=": count >= size}[sense]
    if groups is not None:
        for g in np.unique(groups):
            ok &= X[:, groups == g].sum(axis=1) >= min_per_group
    if kv_groups is not None:
        fully_removed = sum(~X[:, kv_groups == g].any(axis=1) for g in np.unique(kv_groups))
        ok &= fully_removed >= min_kv_removed
    return ok


def brute_optimum(sp: Spectrum, maximize: bool, **constraints) -> float:
    X = all_masks(sp.n)
    values = sp.predict(X)[feasible(X, **constraints)]
    return values.max() if maximize else values.min()


def check_optimal(sp: Spectrum, maximize: bool = True, **constraints) -> np.ndarray:
    kept = best_subset(sp, maximize=maximize, **constraints)
    assert kept.shape == (sp.n,) and kept.dtype == bool
    assert feasible(kept[None], **constraints)[0]
    expected = brute_optimum(sp, maximize, **constraints)
    assert sp.predict(kept[None])[0] == pytest.approx(expected, abs=1e-9)
    return kept


LAYERS = np.repeat(np.arange(3), 4)  # n = 12: three layers of four heads
KV = np.repeat(np.arange(6), 2)  # two query heads per KV group


def layers_of(sp: Spectrum) -> np.ndarray:
    return np.arange(sp.n) // 4


@pytest.fixture(
    params=[(12, 25, 3, 0), (12, 30, 4, 1), (14, 20, 4, 2), "hierarchy"],
    scope="module",
    ids=["n12-d3", "n12-d4", "n14-d4", "hierarchy"],
)
def spectrum(request):
    if request.param == "hierarchy":
        return synthetic.complete_hierarchy(12, n_sets=4, order=4, seed=3)
    return random_spectrum(*request.param)


# ---------------------------------------------------------------------- exactness
@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("sense,size", [("==", 5), ("<=", 4), (">=", 8)])
def test_matches_brute_force(spectrum, maximize, sense, size):
    check_optimal(spectrum, maximize, size=size, sense=sense)


@pytest.mark.parametrize("maximize", [True, False])
def test_ilp_alone_matches_brute_force(spectrum, maximize):
    """The program itself, without the greedy warm start, reaches the optimum."""
    cons = optimize.constraints.make_constraints(spectrum.n, 5, "==", layers_of(spectrum), 1, None, None)
    closure = optimize.ilp._closure(spectrum, cons, optimize.DEFAULT_MAX_VARIABLES)
    kept, status = optimize.ilp._solve_ilp(closure, cons, maximize, None, None)
    assert status == pulp.LpSolutionOptimal
    groups = layers_of(spectrum)
    expected = brute_optimum(spectrum, maximize, size=5, groups=groups, min_per_group=1)
    assert spectrum.predict(kept[None])[0] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e4])
@pytest.mark.parametrize("maximize", [True, False])
def test_optimal_at_any_scale_of_the_coefficients(spectrum, scale, maximize):
    """CBC's tolerances are absolute: coefficients of 1e-6 (a real explanation's are about
    1e-2) are optimised exactly too, by the program alone as well (no warm start)."""
    sp = spectrum.scaled(scale)
    expected = brute_optimum(sp, maximize, size=5)
    kept = best_subset(sp, 5, maximize)
    assert sp.predict(kept[None])[0] == pytest.approx(expected, rel=1e-9, abs=0)
    cons = optimize.constraints.make_constraints(sp.n, 5, "==", None, None, None, None)
    closure = optimize.ilp._closure(sp, cons, optimize.DEFAULT_MAX_VARIABLES)
    alone, _ = optimize.ilp._solve_ilp(closure, cons, maximize, None, None)
    assert sp.predict(alone[None])[0] == pytest.approx(expected, rel=1e-9, abs=0)


@pytest.mark.parametrize("size", [0, 1, 12])
def test_extreme_sizes(size):
    sp = random_spectrum(12, 25, 3, 5)
    kept = check_optimal(sp, size=size)
    assert kept.sum() == size


@pytest.mark.parametrize("maximize", [True, False])
def test_min_per_group(maximize):
    sp = random_spectrum(12, 25, 3, 6)
    check_optimal(sp, maximize, size=7, groups=LAYERS, min_per_group=2)
    check_optimal(sp, maximize, size=5, sense="<=", groups=LAYERS, min_per_group=1)


def test_min_per_group_mapping():
    sp = random_spectrum(12, 40, 4, 7)
    labels = np.array(["L0", "L1", "L2"])[LAYERS]
    kept = best_subset(sp, 4, groups=labels, min_per_group={"L2": 3})
    assert kept[LAYERS == 2].sum() >= 3
    with pytest.raises(ValueError, match="unknown groups"):
        best_subset(sp, 4, groups=labels, min_per_group={"L9": 1})


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("sense,size,removed", [("==", 6, 2), ("<=", 8, 3), (">=", 4, 1)])
def test_kv_groups(maximize, sense, size, removed):
    sp = random_spectrum(12, 25, 3, 8)
    kept = check_optimal(sp, maximize, size=size, sense=sense, kv_groups=KV, min_kv_removed=removed)
    assert sum(not kept[g == KV].any() for g in range(6)) >= removed


def test_kv_groups_and_layers_together():
    sp = random_spectrum(12, 25, 3, 9)
    check_optimal(sp, size=7, groups=LAYERS, min_per_group=2, kv_groups=KV, min_kv_removed=2)


def test_irrelevant_features_and_constant_spectrum():
    sp = Spectrum.from_dict({(): 2.0, (0, 1): 1.0}, n=12)  # features 2..11 have no effect
    check_optimal(sp, size=3)
    kept = best_subset(Spectrum.from_dict({(): 1.0}, n=4), 2)
    assert kept.sum() == 2


# ---------------------------------------------------------------------- removal
def test_removal_keeps_kept_and_removed_straight():
    # f(x) = 3 + 4 x0 + x1 + 0.5 x2 (x_i = 1: kept); features 3..5 do nothing.
    sp = from_moebius({(): 3.0, (0,): 4.0, (1,): 1.0, (2,): 0.5}, n=6)
    assert moebius(sp) == pytest.approx({(): 3.0, (0,): 4.0, (1,): 1.0, (2,): 0.5})
    result = removal(sp, 2)
    np.testing.assert_array_equal(result.removed, [True, True, False, False, False, False])
    np.testing.assert_array_equal(result.kept, ~result.removed)
    assert result.full_value == pytest.approx(8.5)
    assert result.value == pytest.approx(3.5)
    assert result.predicted_change == pytest.approx(-5.0)


def test_removal_takes_the_direction_that_moves_f_most():
    # f([n]) = 2; removing feature 3 raises f by 6, removing feature 0 lowers it by 4.
    sp = from_moebius({(): 3.0, (0,): 4.0, (1,): 1.0, (3,): -6.0}, n=5)
    result = removal(sp, 1)
    np.testing.assert_array_equal(np.flatnonzero(result.removed), [3])
    assert result.predicted_change == pytest.approx(6.0)


def test_removal_removes_exactly_r():
    with pytest.raises(TypeError, match="exactly r"):
        removal(random_spectrum(12, 10, 2, 0), 3, sense="<=")


def test_removal_with_interaction_beats_marginals():
    # Features 0 and 1 matter only together (f = 10 x0 x1); 2 has the largest marginal.
    sp = from_moebius({(0, 1): 10.0, (2,): 3.0, (3,): 2.0}, n=6)
    result = removal(sp, 1)
    assert result.removed[0] or result.removed[1]
    assert result.predicted_change == pytest.approx(-10.0)


def test_removal_matches_brute_force():
    sp = random_spectrum(12, 25, 3, 10)
    X = all_masks(12)
    values = sp.predict(X)
    full = values[-1]
    for r in (1, 3, 6):
        result = removal(sp, r)
        assert result.removed.sum() == r
        best = np.abs(values[X.sum(axis=1) == 12 - r] - full).max()
        assert abs(result.predicted_change) == pytest.approx(best, abs=1e-9)


# ---------------------------------------------------------------------- errors and fallbacks
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size=3, groups=LAYERS, min_per_group=2),
        dict(size=5, groups=LAYERS, min_per_group=5),
        dict(size=12, kv_groups=KV, min_kv_removed=1),
        dict(size=2, sense=">=", kv_groups=KV, min_kv_removed=6),
    ],
)
def test_infeasible_raises(kwargs):
    with pytest.raises(ValueError, match="constraints"):
        best_subset(random_spectrum(12, 20, 3, 11), **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(size=13), "size"),
        (dict(size=-1), "size"),
        (dict(size=2.5), "size"),
        (dict(size=3, sense="="), "sense"),
        (dict(size=3, min_per_group=1), "groups"),
        (dict(size=3, groups=LAYERS[:5]), "groups"),
        (dict(size=3, groups=LAYERS, min_per_group=-1), "min_per_group"),
        (dict(size=3, kv_groups=KV), "together"),
        (dict(size=3, kv_groups=KV, min_kv_removed=7), "min_kv_removed"),
        (dict(size=3, time_limit=-5), "time_limit"),
        (dict(size=3, time_limit=float("nan")), "time_limit"),
        (dict(size=3, time_limit=0), "time_limit"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        best_subset(random_spectrum(12, 10, 2, 0), **kwargs)


def test_rejects_non_spectrum():
    with pytest.raises(TypeError, match="Spectrum"):
        best_subset({(0,): 1.0}, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size=5),
        dict(size=4, sense="<=", groups=LAYERS, min_per_group=1),
        dict(size=6, sense=">=", groups=LAYERS, min_per_group=2, kv_groups=KV, min_kv_removed=2),
    ],
)
def test_greedy_fallback_warns_and_is_feasible(kwargs):
    sp = random_spectrum(12, 40, 4, 12)
    with pytest.warns(UserWarning, match="greedy"):
        kept = best_subset(sp, max_variables=5, **kwargs)
    assert feasible(kept[None], **kwargs)[0]


def test_greedy_is_optimal_on_a_linear_spectrum():
    sp = random_spectrum(12, 12, 1, 13)
    for maximize in (True, False):
        with pytest.warns(UserWarning, match="greedy"):
            kept = best_subset(sp, 5, maximize, max_variables=5)
        assert sp.predict(kept[None])[0] == pytest.approx(brute_optimum(sp, maximize, size=5))


def test_the_greedy_fallback_removes_kv_groups_that_leave_enough_to_keep():
    """Removing the most helpful KV group first left too few features for the size asked
    (heads outside any KV group, -1, beside them): the fallback raised on a feasible program
    whose one answer the ILP finds."""
    sp = Spectrum(6, [[0], [4], [1], [2]], [0.5, 0.4, -0.1, -0.1])  # removing group {0, 4} helps most
    kv = np.array([1, 2, 0, -1, 1, -1])
    exact = best_subset(sp, 4, kv_groups=kv, min_kv_removed=2)
    assert np.flatnonzero(exact).tolist() == [0, 3, 4, 5]  # the only feasible kept-set
    with pytest.warns(UserWarning, match="max_variables"):
        greedy = best_subset(sp, 4, kv_groups=kv, min_kv_removed=2, max_variables=1)
    np.testing.assert_array_equal(greedy, exact)


def test_an_infeasible_program_says_so_without_a_time_limit_warning():
    """CBC proves infeasibility with no solution status: it was read as "no solution within
    time_limit=None", and the error blamed the greedy search."""
    sp = Spectrum(11, [[], [5], [6], [0], [4, 10]], [120.0, 11.0, -3.0, -2.0, -2.0])
    groups = ["L0", "L1", "L1", "L2", "L0", "L1", "L2", "L1", "L1", "L1", "L0"]
    kv = [0, 0, 1, 1, 2, 0, 1, 0, 1, 2, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning
        with pytest.raises(ValueError, match="no kept-set satisfies the constraints"):
            best_subset(sp, 6, True, sense="<=", groups=groups, min_per_group=1, kv_groups=kv, min_kv_removed=2)


def test_greedy_reports_infeasible():
    with pytest.warns(UserWarning, match="greedy"), pytest.raises(ValueError, match="infeasible"):
        sp = random_spectrum(12, 10, 2, 0)
        best_subset(sp, 3, groups=LAYERS, min_per_group=2, max_variables=5)


def test_too_high_order_uses_greedy():
    sp = Spectrum.from_dict({tuple(range(16)): 1.0, (0,): -0.5}, n=16)
    with pytest.warns(UserWarning, match="max_variables"):
        kept = best_subset(sp, 8)
    assert kept.sum() == 8


def test_time_limit_paths(monkeypatch):
    sp = random_spectrum(12, 25, 3, 14)
    X = all_masks(12)[all_masks(12).sum(1) == 5]
    values = sp.predict(X)
    best, worst = X[values.argmax()], X[values.argmin()]
    monkeypatch.setattr(optimize.ilp, "_solve_ilp", lambda *a: (best, pulp.LpSolutionIntegerFeasible))
    with pytest.warns(UserWarning, match="not proven optimal"):
        assert best_subset(sp, 5, time_limit=1) is best
    # an incumbent worse than the greedy warm start (CBC within its tolerances) gives way to it
    monkeypatch.setattr(optimize.ilp, "_solve_ilp", lambda *a: (worst, pulp.LpSolutionOptimal))
    assert sp.predict(best_subset(sp, 5)[None])[0] > values.min()
    monkeypatch.setattr(optimize.ilp, "_solve_ilp", lambda *a: (None, pulp.LpSolutionNoSolutionFound))
    with pytest.warns(UserWarning, match="greedy"):
        assert best_subset(sp, 5, time_limit=1).sum() == 5


def test_time_limit_reaches_cbc():
    sp = random_spectrum(12, 15, 3, 15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = best_subset(sp, 6, time_limit=30)
        from_numpy = best_subset(sp, 6, time_limit=np.float32(30))  # a NumPy number was refused
    assert sp.predict(kept[None])[0] == pytest.approx(brute_optimum(sp, True, size=6))
    np.testing.assert_array_equal(from_numpy, kept)


# ---------------------------------------------------------------------- baselines
def test_lasso_subset_is_exact_for_linear_spectra():
    sp = random_spectrum(12, 12, 1, 16)
    for maximize in (True, False):
        kept = lasso_subset(sp, 5, maximize)
        assert kept.sum() == 5
        assert sp.predict(kept[None])[0] == pytest.approx(brute_optimum(sp, maximize, size=5))


def test_best_of_n_with_spectrum_and_callable():
    sp = random_spectrum(8, 15, 3, 17)
    kept = best_of_n(sp, 4, n_samples=2000, seed=0)
    assert kept.sum() == 4
    assert sp.predict(kept[None])[0] == pytest.approx(brute_optimum(sp, True, size=4))
    lowest = best_of_n(sp.predict, 4, n_samples=2000, seed=0, n=8, maximize=False)
    assert sp.predict(lowest[None])[0] == pytest.approx(brute_optimum(sp, False, size=4))
    np.testing.assert_array_equal(best_of_n(sp, 4, 50, seed=3), best_of_n(sp, 4, 50, seed=3))
    with pytest.raises(ValueError, match="pass n"):
        best_of_n(sp.predict, 4)
    with pytest.raises(TypeError, match="callable"):
        best_of_n(3, 4, n=8)
    with pytest.raises(ValueError, match="disagrees"):
        best_of_n(sp, 2, n=4)
    assert best_of_n(sp, 2, 50, n=8).shape == (8,)


@pytest.mark.parametrize("plan", [lambda sp: best_of_n(sp, 0, 50), lambda sp: lasso_subset(sp, 0)])
def test_baselines_refuse_an_empty_plan(plan):
    with pytest.raises(ValueError, match="size"):
        plan(random_spectrum(6, 6, 2, 3))


# ---------------------------------------------------------------------- pruning plans
class FakeHeads:
    n = 12

    def __init__(self):
        self.seen = None

    @contextmanager
    def masked(self, M):
        self.seen = M
        yield


def test_pruning_plan_round_trip(tmp_path):
    sp = random_spectrum(12, 25, 3, 18)
    kept = best_subset(sp, 7, groups=LAYERS, min_per_group=2)
    names = [f"L{l}.H{h}" for l in range(3) for h in range(4)]
    for groups in (LAYERS, np.array(["a", "b", "c"])[LAYERS]):
        plan = PruningPlan.from_spectrum(sp, kept, names=names, groups=groups)
        assert plan.value == pytest.approx(sp.predict(kept[None])[0])
        back = PruningPlan.from_json(plan.to_json(tmp_path / "plan.json"))
        np.testing.assert_array_equal(back.kept, plan.kept)
        np.testing.assert_array_equal(back.groups, plan.groups)
        assert back.names == names and back.value == plan.value
        counts = back.kept_per_group()
        assert counts["kept"].tolist() == [kept[g == LAYERS].sum() for g in range(3)]
        assert counts["total"].tolist() == [4, 4, 4]


def test_pruning_plan_apply_and_errors(tmp_path):
    plan = PruningPlan(np.arange(12) % 2 == 0)
    heads = FakeHeads()
    with plan.apply(heads):
        np.testing.assert_array_equal(heads.seen, plan.kept)
    np.testing.assert_array_equal(plan.removed, ~plan.kept)
    with pytest.raises(ValueError, match="no groups"):
        plan.kept_per_group()
    with pytest.raises(ValueError, match="heads has"):
        PruningPlan(np.ones(5, bool)).apply(heads)
    # heads of other layers, as many as the plan's: masked without a word before
    names = [f"L{l}.H{h}" for l in (1, 2, 3) for h in range(4)]
    named = PruningPlan(np.arange(12) % 2 == 0, names=names)
    heads.names = [f"L{l}.H{h}" for l in (0, 1, 2) for h in range(4)]
    with pytest.raises(ValueError, match="not these L0.H0"):
        named.apply(heads)
    heads.names = names
    with named.apply(heads):
        np.testing.assert_array_equal(heads.seen, named.kept)
    with pytest.raises(ValueError, match="1-D"):
        PruningPlan(np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="names"):
        PruningPlan(np.ones(3, bool), names=["a"])
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="pruning plan"):
        PruningPlan.from_json(tmp_path / "x.json")


@pytest.mark.parametrize("maximize", ["min", "False", 0, None])
def test_maximize_must_be_a_bool(maximize):
    """A string was read as True: best_subset(sp, 3, maximize="min") maximised."""
    sp = synthetic.complete_hierarchy(8, 2, 3, seed=0)
    for plan in (
        lambda: best_subset(sp, 3, maximize=maximize),
        lambda: lasso_subset(sp, 3, maximize=maximize),
        lambda: best_of_n(sp, 3, 10, maximize=maximize),
    ):
        with pytest.raises(TypeError, match="maximize must be True or False"):
            plan()
    assert best_subset(sp, 3, maximize=np.bool_(False)).sum() == 3


@pytest.mark.parametrize("kind", ["offset", "dominant term"])
def test_best_subset_is_exact_beside_a_large_constant_or_term(kind):
    """The objective was scaled by its largest coefficient, the constant included: an
    output's offset of 1e5 shrank every term below CBC's tolerances (6 of 60 random cases
    suboptimal, CBC reporting an optimum). A term 1e5 times the others' size hid their
    differences behind CBC's objective increment (8 of 60, losing up to 0.77)."""
    rng = np.random.default_rng(1)
    n = 10
    for _ in range(12):
        supports = [tuple(rng.choice(np.arange(1, n), int(rng.integers(1, 4)), replace=False)) for _ in range(15)]
        maximize, size = bool(rng.integers(2)), int(rng.integers(2, n - 1))
        large = (1.0 if maximize else -1.0) * 1e5  # the constant, or keeping feature 0 worth 2e5
        sp = Spectrum(n, [() if kind == "offset" else (0,), *supports], np.r_[-large, rng.normal(size=15)])
        check_optimal(sp, maximize, size=size, sense="==")
