"""PairedShapley against brute-force Shapley values over all 2^n masks."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from conftest import all_masks, brute_force_shapley

import compattr
from compattr.proxy import PairedShapley
from compattr.proxy.shapley import _ridge_towards
from compattr.query.masks import FEW_PAIRS, FEW_PAIRS_KERNEL_POWER, KERNEL_POWER


def sparse_function(n: int, seed: int) -> compattr.Spectrum:
    """A random spectrum: every singleton, and random terms of orders 2 to 5."""
    rng = np.random.default_rng(seed)
    supports = [(i,) for i in range(n)] + [tuple(rng.choice(n, size=d, replace=False)) for d in (2, 2, 3, 3, 3, 4, 5)]
    return compattr.Spectrum(n, [(), *supports], rng.normal(size=len(supports) + 1))


def fit(f, n: int, m: int, seed: int = 0, **kwargs) -> PairedShapley:
    X = compattr.paired_masks(n, m, seed=seed)
    return PairedShapley(random_state=seed, **kwargs).fit(X, f(X))


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sum((estimate - truth) ** 2) / np.sum(truth**2))


def noisy_pairs():
    """400 paired masks of a sparse function (n = 10) and its outputs with noise that caps the
    CV R²; the default fit's proxy's CV R², and its sparse odd part's energy over its trees'."""
    f = sparse_function(10, seed=7)
    X = compattr.paired_masks(10, 400, seed=8)
    y = f.predict(X) + np.random.default_rng(9).normal(0, 1.5, len(X))
    proxy = PairedShapley(random_state=0).fit(X, y).proxy_
    energy = lambda sp: np.sum(sp.coefs**2)
    return X, y, proxy.cv_r2_, energy(proxy.spectrum_.odd_part()) / energy(proxy.tree_spectrum_.odd_part())


@pytest.mark.parametrize("sparse_above, prior", [(0.85, "sparse"), (np.inf, "trees")])
def test_matches_brute_force_on_a_sparse_spectrum(sparse_above, prior):
    n = 9
    f = sparse_function(n, seed=1)
    truth = brute_force_shapley(f.predict(all_masks(n)), n)
    est = fit(f.predict, n, 3000, sparse_above=sparse_above)
    assert est.prior_ == prior  # the proxy's CV R² is ~1 here: kept unless told never to
    if prior == "sparse":  # kept as it is, with nothing to choose by CV
        assert est.ridge_ == np.inf and est.cv_results_.empty
    else:
        assert len(est.cv_results_) == len(compattr.proxy.shapley.RIDGE_GRID)
    assert relative_error(est.shapley_, truth) < 1e-4
    # the spectrum it fitted is the odd part: odd orders only, and it is what shapley_ reads
    assert (est.spectrum_.degrees % 2 == 1).all()
    np.testing.assert_allclose(compattr.indices.shapley(est.spectrum_), est.shapley_)


@pytest.mark.parametrize("n", [2, 5, 7])
def test_every_complementary_pair_queried_gives_the_exact_values(n):
    """With every pair among the masks (and repeats), the odd part is known on every mask:
    the values are exact. The refit kept a sparse prior or the trees' terms, which on a
    balanced full design miss features that act only through interactions (errors of
    0.35–0.84 at n = 6 on every pair once)."""
    table = np.random.default_rng(n).normal(size=1 << n)
    weights = 1 << np.arange(n - 1, -1, -1)
    X = compattr.paired_masks(n, 40 * 2**n, seed=1)
    S = X[0::2]
    assert len({min(r.tobytes(), (~r).tobytes()) for r in S}) == 2 ** (n - 1)  # every pair
    est = PairedShapley(random_state=0).fit(X, table[X.astype(np.int64) @ weights])
    assert est.prior_ == "exact" and est.spectrum_.max_order <= n
    np.testing.assert_allclose(est.shapley_, brute_force_shapley(table, n), atol=1e-12)
    missing = np.array([not np.array_equal(r, S[0]) and not np.array_equal(r, ~S[0]) for r in S])
    partial = np.repeat(missing, 2)  # one pair left out: estimated, not solved
    assert PairedShapley(random_state=0).fit(X[partial], table[X[partial].astype(np.int64) @ weights]).prior_ != "exact"


def test_the_exact_values_of_a_deterministic_function_get_zero_wide_intervals():
    """Where every pair was queried (prior "exact"), a jackknife group that took a pair's
    only copy made that refit an estimate (0.08 off on a deterministic table at n = 5), and
    the intervals of exact values called signs unsettled. Where the repeats agree (a
    deterministic function) the groups now hold repeats only: every refit is the exact answer.
    With noisy repeats, or none, the groups are of pairs as elsewhere (leaving the noise of
    pairs queried once out of every refit made the intervals 2-4 times too narrow)."""
    from compattr.spectrum import jackknife

    n, folds = 6, 5
    table = np.random.default_rng(0).normal(size=1 << n)
    weights = 1 << np.arange(n - 1, -1, -1)
    X = compattr.paired_masks(n, 800, seed=1)
    f = lambda M: table[M.astype(np.int64) @ weights]
    S = X[0::2]
    pair = np.where(S[:, :1], ~S, S).astype(np.int64) @ weights  # a pair's mask without feature 0
    once = np.unique(pair, return_index=True)[1]
    assert len(once) == 2 ** (n - 1) and len(once) < len(S)  # every pair, and repeats
    exact = PairedShapley(random_state=0).fit(X, f(X))
    assert exact.prior_ == "exact"
    for refit in exact.jackknife(X, f(X), folds=folds).spectra:
        np.testing.assert_allclose(compattr.indices.shapley(refit), exact.shapley_, atol=1e-12)
    assert (exact.uncertainty(X, f(X), folds=folds)["stderr"] < 1e-12).all()

    def by_pairs(est, X, y):  # the jackknife over random groups of pairs
        drawn = PairedShapley(random_state=0, kernel_power=est.kernel_power_)
        pairs = np.repeat(np.arange(len(X) // 2), 2)
        return jackknife(drawn, X, y, folds, seed=0, groups=pairs, spectrum=est.spectrum_).spectra

    y = f(X) + np.random.default_rng(2).normal(0, 0.3, len(X))
    first = np.sort(np.r_[2 * once, 2 * once + 1])  # every pair once: no repeat tells noise apart
    for X_case, y_case in ((X, y), (X[first], f(X[first]))):
        est = PairedShapley(random_state=0).fit(X_case, y_case)
        assert est.prior_ == "exact"
        got = est.jackknife(X_case, y_case, folds=folds).spectra
        for refit, expected in zip(got, by_pairs(est, X_case, y_case)):
            assert refit == expected
        assert (est.uncertainty(X_case, y_case, folds=folds)["stderr"] > 0).all()


@pytest.mark.slow  # about 3 s: thousands of masks for a function with every term
def test_matches_brute_force_on_a_random_table():
    n = 8
    table = np.random.default_rng(2).normal(size=1 << n)
    weights = 1 << np.arange(n - 1, -1, -1)

    def f(X):
        return table[np.asarray(X, dtype=np.int64) @ weights]

    truth = brute_force_shapley(table, n)
    est = fit(f, n, 3000)
    assert relative_error(est.shapley_, truth) < 1e-3


@pytest.mark.parametrize(
    "sparse_above, blend, prior", [(np.inf, False, "trees"), (np.inf, True, "blend"), (0.0, "auto", "sparse")]
)
def test_shapley_values_are_efficient(sparse_above, blend, prior):
    """The pair ([n], ∅) makes Σ φ_i = f([n]) - f(∅) exact, even from few masks, whichever
    prior is used (the sparse one is not fitted under that constraint)."""
    n = 12
    f = sparse_function(n, seed=3)
    est = fit(f.predict, n, 60, sparse_above=sparse_above, blend=blend)
    assert est.prior_ == prior
    ends = f.predict(np.array([[True] * n, [False] * n]))
    assert est.shapley_.sum() == pytest.approx(ends[0] - ends[1], rel=1e-9)


def test_keeps_the_sparse_spectrum_only_from_its_cv_r2():
    X, y, r2, _ = noisy_pairs()
    below, above = PairedShapley(random_state=0, sparse_above=r2 + 1e-9), PairedShapley(random_state=0, sparse_above=r2)
    below.fit(X, y), above.fit(X, y)
    assert below.prior_ in ("trees", "blend") and above.prior_ == "sparse"
    assert len(below.tree_proxies_) == compattr.proxy.shapley.PROXIES and above.tree_proxies_ == []
    # the sparse spectrum is ProxySPEX's default top-k: every ranking scored by its CV
    assert set(above.proxy_.sparsity_cv_["ranking"]) == set(compattr.proxy.proxyspex.RANKINGS)
    # the sparse prior's estimate is that spectrum's odd part, moved only to be efficient
    odd = compattr.indices.shapley(above.proxy_.spectrum_)
    assert not np.allclose(below.shapley_, above.shapley_)
    assert np.abs(above.shapley_ - odd).max() < 0.1 * np.abs(odd).max()


def test_sparse_above_auto_keeps_a_sparse_spectrum_whose_final_terms_explain_the_function():
    """The proxy's first top-k explains 0.45 of the outputs in its CV, the terms its growth and
    extension left explain 0.96 (spectrum_cv_r2_): "auto" keeps them, whose Shapley values
    are all but exact, where the first top-k's CV R² alone (a plain threshold) refits the
    trees' prior, ten times less accurate."""
    truth = compattr.synthetic.complete_hierarchy(50, seed=3)
    X = compattr.paired_masks(50, 1200, seed=3)
    y = truth.predict(X)
    exact = compattr.indices.shapley(truth)
    error = lambda est: np.sum((est.shapley_ - exact) ** 2) / np.sum(exact**2)
    auto = PairedShapley(random_state=0).fit(X, y)
    proxy = auto.proxy_
    assert proxy.cv_r2_ < 0.5 and proxy.spectrum_cv_r2_ >= compattr.proxy.shapley.HEDGE_BELOW  # the case
    assert auto.prior_ == "sparse" and not auto.hedged_ and error(auto) < 1e-3
    refitted = PairedShapley(random_state=0, sparse_above=compattr.proxy.shapley.SPARSE_ABOVE).fit(X, y)
    assert refitted.prior_ in ("trees", "blend") and error(refitted) > 10 * error(auto)


