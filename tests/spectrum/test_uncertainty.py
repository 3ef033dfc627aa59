"""compattr.spectrum.uncertainty: bootstrap intervals of coefficients and indices."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import compattr
from compattr import Spectrum
from compattr.spectrum import RefitMismatchWarning, bootstrap


def _noisy(n=8, m=400, noise=0.3, seed=0):
    truth = compattr.synthetic.complete_hierarchy(n, n_sets=2, order=2, seed=seed)
    X = compattr.sample_masks(n, m, seed=seed)
    y = truth.predict(X) + np.random.default_rng(seed + 100).normal(0, noise, m)
    return truth, X, y


@pytest.mark.filterwarnings("ignore::compattr.spectrum.RefitMismatchWarning")  # the arithmetic, of any spectrum
def test_each_resample_is_the_least_squares_fit_of_its_resampled_masks():
    """The weighted normal equations equal an explicit refit on the masks each resample draws."""
    truth, X, y = _noisy()
    boot = bootstrap(truth, X, y, resamples=5, seed=3)
    m = len(X)
    counts = np.random.default_rng(3).multinomial(m, np.full(m, 1 / m), size=5)
    P = truth.parity_matrix(X)
    for r in range(5):
        rows = np.repeat(np.arange(m), counts[r])
        explicit = np.linalg.lstsq(P[rows], y[rows], rcond=None)[0]
        np.testing.assert_allclose(boot.coefs[r], explicit, atol=1e-8)
    assert boot.coefs.shape == (5, len(truth))


def _assert_penalised_refits(boot, X, y, ridge: float, seed: int) -> None:
    """Each resample of ``boot`` solves ``(Pᵀ W P + ridge · m · D) c = Pᵀ W y``: ``W`` its counts
    of each mask (drawn as ``bootstrap`` draws them with ``seed``), ``D`` the non-constant terms."""
    m, resamples = len(X), len(boot.coefs)
    counts = np.random.default_rng(seed).multinomial(m, np.full(m, 1 / m), size=resamples)
    P = boot.spectrum.parity_matrix(X)
    D = np.diag((boot.spectrum.degrees > 0).astype(float))
    for r in range(resamples):
        W = np.diag(counts[r].astype(float))
        explicit = np.linalg.solve(P.T @ W @ P + ridge * m * D, P.T @ W @ y)
        np.testing.assert_allclose(boot.coefs[r], explicit, rtol=1e-7, atol=1e-9)


@pytest.mark.filterwarnings("ignore::compattr.spectrum.RefitMismatchWarning")  # the arithmetic, of any spectrum
def test_ridge_resamples_solve_the_penalised_normal_equations_of_the_fit():
    """With ``ridge``, each resample is the ridge refit (constant unpenalised) of its masks,
    and the resample of every mask once equals ProxySPEX's ridge refit."""
    truth, X, y = _noisy(noise=1.0)
    m, ridge = len(X), 0.2
    _assert_penalised_refits(bootstrap(truth, X, y, resamples=3, seed=4, ridge=ridge), X, y, ridge, seed=4)
    P = truth.parity_matrix(X)
    D = np.diag((truth.degrees > 0).astype(float))
    once = np.linalg.solve(P.T @ P + ridge * m * D, P.T @ y)
    refit = compattr.proxy.leastsquares.least_squares(truth, X, y, ridge=ridge)
    np.testing.assert_allclose(refit.coefs, once[np.argsort(-np.abs(once), kind="stable")], rtol=1e-6)
    with pytest.raises(ValueError, match="ridge"):
        bootstrap(truth, X, y, ridge=-1.0)


@pytest.mark.filterwarnings("ignore::compattr.spectrum.RefitMismatchWarning")  # the arithmetic, of any spectrum
@pytest.mark.parametrize("m", [60, 300])  # more terms than masks; fewer, but more than half
@pytest.mark.parametrize("constant", [True, False])
def test_ridge_resamples_with_many_terms_solve_the_same_penalised_equations(constant, m):
    """Many terms (from half as many as masks, solved in the dual): each resample is still the
    minimiser of its weighted squares plus the ridge on the non-constant terms, the constant
    free (when the spectrum has one)."""
    n, ridge = 10, 0.05
    terms = [t for d in range(0 if constant else 1, 4) for t in itertools.combinations(range(n), d)]
    rng = np.random.default_rng(7)
    wide = Spectrum.from_dict({t: rng.normal() for t in terms}, n)
    X = compattr.sample_masks(n, m, seed=7)
    y = wide.predict(X) + rng.normal(0, 0.5, m)
    assert 2 * len(wide) > m
    _assert_penalised_refits(bootstrap(wide, X, y, resamples=4, seed=2, ridge=ridge), X, y, ridge, seed=2)


