"""Kept-sets measured on the model: the counted oracle, the verification loop, the baselines."""

from itertools import combinations

import numpy as np
import pytest
import torch

import compattr
from compattr._testing import tiny_llama
from compattr.optimize import (
    BudgetExhausted,
    MaskOracle,
    greedy_elimination,
    single_feature_ablation,
    verified_plan,
)
from compattr.query import Query
from compattr.values import ClassLogit

torch.set_num_threads(1)


class Counting:
    """A value function that records every mask it is asked for."""

    def __init__(self, fn, n):
        self.fn, self.n, self.asked = fn, n, []

    def __call__(self, K):
        self.asked += [k.tobytes() for k in K]
        return self.fn(K)


def additive(n, seed=0):
    w = np.random.default_rng(seed).normal(size=n)
    return w, Counting(lambda K: K.astype(float) @ w, n)


def brute_force(fn, n, size, feasible=lambda K: True):
    """The best kept-set of ``size`` features by evaluating every one."""
    best, best_value = None, -np.inf
    for kept in combinations(range(n), size):
        K = np.zeros(n, bool)
        K[list(kept)] = True
        if feasible(K):
            value = fn(K[None])[0]
            if value > best_value:
                best, best_value = K, value
    return best


def test_oracle_counts_each_distinct_new_mask_once():
    _, fn = additive(6)
    known = np.eye(6, dtype=bool)[:2]
    oracle = MaskOracle(fn, 6, budget=5, known=(known, fn.fn(known)))
    K = np.array([[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0]], bool)
    np.testing.assert_allclose(oracle(K), fn.fn(K))
    assert oracle.calls == 2 and len(fn.asked) == 2  # the repeat and the known mask are free
    oracle(K)
    assert oracle.calls == 2 and oracle.remaining == 3
    with pytest.raises(BudgetExhausted):
        oracle(np.eye(6, dtype=bool)[[1, 2, 3, 4]] | np.eye(6, dtype=bool)[5])  # 4 new, 3 left
    assert oracle.calls == 2 and len(fn.asked) == 2  # refused whole: nothing evaluated
    X, y = oracle.data()
    assert len(X) == 4 and np.allclose(y, fn.fn(X))


@pytest.mark.parametrize("size", [1, 3, 5])
def test_greedy_and_single_feature_ablation_find_the_optimum_of_an_additive_function(size):
    _, fn = additive(7, seed=size)
    expected = brute_force(fn.fn, 7, size)
    assert np.array_equal(greedy_elimination(MaskOracle(fn, 7), size), expected)
    assert np.array_equal(single_feature_ablation(MaskOracle(fn, 7), size), expected)


def test_baselines_respect_the_group_minimum():
    w, fn = additive(8, seed=3)
    groups = np.repeat([0, 1], 4)
    w[4:] = -np.abs(w[4:]) - 1  # group 1 is all bad: the minimum forces one of its features
    fn = Counting(lambda K: K.astype(float) @ w, 8)
    feasible = lambda K: K[4:].sum() >= 1
    expected = brute_force(fn.fn, 8, 3, feasible)
    for method in (greedy_elimination, single_feature_ablation):
        kept = method(MaskOracle(fn, 8), 3, groups=groups, min_per_group=1)
        assert np.array_equal(kept, expected), method.__name__


def test_baselines_apply_the_minimum_per_kind_of_feature():
    """Heads (features 0-5, two layers) and MLPs (6, 7, one per layer): "a head in every layer"
    is not met by keeping a layer's MLP. The heads of layer 1 are all bad, so without kinds a
    kept MLP of layer 1 satisfies the layer's minimum and no head of it is kept."""
    w = np.array([3.0, 2.5, 2.0, -2.0, -2.5, -3.0, 4.0, 3.5])
    groups = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    kinds = np.array(["AttentionHeads"] * 6 + ["MLPBlocks"] * 2)
    fn = Counting(lambda K: K.astype(float) @ w, 8)
    feasible = lambda K: K[:3].sum() >= 1 and K[3:6].sum() >= 1
    expected = brute_force(fn.fn, 8, 4, feasible)
    assert expected[3] and not expected[4:6].any()  # the least bad head of layer 1
    for method in (greedy_elimination, single_feature_ablation):
        kept = method(MaskOracle(fn, 8), 4, groups=groups, min_per_group={"AttentionHeads": 1}, kinds=kinds)
        assert np.array_equal(kept, expected), method.__name__
        old = method(MaskOracle(fn, 8), 4, groups=groups, min_per_group=1)
        assert not old[3:6].any()  # the old rule: layer 1's MLP stands for its heads
    linear = compattr.Spectrum(8, [()] + [(i,) for i in range(8)], np.r_[w.sum() / 2, -w / 2])
    rule = {"groups": groups, "min_per_group": {"AttentionHeads": 1}, "kinds": kinds}
    search = verified_plan(MaskOracle(fn, 8), 4, spectrum=linear, fit=lambda X, y: linear, rounds=3, **rule)
    assert np.array_equal(search.kept, expected)
    with pytest.raises(ValueError, match="first surrogate"):
        verified_plan(MaskOracle(fn, 8), 4, **rule)