def test_final_terms_with_many_times_the_trees_energy_are_hedged(monkeypatch):
    """Where only the final terms' CV R² reaches HEDGE_BELOW, the energy bound still applies:
    on sparse peaks stage 8 grew 127 terms to 640 and read a CV R² of 0.96 against 0.61 on
    fresh masks, its odd part holding 46-83 times the trees' energy; kept, the Shapley
    error was 2-3 times the refit's. There the estimate is hedged (averaged with the refit)."""
    from compattr.proxy import shapley

    truth = compattr.synthetic.complete_hierarchy(50, seed=3)
    X = compattr.paired_masks(50, 1200, seed=3)
    y = truth.predict(X)
    kept = PairedShapley(random_state=0).fit(X, y)
    proxy = kept.proxy_
    ratio = shapley._energy_ratio(proxy.spectrum_.odd_part(), proxy.tree_spectrum_.odd_part())
    monkeypatch.setattr(shapley, "KEEP_BELOW", 0.99 * ratio)  # just outside the bound
    hedged = PairedShapley(random_state=0).fit(X, y)
    assert hedged.hedged_ and hedged.prior_ in ("trees", "blend") and not kept.hedged_


def test_sparse_above_auto_keeps_the_sparse_prior_lower_on_many_masks_within_the_energy_bound(monkeypatch):
    """``sparse_above="auto"``: the sparse prior from ``SPARSE_ABOVE``, and on
    ``REPEAT_MASKS`` masks or more also from ``SPARSE_ABOVE_MANY`` where its odd part holds
    less than ``KEEP_BELOW`` times the energy of the proxy's trees' odd part."""
    from compattr.proxy import shapley

    X, y, r2, ratio = noisy_pairs()
    monkeypatch.setattr(shapley, "SPARSE_ABOVE", r2 + 1e-9)  # just out of reach
    monkeypatch.setattr(shapley, "SPARSE_ABOVE_MANY", r2)  # just reached
    monkeypatch.setattr(shapley, "KEEP_BELOW", 1.01 * ratio)  # just within the bound
    monkeypatch.setattr(shapley, "REPEAT_MASKS", 400)
    assert PairedShapley(random_state=0).fit(X, y).prior_ == "sparse"
    monkeypatch.setattr(shapley, "KEEP_BELOW", 0.99 * ratio)  # just outside it
    assert PairedShapley(random_state=0).fit(X, y).prior_ in ("trees", "blend")
    monkeypatch.setattr(shapley, "KEEP_BELOW", 1.01 * ratio)
    monkeypatch.setattr(shapley, "REPEAT_MASKS", 401)  # too few masks
    assert PairedShapley(random_state=0).fit(X, y).prior_ in ("trees", "blend")
    monkeypatch.setattr(shapley, "SPARSE_ABOVE", r2)  # from SPARSE_ABOVE on any budget
    assert PairedShapley(random_state=0).fit(X, y).prior_ == "sparse"
    # a number is a plain threshold
    monkeypatch.setattr(shapley, "REPEAT_MASKS", 400)
    assert PairedShapley(random_state=0, sparse_above=r2 + 1e-9).fit(X, y).prior_ in ("trees", "blend")


