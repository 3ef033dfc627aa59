"""Every index against its definition, computed by brute force from the set function itself.

The set function ``f`` is tabulated on all ``2^n`` masks (index ``s`` = bitmask of the kept
set); each index is then computed from ``f`` by its game-theoretic definition, never from the
Fourier formula that ``compattr.indices`` implements.
"""

from __future__ import annotations

from itertools import combinations
from math import comb, factorial

import numpy as np
import pytest
from conftest import random_spectrum

from compattr import Spectrum, indices

N = 8


# ---------------------------------------------------------------------- set function tables
def popcount(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.uint64)  # np.bitwise_count needs NumPy 2
    return np.unpackbits(a.reshape(-1, 1).view(np.uint8), axis=1).sum(1).reshape(a.shape).astype(np.int64)


def table(sp: Spectrum) -> np.ndarray:
    """``f(s) = Σ_T F(T) (-1)^{|s ∩ T|}`` for every bitmask ``s`` (independent of predict)."""
    s = np.arange(1 << sp.n)
    f = np.zeros(s.size)
    for T, c in sp.to_dict().items():
        f += c * (-1.0) ** popcount(s & bits(T))
    return f


def bits(T) -> int:
    return sum(1 << i for i in T)


def submasks(mask: int):
    sub = mask
    while True:
        yield sub
        if sub == 0:
            return
        sub = (sub - 1) & mask


def derivative(f: np.ndarray, T: int, S: int) -> float:
    """``Δ_T f(S) = Σ_{L⊆T} (-1)^{|T|-|L|} f(S ∪ L)`` for ``S ∩ T = ∅``."""
    t = bin(T).count("1")
    return sum((-1) ** (t - bin(L).count("1")) * f[S | L] for L in submasks(T))


def all_sets(n: int, max_size: int):
    return [T for r in range(max_size + 1) for T in combinations(range(n), r)]


