"""Plans on heads + MLP blocks: per-kind group minimums and KV groups with features in none,
against brute force over every kept-set."""

from __future__ import annotations

import numpy as np
import pulp
import pytest
from conftest import random_spectrum

from compattr import Spectrum, optimize
from compattr.optimize import best_subset, meets_group_minimum, removal

# n = 10, heads and MLP blocks interleaved as a user might order them: layer 0's four heads,
# its MLP, layer 1's four heads, its MLP. Query heads 2g, 2g + 1 of a layer share a KV head.
H, M = "AttentionHeads", "MLPBlocks"
KINDS = np.array([H, H, H, H, M, H, H, H, H, M])
LAYERS = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
KV = np.array([0, 0, 1, 1, -1, 2, 2, 3, 3, -1])  # -1: the MLP blocks are in no KV group
N = KINDS.size


def all_masks(n: int) -> np.ndarray:
    return ((np.arange(1 << n)[:, None] >> np.arange(n)) & 1).astype(bool)


def minimum_of(min_per_group, kind: str, layer: int) -> int:
    """The rule of best_subset's docstring, spelled out: int, kind, or (kind, layer) pair."""
    if min_per_group is None:
        return 0
    if isinstance(min_per_group, int):
        return min_per_group
    return min_per_group.get((kind, layer), min_per_group.get(kind, 0))


def feasible(X, size, sense="==", min_per_group=None, min_kv_removed=0):
    """Brute-force check of the per-kind rules, written without compattr.optimize: every
    (kind, layer) keeps its minimum, and at least ``min_kv_removed`` of the four KV groups
    have all their query heads removed (MLP blocks never count)."""
    count = X.sum(axis=1)
    ok = {"==": count == size, "<=": count <= size, ">=": count >= size}[sense]
    for kind in (H, M):
        for layer in (0, 1):
            columns = (kind == KINDS) & (layer == LAYERS)
            ok &= X[:, columns].sum(axis=1) >= minimum_of(min_per_group, kind, layer)
    heads_of = {(0, 0): [0, 1], (0, 1): [2, 3], (1, 0): [5, 6], (1, 1): [7, 8]}  # (layer, KV head)
    removed = sum(~X[:, heads].any(axis=1) for heads in heads_of.values())
    return ok & (removed >= min_kv_removed)


def brute_best(sp: Spectrum, maximize: bool, **rules) -> float:
    X = all_masks(N)
    values = sp.predict(X)[feasible(X, **rules)]
    return values.max() if maximize else values.min()


def solve(sp: Spectrum, maximize: bool = True, **rules) -> np.ndarray:
    """best_subset with the kinds, layers and KV groups above; ``rules`` as for feasible."""
    rules = dict(rules)
    removed = rules.pop("min_kv_removed", None)
    kv = {} if removed is None else {"kv_groups": KV, "min_kv_removed": removed}
    return best_subset(sp, maximize=maximize, groups=LAYERS, kinds=KINDS, **kv, **rules)


def linear(weights) -> Spectrum:
    """``f(x) = Σ w_i x_i`` plus a constant (``x_i = 1``: kept), from ``χ_i = 1 - 2 x_i``."""
    return Spectrum.from_dict({(i,): -w / 2 for i, w in enumerate(weights)}, n=len(weights))


RULES = [
    dict(size=5, min_per_group=1),  # every (kind, layer): a head and the MLP of both layers
    dict(size=4, min_per_group={H: 1}, min_kv_removed=2),
    dict(size=6, sense="<=", min_per_group={H: 1, (H, 1): 2}, min_kv_removed=1),
    dict(size=3, sense=">=", min_per_group={M: 1}, min_kv_removed=1),
    dict(size=5, sense="<=", min_kv_removed=3),
    dict(size=7, sense="<=", min_per_group={(M, 0): 1, (H, 0): 2}),
]