def test_sparse_above_auto_averages_the_kept_sparse_prior_with_the_refit_where_its_energy_is_large(monkeypatch):
    """From ``SPARSE_ABOVE`` up to ``HEDGE_BELOW``, where the sparse odd part holds
    ``KEEP_BELOW`` times the energy of the trees' odd part or more, the estimate is the
    average of the kept sparse prior's and the trees' refit's; a number is a plain threshold."""
    from compattr.proxy import shapley

    X, y, r2, ratio = noisy_pairs()
    kept = PairedShapley(random_state=0, sparse_above=r2).fit(X, y)
    refit = PairedShapley(random_state=0, sparse_above=np.inf).fit(X, y)
    assert not kept.hedged_ and not refit.hedged_ and kept.prior_ == "sparse"
    monkeypatch.setattr(shapley, "SPARSE_ABOVE", r2)  # just reached
    monkeypatch.setattr(shapley, "KEEP_BELOW", 0.99 * ratio)  # just reached
    # just out of reach, of the first top-k's CV R² and of the final terms'
    monkeypatch.setattr(shapley, "HEDGE_BELOW", max(r2, kept.proxy_.spectrum_cv_r2_) + 1e-9)
    hedged = PairedShapley(random_state=0).fit(X, y)
    assert hedged.hedged_ and hedged.prior_ == refit.prior_ and hedged.ridge_ == refit.ridge_
    assert len(hedged.tree_proxies_) == len(refit.tree_proxies_)
    pd.testing.assert_frame_equal(hedged.cv_results_, refit.cv_results_)
    np.testing.assert_allclose(hedged.shapley_, 0.5 * (kept.shapley_ + refit.shapley_), atol=1e-12)
    X_test = compattr.sample_masks(X.shape[1], 64, seed=10)
    average = 0.5 * (kept.spectrum_.predict(X_test) + refit.spectrum_.predict(X_test))
    np.testing.assert_allclose(hedged.spectrum_.predict(X_test), average, atol=1e-9)
    assert X[0].all() and not X[1].any()  # the pair ([n], ∅): both estimates, and so their average, are efficient
    assert hedged.shapley_.sum() == pytest.approx(y[0] - y[1], rel=1e-9)
    # each bound just missed: the sparse prior kept alone
    monkeypatch.setattr(shapley, "KEEP_BELOW", 1.01 * ratio)
    alone = PairedShapley(random_state=0).fit(X, y)
    assert not alone.hedged_ and alone.prior_ == "sparse"
    np.testing.assert_array_equal(alone.shapley_, kept.shapley_)
    monkeypatch.setattr(shapley, "KEEP_BELOW", 0.99 * ratio)
    monkeypatch.setattr(shapley, "HEDGE_BELOW", r2)
    assert not PairedShapley(random_state=0).fit(X, y).hedged_
    monkeypatch.setattr(shapley, "HEDGE_BELOW", r2 + 1e-9)
    assert not PairedShapley(random_state=0, sparse_above=r2).fit(X, y).hedged_