def test_bootstrap_warns_exactly_when_the_spectrum_is_not_its_terms_refit():
    from compattr.proxy.leastsquares import least_squares
    from compattr.spectrum import REFIT_GAP, refit_gap

    truth, X, y = _noisy(noise=0.5)
    refit = least_squares(truth, X, y, ridge=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bootstrap(refit, X, y, resamples=3, ridge=0.1)
    assert refit_gap(refit, X, y, 0.1) < REFIT_GAP < refit_gap(truth, X, y, 0.1)
    with pytest.warns(RefitMismatchWarning, match="relative distance"):
        bootstrap(truth, X, y, resamples=3, ridge=0.1)
    with pytest.warns(RefitMismatchWarning):  # the refit at another ridge is another estimate
        bootstrap(refit, X, y, resamples=3, ridge=0.3)
    with pytest.raises(ValueError, match="more masks than terms"):
        refit_gap(truth, X[:3], y[:3])


def test_intervals_cover_the_true_coefficients_at_about_their_level():
    """Over several noisy draws of a function with known terms, the 90 % intervals of the
    coefficients (fitted on the true terms) hold the true coefficient about 90 % of the time."""
    covered, total = 0, 0
    for seed in range(8):
        truth, X, y = _noisy(seed=seed, noise=0.5)
        fitted = compattr.proxy.leastsquares.least_squares(truth, X, y)
        boot = bootstrap(fitted, X, y, resamples=300, seed=seed)
        low, high = boot.interval(0.9).T
        true = dict(zip(truth.support_tuples(), truth.coefs))
        values = np.array([true[t] for t in fitted.support_tuples()])
        covered += int(((low <= values) & (values <= high)).sum())
        total += len(values)
    assert 0.8 <= covered / total <= 0.98


def test_index_intervals_are_tight_without_noise_and_flag_real_terms():
    truth, X, _ = _noisy(noise=0.0)
    boot = bootstrap(truth, X, truth.predict(X), resamples=50)
    shapley = boot.index("shapley", names=[f"x{i}" for i in range(truth.n)])
    assert shapley["value"].tolist() == pytest.approx(sorted(compattr.indices.shapley(truth), key=lambda v: -abs(v)))
    assert (shapley["ci_high"] - shapley["ci_low"]).max() < 1e-8
    assert shapley["names"].iloc[0].startswith("x")
    pairs = boot.index("banzhaf_interaction")
    strongest = pairs.iloc[0]
    assert strongest["nonzero"]
    assert strongest["ci_low"] - 1e-6 <= strongest["value"] <= strongest["ci_high"] + 1e-6  # a 1e-9 ridge
    table = boot.to_frame(5)
    assert list(table.columns[-4:]) == ["stderr", "ci_low", "ci_high", "nonzero"] and table["nonzero"].all()


def test_noise_only_terms_straddle_zero():
    """Terms fitted to pure noise: their intervals include zero (almost always)."""
    n, m = 8, 300
    X = compattr.sample_masks(n, m, seed=1)
    y = np.random.default_rng(2).normal(size=m)
    sp = compattr.Spectrum.from_dict({(): 0.0, (0,): 0.0, (1, 2): 0.0, (3, 4, 5): 0.0}, n)
    fitted = compattr.proxy.leastsquares.least_squares(sp, X, y)
    table = bootstrap(fitted, X, y, resamples=300).to_frame(None, confidence=0.99)
    assert not table["nonzero"].any()


def test_explanation_uncertainty_and_bad_input():
    truth, X, y = _noisy()
    ex = compattr.Explanation(
        spectrum=compattr.proxy.leastsquares.least_squares(truth, X, y),
        names=[f"f{i}" for i in range(truth.n)],
        groups=np.zeros(truth.n, int),
        masks=X,
        outputs=y,
        test_masks=X[:10],
        test_outputs=y[:10],
    )
    boot = ex.uncertainty(resamples=20, seed=1)
    assert boot.coefs.shape == (20, len(ex.spectrum))
    ex.fit_info["ridge"] = 0.5  # the fit's ridge strength is the bootstrap's
    with pytest.warns(RefitMismatchWarning):  # the spectrum is the plain least-squares refit
        ridged = ex.uncertainty(resamples=20, seed=1, method="bootstrap").coefs
    with pytest.warns(RefitMismatchWarning):
        np.testing.assert_array_equal(ridged, bootstrap(ex.spectrum, X, y, 20, seed=1, ridge=0.5).coefs)
    with pytest.warns(RefitMismatchWarning):  # no estimator recorded to refit: "auto" bootstraps, warning
        np.testing.assert_array_equal(ridged, ex.uncertainty(resamples=20, seed=1).coefs)
    assert not np.allclose(ridged, boot.coefs)
    ex.fit_info["ridge"] = None  # no refit's ridge: plain least squares, the same draws each call
    np.testing.assert_array_equal(boot.coefs, ex.uncertainty(resamples=20, seed=1).coefs)
    with pytest.raises(ValueError, match="more masks than terms"):
        bootstrap(truth, X[:3], y[:3])
    with pytest.warns(RefitMismatchWarning):  # more terms than masks: the ridge refits (not the truth)
        few = bootstrap(truth, X[:3], y[:3], resamples=5, ridge=0.1)
    assert few.coefs.shape == (5, len(truth)) and np.all(np.isfinite(few.coefs))
    with pytest.raises(ValueError, match="confidence"):
        boot.interval(1.2)


def test_jackknife_refits_without_each_group_of_labels_and_reads_their_spread(monkeypatch):
    """Each of the K refits is the estimator's clone fitted on the masks outside one group of
    labels (equal labels stay together, each left out once); coefficient and index standard
    errors are the delete-a-group jackknife's (a term a refit lacks counts as 0 there), the
    intervals Student-t's with K - 1 degrees of freedom around the point estimate."""
    from scipy import stats

    from compattr.spectrum import jackknife

    truth, X, y = _noisy(m=300, noise=0.5)
    labels = np.arange(len(X)) // 3  # three masks a label
    est = compattr.ProxySPEX(seed=0, repeats=1).fit(X, y)
    fits, fit_once = [], compattr.ProxySPEX.fit

    def spy(self, X_k, y_k):
        fitted = fit_once(self, X_k, y_k)
        fits.append((y_k, fitted.spectrum_))
        return fitted

    monkeypatch.setattr(compattr.ProxySPEX, "fit", spy)
    folds = 4
    refits = jackknife(est, X, y, folds=folds, seed=2, groups=labels)
    monkeypatch.undo()
    assert len(fits) == len(refits.spectra) == folds and refits.spectrum is est.spectrum_
    assert len(np.unique(y)) == len(y)  # noisy outputs: each names its mask
    left_out = np.zeros(labels.max() + 1, int)
    for (y_k, spectrum), refit in zip(fits, refits.spectra):
        assert refit is spectrum
        kept = np.isin(y, y_k)
        np.testing.assert_array_equal(y[kept], y_k)  # in their order
        out = np.unique(labels[~kept])
        assert not np.isin(labels[kept], out).any()  # a label's masks stay together
        left_out[out] += 1
    assert np.all(left_out == 1)
    K, point = folds, est.spectrum_
    coefs = np.array([[s.to_dict().get(t, 0.0) for t in point.support_tuples()] for _, s in fits])
    stderr = np.sqrt((K - 1) / K * np.sum((coefs - point.coefs) ** 2, axis=0))  # around the point estimate
    np.testing.assert_allclose(refits.stderr(), stderr, rtol=1e-9, atol=1e-15)
    half = stats.t.ppf(0.9, K - 1) * stderr
    np.testing.assert_allclose(refits.interval(0.8), np.c_[point.coefs - half, point.coefs + half], rtol=1e-9)
    frame = refits.to_frame(5, confidence=0.8)
    np.testing.assert_allclose(frame["stderr"], stderr[:5], rtol=1e-9, atol=1e-15)
    shapley = np.array([compattr.indices.shapley(s) for _, s in fits])
    table = refits.index("shapley", confidence=0.8).set_index("features")
    expected = np.sqrt((K - 1) / K * np.sum((shapley - compattr.indices.shapley(point)) ** 2, axis=0))
    np.testing.assert_allclose([table.loc[[(i,)], "stderr"].item() for i in range(truth.n)], expected, rtol=1e-9)
    pairs = refits.index("shapley_interaction", 2)
    assert set(pairs["features"]) == set(compattr.indices.shapley_interaction(point, 2))


def test_jackknife_refuses_bad_groups_and_folds():
    from compattr.spectrum import jackknife

    _, X, y = _noisy(m=100)
    est = compattr.ProxySPEX(seed=0, repeats=1).fit(X, y)
    with pytest.raises(ValueError, match="one label per mask"):
        jackknife(est, X, y, groups=np.zeros(3))
    with pytest.raises(ValueError, match="folds"):
        jackknife(est, X, y, folds=3, groups=np.arange(len(X)) % 2)  # two labels
    with pytest.raises(ValueError, match="folds"):
        jackknife(est, X, y, folds=1)
    for bad in (np.zeros(3, int), np.full(len(X), 3), np.full(len(X), -2), np.zeros(len(X))):
        with pytest.raises(ValueError, match="assignment"):
            jackknife(est, X, y, folds=3, assignment=bad)


def test_jackknife_takes_the_groups_given():
    """``assignment``: each mask's group (-1: in every refit); a group with no mask leaves
    nothing out, and its refit is the point estimate (not fitted again)."""
    from compattr.spectrum import jackknife

    _, X, y = _noisy(m=120)
    est = compattr.ProxySPEX(seed=0, repeats=1).fit(X, y)
    assignment = np.where(np.arange(len(X)) < 40, -1, np.arange(len(X)) % 2)  # groups 0, 1; 2 empty
    refits = jackknife(est, X, y, folds=3, assignment=assignment)
    for k, refit in enumerate(refits.spectra[:2]):
        assert refit == compattr.ProxySPEX(seed=0, repeats=1).fit(X[assignment != k], y[assignment != k]).spectrum_
    assert refits.spectra[2] is est.spectrum_


@pytest.mark.parametrize("power", [-560, 560])
def test_standard_errors_scale_with_outputs_of_any_magnitude(power):
    """The spreads squared raw deviations: at 1e±169 they vanished (zero-width intervals,
    every value "nonzero") or overflowed (inf), where the fits themselves scale exactly."""
    rng = np.random.default_rng(0)
    point = Spectrum(4, [(), (0,), (1, 2), (3,)], [0.5, 1.0, -0.3, 0.01])
    refits = [point.with_coefs(point.coefs + rng.normal(0, 0.05, 4)) for _ in range(5)]
    coefs = point.coefs + rng.normal(0, 0.05, (40, 4))
    scale = 2.0**power
    for build in (
        lambda s: compattr.spectrum.SpectrumJackknife(point.scaled(s), [r.scaled(s) for r in refits]),
        lambda s: compattr.spectrum.SpectrumBootstrap(point.scaled(s), coefs * s),
    ):
        base, scaled = build(1.0).to_frame(None), build(scale).to_frame(None)
        assert (base["stderr"] > 0).all()
        np.testing.assert_allclose(scaled["stderr"] / scale, base["stderr"], rtol=1e-12)
        assert scaled["nonzero"].tolist() == base["nonzero"].tolist()


def test_the_bootstrap_refit_is_exact_beside_a_large_offset():
    """The refit's guard against collinearity (1e-9·m on the diagonal) shrank the constant
    by 1e-9 of the outputs' offset: an exact least-squares refit read as "not the refit"
    (a gap of 1e-4 at an offset of 1e6, warned as an average of several fits), and the
    bootstrap's errors moved with the offset."""
    from compattr.spectrum import refit_gap
    from compattr.synthetic import add_noise, complete_hierarchy

    truth = complete_hierarchy(12, n_sets=3, order=3, seed=0)
    X = np.random.default_rng(0).random((300, 12)) < 0.5
    y = add_noise(truth.predict(X), truth, 10, seed=0)
    P = truth.parity_matrix(X)
    tables = []
    for offset in (0.0, 1e6):
        refit = truth.with_coefs(np.linalg.lstsq(P, y + offset, rcond=None)[0])
        assert refit_gap(refit, X, y + offset) < 1e-8
        with warnings.catch_warnings():
            warnings.simplefilter("error", RefitMismatchWarning)
            frame = bootstrap(refit, X, y + offset, resamples=100, seed=1).to_frame(None).set_index("features")
        tables.append(frame.drop(index=[()]))
    np.testing.assert_allclose(tables[1]["stderr"], tables[0]["stderr"], rtol=1e-8)