# ---------------------------------------------------------------------- the shared constraints
@pytest.mark.parametrize("rules", RULES)
def test_constraints_accept_exactly_the_brute_force_feasible_sets(rules):
    rules = dict(rules)
    removed = rules.pop("min_kv_removed", None)
    kv = (None, None) if removed is None else (KV, removed)
    cons = optimize.constraints.make_constraints(
        N, rules["size"], rules.get("sense", "=="), LAYERS, rules.get("min_per_group"), *kv, KINDS
    )
    X = all_masks(N)
    expected = feasible(X, **rules, min_kv_removed=removed or 0)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(cons.satisfied(X), expected)


# ---------------------------------------------------------------------- exactness
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("rules", RULES)
def test_ilp_with_kinds_and_kv_groups_matches_brute_force(rules, maximize, seed):
    sp = random_spectrum(N, 30, 3, seed)
    kept = solve(sp, maximize, **rules)
    assert kept.shape == (N,) and kept.dtype == bool
    assert feasible(kept[None], **rules)[0]
    assert sp.predict(kept[None])[0] == pytest.approx(brute_best(sp, maximize, **rules), abs=1e-9)


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("rules", RULES[1:3])
def test_ilp_alone_respects_kinds_and_kv_groups(rules, maximize):
    """The program without the greedy warm start: its side constraints alone are right."""
    sp = random_spectrum(N, 30, 3, 5)
    cons = optimize.constraints.make_constraints(
        N, rules["size"], rules.get("sense", "=="), LAYERS, rules["min_per_group"], KV, rules["min_kv_removed"], KINDS
    )
    closure = optimize.ilp._closure(sp, cons, optimize.DEFAULT_MAX_VARIABLES)
    kept, status = optimize.ilp._solve_ilp(closure, cons, maximize, None, None)
    assert status == pulp.LpSolutionOptimal and feasible(kept[None], **rules)[0]
    assert sp.predict(kept[None])[0] == pytest.approx(brute_best(sp, maximize, **rules), abs=1e-9)


def test_without_kinds_an_mlp_counts_for_its_layer_and_breaks_the_per_kind_rule():
    # the MLP blocks are worth 5 each, every head costs 1: keeping two features with "one per
    # layer" counting any kind keeps the two MLPs and no head at all
    sp = linear([-1, -1, -1, -1, 5, -1, -1, -1, -1, 5])
    old = best_subset(sp, 2, groups=LAYERS, min_per_group=1)
    np.testing.assert_array_equal(np.flatnonzero(old), [4, 9])
    rules = dict(size=2, min_per_group={H: 1})
    assert not feasible(old[None], **rules)[0]  # no head kept in either layer
    new = solve(sp, **rules)
    assert feasible(new[None], **rules)[0] and not new[[4, 9]].any()
    assert sp.predict(new[None])[0] == pytest.approx(brute_best(sp, True, **rules))


def test_an_mlp_with_a_kv_id_of_its_own_would_count_as_a_removed_kv_group():
    # heads are worth 1, MLP blocks 0.5: removing one feature and "one KV group" drops an MLP
    # when the MLPs are given KV ids of their own, but a whole KV group (2 heads) with -1
    sp = linear([1, 1, 1, 1, 0.5, 1, 1, 1, 1, 0.5])
    own_ids = np.where(KV < 0, [0, 0, 0, 0, 4, 0, 0, 0, 0, 5], KV)
    old = best_subset(sp, N - 1, sense="<=", kv_groups=own_ids, min_kv_removed=1)
    assert old.sum() == N - 1 and not old[[4, 9]].all()
    rules = dict(size=N - 1, sense="<=", min_kv_removed=1)
    assert not feasible(old[None], **rules)[0]
    new = solve(sp, **rules)
    assert feasible(new[None], **rules)[0] and new[[4, 9]].all() and new.sum() == N - 2


def test_removal_passes_kinds_to_both_directions():
    sp = random_spectrum(N, 30, 3, 7)
    rules = dict(size=N - 4, min_per_group={H: 1}, min_kv_removed=1)
    result = removal(sp, 4, groups=LAYERS, kinds=KINDS, min_per_group={H: 1}, kv_groups=KV, min_kv_removed=1)
    assert feasible(result.kept[None], **rules)[0]
    X = all_masks(N)
    values = sp.predict(X)[feasible(X, **rules)]
    best = np.abs(values - result.full_value).max()
    assert abs(result.predicted_change) == pytest.approx(best, abs=1e-9)