def test_proxies_auto_averages_fits_only_below_repeat_masks(monkeypatch):
    from compattr.proxy import shapley

    n = 10
    f = sparse_function(n, seed=7)
    X = compattr.paired_masks(n, 400, seed=8)
    y = f.predict(X) + np.random.default_rng(9).normal(0, 1.5, len(X))
    monkeypatch.setattr(shapley, "REPEAT_MASKS", 401)
    assert len(PairedShapley(random_state=0, sparse_above=np.inf).fit(X, y).tree_proxies_) == shapley.PROXIES
    monkeypatch.setattr(shapley, "REPEAT_MASKS", 400)
    auto = PairedShapley(random_state=0, sparse_above=np.inf).fit(X, y)
    assert auto.tree_proxies_ == [auto.proxy_]
    forced = PairedShapley(random_state=0, sparse_above=np.inf, proxies=2).fit(X, y)
    assert len(forced.tree_proxies_) == 2


def test_the_trees_prior_averages_fits_of_other_depths():
    """With the trees' prior (``blend=False``), ``proxies`` tree fits are averaged:
    ``proxy_``, then fits seeded one after another on the grid without its depth, their trees
    alone. With an infinite ridge and no ([n], ∅) pair (no efficiency constraint) the
    estimate is that prior."""
    n = 10
    f = sparse_function(n, seed=11)
    X = compattr.paired_masks(n, 300, seed=12)[2:]  # without the pair ([n], ∅)
    y = f.predict(X) + np.random.default_rng(13).normal(0, 1.0, len(X))
    kept = dict(sparse_above=np.inf, ridges=(np.inf,), blend=False, untuned_trees=False)
    est = PairedShapley(random_state=3, proxies=3, **kept).fit(X, y)
    first, *others = est.tree_proxies_
    assert first is est.proxy_ and len(others) == 2
    assert [o.seed for o in others] == [4, 5]
    depth = first.best_params_["max_depth"]
    assert all(depth not in o.grid["max_depth"] for o in others)
    assert all(o.sparsity_cv_.empty for o in others)  # their trees alone: no top-k chosen
    prior = compattr.Spectrum.mean([p.tree_spectrum_ for p in est.tree_proxies_]).odd_part()
    X_test = compattr.sample_masks(n, 64, seed=14)
    np.testing.assert_allclose(est.spectrum_.predict(X_test), prior.predict(X_test), atol=1e-9)
    one = PairedShapley(random_state=3, proxies=1, **kept).fit(X, y)
    assert one.tree_proxies_ == [one.proxy_]
    alone = one.proxy_.tree_spectrum_.odd_part()
    np.testing.assert_allclose(one.spectrum_.predict(X_test), alone.predict(X_test), atol=1e-9)
    assert not np.allclose(one.shapley_, est.shapley_)


def test_the_untuned_trees_join_the_trees_prior(monkeypatch):
    """``untuned_trees`` averages one untuned LightGBM ensemble (deep trees whose leaves may
    hold a single mask) into the trees' prior, as one more fit; "auto" fits it on fewer than
    ``REPEAT_MASKS`` masks. With an infinite ridge and no ([n], ∅) pair the estimate is the
    prior: its Shapley values are the brute-force ones of the fits' average over all masks."""
    from compattr.proxy import shapley

    n = 10
    f = sparse_function(n, seed=21)
    X = compattr.paired_masks(n, 300, seed=22)[2:]  # without the pair ([n], ∅)
    y = f.predict(X) + np.random.default_rng(23).normal(0, 1.0, len(X))
    kept = dict(sparse_above=np.inf, ridges=(np.inf,), blend=False, proxies=2)
    est = PairedShapley(random_state=1, **kept).fit(X, y)
    untuned = est.untuned_trees_
    assert untuned is not None and untuned.num_trees() == shapley.UNTUNED_ROUNDS
    structures = [tree["tree_structure"] for tree in untuned.dump_model()["tree_info"]]

    def leaves(node, depth=0):
        if "leaf_value" in node:
            return [(depth, node["leaf_count"])]
        return leaves(node["left_child"], depth + 1) + leaves(node["right_child"], depth + 1)

    depth_count = np.array([leaf for tree in structures for leaf in leaves(tree)])
    assert depth_count[:, 0].max() == shapley.UNTUNED_TREES["max_depth"] and depth_count[:, 1].min() == 1
    # its exact spectrum, and the prior's Shapley values, against brute force over all 2^n masks
    masks = all_masks(n)
    at_masks = untuned.predict(masks.astype(np.float32)) * est.output_scale_  # fitted on y / output_scale_
    assert est.output_scale_ == 16.0  # max |y| = 9.06: a power of two, max |y| / it in [0.5, 1)
    np.testing.assert_allclose(compattr.Spectrum.from_trees(untuned, n).predict(masks), at_masks / 16.0, atol=1e-9)
    table = np.mean([fit.predict_trees(masks) for fit in est.tree_proxies_] + [at_masks], axis=0)
    np.testing.assert_allclose(est.shapley_, brute_force_shapley(table, n), atol=1e-9)
    # without it, the tuned fits' average alone
    without = PairedShapley(random_state=1, untuned_trees=False, **kept).fit(X, y)
    assert without.untuned_trees_ is None
    tuned = np.mean([fit.predict_trees(masks) for fit in without.tree_proxies_], axis=0)
    np.testing.assert_allclose(without.shapley_, brute_force_shapley(tuned, n), atol=1e-9)
    assert not np.allclose(without.shapley_, est.shapley_)
    # "auto": only on fewer than REPEAT_MASKS masks; True on any budget; never with a kept sparse prior
    monkeypatch.setattr(shapley, "REPEAT_MASKS", len(y))
    assert PairedShapley(random_state=1, **kept).fit(X, y).untuned_trees_ is None
    assert PairedShapley(random_state=1, untuned_trees=True, **kept).fit(X, y).untuned_trees_ is not None
    sparse = PairedShapley(random_state=1, sparse_above=0.0, untuned_trees=True).fit(X, y)
    assert sparse.prior_ == "sparse" and sparse.untuned_trees_ is None