def test_greedy_on_a_tiny_model_is_the_brute_force_optimum_one_step_from_the_full_set():
    """Keeping n - 1 of n heads, greedy's one step measures every kept-set: it must pick the
    brute-force optimum, and single-head ablation the same (it measures the same sets)."""
    model = tiny_llama(layers=1, heads=4, kv_heads=2)
    heads = compattr.AttentionHeads(model)
    x = torch.randint(6, 60, (3, 6), generator=torch.Generator().manual_seed(0))
    query = Query(model, heads, ClassLogit(), x)
    expected = brute_force(query.evaluate, heads.n, heads.n - 1)
    assert np.array_equal(greedy_elimination(MaskOracle(query.evaluate, heads.n), heads.n - 1), expected)
    assert np.array_equal(single_feature_ablation(MaskOracle(query.evaluate, heads.n), heads.n - 1), expected)


def test_greedy_with_a_spent_budget_follows_its_last_measured_step():
    _, fn = additive(6, seed=1)
    oracle = MaskOracle(fn, 6, budget=6 + 5)  # two full steps from 6 kept
    kept = greedy_elimination(oracle, 2)
    assert oracle.calls <= 11 and kept.sum() == 2
    assert np.array_equal(kept, brute_force(fn.fn, 6, 2))  # additive: the ranking stays right


def test_greedy_refuses_group_minimums_even_the_full_set_misses():
    """With nothing to drop (size = n) the full set was returned unchecked, though it keeps
    one feature per group where two are asked."""
    _, fn = additive(3, seed=1)
    for size in (3, 2):
        with pytest.raises(ValueError, match="do not keep 2 per group"):
            greedy_elimination(MaskOracle(fn, 3), size, groups=np.array([0, 1, 2]), min_per_group=2)


def test_verified_plan_where_no_swap_keeps_the_group_minimum():
    """Two features kept, both of group 0 required: the one feasible kept-set has no feasible
    one-swap neighbour, and the local residual was fitted and asked for none (ValueError)."""
    sp = compattr.Spectrum(4, [(0,), (1, 2), (3,)], [1.0, -0.5, 0.3])
    known = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]], bool)  # three of size 2 measured
    oracle = MaskOracle(sp.predict, 4, known=(known, sp.predict(known)))
    options = dict(spectrum=sp, fit=lambda X, y: sp, groups=np.array([0, 0, 1, 1]), min_per_group={0: 2}, rounds=2)
    found = verified_plan(oracle, 2, **options)
    np.testing.assert_array_equal(found.kept, [True, True, False, False])


def hierarchy_oracle(n=10, seed=0, budget=None):
    truth = compattr.synthetic.complete_hierarchy(n, n_sets=3, order=3, seed=seed)
    fn = Counting(truth.predict, n)
    X = compattr.sample_masks(n, 120, seed=seed)
    return truth, fn, MaskOracle(fn, n, budget=budget, known=(X, truth.predict(X)))


def test_verified_plan_returns_its_best_measured_kept_set_and_counts_its_calls():
    truth, fn, oracle = hierarchy_oracle()
    before = len(fn.asked)
    est = compattr.ProxySPEX(seed=0).fit(*oracle.data())
    search = verified_plan(oracle, 4, spectrum=est.spectrum_, rounds=3, per_round=5)
    assert search.calls == len(fn.asked) - before == len(set(fn.asked)) <= 15
    assert search.calls == len(search.rounds)
    assert search.kept.sum() == 4
    assert search.value == pytest.approx(truth.predict(search.kept[None])[0])
    assert search.value >= search.rounds["measured"].max() - 1e-12  # never worse than a candidate
    X, y = oracle.data()
    assert search.value == pytest.approx(y[X.sum(1) == 4].max())  # nor than any measured plan
    assert (search.rounds["best"].diff().dropna() >= 0).all()


def test_verified_plan_stops_at_the_oracles_budget_with_its_best_measured_plan():
    """A budget below rounds * per_round: the rounds take what is left (5 calls of 64), and
    the search returns the best kept-set it measured instead of raising BudgetExhausted."""
    truth, fn, oracle = hierarchy_oracle(budget=5)
    est = compattr.ProxySPEX(seed=0).fit(*oracle.data())
    search = verified_plan(oracle, 4, spectrum=est.spectrum_, rounds=8, per_round=8)
    assert search.calls == oracle.calls == len(set(fn.asked)) == 5
    assert oracle.remaining == 0
    X, y = oracle.data()
    assert search.value == pytest.approx(y[X.sum(1) == 4].max())
    assert search.value == pytest.approx(truth.predict(search.kept[None])[0])