# ---------------------------------------------------------------------- greedy fallback
@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("rules", RULES)
def test_greedy_fallback_meets_the_per_kind_rules(rules, seed):
    sp = random_spectrum(N, 40, 4, seed)
    for maximize in (True, False):
        with pytest.warns(UserWarning, match="greedy"):
            kept = solve(sp, maximize, max_variables=5, **rules)
        assert feasible(kept[None], **rules)[0]


def test_greedy_removes_whole_kv_groups_of_heads_not_mlps():
    # the MLP blocks are worth least: the greedy KV step must still remove two heads' worth
    sp = linear([3, 3, 2, 2, 0.1, 3, 3, 3, 3, 0.1])
    with pytest.warns(UserWarning, match="greedy"):
        kept = solve(sp, size=N - 2, min_kv_removed=1, max_variables=5)
    np.testing.assert_array_equal(np.flatnonzero(~kept), [2, 3])


# ---------------------------------------------------------------------- settings
def test_kinds_change_nothing_without_min_per_group_and_all_negative_kv_ids_form_no_group():
    sp = random_spectrum(N, 30, 3, 8)
    plain = best_subset(sp, 4)
    np.testing.assert_array_equal(best_subset(sp, 4, groups=LAYERS, kinds=KINDS), plain)
    np.testing.assert_array_equal(best_subset(sp, 4, kv_groups=np.full(N, -1), min_kv_removed=0), plain)
    with pytest.raises(ValueError, match="min_kv_removed"):
        best_subset(sp, 4, kv_groups=np.full(N, -1), min_kv_removed=1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(groups=LAYERS, kinds=KINDS[:5], min_per_group=1), r"kinds must have shape \(10,\)"),
        (dict(groups=LAYERS, kinds=KINDS[None], min_per_group=1), r"kinds must have shape \(10,\)"),
        (dict(groups=LAYERS, kinds=KINDS, min_per_group={"Embeddings": 1}), "unknown kinds"),
        (dict(groups=LAYERS, kinds=KINDS, min_per_group={0: 1}), "kinds=None"),  # a layer key
        (dict(groups=LAYERS, kinds=KINDS, min_per_group={(M, 7): 1}), "unknown kinds or"),
        (dict(groups=LAYERS, kinds=KINDS, min_per_group={H: -1}), "non-negative"),
        (dict(groups=LAYERS, kinds=KINDS, min_per_group={H: 1.5}), "non-negative"),
        (dict(kinds=KINDS, min_per_group={H: 1}), "needs groups"),
        (dict(kv_groups=KV, min_kv_removed=5), r"min_kv_removed must be an integer in \[0, 4\]"),
        (dict(kv_groups=KV[:9], min_kv_removed=1), r"kv_groups must have shape \(10,\)"),
    ],
)
def test_bad_settings_say_the_rule(kwargs, match):
    with pytest.raises(ValueError, match=match):
        best_subset(random_spectrum(N, 10, 2, 0), 4, **kwargs)


def test_meets_group_minimum_is_the_group_rule_of_the_constraints():
    """The measured searches' check counts kept features per group as written out here."""
    rng = np.random.default_rng(7)
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    K = rng.random((200, 10)) < 0.5
    for minimum in (1, 2):
        by_hand = np.array([all(k[groups == g].sum() >= minimum for g in range(4)) for k in K])
        np.testing.assert_array_equal(meets_group_minimum(K, groups, minimum), by_hand)
    assert meets_group_minimum(K, None, None).all() and meets_group_minimum(K, groups, 0).all()
    with pytest.raises(ValueError, match="needs groups"):
        meets_group_minimum(K, None, 1)
    with pytest.raises(ValueError, match="shape"):
        meets_group_minimum(K, groups[:9], 1)