def test_the_blend_averages_the_trees_odd_part_with_the_proxys_grown_terms(monkeypatch):
    """With ``blend`` the prior is the trees' odd part averaged half and half with the odd
    part of the proxy's sparse spectrum; "auto" blends exactly where the proxy's terms were
    grown and their odd part holds less than ``BLEND_BELOW`` times the trees' energy. With an
    infinite ridge and no ([n], ∅) pair the estimate is the prior."""
    from compattr.proxy import shapley

    n = 12
    X_test = compattr.sample_masks(n, 64, seed=20)
    # pairs drawn (and weighted) by KERNEL_POWER: the proxy grows its terms on the first case, not on the second
    kept = dict(sparse_above=np.inf, ridges=(np.inf,), untuned_trees=False, kernel_power=KERNEL_POWER)
    grown_seen = set()
    for seed, masks in ((0, 300), (4, 200)):
        truth = compattr.synthetic.complete_hierarchy(n, n_sets=3, order=4, seed=seed)
        X = compattr.paired_masks(n, masks, seed=seed, kernel_power=KERNEL_POWER)[2:]  # without the pair ([n], ∅)
        y = compattr.synthetic.add_noise(truth.predict(X), truth, snr_db=10, seed=seed)
        trees = PairedShapley(random_state=seed, blend=False, **kept).fit(X, y)
        blended = PairedShapley(random_state=seed, blend=True, **kept).fit(X, y)
        auto = PairedShapley(random_state=seed, **kept).fit(X, y)
        assert (trees.prior_, blended.prior_) == ("trees", "blend")
        tree_prior = compattr.Spectrum.mean([p.tree_spectrum_ for p in blended.tree_proxies_]).odd_part()
        sparse = blended.proxy_.spectrum_.odd_part()
        np.testing.assert_allclose(trees.spectrum_.predict(X_test), tree_prior.predict(X_test), atol=1e-9)
        blend = 0.5 * (tree_prior.predict(X_test) + sparse.predict(X_test))
        np.testing.assert_allclose(blended.spectrum_.predict(X_test), blend, atol=1e-9)
        grown = auto.proxy_.grown_
        grown_seen.add(grown)
        ratio = np.sum(sparse.coefs**2) / np.sum(tree_prior.coefs**2)
        assert ratio < shapley.BLEND_BELOW  # a hierarchy: the grown terms hold about the trees' energy
        assert auto.prior_ == ("blend" if grown else "trees")
        np.testing.assert_array_equal(auto.shapley_, (blended if grown else trees).shapley_)
        if grown:  # the energy bound: a sparse odd part above it is not blended
            monkeypatch.setattr(shapley, "BLEND_BELOW", 0.99 * ratio)
            assert PairedShapley(random_state=seed, **kept).fit(X, y).prior_ == "trees"
            monkeypatch.setattr(shapley, "BLEND_BELOW", 1.01 * ratio)
            assert PairedShapley(random_state=seed, **kept).fit(X, y).prior_ == "blend"
    assert grown_seen == {True, False}


def test_the_same_seed_gives_the_same_estimate():
    n = 10
    f = sparse_function(n, seed=4)
    a, b, c = fit(f.predict, n, 200, seed=5), fit(f.predict, n, 200, seed=5), fit(f.predict, n, 200, seed=6)
    np.testing.assert_array_equal(a.shapley_, b.shapley_)
    assert not np.array_equal(a.shapley_, c.shapley_)


@pytest.mark.parametrize("prior", ["sparse", "trees"])
def test_outputs_of_any_magnitude_give_the_same_estimate(prior):
    """The refit's CV and the untuned trees saw the raw outputs: near 1e±300 the CV errors
    overflowed or vanished (7 % off at 1e300, 1.3 % at 1e-30, with the trees' prior). Scaling
    by a power of two now scales the estimate exactly, and other scales stay close."""
    X, y, _, _ = noisy_pairs()
    options = dict(random_state=0, untuned_trees=True)
    if prior == "trees":
        options["sparse_above"] = np.inf
    base = PairedShapley(**options).fit(X, y)
    assert base.prior_ == prior and (base.untuned_trees_ is not None) == (prior == "trees")
    for power in (996, -996):
        scaled = PairedShapley(**options).fit(X, y * 2.0**power)
        np.testing.assert_array_equal(scaled.shapley_, base.shapley_ * 2.0**power)
        assert scaled.ridge_ == base.ridge_ and scaled.prior_ == base.prior_
    for factor in (1e300, 1e-30):
        scaled = PairedShapley(**options).fit(X, y * factor)
        np.testing.assert_allclose(
            scaled.shapley_ / factor, base.shapley_, rtol=1e-3, atol=1e-3 * np.abs(base.shapley_).max()
        )