def test_verified_plan_keeps_its_surrogate_until_it_knows_enough_outputs_to_refit():
    """With no outputs known, the default ProxySPEX cannot refit before it has its fewest
    masks (50): the given spectrum goes on until then, and the refits follow."""
    truth = compattr.synthetic.complete_hierarchy(14, n_sets=4, order=3, seed=5)
    oracle = MaskOracle(truth.predict, 14)
    search = verified_plan(oracle, 7, spectrum=truth, rounds=8, per_round=8)
    assert search.calls == len(oracle.data()[1]) >= compattr.ProxySPEX().min_masks  # then refitted
    assert search.value == pytest.approx(truth.predict(brute_force(truth.predict, 14, 7)[None])[0])
    with pytest.raises(ValueError, match="at least 50 known outputs"):
        verified_plan(MaskOracle(truth.predict, 14, known=(np.ones((10, 14), bool), np.zeros(10))), 7)


def test_verified_plan_beats_the_unchecked_surrogate_optimum_when_the_surrogate_is_wrong():
    """A surrogate that points the wrong way: its optimum measures badly, the trust region
    around the best measured plan recovers."""
    truth, _, oracle = hierarchy_oracle(seed=2)
    wrong = truth.with_coefs(-truth.coefs)
    search = verified_plan(oracle, 4, spectrum=wrong, rounds=4, per_round=6)
    ilp = search.rounds[search.rounds["source"] == "ILP"]["measured"].iloc[0]
    assert search.value > ilp


def test_verified_plan_keeps_the_group_minimum():
    _, _, oracle = hierarchy_oracle(seed=1)
    groups = np.repeat([0, 1], 5)
    search = verified_plan(oracle, 3, rounds=2, per_round=4, groups=groups, min_per_group=1)
    assert search.kept[:5].any() and search.kept[5:].any()


def test_verified_plan_labels_an_ilp_cut_short_by_its_time_limit(monkeypatch):
    """A refitted spectrum can make the integer program slow: its time limit is passed on, the
    candidate it gives is labelled, and its 'not proven optimal' warning is not repeated."""
    import warnings

    from compattr.optimize import verified

    truth, _, oracle = hierarchy_oracle(seed=3)
    limits = []
    solve = verified.best_subset

    def slow(sp, size, maximize=True, *, time_limit=None, **constraints):
        limits.append(time_limit)
        warnings.warn(f"CBC hit time_limit={time_limit}s; returning the best kept-set found", stacklevel=2)
        return solve(sp, size, maximize, **constraints)

    monkeypatch.setattr(verified, "best_subset", slow)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping the search fails the test
        search = verified_plan(oracle, 4, spectrum=truth, rounds=2, per_round=3, time_limit=1.5)
    assert limits == [1.5, 1.5]
    assert (search.rounds["source"] == "ILP (time limit)").sum() >= 1
    assert "ILP" not in set(search.rounds["source"])


def test_verified_plan_labels_the_greedy_answer_of_a_program_too_large():
    """An order-15 term needs more than max_variables: best_subset returns its greedy answer
    (and warns), which the rounds table called "ILP", the surrogate's exact optimum."""
    n = 16
    surrogate = compattr.Spectrum(n, [tuple(range(15)), (0, 1), (2,), (3, 4)], [0.5, -1.0, 0.3, 0.7])
    oracle = MaskOracle(surrogate.predict, n)
    with pytest.warns(UserWarning, match="max_variables"):
        search = verified_plan(oracle, 8, spectrum=surrogate, fit=lambda X, y: surrogate, rounds=1, per_round=1)
    assert search.rounds["source"].tolist() == ["greedy (too large)"]


def _linear(w: np.ndarray) -> compattr.Spectrum:
    """The spectrum of ``f(S) = sum of w over S``."""
    return compattr.Spectrum.from_dict({(): w.sum() / 2, **{(i,): -w[i] / 2 for i in range(len(w))}}, len(w))


def test_the_local_correction_learns_where_the_surrogate_is_wrong():
    """An additive function and a surrogate that has six of its sixteen weights backwards (and
    refits to the same wrong surrogate): ranking the swaps by the surrogate plus a model of
    its measured errors reaches better plans than the surrogate alone, on every seed."""
    n, size, gaps = 16, 6, []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        w = rng.normal(size=n)
        wrong = w.copy()
        wrong[rng.choice(n, 6, replace=False)] *= -1
        f = lambda K, w=w: K.astype(float) @ w
        X = compattr.sample_masks(n, 60, seed=seed)
        values = []
        for local in (False, True):
            oracle = MaskOracle(f, n, known=(X, f(X)))
            search = verified_plan(
                oracle,
                size,
                spectrum=_linear(wrong),
                fit=lambda X, y, wrong=wrong: _linear(wrong),
                rounds=3,
                per_round=4,
                local_correction=local,
            )
            values.append(search.value)
        assert values[1] <= np.sort(w)[-size:].sum() + 1e-12
        gaps.append(values[1] - values[0])
    assert min(gaps) >= -1e-12 and sum(g > 1e-9 for g in gaps) >= 7


def test_maximize_must_be_a_bool():
    _, fn = additive(6)
    for plan in (greedy_elimination, single_feature_ablation):
        with pytest.raises(TypeError, match="maximize must be True or False"):
            plan(MaskOracle(fn, 6), 3, maximize="min")
    with pytest.raises(TypeError, match="maximize must be True or False"):
        verified_plan(MaskOracle(fn, 6), 3, spectrum=compattr.Spectrum(6, [(0,)], [1.0]), maximize="min")