# ---------------------------------------------------------------------- brute-force indices
def shapley_bf(f: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    for i in range(n):
        for S in range(1 << n):
            if not S >> i & 1:
                s = bin(S).count("1")
                w = factorial(s) * factorial(n - s - 1) / factorial(n)
                out[i] += w * (f[S | 1 << i] - f[S])
    return out


def banzhaf_bf(f: np.ndarray, n: int) -> np.ndarray:
    return np.array([np.mean([f[S | 1 << i] - f[S] for S in range(1 << n) if not S >> i & 1]) for i in range(n)])


def influence_bf(f: np.ndarray, n: int) -> np.ndarray:
    S = np.arange(1 << n)
    return np.array([np.mean(((f[S | 1 << i] - f[S & ~(1 << i)]) / 2) ** 2) for i in range(n)])


def moebius_bf(f: np.ndarray, n: int, T) -> float:
    return derivative(f, bits(T), 0)  # inclusion–exclusion Σ_{L⊆T} (-1)^{|T|-|L|} f(L)


def or_bf(f: np.ndarray, n: int, T) -> float:
    if not T:
        return f[0]
    full, t = (1 << n) - 1, len(T)
    return -sum((-1) ** (t - bin(L).count("1")) * f[full ^ L] for L in submasks(bits(T)))


def banzhaf_interaction_bf(f: np.ndarray, n: int, T) -> float:
    rest = ((1 << n) - 1) ^ bits(T)
    return np.mean([derivative(f, bits(T), S) for S in submasks(rest)])


def shapley_interaction_bf(f: np.ndarray, n: int, T) -> float:
    rest, t = ((1 << n) - 1) ^ bits(T), len(T)
    total = 0.0
    for S in submasks(rest):
        s = bin(S).count("1")
        weight = factorial(n - s - t) * factorial(s) / factorial(n - t + 1)
        total += weight * derivative(f, bits(T), S)
    return total


def shapley_taylor_bf(f: np.ndarray, n: int, T, order: int) -> float:
    if len(T) < order:
        return derivative(f, bits(T), 0)
    if len(T) > order:
        return 0.0
    rest = ((1 << n) - 1) ^ bits(T)
    return order / n * sum(derivative(f, bits(T), S) / comb(n - 1, bin(S).count("1")) for S in submasks(rest))


def design(n: int, order: int):
    """Columns ``[T ⊆ S]`` for every ``|T| <= order`` (rows: all masks ``S``)."""
    sets = all_sets(n, order)
    S = np.arange(1 << n)[:, None]
    cols = np.array([bits(T) for T in sets])[None, :]
    return sets, ((S & cols) == cols).astype(float)


def faith_banzhaf_bf(f: np.ndarray, n: int, order: int) -> dict:
    sets, A = design(n, order)
    return dict(zip(sets, np.linalg.lstsq(A, f, rcond=None)[0]))


def faith_shapley_bf(f: np.ndarray, n: int, order: int) -> dict:
    """Shapley-kernel weighted least squares, exact (infinite weight) on ∅ and [n]."""
    sets, A = design(n, order)
    size = popcount(np.arange(1 << n))
    middle = (size > 0) & (size < n)
    w = np.zeros(1 << n)
    s = size[middle]
    w[middle] = (n - 1) / (np.array([comb(n, k) for k in s]) * s * (n - s))
    ends = np.array([0, (1 << n) - 1])
    C = A[ends]
    p = A.shape[1]
    kkt = np.block([[A.T @ (w[:, None] * A), C.T], [C, np.zeros((2, 2))]])
    rhs = np.concatenate([A.T @ (w * f), f[ends]])
    return dict(zip(sets, np.linalg.lstsq(kkt, rhs, rcond=None)[0][:p]))


# ---------------------------------------------------------------------- fixtures
SPECTRA = [
    pytest.param((N, 12, 2, 0, True), id="order2"),
    pytest.param((N, 12, 3, 1, True), id="order3"),
    pytest.param((N, 10, 5, 2, False), id="order5-noconst"),
    pytest.param((N, 6, N, 3, True), id="full-order"),
    pytest.param((N, 20, 4, 4, True), id="order4-dense"),
    pytest.param((10, 15, 6, 5, True), id="n10-order6"),
]


@pytest.fixture(params=SPECTRA, scope="module")
def case(request):
    n, k, d, seed, constant = request.param
    sp = random_spectrum(n, k, d, seed, constant)
    return sp, table(sp)


def assert_matches(result: dict, expected, sets) -> None:
    got = np.array([result.get(T, 0.0) for T in sets])
    want = np.array([expected(T) for T in sets])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert set(result) <= set(sets)  # nothing outside the index's domain
    assert all(v != 0.0 for v in result.values())


# ---------------------------------------------------------------------- per-feature indices
def test_shapley(case):
    sp, f = case
    np.testing.assert_allclose(indices.shapley(sp), shapley_bf(f, sp.n), atol=1e-10)


def test_banzhaf(case):
    sp, f = case
    np.testing.assert_allclose(indices.banzhaf(sp), banzhaf_bf(f, sp.n), atol=1e-10)


def test_influence(case):
    sp, f = case
    np.testing.assert_allclose(indices.influence(sp), influence_bf(f, sp.n), atol=1e-10)


def test_per_feature_shapes_and_efficiency(case):
    sp, f = case
    for values in (indices.shapley(sp), indices.banzhaf(sp), indices.influence(sp)):
        assert values.shape == (sp.n,) and values.dtype == np.float64
    assert indices.shapley(sp).sum() == pytest.approx(f[-1] - f[0])


# ---------------------------------------------------------------------- set-valued indices
def test_moebius(case):
    sp, f = case
    assert_matches(indices.moebius(sp), lambda T: moebius_bf(f, sp.n, T), all_sets(sp.n, sp.n))


def test_or_index(case):
    sp, f = case
    assert_matches(indices.or_index(sp), lambda T: or_bf(f, sp.n, T), all_sets(sp.n, sp.n))


def test_banzhaf_interaction(case):
    sp, f = case
    expected = lambda T: banzhaf_interaction_bf(f, sp.n, T)
    assert_matches(indices.banzhaf_interaction(sp), expected, all_sets(sp.n, sp.n))


def test_shapley_interaction(case):
    sp, f = case
    expected = lambda T: shapley_interaction_bf(f, sp.n, T)
    result = indices.shapley_interaction(sp)
    assert_matches(result, expected, all_sets(sp.n, sp.n))
    singletons = np.array([result.get((i,), 0.0) for i in range(sp.n)])
    np.testing.assert_allclose(singletons, indices.shapley(sp), atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_shapley_taylor(case, order):
    sp, f = case
    expected = lambda T: shapley_taylor_bf(f, sp.n, T, order)
    result = indices.shapley_taylor(sp, order)
    assert_matches(result, expected, all_sets(sp.n, order))
    assert sum(result.values()) == pytest.approx(f[-1])  # efficiency: sums to f([n])


@pytest.mark.parametrize("order", [1, 2, 3])
def test_faith_banzhaf(case, order):
    sp, f = case
    expected = faith_banzhaf_bf(f, sp.n, order)
    assert_matches(indices.faith_banzhaf(sp, order), expected.__getitem__, list(expected))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_faith_shapley(case, order):
    sp, f = case
    expected = faith_shapley_bf(f, sp.n, order)
    result = indices.faith_shapley(sp, order)
    assert_matches(result, expected.__getitem__, list(expected))
    if order == 1:  # Faith-Shapley of order 1 is the Shapley value
        np.testing.assert_allclose([result.get((i,), 0.0) for i in range(sp.n)], indices.shapley(sp), atol=1e-10)


def test_high_order_index_equals_moebius(case):
    sp, _ = case
    m = indices.moebius(sp)
    for fn in (indices.shapley_taylor, indices.faith_banzhaf, indices.faith_shapley):
        got = fn(sp, sp.n)
        assert got.keys() == m.keys()
        np.testing.assert_allclose([got[T] for T in m], list(m.values()), rtol=1e-12)


# ---------------------------------------------------------------------- options and errors
def test_max_order_restricts_output_exactly(case):
    sp, _ = case
    for fn in (indices.moebius, indices.or_index, indices.banzhaf_interaction, indices.shapley_interaction):
        full = fn(sp)
        assert fn(sp, max_order=2) == pytest.approx({T: v for T, v in full.items() if len(T) <= 2})


def test_output_is_sorted_by_magnitude():
    sp = random_spectrum(N, 12, 4, 7)
    values = np.abs(list(indices.moebius(sp).values()))
    assert np.all(np.diff(values) <= 0)


def test_hand_example():
    # f(S) = 1 + 2·x0·x1 in the Möbius basis, i.e. kept-set indicator product.
    # Fourier: x0 x1 = (1 - χ0 - χ1 + χ01) / 4.
    sp = Spectrum.from_dict({(): 1.5, (0,): -0.5, (1,): -0.5, (0, 1): 0.5}, n=3)
    assert indices.moebius(sp) == pytest.approx({(): 1.0, (0, 1): 2.0})
    np.testing.assert_allclose(indices.shapley(sp), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(indices.banzhaf(sp), [1.0, 1.0, 0.0])
    assert indices.banzhaf_interaction(sp)[(0, 1)] == pytest.approx(2.0)


def test_refuses_large_expansion_with_clear_error():
    sp = Spectrum.from_dict({tuple(range(14)): 1.0, (0,): 0.5}, n=20)
    with pytest.raises(ValueError, match="max_subsets"):
        indices.moebius(sp)
    with pytest.raises(ValueError, match="max_subsets"):
        indices.moebius(random_spectrum(N, 5, 5, 0), max_subsets=8)
    low = indices.moebius(sp, max_order=2)  # restricted output keeps the expansion small
    assert max(len(T) for T in low) == 2
    assert low[(0,)] == pytest.approx(-2 * 1.5)
    assert max(len(T) for T in indices.faith_shapley(sp, 2)) == 2
    assert indices.shapley(sp).shape == (20,)  # per-feature values never expand


@pytest.mark.parametrize("order", [1, 2, 3])
def test_high_order_supports_are_numerically_stable(order):
    # One parity on 40 features: f([n]) = (-1)^40 = 1 and f(∅) = 1. Both indices are efficient
    # (their values sum to f([n])) and Faith-Shapley is exact on ∅; the weights behind them sum
    # alternating terms near 2^40 C(40, 20), which floats alone get wrong.
    sp = Spectrum.from_dict({tuple(range(40)): 1.0}, n=40)
    for fn in (indices.shapley_taylor, indices.faith_shapley):
        assert sum(fn(sp, order, max_subsets=20_000).values()) == pytest.approx(1.0, rel=1e-9)
    assert indices.faith_shapley(sp, order, max_subsets=20_000)[()] == pytest.approx(1.0)


def test_banzhaf_interaction_does_not_expand():
    sp = Spectrum.from_dict({tuple(range(20)): 1.0}, n=20)
    assert indices.banzhaf_interaction(sp) == {tuple(range(20)): 2.0**20}


def test_constant_and_empty_spectra():
    const = Spectrum.from_dict({(): 3.0}, n=4)
    assert indices.moebius(const) == {(): 3.0}
    assert indices.or_index(const) == {(): 3.0}
    assert indices.shapley_interaction(const) == {(): 3.0}
    np.testing.assert_array_equal(indices.shapley(const), np.zeros(4))
    empty = Spectrum(4, [], [])
    assert indices.moebius(empty) == {} and indices.faith_shapley(empty, 2) == {}
    np.testing.assert_array_equal(indices.influence(empty), np.zeros(4))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None, True, N + 1, 10**9])
@pytest.mark.parametrize("fn", [indices.shapley_taylor, indices.faith_banzhaf, indices.faith_shapley])
def test_bad_order(fn, bad):
    sp = random_spectrum(N, 5, 3, 0)
    with pytest.raises(ValueError, match=rf"order must be an integer in \[1, {N}\]"):
        fn(sp, bad)


def test_order_at_the_spectrum_degree_is_the_moebius_transform():
    sp = random_spectrum(N, 6, 3, 4)
    assert sp.max_order == 3
    m = indices.moebius(sp)
    for fn in (indices.shapley_taylor, indices.faith_banzhaf, indices.faith_shapley):
        got = fn(sp, sp.max_order)
        assert got.keys() == m.keys()
        np.testing.assert_allclose([got[T] for T in m], list(m.values()), rtol=1e-12)


def test_rejects_non_spectrum():
    with pytest.raises(TypeError, match="Spectrum"):
        indices.shapley({(0,): 1.0})
    with pytest.raises(ValueError, match="max_order"):
        indices.moebius(random_spectrum(N, 5, 3, 0), max_order=-1)


def test_large_sparse_spectrum_is_fast():
    sp = random_spectrum(400, 1000, 8, 11)
    m = indices.moebius(sp)
    assert len(m) > 1000
    phi = indices.shapley(sp)
    shap_int = indices.shapley_interaction(sp, max_order=1)
    np.testing.assert_allclose([shap_int.get((i,), 0.0) for i in range(400)], phi, atol=1e-9)


def brute_force_shapley_interaction(f, n, T):
    """Grabisch's Shapley interaction of ``T`` by its definition: weighted discrete derivatives."""
    t, rest = len(T), [i for i in range(n) if i not in T]
    total = 0.0
    for s in range(len(rest) + 1):
        weight = factorial(n - s - t) * factorial(s) / factorial(n - t + 1)
        for S in combinations(rest, s):
            total += weight * sum(
                (-1) ** (t - len(L)) * f(set(S) | set(L)) for r in range(t + 1) for L in combinations(T, r)
            )
    return total


@pytest.mark.parametrize("order", [1, 2, 3])
def test_k_sii_is_the_bernoulli_aggregation_of_brute_force_shapley_interactions(order):
    from scipy.special import bernoulli

    sp = random_spectrum(5, 8, 4, seed=order)
    f = lambda S: float(sp.predict(np.isin(np.arange(5), list(S))[None])[0])
    sii = {T: brute_force_shapley_interaction(f, 5, T) for r in range(1, order + 1) for T in combinations(range(5), r)}
    B = bernoulli(order)
    expected = {(): f(set())}
    for S, value in sii.items():
        for r in range(1, len(S) + 1):
            for T in combinations(S, r):
                expected[T] = expected.get(T, 0.0) + B[len(S) - len(T)] * value
    got = indices.k_sii(sp, order)
    for T, value in expected.items():
        assert got.get(T, 0.0) == pytest.approx(value, abs=1e-9), T
    assert sum(got.values()) == pytest.approx(f(set(range(5))), abs=1e-9)  # efficiency


def test_k_sii_of_order_one_is_shapley_and_of_full_order_is_moebius():
    sp = random_spectrum(6, 10, 3, seed=4)
    first = indices.k_sii(sp, 1)
    np.testing.assert_allclose([first.get((i,), 0.0) for i in range(6)], indices.shapley(sp), atol=1e-12)
    full, moebius = indices.k_sii(sp, sp.max_order), indices.moebius(sp)
    assert set(full) == set(moebius)
    for T, value in moebius.items():
        assert full[T] == pytest.approx(value, abs=1e-9)