@pytest.mark.parametrize("prior", ["sparse", "trees"])
def test_outputs_on_a_large_offset_give_the_same_estimate(prior):
    """The proxy and the untuned trees saw outputs on their offset, which LightGBM's float32
    labels rounded away (Shapley error 0.20 of 1.84 at 1e-3 y - 1e4, 2.16 at 1e-12 y + 1)."""
    truth = compattr.synthetic.complete_hierarchy(8, n_sets=3, order=3, seed=1)
    X = compattr.paired_masks(8, 200, seed=0)
    y = truth.predict(X)
    options = dict(random_state=0, untuned_trees=True, sparse_above=np.inf if prior == "trees" else "auto")
    expected = compattr.indices.shapley(truth)
    base = PairedShapley(**options).fit(X, y)
    assert base.output_offset_ == 0.0  # outputs that straddle zero keep their values
    error = np.abs(base.shapley_ - expected).max()
    for factor, offset in ((1e-3, -1e4), (1e-12, 1.0)):
        shifted = PairedShapley(**options).fit(X, factor * y + offset)
        assert shifted.prior_ == base.prior_ and shifted.output_offset_ != 0.0
        # 1e-12 y + 1 holds y to about 1e-4 (float64): the trees' prior moves by as much
        assert np.abs(shifted.shapley_ / factor - expected).max() < error + 2e-3 * np.abs(expected).max()


def test_rejects_masks_that_are_not_complementary_pairs():
    n = 6
    X = compattr.paired_masks(n, 100, seed=0)
    f = sparse_function(n, seed=0)
    uniform = compattr.sample_masks(n, 100, seed=0)
    with pytest.raises(ValueError, match="not complements"):
        PairedShapley().fit(uniform, f.predict(uniform))
    with pytest.raises(ValueError, match="odd number"):
        PairedShapley().fit(X[:-1], f.predict(X[:-1]))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_power=1.5),
        dict(kernel_power="shapley"),
        dict(kernel_power=True),
        dict(support=0),
        dict(max_terms=0),
        dict(max_terms=1.5),
        dict(max_terms=True),
        dict(max_terms="all"),
        dict(ridges=()),
        dict(sparse_above=-0.1),
        dict(sparse_above=np.nan),
        dict(sparse_above="always"),
        dict(blend="always"),
        dict(blend=1),
        dict(untuned_trees="always"),
        dict(untuned_trees=1),
        dict(cv=1),
        dict(cv=2.5),
        dict(support=np.inf),
        dict(random_state=None),
        dict(num_threads=0),
        dict(sparse_above=None),
        dict(sparse_above=True),
        dict(ridges=[True]),
        dict(proxies=0),
        dict(proxies=1.5),
        dict(proxies=True),
        dict(proxies="all"),
    ],
)
def test_rejects_bad_parameters(kwargs):
    X = compattr.paired_masks(6, 100, seed=0)
    with pytest.raises(ValueError, match=next(iter(kwargs))):  # named, before anything is fitted
        PairedShapley(**kwargs).fit(X, X.sum(axis=1).astype(float))


@pytest.mark.parametrize("evd_fails", [False, True])
@pytest.mark.parametrize("rows, terms", [(40, 12), (12, 40)])  # more rows than terms, and fewer
def test_ridge_towards_the_prior_solves_its_constrained_problem(rows, terms, evd_fails, monkeypatch):
    """Each ridge's solution against the KKT system of min ||Aβ - b||² + λ||β - β₀||²
    subject to Σβ = d, solved directly; the same when LAPACK's fast eigensolver does not
    converge."""
    import scipy.linalg

    if evd_fails:
        eigh = scipy.linalg.eigh

        def failing(a, *args, driver=None, **kwargs):
            if driver == "evd":
                raise np.linalg.LinAlgError("the eigensolver did not converge")
            return eigh(a, *args, driver=driver, **kwargs)

        monkeypatch.setattr(scipy.linalg, "eigh", failing)
    rng = np.random.default_rng(0)
    A, b, prior = rng.normal(size=(rows, terms)), rng.normal(size=rows), rng.normal(size=terms)
    c, d = np.ones(terms), 1.5
    ridges = [1e-2, 1.0, 30.0]
    got = _ridge_towards(A, b, prior, (c, d), [*ridges, np.inf])
    for ridge, beta in zip(ridges, got):
        kkt = np.block([[A.T @ A + ridge * np.eye(terms), c[:, None]], [c[None, :], np.zeros((1, 1))]])
        want = np.linalg.solve(kkt, np.r_[A.T @ b + ridge * prior, d])[:terms]
        np.testing.assert_allclose(beta, want, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got[-1], prior + (d - prior.sum()) / terms)  # infinite: the prior, made to sum to d
    (free,) = _ridge_towards(A, b, prior, None, [1.0])
    np.testing.assert_allclose(free, np.linalg.solve(A.T @ A + np.eye(terms), A.T @ b + prior))


@pytest.mark.parametrize("rows, terms", [(30, 10), (10, 30)])
def test_ridge_towards_the_prior_on_a_rank_deficient_design(rows, terms):
    """Repeated columns and rows (rank 5): every ridge still solves its KKT system, with no
    threshold on small eigenvalues."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(rows, 5)) @ rng.normal(size=(5, terms))
    b, prior, c = rng.normal(size=rows), rng.normal(size=terms), rng.normal(size=terms)
    for ridge, beta in zip([1e-3, 1.0], _ridge_towards(A, b, prior, (c, 0.7), [1e-3, 1.0])):
        kkt = np.block([[A.T @ A + ridge * np.eye(terms), c[:, None]], [c[None, :], np.zeros((1, 1))]])
        want = np.linalg.solve(kkt, np.r_[A.T @ b + ridge * prior, 0.7])[:terms]
        np.testing.assert_allclose(beta, want, rtol=1e-7, atol=1e-9)


def test_cross_validation_chooses_the_support_and_the_ridge_together():
    n = 12
    f = sparse_function(n, seed=10)
    X = compattr.paired_masks(n, 300, seed=11)
    y = f.predict(X) + np.random.default_rng(12).normal(0, 1.0, len(X))
    est = PairedShapley(random_state=0, support=(0.1, 0.5, 2.0), sparse_above=np.inf).fit(X, y)
    table = est.cv_results_
    # 150 pairs: 0.1 gives 15 terms, 0.5 gives 75 and 2.0 every available term (at most 300)
    assert sorted(table["support"].unique()) == [0.1, 0.5, 2.0]
    assert table.groupby("support")["terms"].first().is_monotonic_increasing
    assert len(table) == 3 * len(compattr.proxy.shapley.RIDGE_GRID)
    best = table.loc[table["cv_mse"].idxmin()]
    assert (est.support_, est.ridge_) == (best["support"], best["ridge"])
    # a single support is that support alone, and the same estimate when it is the one chosen
    alone = PairedShapley(random_state=0, support=est.support_, sparse_above=np.inf).fit(X, y)
    np.testing.assert_allclose(alone.shapley_, est.shapley_)


def test_max_terms_auto_bounds_the_refit_only_from_few_pairs_on(monkeypatch):
    """ "auto" refits every candidate term below FEW_PAIRS pairs and at most MAX_TERMS from
    there on, as the integer bound does; an integer bounds it at any budget."""
    from compattr.proxy import shapley

    n = 12
    f = sparse_function(n, seed=10)
    X = compattr.paired_masks(n, 300, seed=11)  # 150 pairs
    y = f.predict(X) + np.random.default_rng(12).normal(0, 1.0, len(X))
    settings = dict(random_state=0, support=(0.1, 0.5, 2.0), sparse_above=np.inf)
    most = lambda est: est.cv_results_["terms"].max()
    monkeypatch.setattr(shapley, "MAX_TERMS", 40)
    below = PairedShapley(**settings).fit(X, y)
    unbounded = PairedShapley(**settings, max_terms=10**6).fit(X, y)
    assert most(below) == most(unbounded) > 40
    np.testing.assert_array_equal(below.shapley_, unbounded.shapley_)
    monkeypatch.setattr(shapley, "FEW_PAIRS", 150)  # the same pairs, no longer few
    above = PairedShapley(**settings).fit(X, y)
    bounded = PairedShapley(**settings, max_terms=40).fit(X, y)
    assert most(above) == most(bounded) == 40
    np.testing.assert_array_equal(above.shapley_, bounded.shapley_)
    assert not np.array_equal(above.shapley_, below.shapley_)


def _with_null_features(f: compattr.Spectrum, extra: int) -> compattr.Spectrum:
    """``f`` on ``extra`` more features that no term holds (their Shapley values are 0)."""
    return compattr.Spectrum(f.n + extra, f.support_tuples(), f.coefs)


def test_uncertainty_is_the_grouped_jackknife_of_fits_without_each_group_of_pairs(monkeypatch):
    """Each of the K fits leaves out one group of pairs (a pair's two masks together, each
    pair, ([n], ∅) too, left out once); the standard error is the
    delete-a-group jackknife's and the interval Student-t's with K - 1 degrees of freedom
    around shapley_."""
    from scipy import stats

    n, folds = 20, 4
    f = sparse_function(n, seed=3)
    X = compattr.paired_masks(n, 300, seed=4)
    y = f.predict(X) + np.random.default_rng(5).normal(0, 0.5, len(X))
    est = PairedShapley(random_state=6).fit(X, y)
    fits, fit_once = [], PairedShapley.fit

    def spy(self, X_k, y_k):
        fitted = fit_once(self, X_k, y_k)
        fits.append((X_k, fitted.shapley_))
        return fitted

    monkeypatch.setattr(PairedShapley, "fit", spy)
    table = est.uncertainty(X, y, folds=folds, confidence=0.9).set_index("features")
    monkeypatch.undo()
    assert len(fits) == folds
    # every pair, ([n], ∅) too, in folds - 1 fits (some pairs were drawn more than once)
    drawn = Counter(row.tobytes() for row in X[0::2])
    fitted = Counter(row.tobytes() for X_k, _ in fits for row in X_k[0::2])
    assert fitted == {pair: count * (folds - 1) for pair, count in drawn.items()}
    for X_k, _ in fits:
        np.testing.assert_array_equal(X_k[1::2], ~X_k[0::2])
    estimates = np.array([shapley for _, shapley in fits])
    stderr = np.sqrt((folds - 1) / folds * np.sum((estimates - est.shapley_) ** 2, axis=0))
    half = stats.t.ppf(0.95, folds - 1) * stderr
    for i in range(n):
        row = table.loc[[(i,)]].iloc[0]
        assert row["value"] == est.shapley_[i]
        np.testing.assert_allclose(row["stderr"], stderr[i], rtol=1e-9)
        bounds = [est.shapley_[i] - half[i], est.shapley_[i] + half[i]]
        np.testing.assert_allclose([row["ci_low"], row["ci_high"]], bounds, rtol=1e-9)
        assert row["nonzero"] == (row["ci_low"] > 0 or row["ci_high"] < 0)
    assert list(table["value"].abs()) == sorted(table["value"].abs(), reverse=True)


def test_uncertainty_intervals_hold_the_exact_values_and_leave_null_features_at_zero():
    """On a noisy function of 24 features and 4 that no term holds, the 95 % intervals hold
    at least 80 % of the exact Shapley values of the 24, call the null ones zero, and tell
    the strongest apart from zero."""
    f = _with_null_features(sparse_function(24, seed=7), 4)
    X = compattr.paired_masks(f.n, 600, seed=8)
    y = f.predict(X) + np.random.default_rng(9).normal(0, 1.0, len(X))
    est = PairedShapley(random_state=0).fit(X, y)
    table = est.uncertainty(X, y, names=[f"x{i}" for i in range(f.n)]).set_index("features")
    exact = compattr.indices.shapley(f)
    low, high = (np.array([table.loc[[(i,)], column].item() for i in range(f.n)]) for column in ("ci_low", "ci_high"))
    held = (low <= exact) & (exact <= high)
    assert held[:24].mean() >= 0.8 and held[24:].all()
    assert not table.loc[[(i,) for i in range(24, 28)], "nonzero"].any()
    strongest = (int(np.argmax(np.abs(exact))),)
    assert table.loc[[strongest], "nonzero"].item() and table.loc[[strongest], "names"].item() == f"x{strongest[0]}"
    assert (table["stderr"] > 0).all()


def test_uncertainty_refuses_other_data_and_bad_settings():
    n = 6
    f = sparse_function(n, seed=0)
    X = compattr.paired_masks(n, 100, seed=0)
    y = f.predict(X)
    with pytest.raises(ValueError, match="not fitted"):
        PairedShapley().uncertainty(X, y)
    est = PairedShapley().fit(X, y)
    with pytest.raises(ValueError, match="fitted on"):
        est.uncertainty(X, y + 1.0)
    with pytest.raises(ValueError, match="fitted on"):
        est.uncertainty(X[::-1], y[::-1])
    for folds in (1, 10**6, 2.5):
        with pytest.raises(ValueError, match="folds"):
            est.uncertainty(X, y, folds=folds)
    with pytest.raises(ValueError, match="confidence"):
        est.uncertainty(X, y, confidence=1.0)


def noisy_outputs(f: compattr.Spectrum, X: np.ndarray, seed: int) -> np.ndarray:
    return f.predict(X) + np.random.default_rng(seed).normal(0, 1.5, len(X))


def test_kernel_power_auto_weights_the_pairs_as_paired_masks_drew_them():
    """ "auto" resolves on the fitted masks' pairs as paired_masks' default does: the power
    below FEW_PAIRS pairs and the one from there on, each fit equal to the fit told it (the
    trees' prior refitted at a finite ridge: the pairs' weights matter)."""
    n = 14  # pairs of 8 features fall in 2^7 classes: a refit of every odd term ignores the weights
    f = sparse_function(n, seed=2)
    for pairs, power in ((FEW_PAIRS - 1, FEW_PAIRS_KERNEL_POWER), (FEW_PAIRS, KERNEL_POWER)):
        X = compattr.paired_masks(n, 2 * pairs, seed=3, kernel_power=power)
        y = noisy_outputs(f, X, seed=4)
        refitted = dict(random_state=0, sparse_above=np.inf, ridges=(0.1,))
        fitted = {
            kernel_power: PairedShapley(**refitted, kernel_power=kernel_power).fit(X, y)
            for kernel_power in ("auto", KERNEL_POWER, FEW_PAIRS_KERNEL_POWER)
        }
        other = KERNEL_POWER if power == FEW_PAIRS_KERNEL_POWER else FEW_PAIRS_KERNEL_POWER
        assert fitted["auto"].kernel_power_ == power
        np.testing.assert_array_equal(fitted["auto"].shapley_, fitted[power].shapley_)
        assert not np.array_equal(fitted["auto"].shapley_, fitted[other].shapley_)


def test_the_jackknife_refits_weight_the_pairs_as_they_were_drawn():
    """On FEW_PAIRS pairs "auto" is KERNEL_POWER, but on the half a two-group jackknife refits
    it would be FEW_PAIRS_KERNEL_POWER: the refits keep the power the pairs were drawn with."""
    n = 14
    X = compattr.paired_masks(n, 2 * FEW_PAIRS, seed=3)
    y = noisy_outputs(sparse_function(n, seed=2), X, seed=4)
    refits = {
        power: PairedShapley(random_state=0, sparse_above=np.inf, kernel_power=power)
        .fit(X, y)
        .jackknife(X, y, folds=2)
        .spectra
        for power in ("auto", KERNEL_POWER, FEW_PAIRS_KERNEL_POWER)
    }
    shapley = compattr.indices.shapley
    for auto, drawn, other in zip(*refits.values()):
        np.testing.assert_array_equal(shapley(auto), shapley(drawn))
        assert not np.array_equal(shapley(auto), shapley(other))
