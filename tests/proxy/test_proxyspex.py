"""ProxySPEX estimator: faithfulness on known functions, CV choices, errors."""

import copy
import itertools
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import walsh
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import KFold

import compattr
from compattr import ProxySPEX, Spectrum
from compattr.proxy import proxyspex, search
from compattr.proxy.trees import TreesTooDeep
from compattr.synthetic import add_noise, complete_hierarchy

SMALL_GRID = {"max_depth": (3, 5), "n_estimators": (100, 300), "learning_rate": (0.1,)}


def r2(pred, y):
    return 1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2)


@pytest.fixture(scope="module")
def hierarchy_fit():
    n = 40
    truth = complete_hierarchy(n, n_sets=4, order=4, seed=1)
    X = compattr.sample_masks(n, compattr.budget(n, 6), seed=2)
    est = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, truth.predict(X))
    return truth, est


def test_recovers_a_complete_hierarchy(hierarchy_fit):
    truth, est = hierarchy_fit
    X_test = compattr.sample_masks(truth.n, 1000, seed=99)
    assert r2(est.predict(X_test), truth.predict(X_test)) > 0.98
    assert isinstance(est.spectrum_, Spectrum)
    found = set(est.spectrum_.top(30).to_dict())
    strongest = set(truth.top(10).to_dict())
    assert strongest <= found


def test_fitted_attributes_record_the_choices(hierarchy_fit):
    _, est = hierarchy_fit
    assert est.best_params_["max_depth"] in (3, 5)
    assert est.best_params_["learning_rate"] == 0.1
    assert 1 <= est.best_params_["n_estimators"] <= 300
    assert set(est.timings_) == {"search", "extract", "sparsify"}
    assert est.k_ == len(est.spectrum_)
    cv_rows = est.cv_results_[est.cv_results_["rung"] == "cv"]
    assert len(cv_rows) == 1  # the race completes the CV of the winner only
    assert {"k", "refit", "cv_mse"} <= set(est.sparsity_cv_.columns)
    chosen = est.sparsity_cv_.loc[est.sparsity_cv_["cv_mse"].idxmin()]
    assert bool(chosen["refit"]) == est.refit_


def test_a_race_survivor_continued_keeps_its_earlier_best_round():
    """A survivor continued past its rung restarted its early stopping, so its first new
    round became its best however bad (27 trees against 4, a worse score): the race
    continues a fit to be the same model as one fit from scratch, as its docstring says."""
    from compattr.proxy.search import Config, _fold_sets, mask_dataset, train

    rng = np.random.default_rng(0)
    X = rng.random((300, 10)) < 0.5
    y = (1 - 2 * X[:, 0]) + 0.5 * (1 - 2 * X[:, 1]) * (1 - 2 * X[:, 2]) + rng.normal(0, 1.0, 300)
    data = mask_dataset(X, y, 1)
    folds = [(np.arange(240), np.arange(240, 300))]
    grid = {"max_depth": (None,), "learning_rate": (0.3,), "n_estimators": (20, 80)}
    _, fits, table = search.search(data, y, folds, grid, race=True, num_threads=1, seed=0)
    scratch = train(_fold_sets(data, *folds[0]), Config(None, 0.3), 80, y, num_threads=1, seed=0).booster
    assert len(table) == 3 and table["best_iteration"].iloc[0] < 20  # its best came before the first rung
    assert fits[0].best_iteration == scratch.best_iteration
    assert fits[0].score == pytest.approx(scratch.best_score["valid"]["l2"])


def _interacting_fold(seed: int):
    """A LightGBM Dataset of 700 masks of 14 features whose noisy outputs hold a pair and a
    triple, the outputs, and one fold (560 training and 140 validation masks)."""
    from compattr.proxy.search import mask_dataset

    rng = np.random.default_rng(seed)
    X = rng.random((700, 14)) < 0.5
    S = 1 - 2 * X.astype(float)
    y = 1.5 * S[:, 0] + S[:, 1] * S[:, 2] + 0.8 * S[:, 3] * S[:, 4] * S[:, 5] + rng.normal(0, 0.6, 700)
    order = rng.permutation(700)
    return mask_dataset(X, y, 1), y, (np.sort(order[140:]), np.sort(order[:140]))


def test_a_continued_fit_is_the_fit_from_scratch():
    """A fit continued from its first cap stopped where one fit from scratch to the second cap
    does not: its callbacks had forgotten the earlier rounds' scores (10 of 61 fits differed,
    one stopping at 225 trees where the fit from scratch stopped at 86)."""
    from compattr.proxy.search import Config, Fit, _fold_sets, train

    compared = 0
    for seed in range(3):
        data, y, fold = _interacting_fold(seed)
        for config in (Config(3, 0.1), Config(5, 0.1), Config(None, 0.1)):
            for first, second in ((30, 100), (60, 300)):
                started = train(_fold_sets(data, *fold), config, first, y, num_threads=1, seed=0)
                if started.stopped:  # final
                    continue
                continued = train(
                    _fold_sets(data, *fold), config, second, y, num_threads=1, seed=0, init=started
                ).booster
                scratch = train(_fold_sets(data, *fold), config, second, y, num_threads=1, seed=0).booster
                a, b = Fit.of(continued, config), Fit.of(scratch, config)
                assert (a.best_iteration, a.score) == (b.best_iteration, b.score)
                assert continued.current_iteration() == scratch.current_iteration()  # stopped at the same round
                compared += 1
    assert compared >= 6


def test_a_race_rung_at_the_round_a_fit_stops_does_not_continue_it():
    """A rung whose tree count is the round where the fit from scratch stops (its patience
    or its convexity shortcut, at that very round): the race took reaching the count for
    running to it, continued the fit, and ended elsewhere (best round 156 where the fit
    from scratch has 106). A fit its rules stopped is final."""
    from compattr.proxy.search import Config, Fit, _fold_sets, train

    compared = 0
    for seed in range(3):
        data, y, fold = _interacting_fold(seed)
        for config in (Config(3, 0.1), Config(5, 0.1), Config(3, 0.3)):
            scratch = train(_fold_sets(data, *fold), config, 400, y, num_threads=1, seed=0)
            stopped_at = scratch.booster.current_iteration()
            assert scratch.stopped and stopped_at < 400  # the case this needs
            grid = {"max_depth": (config.max_depth,), "learning_rate": (config.learning_rate,)}
            _, fits, _ = search.search(
                data, y, [fold], grid | {"n_estimators": (stopped_at, 400)}, race=True, num_threads=1, seed=0
            )
            expected = Fit.of(scratch.booster, config)
            assert (fits[0].best_iteration, fits[0].score) == (expected.best_iteration, expected.score)
            compared += 1
    assert compared == 9


def test_a_tree_count_given_twice_is_one_rung():
    """n_estimators=(40, 40, 200) continued a survivor for 0 rounds, which LightGBM refuses."""
    truth = complete_hierarchy(12, n_sets=2, order=3, seed=1)
    X = compattr.sample_masks(12, 400, seed=2)
    y = truth.predict(X) + np.random.default_rng(0).normal(0, 0.3, 400)
    grid = {"max_depth": (3, None), "learning_rate": (0.3, 0.1)}
    once = ProxySPEX(seed=0, grid=grid | {"n_estimators": (40, 200)}).fit(X, y)
    twice = ProxySPEX(seed=0, grid=grid | {"n_estimators": (40, 40, 200)}).fit(X, y)
    assert twice.spectrum_ == once.spectrum_ and twice.best_params_ == once.best_params_


def test_race_winner_keeps_its_tree_count_on_the_other_folds(monkeypatch):
    n = 30
    truth = complete_hierarchy(n, n_sets=3, order=4, seed=3)
    X = compattr.sample_masks(n, compattr.budget(n, 6), seed=4)
    calls = []
    train = search.train

    def recording(sets, config, max_trees, y, **kwargs):
        trained = train(sets, config, max_trees, y, **kwargs)
        calls.append((max_trees, trained.booster.current_iteration()))
        return trained

    monkeypatch.setattr(search, "train", recording)
    est = ProxySPEX(seed=0, grid=SMALL_GRID, all_folds=True).fit(X, truth.predict(X))
    table = est.cv_results_
    winner = table[(table["max_depth"] == est.best_params_["max_depth"]) & (table["rung"] != "cv")]
    kept = int(winner["best_iteration"].iloc[-1])  # its trees on the race's fold
    other_folds = calls[-4:]
    assert all(cap == kept for cap, _ in other_folds)
    assert all(grown <= kept for _, grown in other_folds)
    assert kept < SMALL_GRID["n_estimators"][-1]  # the cap is the race's choice, not the grid's


def test_full_search_cross_validates_every_configuration():
    n = 12
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=4)
    X = compattr.sample_masks(n, 400, seed=5)
    est = ProxySPEX(seed=0, search="full", grid=SMALL_GRID).fit(X, truth.predict(X))
    cv_rows = est.cv_results_[est.cv_results_["rung"] == "cv"]
    assert len(cv_rows) == 2  # every (depth, learning rate) configuration
    best = cv_rows.loc[cv_rows["cv_mse"].idxmin()]
    assert best["max_depth"] == est.best_params_["max_depth"]


def test_refit_helps_under_noise_and_is_chosen_by_cv():
    n = 30
    truth = complete_hierarchy(n, n_sets=3, order=4, seed=7)
    X = compattr.sample_masks(n, compattr.budget(n, 8), seed=8)
    y = add_noise(truth.predict(X), truth, snr_db=10, seed=9)
    X_test = compattr.sample_masks(n, 1000, seed=10)
    fits = {r: ProxySPEX(seed=0, grid=SMALL_GRID, refit=r).fit(X, y) for r in (False, "auto")}
    scores = {r: r2(e.predict(X_test), truth.predict(X_test)) for r, e in fits.items()}
    assert scores["auto"] >= scores[False] - 1e-9
    assert scores["auto"] > 0.9


def test_fixed_k_energy_and_untruncated_modes():
    n = 16
    truth = complete_hierarchy(n, n_sets=2, order=4, seed=11)
    X = compattr.sample_masks(n, 600, seed=12)
    y = truth.predict(X)
    fixed = ProxySPEX(k=5, refit=True, grid=SMALL_GRID).fit(X, y)
    assert len(fixed.spectrum_) <= 5 and () in fixed.spectrum_.to_dict()
    # refit="auto" with a fixed k: the CV compares the trees' coefficients with the refits
    auto = ProxySPEX(k=5, grid=SMALL_GRID).fit(X, y)
    table = auto.sparsity_cv_[auto.sparsity_cv_["k"] > 0]
    best = table.loc[table["cv_mse"].idxmin()]
    assert set(table["refit"]) == {False, True} and auto.refit_ == bool(best["refit"])
    assert auto.ridge_ == best["ridge"] if auto.refit_ else np.isnan(auto.ridge_)
    energy = ProxySPEX(energy=0.9, grid=SMALL_GRID).fit(X, y)
    nonconst = energy.tree_spectrum_.coefs[energy.tree_spectrum_.degrees > 0] ** 2
    kept = energy.spectrum_.coefs[energy.spectrum_.degrees > 0] ** 2
    assert kept.sum() >= 0.9 * nonconst.sum() - 1e-9
    untruncated = ProxySPEX(k=None, grid=SMALL_GRID).fit(X, y)
    assert untruncated.spectrum_ == untruncated.tree_spectrum_


def test_same_seed_same_result():
    n = 12
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=13)
    X = compattr.sample_masks(n, 400, seed=14)
    a = ProxySPEX(seed=3, grid=SMALL_GRID).fit(X, truth.predict(X)).spectrum_
    b = ProxySPEX(seed=3, grid=SMALL_GRID).fit(X, truth.predict(X)).spectrum_
    assert a == b


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.ones((100, 5), bool), np.ones(99), "masks"),
        (np.full((100, 5), 3), np.ones(100), "binary"),
        (np.ones((100, 5), bool), np.r_[np.nan, np.ones(99)], "non-finite"),
        (np.ones((100, 5), bool), np.r_[np.inf, np.ones(99)], "non-finite"),
        (np.ones((20, 5), bool), np.ones(20), "at least"),
        (np.ones(5, bool), np.ones(5), "2-D"),
        (np.zeros((100, 0), bool), np.arange(100.0), "no columns"),
        (np.eye(100, 5, dtype=bool), np.arange(100).astype(str), "real numbers"),
        (np.eye(100, 5, dtype=bool), np.arange(100) + 1j, "real numbers"),
        (np.eye(100, 5, dtype=bool), np.array([1.0] * 99 + ["2"], dtype=object), "real numbers"),
        (np.ones((100, 5), bool), np.arange(100.0), "all 100 masks are the same"),
    ],
)
def test_bad_input_gets_clear_errors(X, y, message):
    with pytest.raises(ValueError, match=message):
        ProxySPEX().fit(X, y)


def test_constant_outputs_give_the_constant_with_a_warning():
    X = compattr.sample_masks(8, 100, seed=0)
    for masks in (X, np.repeat(X[:1], 100, axis=0)):  # also when every mask is the same
        with pytest.warns(UserWarning, match="every output equals 3.0"):
            est = ProxySPEX(seed=0).fit(masks, np.full(100, 3.0))
        assert est.spectrum_.to_dict() == {(): 3.0} and est.tree_spectrum_ == est.spectrum_
        assert est.best_params_ is None and est.k_ == 1 and est.cv_r2_ == 1.0
        assert est.repeats_ == 1 and est.grown_ is False and est.grow_cv_.empty
        np.testing.assert_array_equal(est.predict_trees(X[:5]), np.full(5, 3.0))
        np.testing.assert_array_equal(est.predict(compattr.sample_masks(8, 5, seed=1)), 3.0)


def test_outputs_of_any_magnitude_fit_exactly_by_scaling():
    """y is fitted as y / 2^e: scaling y by a power of two scales the spectrum exactly, and
    outputs near 1e300 (beyond LightGBM's float32 labels) fit as well as small ones."""
    X = compattr.sample_masks(8, 200, seed=0)
    y = 2.0 * X[:, 0] + X[:, 1] * X[:, 2] + np.random.default_rng(0).normal(0, 0.01, 200)
    small = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, y)
    huge = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, y * 2.0**996)  # ~ 1e300
    assert huge.spectrum_.support_tuples() == small.spectrum_.support_tuples()
    np.testing.assert_array_equal(huge.spectrum_.coefs, small.spectrum_.coefs * 2.0**996)
    assert huge.best_params_ == small.best_params_
    big = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, y * 1e300)
    assert r2(big.predict(X) / 1e300, y) > 0.99


@pytest.mark.parametrize(("factor", "offset"), [(1e-3, -1e4), (1e-6, 100.0), (1e-12, 1.0)])
def test_outputs_on_a_large_offset_fit_as_well_as_about_zero(factor, offset):
    """Outputs were divided by a power of two but never centred: a log-likelihood near -1e4
    that moves by 1e-3 kept 12 distinct LightGBM labels of 61 (float32), and the fit lost
    the function (Shapley error 0.27 of 1.84, and at 1e-12 + 1 every value 0 with a
    reported CV R² of 1). Less their midrange, they fit as the outputs about zero do."""
    truth = complete_hierarchy(8, n_sets=3, order=3, seed=1)
    X = compattr.sample_masks(8, 200, seed=0)
    y = truth.predict(X)
    base = ProxySPEX(seed=0).fit(X, y)
    shifted = ProxySPEX(seed=0).fit(X, factor * y + offset)
    expected = compattr.indices.shapley(truth)
    assert np.abs(compattr.indices.shapley(base.spectrum_) - expected).max() < 1e-6
    error = np.abs(compattr.indices.shapley(shifted.spectrum_) / factor - expected).max()
    assert error < 1e-4 * np.abs(expected).max()
    X_test = compattr.sample_masks(8, 300, seed=9)
    y_test = factor * truth.predict(X_test) + offset
    assert r2(shifted.predict(X_test), y_test) > 0.9999
    trees = r2(base.predict_trees(X_test), truth.predict(X_test))  # the trees approximate
    assert r2(shifted.predict_trees(X_test), y_test) == pytest.approx(trees, abs=1e-3)
    assert shifted.spectrum_.constant == pytest.approx(offset + factor * truth.constant, rel=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(k=0),
        dict(k="all"),
        dict(k=True),
        dict(refit="yes"),
        dict(regrow_capped=np.float32(1.5)),
        dict(refit=1),
        dict(k=None, refit=True),
        dict(energy=1.5),
        dict(energy=True),
        dict(energy="0.9"),
        dict(search="grid"),
        dict(cv=1),
        dict(cv="5"),
        dict(max_k=0),
        dict(max_cv_rows=0),
        dict(max_cv_rows=-1),
        dict(max_order=-1),
        dict(max_order="2"),
        dict(num_threads=0),
        dict(num_threads=True),
        dict(seed=None),
        dict(seed=True),
        dict(tilt=True),
        dict(ridge=True),
        dict(ridge=[0.1, True]),
        dict(grid={"max_depths": (3,)}),
        dict(grid={"max_depth": 3}),
        dict(grid={"max_depth": (0,)}),
        dict(grid={"learning_rate": (-0.1,)}),
        dict(grid={"n_estimators": ()}),
    ],
)
def test_bad_parameters_get_clear_errors(kwargs):
    """Refused up front, the message naming the parameter (not an error from deep inside)."""
    X = compattr.sample_masks(6, 100, seed=0)
    with pytest.raises(ValueError, match=list(kwargs)[-1]):
        ProxySPEX(**kwargs).fit(X, X.sum(axis=1).astype(float))


def test_predict_before_fit():
    with pytest.raises(NotFittedError, match="not fitted"):
        ProxySPEX().predict(np.ones((2, 3), bool))


def test_least_squares_refit_equals_lstsq():
    """The Cholesky refit (float32 parities, centred outputs) matches float64 lstsq."""
    from compattr.proxy.leastsquares import least_squares

    rng = np.random.default_rng(3)
    n = 30
    kept = Spectrum(n, [(1,), (2, 5), (0, 7, 9), (4,)], [1.0, 1.0, 1.0, 1.0])
    X = rng.random((2000, n)) < 0.5
    y = 250.0 + 3 * rng.standard_normal(2000) + kept.predict(X)
    refit = least_squares(kept, X, y)
    tuples = [(), *kept.support_tuples()]
    Phi = np.column_stack([Spectrum(n, [t], [1.0]).parity_matrix(X)[:, 0] for t in tuples])
    expected = np.linalg.lstsq(Phi, y, rcond=None)[0]
    got = refit.to_dict()
    np.testing.assert_allclose([got.get(t, 0.0) for t in tuples], expected, rtol=0, atol=1e-9 * np.abs(y).max())


def _least_squares_problem(seed: int, n: int = 40, m: int = 1500, k: int = 300):
    """Masks, padded supports (the constant first) and noisy outputs of a random spectrum."""
    from compattr.proxy.sparsify import _ranked_terms

    rng = np.random.default_rng(seed)
    supports = {tuple(sorted(rng.choice(n, rng.integers(1, 5), replace=False))) for _ in range(2 * k)}
    spectrum = Spectrum(n, [(), *sorted(supports)[: k - 1]], rng.standard_normal(k))
    X = rng.random((m, n)) < 0.5
    rows, _ = _ranked_terms(spectrum, k)
    return X, rows, spectrum.predict(X) + 0.1 * rng.standard_normal(m)


def _prefix_solutions(L, z, ks):
    from scipy.linalg import solve_triangular

    return [solve_triangular(L[:k, :k].T, z[:k], lower=False) for k in ks]


def test_float32_factor_gives_the_float64_prefix_solutions():
    """The k-CV factors in float32: its least-squares prefixes match float64's to ~1e-5."""
    from compattr.proxy.leastsquares import normal_equations

    X, rows, y = _least_squares_problem(4)
    L32, z32 = normal_equations(X, rows, y, dtype=np.float32)
    L64, z64 = normal_equations(X, rows, y)
    assert L32.dtype == z32.dtype == np.float32 and L64.dtype == np.float64
    ks = [10, 100, len(rows)]
    for b32, b64 in zip(_prefix_solutions(L32, z32, ks), _prefix_solutions(L64, z64, ks)):
        np.testing.assert_allclose(b32, b64, rtol=0, atol=1e-4 * np.abs(b64).max())


def test_normal_equations_fall_back_to_float64_when_float32_cannot_factor(monkeypatch):
    from compattr.proxy import leastsquares

    X, rows, y = _least_squares_problem(5)
    expected = leastsquares.normal_equations(X, rows, y)
    monkeypatch.setitem(leastsquares._POTRF, np.dtype(np.float32), lambda gram, **kwargs: (gram, 1))  # "not PD"
    L, z = leastsquares.normal_equations(X, rows, y, dtype=np.float32)
    assert L.dtype == np.float64
    np.testing.assert_array_equal(np.tril(L), np.tril(expected[0]))
    np.testing.assert_array_equal(z, expected[1])
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        leastsquares._cholesky(np.zeros((3, 3)), np.float32)


class _Env:
    """The fields of LightGBM's callback environment that the race callbacks read."""

    def __init__(self, iteration: int, score: float):
        self.iteration, self.evaluation_result_list = iteration, [("valid", "l2", score, False)]


@pytest.mark.parametrize("rate", [0.0, 0.002, 0.01, 0.05])
def test_hopeless_stops_only_fits_that_cannot_reach_the_incumbent(rate):
    """On convex validation curves, a fit ending just below the incumbent is never stopped,
    and one ending well above it is stopped before the cap. Rate 0 is the straight line,
    the convex curve whose gains never slow down: the bound is exact there."""
    import lightgbm as lgb

    from compattr.proxy.stopping import Hopeless

    cap = 500
    rounds = np.arange(1, cap + 1)
    curve = 100.0 - 0.1 * rounds if rate == 0 else 10.0 + 90.0 * (1 - rate) ** rounds  # convex, decreasing
    for incumbent, stoppable in ((curve[-1] + 1e-9, False), (curve[-1] - 0.5 * (curve[0] - curve[-1]), True)):
        callback, stopped_at = Hopeless(incumbent, cap), None
        for t, score in enumerate(curve):
            try:
                callback(_Env(t, score))
            except lgb.callback.EarlyStopException as stop:
                stopped_at = t
                assert stop.best_iteration == t and stop.best_score[0][2] == score > incumbent
                break
        assert (stopped_at is not None) == stoppable, (incumbent, stopped_at)
        if stoppable:
            assert stopped_at < cap - 1


def _stop_round(callback, curve):
    """Feed a validation curve to a LightGBM callback; return (round it raised at, the
    best iteration and score it reported), or None if it never raised."""
    import lightgbm as lgb

    named = getattr(lgb.basic, "EvalResult", None)  # a named tuple since LightGBM 4.7
    for t, score in enumerate(curve):
        result = ("valid", "l2", score, False)
        env = lgb.callback.CallbackEnv(
            model=None,
            params={},
            iteration=t,
            begin_iteration=0,
            end_iteration=len(curve),
            evaluation_result_list=[named(*result) if named else result],
        )
        try:
            callback(env)
        except lgb.callback.EarlyStopException as stop:
            return t, stop.best_iteration, stop.best_score[0][2]
    return None


@pytest.mark.parametrize("shape", ["decaying", "overfitting", "short"])
def test_early_stopping_reports_lightgbm_outcome_and_ends_convex_fits_sooner(shape):
    """On a convex curve, EarlyStopping reports the very iteration and score that
    LightGBM's own early stopping (same patience and min_delta) reports, and raises sooner;
    on a curve still improving at its last round, at that round, like LightGBM."""
    import lightgbm as lgb

    from compattr.proxy.stopping import EarlyStopping

    rounds = np.arange(1, 2001)
    curve = 10.0 + 90.0 * 0.99**rounds
    if shape == "overfitting":  # convex, with a minimum, then rising
        curve = curve + 0.002 * rounds
    elif shape == "short":  # still improving at the last round
        curve = curve[:300]
    patience, min_delta = 20, 0.05
    lightgbm = _stop_round(lgb.early_stopping(patience, verbose=False, min_delta=min_delta), curve)
    ours = _stop_round(EarlyStopping(patience, min_delta), curve)
    assert lightgbm is not None and ours is not None
    assert ours[1:] == lightgbm[1:]
    if shape == "short":
        assert ours[0] == lightgbm[0] == len(curve) - 1
    else:
        assert ours[0] < lightgbm[0]


def test_hopeless_uses_the_exact_bound_once_the_curve_is_visibly_convex():
    """A straight-line curve ending 0.5 above the incumbent cannot win: it is stopped at the
    first check after two windows (where convexity is visible), not near the cap as the
    safety factor alone would do."""
    import lightgbm as lgb

    from compattr.proxy.stopping import Hopeless

    cap, window = 500, 25
    curve = 100.0 - 0.1 * np.arange(1, cap + 1)
    callback = Hopeless(curve[-1] - 0.5, cap, window=window)
    with pytest.raises(lgb.callback.EarlyStopException) as stop:
        for t, score in enumerate(curve):
            callback(_Env(t, score))
    assert stop.value.best_iteration == 2 * window  # 0-based: the first round after two windows


def test_ridge_refit_equals_the_closed_form_with_an_unpenalised_constant():
    """least_squares(ridge=r) solves (PᵀP + r·m·D) β = Pᵀy, D = 1 except on the constant."""
    from compattr.proxy.leastsquares import least_squares

    rng = np.random.default_rng(7)
    n, m, ridge = 20, 300, 0.2
    kept = Spectrum(n, [(), (1,), (2, 5), (0, 7, 9), (4,)], [1.0] * 5)
    X = rng.random((m, n)) < 0.5
    y = 40.0 + rng.standard_normal(m) + kept.predict(X)
    tuples = kept.support_tuples()
    Phi = np.column_stack([Spectrum(n, [t], [1.0]).parity_matrix(X)[:, 0] for t in tuples])
    D = np.diag([0.0 if t == () else 1.0 for t in tuples])
    expected = np.linalg.solve(Phi.T @ Phi + ridge * m * D, Phi.T @ y)
    got = least_squares(kept, X, y, ridge=ridge).to_dict()
    np.testing.assert_allclose([got[t] for t in tuples], expected, rtol=1e-7)  # up to the 1e-9 jitter
    assert abs(got[()] - 41.0) < 0.5  # the constant (40 + kept's 1) is not shrunk towards 0
    plain = least_squares(kept, X, y).to_dict()
    assert sum(v * v for t, v in got.items() if t) < sum(v * v for t, v in plain.items() if t)


def test_top_terms_ranks_by_magnitude_tilted_towards_higher_orders():
    """The constant, then the k - 1 terms of largest |F(T)| tilt^|T| (brute force)."""
    from compattr.proxy.sparsify import top_terms

    truth = complete_hierarchy(16, n_sets=3, order=4, seed=25)
    terms = {t: c for t, c in truth.to_dict().items() if t}
    for tilt in (1.0, 1.5, 3.0):
        for k in (1, 5, 20):
            best = sorted(terms, key=lambda t: -abs(terms[t]) * tilt ** len(t))[: k - 1]
            got = top_terms(truth, k, tilt).to_dict()
            assert set(got) == {(), *best}
            assert all(got[t] == truth.to_dict()[t] for t in got)
    assert set(top_terms(truth, 20, 3.0).to_dict()) != set(top_terms(truth, 20).to_dict())  # the tilt matters here


def test_sparsity_cv_scores_every_ridge_and_tilt_on_held_out_folds():
    """Each (k, tilt, ridge) CV error is the held-out error of that ridge refit on each fold."""
    from sklearn.model_selection import KFold

    from compattr.proxy.leastsquares import least_squares
    from compattr.proxy.sparsify import sparsity_cv, top_terms

    n = 16
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=5)
    X = compattr.sample_masks(n, 300, seed=6)
    y = add_noise(truth.predict(X), truth, snr_db=3, seed=7)
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    spectra = [truth, truth.with_coefs(truth.coefs * 0.5), truth]
    ridges = (0.0, 0.05, 1.0)
    trees = [SimpleNamespace(score=0.0)] * 3  # the untruncated trees' row is not under test
    tilts = (1.0, 2.0)
    table = sparsity_cv(X, y, folds, spectra, trees, [4, 8], 10**6, 0, ridges, tilts).iloc[:-1]
    for tilt in tilts:
        for ridge in ridges:
            for k in (4, 8):
                sq = 0.0
                for spectrum, (train, valid) in zip(spectra, folds):
                    refit = least_squares(top_terms(spectrum, k, tilt), X[train], y[train], ridge)
                    sq += np.sum((refit.predict(X[valid]) - y[valid]) ** 2)
                row = table[(table["k"] == k) & (table["ridge"] == ridge) & (table["tilt"] == tilt)]
                np.testing.assert_allclose(row["cv_mse"].item(), sq / len(X), rtol=1e-4)
    assert table.loc[~table["refit"], "ridge"].isna().all()
    untilted = sparsity_cv(X, y, folds, spectra, trees, [4, 8], 10**6, 0, ridges).iloc[:-1]
    np.testing.assert_array_equal(untilted["cv_mse"], table.loc[table["tilt"] == 1.0, "cv_mse"])


def _sparsity_cv_case(order: int, seed: int):
    """A noisy hierarchy on 16 features: 400 masks, their outputs at 3 dB, three folds, the
    spectra each fold is ranked by (the truth scaled by 1, 0.5 and 2), and the fold
    ensembles' scores (the untruncated trees' row is not under test)."""
    from sklearn.model_selection import KFold

    n = 16
    truth = complete_hierarchy(n, n_sets=2, order=order, seed=seed)
    X = compattr.sample_masks(n, 400, seed=seed + 1)
    y = add_noise(truth.predict(X), truth, snr_db=3, seed=seed + 2)
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    spectra = [truth.with_coefs(truth.coefs * s) for s in (1.0, 0.5, 2.0)]
    return X, y, folds, spectra, [SimpleNamespace(score=0.0)] * 3


def test_sparsity_cv_memo_scores_a_fold_once(monkeypatch):
    """With a shared memo, the first fold scored alone (the settle check) is not scored again
    by the CV over every fold, and the tables equal those computed without it; another fit
    on that fold is scored afresh."""
    from compattr.proxy import sparsify

    X, y, folds, spectra, _ = _sparsity_cv_case(order=3, seed=30)
    fits = [search.Fit(search.Config(3, 0.1), f"model {i}", 10, 0.0) for i in range(3)]  # hashable
    calls = []
    fold_errors = sparsify._fold_errors
    monkeypatch.setattr(sparsify, "_fold_errors", lambda *a: calls.append(a[2]) or fold_errors(*a))
    options = ([4, 8], 10**6, 0, (0.0, 0.05), (1.0, 2.0), ("trees", "refit", "closure"))
    memo: dict = {}
    first = sparsify.sparsity_cv(X, y, folds[:1], spectra[:1], fits[:1], *options, memo)
    every = sparsify.sparsity_cv(X, y, folds, spectra, fits, *options, memo)
    assert len(calls) == 2 * 3  # two tilts per fold, each fold once
    assert first.equals(sparsify.sparsity_cv(X, y, folds[:1], spectra[:1], fits[:1], *options))
    assert every.equals(sparsify.sparsity_cv(X, y, folds, spectra, fits, *options))
    calls.clear()
    other = search.Fit(search.Config(3, 0.1), "another model", 10, 0.0)
    sparsify.sparsity_cv(X, y, folds[:1], spectra[1:2], [other], *options, memo)
    assert len(calls) == 2


def test_sparsity_cv_scores_the_refit_ranking_on_held_out_folds():
    """Each re-ranked (k, tilt, ridge) CV error is the held-out error of: the fold ensemble's top
    max(ks) terms refitted on the fold's training masks, the k of largest refitted |β| kept,
    and those refitted again."""
    from compattr.proxy.leastsquares import least_squares
    from compattr.proxy.sparsify import refit_ranked_terms, sparsity_cv

    X, y, folds, spectra, trees = _sparsity_cv_case(order=3, seed=8)
    ridges, tilts, ks = (0.0, 0.05), (1.0, 2.0), [4, 8, 16]
    table = sparsity_cv(X, y, folds, spectra, trees, ks, 10**6, 0, ridges, tilts, ("trees", "refit"))
    reranked = table[table["ranking"] == "refit"]
    assert len(reranked) == len(ridges) * len(tilts) * len(ks) and reranked["refit"].all()
    for tilt in tilts:
        for ridge in ridges:
            for k in ks:
                sq = 0.0
                for spectrum, (train, valid) in zip(spectra, folds):
                    kept = refit_ranked_terms(spectrum, k, tilt, max(ks), X[train], y[train], ridge)
                    refit = least_squares(kept, X[train], y[train], ridge)
                    sq += np.sum((refit.predict(X[valid]) - y[valid]) ** 2)
                row = reranked[(reranked["k"] == k) & (reranked["ridge"] == ridge) & (reranked["tilt"] == tilt)]
                np.testing.assert_allclose(row["cv_mse"].item(), sq / len(X), rtol=1e-4)
    # the pool itself (k = max(ks)) is the same set of terms in either ranking
    pool = table[(table["k"] == max(ks)) & table["refit"]].groupby(["tilt", "ridge"])["cv_mse"]
    np.testing.assert_allclose(pool.min(), pool.max(), rtol=1e-4)
    trees_only = sparsity_cv(X, y, folds, spectra, trees, ks, 10**6, 0, ridges, tilts)
    assert set(trees_only["ranking"]) == {"trees"}
    np.testing.assert_array_equal(trees_only["cv_mse"], table.loc[table["ranking"] == "trees", "cv_mse"])


def _all_subsets(supports) -> set[tuple[int, ...]]:
    return {s for t in supports for r in range(len(t) + 1) for s in itertools.combinations(sorted(t), r)}


def test_closure_order_lists_each_ranked_support_after_its_subsets():
    """Each prefix of the order holds exactly the subsets of the leading ranked supports (their
    downward closure), nothing is listed twice, and the order stops before exceeding its limit."""
    from compattr.proxy.sparsify import _closure_order
    from compattr.spectrum.supports import pad_supports

    n, rng = 12, np.random.default_rng(3)
    ranked = [()] + [tuple(rng.choice(n, size=rng.integers(1, 5), replace=False)) for _ in range(30)]
    rows = pad_supports(ranked, n)
    for limit in (1, 9, 40, 10**4):
        closure, ends = _closure_order(rows, n, limit)
        listed = [tuple(int(i) for i in row[row < n]) for row in closure]
        assert len(listed) == len(set(listed)) == (ends[-1] if len(ends) else 0) <= limit
        for i, end in enumerate(ends):
            assert set(listed[:end]) == _all_subsets(ranked[: i + 1])
            block = listed[ends[i - 1] if i else 0 : end]  # the subsets new with ranked[i]
            assert block == sorted(block, key=lambda t: (len(t), t))
        if len(ends) < len(ranked):  # stopped: the next support's closure would not fit
            assert len(_all_subsets(ranked[: len(ends) + 1])) > limit
    assert len(ends) == len(ranked)
    closure, ends = _closure_order(rows, n, 0)  # nothing fits
    assert closure.shape == (0, 0) and len(ends) == 0


def test_sparsity_cv_scores_the_closure_on_held_out_folds():
    """Each closure (k, tilt, ridge) CV error is the held-out error of: the fold's top k
    re-ranked by the refit at the first ridge strength, with all their subsets, refitted at
    that ridge strength on the fold's training masks; inf where that closure holds more than
    max(ks) terms. closed_terms gives the same terms on every mask."""
    from compattr.proxy.leastsquares import least_squares
    from compattr.proxy.sparsify import closed_terms, refit_ranked_terms, sparsity_cv

    X, y, folds, spectra, trees = _sparsity_cv_case(order=4, seed=11)
    n = X.shape[1]
    ridges, tilts, ks = (1.0, 0.0), (1.0, 2.0), [4, 8, 16]  # the two rank some k differently

    def closure_fit(spectrum, k, tilt, X, y, ridge):
        top = refit_ranked_terms(spectrum, k, tilt, max(ks), X, y, ridges[0]).support_tuples()
        closure = _all_subsets(top)
        if len(closure) > max(ks):
            return None
        return least_squares(Spectrum.from_dict(dict.fromkeys(closure, 1.0), n), X, y, ridge)

    table = sparsity_cv(X, y, folds, spectra, trees, ks, 10**6, 0, ridges, tilts, ("trees", "closure"))
    closed = table[table["ranking"] == "closure"]
    assert len(closed) == len(ridges) * len(tilts) * len(ks) and closed["refit"].all()
    for tilt in tilts:
        for ridge in ridges:
            for k in ks:
                fits = [closure_fit(s, k, tilt, X[tr], y[tr], ridge) for s, (tr, _) in zip(spectra, folds)]
                row = closed[(closed["k"] == k) & (closed["ridge"] == ridge) & (closed["tilt"] == tilt)]
                if any(fit is None for fit in fits):
                    assert row["cv_mse"].item() == np.inf
                    continue
                sq = sum(np.sum((fit.predict(X[va]) - y[va]) ** 2) for fit, (_, va) in zip(fits, folds))
                np.testing.assert_allclose(row["cv_mse"].item(), sq / len(X), rtol=1e-4)
                whole = closed_terms(spectra[0], k, tilt, max(ks), X, y, ridge, rank_ridge=ridges[0])
                expected = closure_fit(spectra[0], k, tilt, X, y, ridge)
                if expected is not None:
                    assert whole.to_dict().keys() == expected.to_dict().keys()
                    np.testing.assert_allclose(whole.predict(X), expected.predict(X), rtol=1e-6, atol=1e-9)
    assert np.isinf(closed["cv_mse"]).any() and np.isfinite(closed["cv_mse"]).any()
    trees_only = sparsity_cv(X, y, folds, spectra, trees, ks, 10**6, 0, ridges, tilts)
    np.testing.assert_array_equal(trees_only["cv_mse"], table.loc[table["ranking"] == "trees", "cv_mse"])


def test_refit_ranking_is_chosen_by_cv_and_keeps_the_largest_refitted_terms():
    """A noise-free hierarchy whose trees spread weight over spurious terms: the CV re-ranks,
    the kept terms are the largest of the pool's refit, and held-out R² is at least the trees'
    ranking's. ranking="trees" is the paper's rule; bad values are refused. One fit, not
    grown: its spectrum is the kept terms themselves."""
    from compattr.proxy.sparsify import refit_ranked_terms

    n = 30
    truth = complete_hierarchy(n, n_sets=3, order=4, seed=26)
    X = compattr.sample_masks(n, compattr.budget(n, 3), seed=27)
    y = truth.predict(X)
    one_fit = {"seed": 0, "grid": SMALL_GRID, "repeats": 1, "grow": False, "extend_rounds": 0}  # the kept terms last
    est = ProxySPEX(ranking=("trees", "refit"), **one_fit).fit(X, y)
    table = est.sparsity_cv_
    assert set(table["ranking"]) == {"trees", "refit"}
    best = table.loc[table["cv_mse"].idxmin()]
    assert est.ranking_ == best["ranking"] == "refit" and est.k_ == best["k"] and est.tilt_ == best["tilt"]
    pool = int(table["k"].max())
    expected = refit_ranked_terms(est.tree_spectrum_, est.k_, est.tilt_, pool, X, y, est.ridge_)
    assert set(est.spectrum_.to_dict()) == set(expected.to_dict())
    trees = ProxySPEX(ranking="trees", **one_fit).fit(X, y)
    assert trees.ranking_ == "trees" and set(trees.sparsity_cv_["ranking"]) == {"trees"}
    X_test = compattr.sample_masks(n, 2000, seed=28)
    assert r2(est.predict(X_test), truth.predict(X_test)) >= r2(trees.predict(X_test), truth.predict(X_test))
    forced = ProxySPEX(seed=0, grid=SMALL_GRID, ranking="refit").fit(X, y)
    assert forced.ranking_ == "refit"
    for bad in ("auto", "magnitude", None):
        with pytest.raises(ValueError, match="ranking"):
            ProxySPEX(ranking=bad).fit(X, y)
    with pytest.raises(ValueError, match="ranking='refit'"):
        ProxySPEX(ranking="refit", refit=False).fit(X, y)


@pytest.mark.parametrize("seeds", [(26, 27, 28), (40, 41, 42)])
def test_closure_ranking_is_chosen_by_cv_and_keeps_every_subset_of_the_re_ranked_terms(seeds):
    """A noise-free hierarchy whose top k leave out lower-order terms: the CV (default
    ranking) chooses the closure; the kept terms are closed_terms' (re-ranked at the first
    ridge strength), hold every subset of each kept term, and predict held-out masks at least
    as well as the fit without the closure. Bad rankings are refused. One fit, not grown:
    its spectrum is the kept terms themselves."""
    from compattr.proxy.proxyspex import RIDGES
    from compattr.proxy.sparsify import closed_terms

    n = 30
    truth = complete_hierarchy(n, n_sets=3, order=4, seed=seeds[0])
    X = compattr.sample_masks(n, compattr.budget(n, 3), seed=seeds[1])
    y = truth.predict(X)
    one_fit = {"seed": 0, "grid": SMALL_GRID, "repeats": 1, "grow": False, "extend_rounds": 0}  # the kept terms last
    est = ProxySPEX(**one_fit).fit(X, y)
    table = est.sparsity_cv_
    assert set(table["ranking"]) == {"trees", "refit", "closure"}
    best = table.loc[table["cv_mse"].idxmin()]
    assert est.ranking_ == best["ranking"] == "closure" and est.tilt_ == best["tilt"] and est.ridge_ == best["ridge"]
    pool = int(table["k"].max())
    expected = closed_terms(est.tree_spectrum_, int(best["k"]), est.tilt_, pool, X, y, est.ridge_, RIDGES[0])
    kept = est.spectrum_.support_tuples()
    assert set(kept) == set(expected.support_tuples()) and est.k_ == len(kept) <= pool
    assert all(sub in set(kept) for t in kept for r in range(len(t)) for sub in itertools.combinations(t, r))
    np.testing.assert_allclose(est.spectrum_.predict(X), expected.predict(X), rtol=1e-9, atol=1e-9)
    unclosed = ProxySPEX(ranking=("trees", "refit"), **one_fit).fit(X, y)
    X_test = compattr.sample_masks(n, 2000, seed=seeds[2])
    assert r2(est.predict(X_test), truth.predict(X_test)) >= r2(unclosed.predict(X_test), truth.predict(X_test))
    for bad in (("trees", "closed"), [], ["refit", None], [["trees"]]):
        with pytest.raises(ValueError, match="ranking"):
            ProxySPEX(ranking=bad).fit(X, y)
    with pytest.raises(ValueError, match="needs refit"):
        ProxySPEX(ranking=("refit", "closure"), refit=False).fit(X, y)
    assert ProxySPEX(ranking=("trees", "closure"), refit=False).fit(X, y).ranking_ == "trees"


def test_tilt_is_the_papers_by_default_chosen_with_k_by_cv_on_request_and_can_be_fixed():
    from compattr.proxy.sparsify import top_terms

    n = 30
    truth = complete_hierarchy(n, n_sets=3, order=4, seed=26)
    X = compattr.sample_masks(n, compattr.budget(n, 3), seed=27)
    y = truth.predict(X)
    default = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=False, ranking="trees").fit(X, y)
    assert default.tilt_ == 1.0 and set(default.sparsity_cv_["tilt"]) == {1.0}
    est = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=False, ranking="trees", tilt="cv").fit(X, y)
    table = est.sparsity_cv_
    assert set(table.loc[table["k"] > 0, "tilt"]) == set(compattr.proxy.proxyspex.TILTS)
    best = table.loc[table["cv_mse"].idxmin()]
    assert est.tilt_ == best["tilt"] and est.k_ == best["k"]
    expected = top_terms(est.tree_spectrum_, est.k_, est.tilt_)
    assert set(est.spectrum_.to_dict()) == set(expected.to_dict())  # the refit keeps the ranked terms
    fixed = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=False, tilt=1.2, ranking="trees").fit(X, y)
    assert fixed.tilt_ == 1.2 and set(fixed.sparsity_cv_.query("k > 0")["tilt"]) == {1.2}
    twelve = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=False, k=12, tilt=2.0).fit(X, y)  # a fixed tilt
    assert twelve.spectrum_.to_dict().keys() == top_terms(est.tree_spectrum_, 12, 2.0).to_dict().keys()
    for bad in ("auto", 0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="tilt"):
            ProxySPEX(tilt=bad).fit(X, y)


def test_ridge_is_chosen_by_cv_and_can_be_fixed():
    n = 30
    truth = complete_hierarchy(n, n_sets=3, order=4, seed=8)
    X = compattr.sample_masks(n, 400, seed=9)
    y = add_noise(truth.predict(X), truth, snr_db=0, seed=10)
    est = ProxySPEX(seed=0, grid=SMALL_GRID, refit=True).fit(X, y)
    table = est.sparsity_cv_[est.sparsity_cv_["refit"]]
    assert set(table["ridge"]) == set(compattr.proxy.proxyspex.RIDGES)
    best = table.loc[table["cv_mse"].idxmin()]
    assert est.ridge_ == best["ridge"] and est.k_ == min(best["k"], len(est.tree_spectrum_))
    fixed = ProxySPEX(seed=0, grid=SMALL_GRID, refit=True, ridge=0.5).fit(X, y)
    assert fixed.ridge_ == 0.5 and set(fixed.sparsity_cv_["ridge"].dropna()) == {0.5}
    kept = ProxySPEX(seed=0, grid=SMALL_GRID, k=12, refit=True).fit(X, y)  # fixed k: the ridge by CV
    assert len(kept.spectrum_) == 12 and kept.ridge_ in compattr.proxy.proxyspex.RIDGES
    assert np.isnan(ProxySPEX(seed=0, grid=SMALL_GRID, refit=False).fit(X, y).ridge_)


@pytest.mark.parametrize("ridge", ["auto", -0.1, [], [0.1, np.inf], [[0.1]]])
def test_bad_ridge_is_refused(ridge):
    X = compattr.sample_masks(10, 100, seed=0)
    with pytest.raises(ValueError, match="ridge"):
        ProxySPEX(ridge=ridge).fit(X, X.sum(1).astype(float))


def test_final_fit_adds_the_winner_fitted_on_every_mask_with_its_trees_grown_by_five_fourths():
    """tree_spectrum_ = (folds' average + spectrum of the winner refitted on all masks) / 2, the
    refit growing the folds' mean tree count by m / (4m/5); checked by brute force over 2^8 masks."""
    import itertools
    import math

    import lightgbm as lgb

    n = 8
    truth = complete_hierarchy(n, n_sets=3, order=3, seed=11)
    X = compattr.sample_masks(n, 300, seed=12)
    y = add_noise(truth.predict(X), truth, snr_db=5, seed=13)
    y = y / 2.0 ** math.frexp(np.abs(y).max())[1]  # max |y| in [0.5, 1): no output scaling
    grid = {"max_depth": (3,), "learning_rate": (0.1,), "n_estimators": (200,)}
    with_final = ProxySPEX(seed=0, grid=grid, k=None, final_fit=True).fit(X, y)
    folds_only = ProxySPEX(seed=0, grid=grid, k=None, final_fit=False).fit(X, y)
    trees = with_final.best_params_["n_estimators"]
    assert with_final.best_params_["final_trees"] == round(trees * 300 / 240)
    assert "final_trees" not in folds_only.best_params_

    params = search.Config(3, 0.1).params(1, 0)
    binary = {"max_bin": 2, "min_data_in_bin": 1, "feature_pre_filter": False, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(X.astype(np.float64), y, params=binary), round(trees * 300 / 240))
    every = np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)
    supports = [tuple(np.flatnonzero(T)) for T in every]
    H = np.column_stack([(-1.0) ** every[:, list(T)].sum(axis=1) for T in supports])
    final = H.T @ booster.predict(every.astype(np.float64)) / 2**n
    got, folds = with_final.tree_spectrum_.to_dict(), folds_only.tree_spectrum_.to_dict()
    recovered = [2 * got.get(T, 0.0) - folds.get(T, 0.0) for T in supports]
    np.testing.assert_allclose(recovered, final, rtol=0, atol=1e-9)


def test_final_fit_auto_adds_it_only_while_the_cv_leaves_variance_unexplained():
    n = 20
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=14)
    X = compattr.sample_masks(n, compattr.budget(n, 8), seed=15)
    y_clean, y_noisy = truth.predict(X), add_noise(truth.predict(X), truth, snr_db=3, seed=16)
    clean = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, y_clean)
    noisy = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, y_noisy)
    for est, y in ((clean, y_clean), (noisy, y_noisy)):  # cv_r2_: read off the sparsity CV
        assert est.cv_r2_ == pytest.approx(1 - est.sparsity_cv_["cv_mse"].min() / np.var(y))
    assert clean.cv_r2_ >= compattr.proxy.proxyspex.FINAL_FIT_BELOW > noisy.cv_r2_
    assert "final_trees" not in clean.best_params_  # the CV explains > 99.8 %: nothing to add
    assert "final_trees" in noisy.best_params_  # 3 dB of noise: the CV explains ~ 2/3
    never = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=False).fit(X, truth.predict(X))
    assert never.spectrum_ == clean.spectrum_
    # a threshold of its own: below the noisy fit's CV, nothing is added; above it, the fit is
    below = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=noisy.cv_r2_ / 2).fit(X, y_noisy)
    above = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=(1 + noisy.cv_r2_) / 2).fit(X, y_noisy)
    assert "final_trees" not in below.best_params_ and "final_trees" in above.best_params_
    assert above.spectrum_ == noisy.spectrum_
    for bad in ("always", 0.0, 1.5):
        with pytest.raises(ValueError, match="final_fit"):
            ProxySPEX(final_fit=bad).fit(X, truth.predict(X))


def test_all_folds_auto_keeps_the_first_fold_alone_when_its_sparse_refit_explains_the_variance(monkeypatch):
    """Noise-free and easy: the first fold's best top-k explains >= SETTLED_ABOVE of its held-out
    variance, so its ensemble alone is the trees' spectrum and k is chosen on it (by the settle
    check's own sparsity CV, not run twice). Noisy: every fold is fitted, as with
    all_folds=True; search="full" fits every fold anyway."""
    from sklearn.model_selection import KFold

    n = 20
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=21)
    X = compattr.sample_masks(n, compattr.budget(n, 8), seed=22)
    y = truth.predict(X)
    calls = []
    sparsity_cv = compattr.proxy.proxyspex.sparsity_cv
    monkeypatch.setattr(
        compattr.proxy.proxyspex, "sparsity_cv", lambda *a, **kw: calls.append(a) or sparsity_cv(*a, **kw)
    )
    settled = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=False).fit(X, y)
    assert len(calls) == 1  # the settle check's table chose k
    monkeypatch.undo()
    every = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=False, all_folds=True).fit(X, y)
    assert len(settled.tree_models_) == 1 and len(every.tree_models_) == 5
    assert settled.tree_models_[0][1] == every.tree_models_[0][1]  # the first fold's ensemble
    assert settled.cv_results_.query("rung == 'cv'")["folds"].tolist() == [1]
    _, first_valid = next(KFold(5, shuffle=True, random_state=0).split(X))
    explained = 1 - settled.sparsity_cv_["cv_mse"].min() / np.var(y[first_valid])  # k chosen on that fold
    assert explained >= compattr.proxy.proxyspex.SETTLED_ABOVE
    X_test = compattr.sample_masks(n, 1000, seed=23)
    assert r2(settled.predict(X_test), truth.predict(X_test)) > 0.998
    full = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=False, search="full").fit(X, y)
    assert len(full.tree_models_) == 5

    noisy = add_noise(y, truth, snr_db=10, seed=24)
    auto = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, noisy)
    assert len(auto.tree_models_) == 6  # five folds and the fit on every mask
    assert auto.spectrum_ == ProxySPEX(seed=0, grid=SMALL_GRID, all_folds=True).fit(X, noisy).spectrum_
    with pytest.raises(ValueError, match="all_folds"):
        ProxySPEX(all_folds=False).fit(X, y)


def test_constant_first_fold_is_not_settled_and_warns_nothing():
    """An accuracy over few questions can be constant on the first fold's held-out masks while
    it varies elsewhere: that fold does not settle the search (its variance explains nothing),
    and no division by its zero variance is warned about."""
    import warnings

    from sklearn.model_selection import KFold

    n = 10
    X = compattr.sample_masks(n, 120, seed=5)
    y = (X[:, 0] & X[:, 1]).astype(float) + 0.5 * X[:, 2]
    _, first_valid = next(KFold(5, shuffle=True, random_state=0).split(X))
    y[first_valid] = 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        est = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, y)
    assert len(est.tree_models_) >= 5  # every fold fitted: the first did not settle it
    explained = compattr.proxy.proxyspex._explained
    table = est.sparsity_cv_
    assert explained(table.assign(cv_mse=0.0), y[first_valid]) == 1.0
    assert explained(table.assign(cv_mse=0.1), y[first_valid]) == -np.inf


@pytest.mark.parametrize("final_fit", [False, True])
def test_predict_trees_equals_the_tree_spectrum(final_fit):
    n = 24
    truth = complete_hierarchy(n, n_sets=3, order=4, seed=17)
    X = compattr.sample_masks(n, compattr.budget(n, 4), seed=18)
    y = 1e3 * add_noise(truth.predict(X), truth, snr_db=5, seed=19)  # outputs scaled by 2^-10 inside
    est = ProxySPEX(seed=0, grid=SMALL_GRID, final_fit=final_fit).fit(X, y)
    assert len(est.tree_models_) == 5 + final_fit
    assert sum(w for w, _ in est.tree_models_) == pytest.approx(1.0)
    X_new = compattr.sample_masks(n, 200, seed=20)
    np.testing.assert_allclose(est.predict_trees(X_new), est.tree_spectrum_.predict(X_new), rtol=1e-9, atol=1e-6)
    with pytest.raises(NotFittedError, match="not fitted"):
        ProxySPEX().predict_trees(X_new)


def _noisy_hierarchy(n_sets: int, order: int, masks: int, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks (masks, 12) and noisy outputs of a complete hierarchy on 12 features (seeds 21-23),
    the functions of the repeats' and regrow tests."""
    truth = complete_hierarchy(12, n_sets=n_sets, order=order, seed=21)
    X = compattr.sample_masks(12, masks, seed=22)
    return X, add_noise(truth.predict(X), truth, snr_db=snr_db, seed=23)


def test_repeats_average_the_spectra_of_fits_seeded_one_after_the_other():
    n = 12
    X, y = _noisy_hierarchy(n_sets=2, order=3, masks=200, snr_db=5)
    three = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=3, grow=True, vary_depth=False, regrow=False).fit(X, y)
    singles = [ProxySPEX(seed=4 + r, grid=SMALL_GRID, repeats=1, grow=True).fit(X, y) for r in range(3)]
    assert three.repeats_ == 3 and all(single.repeats_ == 1 for single in singles)
    X_test = compattr.sample_masks(n, 50, seed=24)
    expected = np.mean([single.predict(X_test) for single in singles], axis=0)
    np.testing.assert_allclose(three.predict(X_test), expected, rtol=1e-10, atol=1e-12)
    # the other attributes are the first fit's; the CPU seconds are every fit's
    assert three.k_ == singles[0].k_ and three.cv_r2_ == singles[0].cv_r2_
    assert three.tree_spectrum_ == singles[0].tree_spectrum_
    assert three.timings_["search"] > singles[0].timings_["search"]


def _regrow_round_recomputed(est: ProxySPEX, grown_from, X, y) -> tuple[np.ndarray, list[int], pd.DataFrame]:
    """A regrow round of ``est`` recomputed on its folds (``seed_``): the pool grown from the
    spectrum ``grown_from``, the k it chooses from (at most a quarter of a fold's masks) and
    its CV table (grown_cv with the default ridges and rankings)."""
    from compattr.proxy import proxyspex
    from compattr.proxy.sparsify import grown_cv, grown_pool

    folds = list(KFold(5, shuffle=True, random_state=est.seed_).split(X))
    m_train = min(len(train) for train, _ in folds)
    pool = grown_pool(
        grown_from, max(est._candidate_ks(m_train)), cliques=est.cliques, missing_subsets=est.missing_subsets
    )
    ks = est._candidate_ks(m_train // 2)
    return pool, ks, grown_cv(X, y, folds, [pool] * 5, ks, proxyspex.RIDGES, 10**9, 4, ("refit", "closure"))


def test_regrow_chooses_the_terms_of_the_repeats_average_again_and_refits_them(monkeypatch):
    """With several repeats, regrow=True grows the average's terms one order (the pool of
    grown_pool), chooses k, ranking and ridge by the CV of grown_cv on the folds of seed_, and
    refits the chosen terms on every mask (one round: regrow_rounds=1); "auto" (the default)
    regrows from REGROW_ABOVE to REPEAT_BELOW, a float from that CV R²; one fit, a fixed k,
    regrow=False are never regrown, nor is a CV that chooses the largest k it may (and no
    further round runs); bad values are refused."""
    from compattr.proxy import proxyspex
    from compattr.proxy.leastsquares import least_squares

    n = 12
    X, y = _noisy_hierarchy(n_sets=2, order=3, masks=100, snr_db=5)
    stage_8_off = {"extend_rounds": 0}  # the regrow is the last stage here
    average = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=3, regrow=False, **stage_8_off).fit(X, y)
    regrown = ProxySPEX(
        seed=4, grid=SMALL_GRID, repeats=3, regrow=True, regrow_rounds=1, guide_rounds=0, **stage_8_off
    ).fit(X, y)
    assert not average.regrown_ and len(average.regrow_cv_) == 0 and "regrow" not in average.timings_
    assert average.regrow_rounds_ == 0
    assert regrown.regrown_ and regrown.regrow_rounds_ == 1 and regrown.timings_["regrow"] >= 0.0
    # the CV, recomputed from the average's pool and the first fit's folds
    pool, ks, table = _regrow_round_recomputed(regrown, average.spectrum_, X, y)
    assert max(ks) == len(X) * 4 // 5 // 4 < len(pool)  # a fold's masks / 4; the cap binds (the case this needs)
    np.testing.assert_allclose(regrown.regrow_cv_["cv_mse"], table["cv_mse"], rtol=1e-9)
    assert set(regrown.regrow_cv_["round"]) == {1}
    best = table.loc[table["cv_mse"].idxmin()]
    pooled = {tuple(int(i) for i in row if i < n) for row in pool}
    assert set(regrown.spectrum_.support_tuples()) <= pooled | {()}
    if best["ranking"] == "refit":
        assert len(regrown.spectrum_) == min(int(best["k"]), len(pool))
    assert set(regrown.regrow_cv_["k"]) == set(ks)
    # the chosen terms carry their refit on every mask at the chosen ridge strength
    refit = least_squares(regrown.spectrum_, X, y, best["ridge"])
    np.testing.assert_allclose(regrown.predict(X), refit.predict(X), atol=1e-8)
    assert regrown.spectrum_ != average.spectrum_  # the case this test needs
    # "auto", the default: from REGROW_ABOVE on, below REPEAT_BELOW
    r2 = regrown.cv_r2_
    above_r2 = float(np.nextafter(r2, 1.0))
    for above, below, expected in ((r2, above_r2, True), (above_r2, 1.0, False), (0.0, r2, False)):
        monkeypatch.setattr(proxyspex, "REGROW_ABOVE", above)
        monkeypatch.setattr(proxyspex, "REPEAT_BELOW", below)  # 100 masks: the repeats do not read it
        auto = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=3, regrow_rounds=1, guide_rounds=0, **stage_8_off).fit(X, y)
        assert auto.regrown_ == expected and (auto.spectrum_ == regrown.spectrum_) == expected
    # a float: from that CV R² on, below REPEAT_BELOW
    monkeypatch.setattr(proxyspex, "REPEAT_BELOW", 1.0)
    for above, expected in ((r2, True), (above_r2, False)):
        asked = ProxySPEX(
            seed=4, grid=SMALL_GRID, repeats=3, regrow=above, regrow_rounds=1, guide_rounds=0, **stage_8_off
        ).fit(X, y)
        assert asked.regrown_ == expected and (asked.spectrum_ == regrown.spectrum_) == expected
    for settings in ({"repeats": 1}, {"repeats": 3, "k": 6}):
        assert not ProxySPEX(seed=4, grid=SMALL_GRID, regrow=True, **settings).fit(X, y).regrown_
    # where the CV chooses the largest k it may (60 masks: at most 12), the average stays
    X_few, y_few = _noisy_hierarchy(n_sets=2, order=3, masks=60, snr_db=5)
    capped = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=3, regrow=True, **stage_8_off).fit(X_few, y_few)
    table = capped.regrow_cv_
    assert table.loc[table["cv_mse"].idxmin(), "k"] == table["k"].max() == 12  # the case this needs
    assert not capped.regrown_ and capped.regrow_rounds_ == 0 and "regrow" in capped.timings_
    assert set(table["round"]) == {1}  # and no further round
    average_few = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=3, regrow=False, **stage_8_off).fit(X_few, y_few)
    assert capped.spectrum_ == average_few.spectrum_
    for bad in ("always", 1, 1.0, -0.1):
        with pytest.raises(ValueError, match="regrow"):
            ProxySPEX(regrow=bad).fit(X, y)


def test_each_regrow_round_grows_the_last_rounds_terms_again():
    """regrow_rounds=2: the first round is the regrow of one order (regrow_rounds=1); the
    second grows its terms by one more order and chooses them by the same CV (grown_cv on
    the folds of seed_), its table in regrow_cv_ under round 2, the chosen terms refitted
    on every mask; bad values are refused."""
    from compattr.proxy.leastsquares import least_squares

    n = 12
    X, y = _noisy_hierarchy(n_sets=2, order=4, masks=160, snr_db=10)
    # without the cliques, whose first round already holds the orders the second would add here
    # a case chosen on the growth's candidates that need every subset (missing_subsets=0)
    settings = {
        "seed": 4,
        "grid": SMALL_GRID,
        "repeats": 3,
        "regrow": True,
        "cliques": False,
        "guide_rounds": 0,
        "missing_subsets": 0,
        "extend_rounds": 0,  # the regrow is the last stage here
    }
    once = ProxySPEX(**settings, regrow_rounds=1).fit(X, y)
    twice = ProxySPEX(**settings, regrow_rounds=2).fit(X, y)
    assert once.regrow_rounds_ == 1 and twice.regrow_rounds_ == 2 and twice.regrown_
    first = twice.regrow_cv_[twice.regrow_cv_["round"] == 1].drop(columns="round")
    pd.testing.assert_frame_equal(first, once.regrow_cv_.drop(columns="round"))
    # the second round's CV, recomputed from the first round's terms
    pool, ks, table = _regrow_round_recomputed(twice, once.spectrum_, X, y)
    second = twice.regrow_cv_[twice.regrow_cv_["round"] == 2]
    np.testing.assert_allclose(second["cv_mse"], table["cv_mse"], rtol=1e-9)
    best = table.loc[table["cv_mse"].idxmin()]
    assert best["k"] < max(ks)  # the case this test needs: the second round is taken
    pooled = {tuple(int(i) for i in row if i < n) for row in pool}
    assert set(twice.spectrum_.support_tuples()) <= pooled | {()}
    assert twice.spectrum_ != once.spectrum_
    refit = least_squares(twice.spectrum_, X, y, best["ridge"])
    np.testing.assert_allclose(twice.predict(X), refit.predict(X), atol=1e-8)
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="regrow_rounds"):
            ProxySPEX(regrow_rounds=bad).fit(X, y)


def test_a_capped_regrow_round_is_taken_at_half_the_cap_where_it_explains_much_more():
    """Where the regrow's CV chooses the largest k it may, the round is taken all the same
    at the best k of at most half the cap when that k's CV error is below regrow_capped
    times the first fit's (1 - cv_r2_ of the variance), refitted on every mask (by default
    below REGROW_CAPPED_BELOW), and the next round follows; below that share (just: 1e-9 of
    it), and with regrow_capped=0, the average stays, even where the cap's own error is
    below it; bad values are refused."""
    from compattr.proxy import proxyspex
    from compattr.proxy.leastsquares import least_squares

    n = 12
    X, y = _noisy_hierarchy(n_sets=3, order=3, masks=120, snr_db=10)
    # a case chosen on the growth's candidates that need every subset (missing_subsets=0)
    settings = {"seed": 4, "grid": SMALL_GRID, "repeats": 3, "regrow": True, "guide_rounds": 0, "missing_subsets": 0}
    settings["extend_rounds"] = 0  # the regrow is the last stage here
    average = ProxySPEX(**settings, regrow_capped=0.0).fit(X, y)
    table = average.regrow_cv_
    assert table.loc[table["cv_mse"].idxmin(), "k"] == table["k"].max() == 24  # the case this needs
    assert not average.regrown_ and average.spectrum_ == ProxySPEX(**{**settings, "regrow": False}).fit(X, y).spectrum_
    half = table[table["k"] <= 12]
    best = half.loc[half["cv_mse"].idxmin()]
    share = best["cv_mse"] / ((1.0 - average.cv_r2_) * np.var(y))
    cap_share = table["cv_mse"].min() / ((1.0 - average.cv_r2_) * np.var(y))
    assert 0.0 < cap_share < share < 1.0  # the case this test needs
    taken = ProxySPEX(**settings, regrow_capped=float(share * (1 + 1e-9)), regrow_rounds=1).fit(X, y)
    assert taken.regrown_ and taken.regrow_rounds_ == 1
    pd.testing.assert_frame_equal(taken.regrow_cv_, table)
    pool, _, recomputed = _regrow_round_recomputed(taken, average.spectrum_, X, y)
    np.testing.assert_allclose(recomputed["cv_mse"], table["cv_mse"], rtol=1e-9)
    assert set(taken.spectrum_.support_tuples()) <= {tuple(int(i) for i in row if i < n) for row in pool} | {()}
    if best["ranking"] == "refit":
        assert len(taken.spectrum_) == int(best["k"])
    refit = least_squares(taken.spectrum_, X, y, best["ridge"])
    np.testing.assert_allclose(taken.predict(X), refit.predict(X), atol=1e-8)
    default = ProxySPEX(**settings, regrow_rounds=1).fit(X, y)
    assert share < proxyspex.REGROW_CAPPED_BELOW and default.spectrum_ == taken.spectrum_
    # the next round follows it, grown from its terms
    twice = ProxySPEX(**settings).fit(X, y)
    assert set(twice.regrow_cv_["round"]) == {1, 2} and twice.regrow_rounds_ >= 1
    pd.testing.assert_frame_equal(twice.regrow_cv_[twice.regrow_cv_["round"] == 1], table)
    kept = ProxySPEX(**settings, regrow_capped=float(share * (1 - 1e-9))).fit(X, y)  # not below the share
    assert not kept.regrown_ and kept.spectrum_ == average.spectrum_  # though the cap's error is below it
    for bad in (-0.1, 1.5, True, "auto"):
        with pytest.raises(ValueError, match="regrow_capped"):
            ProxySPEX(regrow_capped=bad).fit(X, y)


def _hierarchy_scaled(n: int, n_sets: int, order: int, masks: int) -> tuple[Spectrum, np.ndarray, np.ndarray]:
    """A noise-free complete hierarchy (seed 21), its masks (seed 22) and outputs scaled to
    ``max |y| = 0.75`` (so ProxySPEX's output scale is 1 and its CV errors are in y's units)."""
    truth = complete_hierarchy(n, n_sets=n_sets, order=order, seed=21)
    X = compattr.sample_masks(n, masks, seed=22)
    scale = 0.75 / np.abs(truth.predict(X)).max()
    truth = truth.with_coefs(truth.coefs * scale)
    return truth, X, truth.predict(X)


def test_guided_trees_recover_the_hierarchy_a_regrown_fit_missed():
    """Stage 7 on a noise-free complete hierarchy over 12 features (2 sets of order 4, 160
    masks): the regrown average leaves part of the function out (R² below 0.99 over all
    4,096 masks, brute force); the guided rounds recover it exactly, every true term with its
    coefficient."""
    n = 12
    truth, X, y = _hierarchy_scaled(n, n_sets=2, order=4, masks=160)
    every = np.array(list(itertools.product([False, True], repeat=n)))
    settings = {"seed": 4, "grid": SMALL_GRID, "repeats": 3, "regrow": True, "extend_rounds": 0}  # stage 7 the last
    regrown = ProxySPEX(**settings, guide_rounds=0).fit(X, y)
    guided = ProxySPEX(**settings).fit(X, y)
    assert regrown.regrown_ and compattr.faithfulness(regrown, every, truth.predict(every)) < 0.99
    assert guided.guide_rounds_ >= 1
    expected, found = truth.to_dict(), guided.spectrum_.to_dict()
    assert {t for t, c in found.items() if abs(c) > 1e-8} == set(expected)
    for term, coef in expected.items():
        assert found[term] == pytest.approx(coef, abs=1e-8)


def test_a_guided_round_chooses_again_from_pools_grown_on_each_folds_trees():
    """A round of stage 7 (guide_rounds=1) recomputed: trees with the first fit's depth,
    learning rate and tree count fitted on each fold's training masks (folds of seed_) to the
    outputs less the regrown spectrum's terms of order 3 and above; each fold's pool the
    spectrum's terms with as many of its trees' largest, grown (grown_pool); the CV of
    grown_cv over those pools is guide_cv_; the round is taken where its best CV error is
    below the regrow's, its terms from the pool of the folds' mean trees, refitted on every
    mask; a round whose CV does not fall leaves the regrown spectrum; no stage 7 without a
    regrow, with guide_rounds=0 or with max_order below 3 (nothing to leave out); bad values
    are refused."""
    from compattr.proxy import proxyspex
    from compattr.proxy.leastsquares import least_squares
    from compattr.proxy.sparsify import grown_cv, grown_pool, top_terms

    n = 12
    _, X, y = _hierarchy_scaled(n, n_sets=2, order=4, masks=160)
    # a case chosen on the growth's candidates that need every subset (missing_subsets=0)
    settings = {"seed": 4, "grid": SMALL_GRID, "repeats": 3, "regrow": True, "regrow_rounds": 1, "missing_subsets": 0}
    settings["extend_rounds"] = 0  # stage 7 the last
    regrown = ProxySPEX(**settings, guide_rounds=0).fit(X, y)
    guided = ProxySPEX(**settings, guide_rounds=1).fit(X, y)
    assert regrown.regrown_ and len(regrown.guide_cv_) == 0 and "guide" not in regrown.timings_
    assert guided.guide_rounds_ == 1 and guided.timings_["guide"] >= 0.0 and set(guided.guide_cv_["round"]) == {1}
    current = regrown.spectrum_
    target = y - current.predict(X) + current.restrict_order(2).predict(X)
    params = guided.best_params_
    config = search.Config(params["max_depth"], params["learning_rate"])

    def trees(rows) -> Spectrum:
        data = search.mask_dataset(X[rows], target[rows], 1)
        return Spectrum.from_trees(search.fit_all(data, config, params["n_estimators"], 1, guided.seed_), n)

    folds = list(KFold(5, shuffle=True, random_state=guided.seed_).split(X))
    fold_trees = [trees(train) for train, _ in folds]
    m_train = min(len(train) for train, _ in folds)
    limit, ks = max(guided._candidate_ks(m_train)), guided._candidate_ks(m_train // 2)

    def pool(of: Spectrum) -> np.ndarray:
        joined = Spectrum.mean([current, top_terms(of, len(current))])
        return grown_pool(joined, limit, cliques=guided.cliques, missing_subsets=guided.missing_subsets)

    pools = [pool(t) for t in fold_trees]
    table = grown_cv(X, y, folds, pools, ks, proxyspex.RIDGES, 10**9, 4, ("refit", "closure"))
    np.testing.assert_allclose(guided.guide_cv_["cv_mse"], table["cv_mse"], rtol=1e-9)
    best = table.loc[table["cv_mse"].idxmin()]
    assert best["cv_mse"] < regrown.regrow_cv_["cv_mse"].min()  # taken: below the regrow's
    chosen = pool(Spectrum.mean(fold_trees))
    assert set(guided.spectrum_.support_tuples()) <= {tuple(int(i) for i in row if i < n) for row in chosen} | {()}
    assert guided.spectrum_ != current
    refit = least_squares(guided.spectrum_, X, y, best["ridge"])
    np.testing.assert_allclose(guided.predict(X), refit.predict(X), atol=1e-8)
    # a round whose CV does not fall below the regrow's leaves the regrown spectrum
    _, X_flat, y_flat = _hierarchy_scaled(n, n_sets=2, order=3, masks=100)
    kept = ProxySPEX(**settings).fit(X_flat, y_flat)
    assert kept.regrown_ and len(kept.guide_cv_) and kept.guide_rounds_ == 0  # the case this needs
    assert kept.guide_cv_["cv_mse"].min() >= kept.regrow_cv_["cv_mse"].min()
    assert kept.spectrum_ == ProxySPEX(**settings, guide_rounds=0).fit(X_flat, y_flat).spectrum_
    # no regrow, no guide
    for others in ({"regrow": False}, {"repeats": 1}, {"max_order": 2}):
        alone = ProxySPEX(**{**settings, **others}).fit(X, y)
        assert len(alone.guide_cv_) == 0 and alone.guide_rounds_ == 0 and "guide" not in alone.timings_
        assert alone.regrown_ == ("max_order" in others)  # max_order=2: regrown, yet no stage 7
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="guide_rounds"):
            ProxySPEX(guide_rounds=bad).fit(X, y)


def test_repeats_after_the_first_search_the_grid_without_its_depth():
    """With ``vary_depth`` (default) the second and third fits race only the depths the first
    did not choose; the average then differs from that of fits on the whole grid."""
    n = 20
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=24)
    X = compattr.sample_masks(n, 300, seed=25)
    y = add_noise(truth.predict(X), truth, snr_db=5, seed=26)
    three = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=3, regrow=False).fit(X, y)
    first = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=1).fit(X, y)
    depth = first.best_params_["max_depth"]
    other = {**SMALL_GRID, "max_depth": tuple(d for d in SMALL_GRID["max_depth"] if d != depth)}
    singles = [first, *(ProxySPEX(seed=4 + r, grid=other, repeats=1).fit(X, y) for r in (1, 2))]
    assert all(single.best_params_["max_depth"] != depth for single in singles[1:])
    X_test = compattr.sample_masks(n, 50, seed=24)
    expected = np.mean([single.predict(X_test) for single in singles], axis=0)
    np.testing.assert_allclose(three.predict(X_test), expected, rtol=1e-10, atol=1e-12)
    same = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=3, vary_depth=False, regrow=False).fit(X, y)
    assert not np.allclose(same.predict(X_test), expected)  # the case this test needs
    assert three.best_params_ == first.best_params_ and three.grid == SMALL_GRID  # the first fit's, unchanged
    # a grid of one depth has no other: every fit searches it
    one = {**SMALL_GRID, "max_depth": (3,)}
    alone = ProxySPEX(seed=4, grid=one, repeats=3, regrow=False).fit(X, y)
    whole = ProxySPEX(seed=4, grid=one, repeats=3, vary_depth=False, regrow=False).fit(X, y)
    np.testing.assert_array_equal(alone.predict(X_test), whole.predict(X_test))


def test_trees_too_deep_to_read_exactly_are_searched_again_without_unlimited_depth(monkeypatch):
    """Where the trees of unlimited depth would expand to more than ``MAX_TREE_TERMS`` raw
    terms, the fit warns and is that of the grid without them; a grid of unlimited depth
    alone keeps the clear error. Depth-2 trees expand to at most 16 terms a tree (8,000 at
    the grid's 500 trees), the unlimited ones here to 61,752 on the first fold."""
    n = 12
    truth = complete_hierarchy(n, n_sets=4, order=5, seed=0)
    X = compattr.sample_masks(n, 400, seed=0)
    y = truth.predict(X)
    grid = {"max_depth": (2, None), "learning_rate": (0.1,)}
    unbounded = ProxySPEX(grid=grid, seed=0).fit(X, y)
    assert unbounded.best_params_["max_depth"] is None  # the case this test needs
    monkeypatch.setattr(proxyspex, "MAX_TREE_TERMS", 10_000)
    with pytest.warns(UserWarning, match="without unlimited depth"):
        est = ProxySPEX(grid=grid, seed=0).fit(X, y)
    bounded = ProxySPEX(grid={**grid, "max_depth": (2,)}, seed=0).fit(X, y)
    assert est.best_params_ == bounded.best_params_ and est.best_params_["max_depth"] == 2
    assert est.search_grid_["max_depth"] == (2,) and est.grid == grid  # the parameter as given
    X_test = compattr.sample_masks(n, 200, seed=1)
    np.testing.assert_array_equal(est.predict(X_test), bounded.predict(X_test))
    with pytest.raises(TreesTooDeep, match="max_terms=10,000"):
        ProxySPEX(grid={**grid, "max_depth": (None,)}, seed=0).fit(X, y)


def test_a_search_run_again_without_unlimited_depth_counts_both_attempts_in_timings(monkeypatch):
    """On a clock that ticks once a reading, the fit that searched twice reads more ticks
    per stage than the fit on the bounded grid alone: the failed attempt's CPU is kept."""
    import time

    n = 12
    truth = complete_hierarchy(n, n_sets=4, order=5, seed=0)
    X = compattr.sample_masks(n, 400, seed=0)
    y = truth.predict(X)
    grid = {"max_depth": (2, None), "learning_rate": (0.1,)}
    monkeypatch.setattr(proxyspex, "MAX_TREE_TERMS", 10_000)
    ticks = itertools.count()
    monkeypatch.setattr(time, "process_time", lambda: float(next(ticks)))
    with pytest.warns(UserWarning, match="without unlimited depth"):
        retried = ProxySPEX(grid=grid, seed=0, repeats=1).fit(X, y)
    bounded = ProxySPEX(grid={**grid, "max_depth": (2,)}, seed=0, repeats=1).fit(X, y)
    assert retried.timings_.keys() == bounded.timings_.keys()
    assert retried.timings_["search"] > bounded.timings_["search"]
    assert all(retried.timings_[stage] >= bounded.timings_[stage] for stage in bounded.timings_)


def test_the_default_grid_races_learning_rate_0_1_alone_below_repeat_masks(monkeypatch):
    from compattr.proxy import proxyspex

    n = 12
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=4)
    X = compattr.sample_masks(n, 400, seed=5)
    y = add_noise(truth.predict(X), truth, snr_db=10, seed=6)

    def rates(est):
        return set(est.cv_results_["learning_rate"])

    small = ProxySPEX(seed=0, repeats=1).fit(X, y)
    assert small.search_grid_ == {**compattr.PAPER_GRID, "learning_rate": proxyspex.SMALL_BUDGET_RATES}
    assert rates(small) == set(proxyspex.SMALL_BUDGET_RATES) == {0.1}
    paper = ProxySPEX(seed=0, repeats=1, grid=compattr.PAPER_GRID).fit(X, y)
    assert paper.search_grid_ == compattr.PAPER_GRID and rates(paper) == {0.01, 0.1}
    partial_grid = ProxySPEX(seed=0, repeats=1, grid={"max_depth": (3, 5)}).fit(X, y)  # the paper's rates
    assert rates(partial_grid) == {0.01, 0.1} and set(partial_grid.cv_results_["max_depth"]) == {3, 5}
    monkeypatch.setattr(proxyspex, "REPEAT_MASKS", 400)  # from REPEAT_MASKS masks: the paper's grid
    large = ProxySPEX(seed=0, repeats=1).fit(X, y)
    assert large.search_grid_ == compattr.PAPER_GRID and rates(large) == {0.01, 0.1}
    # the repeats race the first fit's grid without its depth
    monkeypatch.setattr(proxyspex, "REPEAT_MASKS", 2000)
    three = ProxySPEX(seed=0, repeats=3).fit(X, y)
    assert three._other_depths()["learning_rate"] == proxyspex.SMALL_BUDGET_RATES


def test_search_challenge_puts_the_best_fit_of_another_depth_in_the_winners_place():
    n = 16
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=5)
    X = compattr.sample_masks(n, 400, seed=6)
    y = add_noise(truth.predict(X), truth, snr_db=5, seed=7)
    data = search.mask_dataset(X, y, 1)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    grid = {"max_depth": (2, 3, None), "n_estimators": (50, 100, 300), "learning_rate": (0.01, 0.1)}
    seen = {}

    def challenge(winner, rivals):
        seen.update(winner=winner, rivals=rivals)
        return max(rivals, key=lambda fit: fit.score)  # the worst rival: surely not the race's choice

    config, fits, table = search.search(data, y, folds, grid, race=True, num_threads=1, seed=0, challenge=challenge)
    winner, rivals = seen["winner"], seen["rivals"]
    assert sorted(str(f.config.max_depth) for f in rivals) == sorted(
        str(d) for d in grid["max_depth"] if d != winner.config.max_depth
    )
    race = table[table["rung"] != "cv"]
    for rival in rivals:  # the best score of its depth in the race (NaN stands for no limit)
        depth = rival.config.max_depth
        same = race["max_depth"].isna() if depth is None else race["max_depth"] == depth
        assert rival.score == race.loc[same, "cv_mse"].min()
    chosen = max(rivals, key=lambda fit: fit.score)
    assert config == chosen.config != winner.config
    assert fits[0] == chosen and len(fits) == 5 and all(f.config == chosen.config for f in fits)
    assert all(f.best_iteration <= chosen.best_iteration for f in fits[1:])  # capped at its trees
    unchallenged, *_ = search.search(data, y, folds, grid, race=True, num_threads=1, seed=0)
    assert unchallenged == winner.config


def _challenged_case(scale: float = 1.0):
    """Noisy order-5 interactions on 400 masks, where the race's depth-2 winner explains
    little on the first fold and its depth-6 rival's spectrum explains more."""
    n = 20
    truth = complete_hierarchy(n, n_sets=2, order=5, seed=38)
    X = compattr.sample_masks(n, 400, seed=39)
    return X, scale * add_noise(truth.predict(X), truth, snr_db=0, seed=40)


def test_a_winner_whose_spectrum_explains_little_is_challenged_by_the_other_depths(monkeypatch):
    from compattr.proxy import proxyspex

    monkeypatch.setattr(proxyspex, "REPEAT_MASKS", 400)  # the rule's mask count, reached here
    X, y = _challenged_case()
    grid = {"max_depth": (2, 6), "n_estimators": (100, 300), "learning_rate": (0.1,)}
    est = ProxySPEX(seed=0, grid=grid, repeats=1).fit(X, y)
    plain = ProxySPEX(seed=0, grid=grid, repeats=1, challenge=False).fit(X, y)
    table = est.challenge_
    assert list(table["max_depth"]) == [plain.best_params_["max_depth"], 6] == [2, 6]  # the race's winner first
    # the winner's best top-k explains less than REPEAT_BELOW of the first fold's variance
    _, valid = next(iter(KFold(5, shuffle=True, random_state=0).split(X)))
    explained = 1 - table["spectrum_mse"].iloc[0] / np.var(y[valid])
    assert proxyspex.EXPLAINS_ABOVE <= explained < proxyspex.REPEAT_BELOW
    assert table["tree_mse"].iloc[0] < table["tree_mse"].iloc[1]  # the trees preferred depth 2
    assert list(table["chosen"]) == list(table["spectrum_mse"] == table["spectrum_mse"].min()) == [False, True]
    assert est.best_params_["max_depth"] == 6 and plain.challenge_.empty
    X_test = compattr.sample_masks(20, 50, seed=41)
    assert not np.allclose(est.predict(X_test), plain.predict(X_test))
    # the errors are in units of y², like the other CV tables
    scaled = ProxySPEX(seed=0, grid=grid, repeats=1).fit(X, 8.0 * y).challenge_
    np.testing.assert_allclose(scaled[["tree_mse", "spectrum_mse"]], 64.0 * table[["tree_mse", "spectrum_mse"]])
    # a winner that explains less than EXPLAINS_ABOVE explains nothing: not challenged
    explains_above = proxyspex.EXPLAINS_ABOVE
    monkeypatch.setattr(proxyspex, "EXPLAINS_ABOVE", explained + 1e-6)
    assert ProxySPEX(seed=0, grid=grid, repeats=1).fit(X, y).challenge_.empty
    monkeypatch.setattr(proxyspex, "EXPLAINS_ABOVE", explains_above)
    # below REPEAT_MASKS masks, and with search="full", nothing is challenged
    monkeypatch.setattr(proxyspex, "REPEAT_MASKS", 401)
    assert ProxySPEX(seed=0, grid=grid, repeats=1).fit(X, y).challenge_.empty
    monkeypatch.setattr(proxyspex, "REPEAT_MASKS", 400)
    assert ProxySPEX(seed=0, grid=grid, repeats=1, search="full").fit(X, y).challenge_.empty


def test_a_winner_whose_spectrum_explains_enough_is_not_challenged(monkeypatch):
    from compattr.proxy import proxyspex

    monkeypatch.setattr(proxyspex, "REPEAT_MASKS", 0)
    n = 16
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=5)
    X = compattr.sample_masks(n, 400, seed=6)
    est = ProxySPEX(seed=0, grid=SMALL_GRID, repeats=1).fit(X, add_noise(truth.predict(X), truth, snr_db=20, seed=7))
    assert est.cv_r2_ > proxyspex.REPEAT_BELOW and est.challenge_.empty


@pytest.mark.parametrize("bad", [None, 1, "auto"])
def test_challenge_must_be_a_bool(bad):
    X = compattr.sample_masks(8, 100, seed=0)
    with pytest.raises(ValueError, match="challenge"):
        ProxySPEX(challenge=bad).fit(X, X.sum(axis=1).astype(float))


@pytest.mark.parametrize("bad", [None, 1, "auto"])
def test_vary_depth_must_be_a_bool(bad):
    X = compattr.sample_masks(8, 100, seed=0)
    with pytest.raises(ValueError, match="vary_depth"):
        ProxySPEX(vary_depth=bad).fit(X, X.sum(axis=1).astype(float))


def test_repeats_auto_repeats_only_while_the_first_fit_explains_little_but_something():
    from compattr.proxy import proxyspex

    n = 12
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=25)
    X = compattr.sample_masks(n, 200, seed=26)
    noisy = add_noise(truth.predict(X), truth, snr_db=0, seed=27)
    weak = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, noisy)
    strong = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, truth.predict(X))
    assert proxyspex.EXPLAINS_ABOVE <= weak.cv_r2_ < proxyspex.REPEAT_BELOW <= strong.cv_r2_
    assert weak.repeats_ == proxyspex.REPEATS and strong.repeats_ == 1
    noise = np.random.default_rng(3).normal(size=len(X))  # nothing to explain, nothing to steady
    nothing = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, noise)
    assert nothing.cv_r2_ < proxyspex.EXPLAINS_ABOVE and nothing.repeats_ == 1 and nothing.seed_ == 0
    assert nothing.spectrum_ == ProxySPEX(seed=0, grid=SMALL_GRID, repeats=1).fit(X, noise).spectrum_
    once = ProxySPEX(seed=0, grid=SMALL_GRID, repeats=1).fit(X, noisy)
    assert once.repeats_ == 1 and once.tree_spectrum_ == weak.tree_spectrum_
    for asked in ({"k": 6}, {"energy": 0.9}):  # the sparsity asked for: one fit
        assert ProxySPEX(seed=0, grid=SMALL_GRID, **asked).fit(X, noisy).repeats_ == 1


def test_growth_after_unrefitted_terms_refits_at_the_ridge_of_the_best_refitted_candidate():
    """Where the trees' coefficients win the sparsity CV, the grown pool (hundreds of terms on
    about a thousand masks per fold) is refitted at the ridge the refitted candidates chose."""
    truth = complete_hierarchy(100, seed=7)
    X = compattr.sample_masks(100, 1329, seed=7)
    est = ProxySPEX(seed=7, repeats=1).fit(X, truth.predict(X))
    assert not est.refit_ and len(est.grow_cv_)  # the case this test needs
    refitted = est.sparsity_cv_[est.sparsity_cv_["refit"]]
    best = refitted.loc[refitted["cv_mse"].idxmin(), "ridge"]
    assert best > 0 and set(est.grow_cv_["ridge"]) == {best}


def test_a_first_fit_that_explains_nothing_on_few_masks_gets_a_second_opinion(monkeypatch):
    """A weak hierarchy (n = 100, 665 masks) whose first fit finds nothing by its split: the
    next seed's fit explains something, replaces it and is repeated from its seed on. The
    stages' clock counts its readings, so that the timings of fits compare exactly (CPU
    seconds of separate fits vary with the machine's load)."""
    from compattr.proxy import proxyspex

    readings = iter(range(1, 10**9))
    monkeypatch.setattr(proxyspex.time, "process_time", lambda: float(next(readings)))
    truth = complete_hierarchy(100, seed=15)
    X = compattr.sample_masks(100, 665, seed=15)
    y = truth.predict(X)
    first = ProxySPEX(seed=15, repeats=1).fit(X, y)
    second = ProxySPEX(seed=16, repeats=1).fit(X, y)
    assert first.cv_r2_ < proxyspex.EXPLAINS_ABOVE <= second.cv_r2_  # the case this test needs
    est = ProxySPEX(seed=15).fit(X, y)
    assert est.seed_ == 16 and est.repeats_ == proxyspex.REPEATS
    assert est.cv_r2_ == second.cv_r2_ and est.best_params_ == second.best_params_
    assert est._first_cv_error == second._first_cv_error  # stage 8's bar: the kept fit's, not the first's
    other = tuple(d for d in proxyspex.PAPER_GRID["max_depth"] if d != second.best_params_["max_depth"])
    repeats = [ProxySPEX(seed=16 + r, repeats=1, grid={"max_depth": other}).fit(X, y) for r in (1, 2)]
    X_test = compattr.sample_masks(100, 50, seed=99)
    expected = np.mean([fit.predict(X_test) for fit in [second, *repeats]], axis=0)
    np.testing.assert_allclose(est.predict(X_test), expected, rtol=1e-10, atol=1e-12)
    assert est.timings_["search"] > first.timings_["search"] + second.timings_["search"]
    # asked for one fit: no second opinion
    assert first.seed_ == 15


def test_repeats_auto_repeats_any_inexact_fit_on_fewer_masks_than_repeat_masks():
    """The same noisy function, explained above REPEAT_BELOW by its CV: averaged on a few hundred
    masks, fitted once from REPEAT_MASKS masks on."""
    from compattr.proxy import proxyspex

    n = 12
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=25)
    for m, repeats in ((300, proxyspex.REPEATS), (proxyspex.REPEAT_MASKS, 1)):
        X = compattr.sample_masks(n, m, seed=26)
        noisy = add_noise(truth.predict(X), truth, snr_db=10, seed=27)
        est = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, noisy)
        assert proxyspex.REPEAT_BELOW <= est.cv_r2_ < proxyspex.FINAL_FIT_BELOW
        assert est.repeats_ == repeats


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "always"])
def test_repeats_must_be_auto_or_a_positive_int(bad):
    X = compattr.sample_masks(8, 100, seed=0)
    with pytest.raises(ValueError, match="repeats"):
        ProxySPEX(repeats=bad).fit(X, X.sum(axis=1).astype(float))


@pytest.mark.parametrize("missing", [0, 1])
@pytest.mark.parametrize("seed", [5, 6, 7])
def test_grown_pool_adds_every_set_one_order_above_whose_subsets_are_listed(seed, missing):
    """The pool is the kept terms' downward closure (constant first), then, by brute force over
    every set, exactly those one order above a listed set whose subsets one order below are
    all listed (``missing_subsets=0``), or all but one for sets of three or more features
    (``missing_subsets=1``), strongest listed subsets first; the limit cuts the candidates,
    never the closure."""
    from compattr.proxy.sparsify import grown_pool

    n, rng = 8, np.random.default_rng(seed)
    terms = [tuple(sorted(rng.choice(n, size=rng.integers(1, 4), replace=False))) for _ in range(6)]
    spectrum = Spectrum.from_dict({t: rng.uniform(0.5, 2.0) * rng.choice([-1, 1]) for t in terms}, n)
    closure = _all_subsets(spectrum.support_tuples())

    def allowed(d: int) -> int:
        return missing if d >= 3 else 0

    expected = {
        t
        for d in range(1, n + 1)
        for t in itertools.combinations(range(n), d)
        if t not in closure
        and any(t[:i] + t[i + 1 :] in closure for i in range(d))  # one order above a listed set
        and sum(s in closure for s in itertools.combinations(t, d - 1)) >= d - allowed(d)
    }
    if missing:  # the case holds a set only the rule with a missing subset offers
        assert any(not all(s in closure for s in itertools.combinations(t, len(t) - 1)) for t in expected)
    assert expected  # the case has something to grow

    def grown(limit: int, max_order: int | None = None) -> list[tuple]:
        pool = grown_pool(spectrum, limit, max_order=max_order, cliques=False, missing_subsets=missing)
        return [tuple(int(i) for i in row[row < n]) for row in pool]

    pool = grown(10**4)
    assert pool[0] == () and len(pool) == len(set(pool))
    assert set(pool[: len(closure)]) == closure and set(pool[len(closure) :]) == expected
    strength = dict(zip(spectrum.support_tuples(), np.abs(spectrum.coefs)))
    scores = [sum(strength.get(s, 0.0) for s in itertools.combinations(t, len(t) - 1)) for t in pool[len(closure) :]]
    assert scores == sorted(scores, reverse=True)
    assert grown(len(closure) + 2) == pool[: len(closure) + 2]
    for top in (1, 2):  # no candidate above max_order; the rest in the same order
        assert grown(10**4, top) == pool[: len(closure)] + [t for t in pool[len(closure) :] if len(t) <= top]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grown_pool_offers_the_cliques_of_the_listed_pairs_first(seed):
    """With cliques (the default), the closure is followed, by brute force over every set, by
    exactly the sets of three or more features all of whose pairs are listed and which are
    not, by decreasing sum of their pairs' |F|, then by the one-order-up candidates not among
    them in their own order; the limit cuts the candidates, never the closure, and max_order
    bounds the cliques too."""
    from compattr.proxy.sparsify import grown_pool

    n, rng = 10, np.random.default_rng(seed)
    features = [int(i) for i in rng.permutation(n)]
    # every pair of five features (a clique of 5), of four features but one, and a few others
    terms = [tuple(sorted(p)) for p in itertools.combinations(features[:5], 2)]
    terms += [tuple(sorted(p)) for p in itertools.combinations(features[5:9], 2)][1:]
    terms += [tuple(sorted(rng.choice(n, size=2, replace=False))) for _ in range(2)] + [(features[0],)]
    terms += [tuple(sorted(features[:3]))]  # a listed clique, which is not offered again
    spectrum = Spectrum.from_dict({t: rng.uniform(0.5, 2.0) * rng.choice([-1, 1]) for t in terms}, n)
    closure = _all_subsets(spectrum.support_tuples())
    strength = dict(zip(spectrum.support_tuples(), np.abs(spectrum.coefs)))
    cliques = {
        t
        for d in range(3, n + 1)
        for t in itertools.combinations(range(n), d)
        if t not in closure and all(p in closure for p in itertools.combinations(t, 2))
    }
    assert any(len(t) >= 4 for t in cliques)  # some the one-order-up join cannot offer

    def listed(pool) -> list[tuple]:
        return [tuple(int(i) for i in row[row < n]) for row in pool]

    pool, plain = listed(grown_pool(spectrum, 10**4)), listed(grown_pool(spectrum, 10**4, cliques=False))
    assert len(pool) == len(set(pool)) and set(pool[: len(closure)]) == closure
    offered = pool[len(closure) : len(closure) + len(cliques)]
    assert set(offered) == cliques
    scores = [sum(strength.get(p, 0.0) for p in itertools.combinations(t, 2)) for t in offered]
    assert scores == sorted(scores, reverse=True)
    assert pool[len(closure) + len(cliques) :] == [t for t in plain[len(closure) :] if t not in cliques]
    cut = listed(grown_pool(spectrum, len(closure) + 3))
    assert cut == pool[: len(closure) + 3]
    capped = listed(grown_pool(spectrum, 10**4, max_order=3))
    assert capped == [t for t in pool if len(t) <= 3]


def test_max_order_bounds_the_grown_and_regrown_terms_too():
    """``max_order`` caps every term of the spectrum, also those the growth and the repeats'
    regrow add one order above the trees' (here where they grow without it)."""
    truth = compattr.synthetic.complete_hierarchy(30, n_sets=4, order=4, seed=2)
    X = compattr.sample_masks(30, 600, seed=2)
    y = truth.predict(X)
    free = ProxySPEX(seed=0, grow=True, regrow=True, repeats=2).fit(X, y)
    capped = ProxySPEX(seed=0, grow=True, regrow=True, repeats=2, max_order=2).fit(X, y)
    assert free.spectrum_.max_order > 2 and (free.grown_ or free.regrown_)
    assert capped.spectrum_.max_order <= 2 and capped.tree_spectrum_.max_order <= 2


_BAD_CLIQUES = ("yes", 1, None)
_BAD_MISSING = (2, -1, True, 0.5, "1", None)


@pytest.mark.parametrize(
    "name, position, value, bad",
    [
        ("cliques", 3, True, _BAD_CLIQUES),
        ("cliques", 3, False, _BAD_CLIQUES),
        ("missing_subsets", 4, 0, _BAD_MISSING),
        ("missing_subsets", 4, 1, _BAD_MISSING),
    ],
)
def test_growth_settings_reach_every_pool_and_are_checked(monkeypatch, name, position, value, bad):
    """``cliques`` and ``missing_subsets`` (``grown_pool``'s arguments at ``position``) are
    passed to every pool the growth (each fold's and the final one), the regrow and the
    guided trees build; anything but a bool (cliques) or 0 or 1 (missing_subsets) is refused."""
    from compattr.proxy import proxyspex

    seen = []

    def spy(*args, **kwargs):
        seen.append(args[position] if len(args) > position else kwargs[name])
        return grown_pool(*args, **kwargs)

    grown_pool = proxyspex.grown_pool
    monkeypatch.setattr(proxyspex, "grown_pool", spy)
    X, y = _noisy_hierarchy(n_sets=2, order=4, masks=160, snr_db=10)
    est = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=2, grow=True, regrow=True, **{name: value}).fit(X, y)
    assert est.regrow_rounds_ >= 1 and len(seen) > 5 and set(seen) == {value}
    for setting in bad:
        with pytest.raises(ValueError, match=name):
            ProxySPEX(**{name: setting}).fit(X, y)


@pytest.mark.parametrize("ks", [[4, 8, 40], [4, 8, 16]])  # the largest k: the pool's size, or fewer
def test_grown_cv_scores_the_pool_re_ranked_on_held_out_folds(ks):
    """Each (ranking, k, ridge) CV error is the held-out error of: the fold's own pool refitted
    on its training masks, its top k by refitted |β| (with all their subsets for "closure"),
    refitted at that ridge strength; also where the pool is longer than the largest k."""
    from compattr.proxy.leastsquares import least_squares, least_squares_on
    from compattr.proxy.sparsify import grown_cv, grown_pool, top_terms

    X, y, folds, spectra, _ = _sparsity_cv_case(order=3, seed=12)
    n = X.shape[1]
    pools = [grown_pool(top_terms(s, size), 40) for s, size in zip(spectra, (4, 6, 8))]  # one per fold
    ridge = 0.05
    table = grown_cv(X, y, folds, pools, ks, (ridge,), 10**6, 0)
    assert set(table["ranking"]) == {"refit", "closure"} and len(table) == 2 * len(ks)
    refit_only = grown_cv(X, y, folds, pools, ks, (ridge,), 10**6, 0, rankings=("refit",))
    np.testing.assert_array_equal(refit_only["cv_mse"], table.loc[table["ranking"] == "refit", "cv_mse"])
    assert set(refit_only["ranking"]) == {"refit"}
    for k in ks:
        sq, too_big = {"refit": 0.0, "closure": 0.0}, False
        for pool, (train, valid) in zip(pools, folds):
            refit = least_squares_on(pool, n, X[train], y[train], ridge).to_dict()
            kept = sorted((t for t in refit if t), key=lambda t: -abs(refit[t]))[: k - 1]
            fits = {
                "refit": least_squares(Spectrum.from_dict(dict.fromkeys(kept, 1.0), n), X[train], y[train], ridge),
                "closure": least_squares(
                    Spectrum.from_dict(dict.fromkeys(_all_subsets(kept), 1.0), n), X[train], y[train], ridge
                ),
            }
            too_big |= len(_all_subsets(kept)) > max(ks)
            for ranking, fit in fits.items():
                sq[ranking] += np.sum((fit.predict(X[valid]) - y[valid]) ** 2)
        sq["closure"] = np.inf if too_big else sq["closure"]  # a closure beyond the pool's size
        for ranking, total in sq.items():
            row = table[(table["k"] == k) & (table["ranking"] == ranking)]
            np.testing.assert_allclose(row["cv_mse"].item(), total / len(X), rtol=1e-4)


def test_grow_finds_a_term_the_trees_are_too_shallow_to_split():
    """Trees of depth 2 hold no term of order 3; a hierarchy's order-3 term, whose subsets
    they do find, is grown, kept and fitted: held-out R² near 1 against well below without
    growth. grow=False is the fit without it; bad values are refused."""
    n = 10
    truth = Spectrum.from_dict({s: 1.0 for s in _all_subsets([(0, 1, 2)])} | {(0, 1, 2): 2.5, (5,): 1.0}, n)
    X = compattr.sample_masks(n, 300, seed=40)
    y = truth.predict(X)
    grid = {"max_depth": (2,), "n_estimators": (100, 300), "learning_rate": (0.1,)}
    # without stage 8, which extends the subsets to that term by itself
    grown = ProxySPEX(seed=0, grid=grid, grow=True, repeats=1, extend_rounds=0).fit(X, y)
    plain = ProxySPEX(seed=0, grid=grid, grow=False, repeats=1, extend_rounds=0).fit(X, y)
    assert (0, 1, 2) not in grown.tree_spectrum_.support_tuples()
    assert grown.grown_ and not plain.grown_ and len(plain.grow_cv_) == 0
    assert (0, 1, 2) in grown.spectrum_.support_tuples()
    assert 1.0 - grown.grow_cv_["cv_mse"].min() / np.var(y) > grown.cv_r2_
    # the kept terms carry their own refit at the chosen ridge strength, as the CV scored them;
    # a ranking without "closure" keeps the top k of the pool's refit, never closed
    from compattr.proxy.leastsquares import least_squares

    noisy = add_noise(y, truth, snr_db=10, seed=42)  # the pool's refit is not the top k's
    for rankings in ("cv", ("trees", "refit")):  # the closure of the top k, or the top k alone
        est = ProxySPEX(seed=0, grid=grid, grow=True, ranking=rankings, repeats=1).fit(X, noisy)
        table = est.grow_cv_
        assert set(table["ranking"]) == ({"refit", "closure"} if rankings == "cv" else {"refit"})
        best = table.loc[table["cv_mse"].idxmin()]
        assert est.grown_ and best["k"] < table["k"].max()
        refit = least_squares(est.spectrum_, X, noisy, best["ridge"])
        np.testing.assert_allclose(est.predict(X), refit.predict(X), atol=1e-8)
    X_test = compattr.sample_masks(n, 200, seed=41)
    r2 = lambda est: 1.0 - np.mean((est.predict(X_test) - truth.predict(X_test)) ** 2) / np.var(truth.predict(X_test))
    assert r2(grown) > 0.999 and r2(plain) < 0.9
    # the CVs on 200 of the 300 masks; the growth alone (pursuit adds near-zero terms to a
    # 9-term function, which the CV keeps at k = 16)
    subset = ProxySPEX(seed=0, grid=grid, grow=True, pursue=False, max_cv_rows=200).fit(X, y)
    assert subset.grown_ and (0, 1, 2) in subset.spectrum_.support_tuples() and r2(subset) > 0.999
    with pytest.raises(ValueError, match="grow"):
        ProxySPEX(grow="always").fit(X, y)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="grow"):
            ProxySPEX(grow=bad).fit(X, y)


def test_grow_auto_grows_only_where_the_cv_explains_between_the_bounds():
    """grow="auto" leaves a fit whose CV explains nothing (below EXPLAINS_ABOVE) as it is and
    grows one that explains a little (0 dB noise: the three repeats each grow); a float
    grows from that CV R² on; grow=True keeps the grown terms exactly when their CV error is
    below the sparsity CV's; a fixed k is never grown."""
    from compattr.proxy import proxyspex

    n = 12
    truth = complete_hierarchy(n, n_sets=2, order=3, seed=25)
    X = compattr.sample_masks(n, 200, seed=26)
    noise = np.random.default_rng(3).normal(size=len(X))  # nothing to explain
    weak = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, noise)
    assert weak.cv_r2_ < proxyspex.EXPLAINS_ABOVE and not weak.grown_ and len(weak.grow_cv_) == 0
    assert weak.spectrum_ == ProxySPEX(seed=0, grid=SMALL_GRID, grow=False).fit(X, noise).spectrum_
    noisy = add_noise(truth.predict(X), truth, snr_db=0, seed=27)
    little = ProxySPEX(seed=0, grid=SMALL_GRID).fit(X, noisy)
    assert proxyspex.EXPLAINS_ABOVE < little.cv_r2_ < proxyspex.FINAL_FIT_BELOW and little.repeats_ > 1
    assert len(little.grow_cv_) > 0
    r2 = little.cv_r2_
    for above, grows in ((r2, True), (float(np.nextafter(r2, 1.0)), False)):
        fitted = ProxySPEX(seed=0, grid=SMALL_GRID, grow=above, repeats=1).fit(X, noisy)
        assert fitted.cv_r2_ == r2 and (len(fitted.grow_cv_) > 0) == grows
    scarce = complete_hierarchy(20, n_sets=3, order=4, seed=1)  # 80 masks for 20 features
    X_scarce = compattr.sample_masks(20, 80, seed=1)
    cases = [(X, add_noise(truth.predict(X), truth, snr_db=10, seed=27)), (X_scarce, scarce.predict(X_scarce))]
    grown = []
    for masks, outputs in cases:  # grown only where its honest CV error is lower
        forced = ProxySPEX(seed=0, grid=SMALL_GRID, grow=True, repeats=1).fit(masks, outputs)
        lower = forced.grow_cv_["cv_mse"].min() < (1 - 1e-5) * forced.sparsity_cv_["cv_mse"].min()
        assert len(forced.grow_cv_) > 0 and forced.grown_ == lower
        grown.append(forced.grown_)
    assert grown == [True, False]  # the case covers both outcomes
    fixed = ProxySPEX(seed=0, grid=SMALL_GRID, k=6, grow=True).fit(X, truth.predict(X))
    assert not fixed.grown_ and len(fixed.spectrum_) <= 6


@pytest.mark.parametrize("n", [1, 2])
def test_grow_on_one_or_two_features_stays_within_them(n):
    """With one or two features there is little to grow: the pool is every subset at most,
    and the fit (and the regrown average of three) runs and keeps only sets of the features
    there are."""
    from compattr.proxy.sparsify import grown_pool

    rng = np.random.default_rng(n)
    X = rng.random((120, n)) < 0.5
    y = X.sum(axis=1) + 0.5 * X.all(axis=1) + rng.normal(0.0, 0.3, 120)
    est = ProxySPEX(seed=0, grid=SMALL_GRID, grow=True).fit(X, y)
    assert len(est.grow_cv_) > 0
    subsets = _all_subsets([tuple(range(n))])
    assert set(est.spectrum_.support_tuples()) <= subsets
    pool = {tuple(int(i) for i in row[row < n]) for row in grown_pool(est.spectrum_, 10**4)}
    assert pool <= subsets
    # the repeats' average regrown stays within them too
    regrown = ProxySPEX(seed=0, grid=SMALL_GRID, grow=True, repeats=3, regrow=True).fit(X, y)
    assert len(regrown.regrow_cv_) > 0 and set(regrown.spectrum_.support_tuples()) <= subsets


@pytest.mark.parametrize("rounds", [1, 2])
def test_pursued_terms_add_the_candidates_the_residual_correlates_with_most(rounds):
    """Each round adds, among the candidates' ``limit`` largest |F| not yet held, the ``add``
    whose Walsh features correlate most with the residual of the current terms (refitted by
    ridge between rounds), with their correlation as coefficient (brute force on the
    definition); a candidate beyond ``limit`` is never added, however well it correlates."""
    from compattr.proxy.leastsquares import least_squares
    from compattr.proxy.sparsify import pursued_terms

    n, rng = 9, np.random.default_rng(8)
    hidden = {(0, 3): 1.5, (2, 5, 7): -1.2, (1, 8): 0.9, (4, 6): 0.7}
    truth = Spectrum.from_dict({(): 0.3, (0,): 2.0, (1,): -1.0} | hidden, n)
    X = compattr.sample_masks(n, 400, seed=3)
    y = truth.predict(X) + rng.normal(0.0, 0.1, len(X))
    kept = Spectrum.from_dict({(): 0.2, (0,): 1.9, (1,): -0.9}, n)
    decoys = {tuple(sorted(rng.choice(n, size=2, replace=False))): 0.5 for _ in range(12)}
    # the trees' stand-in: every hidden term but (4, 6) ranked high, (4, 6) last
    candidates = Spectrum.from_dict({**decoys, **dict.fromkeys(hidden, 3.0), (4, 6): 0.01}, n)
    limit, add, ridge = len(candidates) - 1, 2, 0.01
    got = pursued_terms(kept, candidates, X, y, add, rounds, limit, ridge)
    ranked = sorted(candidates.support_tuples(), key=lambda t: -abs(candidates.to_dict()[t]))[:limit]
    current = kept.to_dict()
    for r in range(rounds):
        if r:
            current = least_squares(Spectrum.from_dict(current, n), X, y, ridge).to_dict()
        residual = y - Spectrum.from_dict(current, n).predict(X)
        corr = {t: residual @ walsh(X, t) / len(X) for t in ranked if t not in current}
        current |= {t: corr[t] for t in sorted(corr, key=lambda t: -abs(corr[t]))[:add]}
    found = got.to_dict()
    assert set(found) == set(current) and len(found) == len(kept) + rounds * add
    np.testing.assert_allclose([found[t] for t in current], list(current.values()), rtol=1e-5, atol=1e-6)
    added = set(got.support_tuples()) - set(kept.support_tuples())
    reachable = set(hidden) - {(4, 6)}  # (4, 6) is beyond the limit
    assert (4, 6) not in added and (added <= reachable if rounds == 1 else reachable <= added)
    wide = pursued_terms(kept, candidates, X, y, 4, 1, len(candidates), ridge)
    assert set(wide.support_tuples()) == set(kept.support_tuples()) | set(hidden)


def test_pursuit_with_every_candidate_held_returns_the_terms_without_evaluating_them(monkeypatch):
    """Where the kept terms hold every candidate (ProxySPEX's k = 0 keeps every tree term),
    there is nothing to add: the terms come back as they are, and the residual, which would
    evaluate all of them on every mask, is not computed."""
    from compattr.proxy.sparsify import pursued_terms

    n = 8
    trees = Spectrum.from_dict({(): 0.1, (0,): 1.0, (1, 2): -0.5, (3, 4, 5): 0.25}, n)
    X = compattr.sample_masks(n, 64, seed=0)

    def no_evaluation(self, X):
        raise AssertionError("the residual was computed")

    monkeypatch.setattr(Spectrum, "predict", no_evaluation)
    assert pursued_terms(trees, trees, X, np.zeros(len(X)), 2, 1, 10, 0.0) is trees


def test_pursuit_finds_the_terms_a_hierarchy_hides_under_its_strong_ones():
    """On a complete hierarchy the grown fit misses terms the trees rank low; adding the
    ones the residual picks (pursue=True, the default) recovers them: held-out R² near 1
    against well below without. pursue must be a bool."""
    n = 30
    truth = complete_hierarchy(n, n_sets=4, order=4, seed=1)
    X = compattr.sample_masks(n, 400, seed=101)
    y = truth.predict(X)
    # without the cliques and the candidates missing a subset, which recover some of those
    # terms by themselves here
    growth = {"cliques": False, "missing_subsets": 0, "extend_rounds": 0}  # nor stage 8
    pursued = ProxySPEX(seed=0, grow=True, repeats=1, **growth).fit(X, y)
    plain = ProxySPEX(seed=0, grow=True, repeats=1, pursue=False, **growth).fit(X, y)
    X_test = compattr.sample_masks(n, 500, seed=201)
    y_test = truth.predict(X_test)
    on, off = (compattr.faithfulness(est, X_test, y_test) for est in (pursued, plain))
    assert pursued.grown_ and on > 0.99 and off < 0.96
    true = set(truth.support_tuples())
    assert len(true & set(pursued.spectrum_.support_tuples())) > len(true & set(plain.spectrum_.support_tuples()))
    with pytest.raises(ValueError, match="pursue"):
        ProxySPEX(pursue="yes").fit(X, y)


def test_stage_8_extends_the_terms_as_its_cv_chooses_and_only_where_the_error_falls():
    """Stage 8 recomputed on a complete hierarchy (n = 30, 400 masks, outputs scaled to
    ``max |y| = 0.75`` so the CV is in y's units) whose grown fit, without the pursuit,
    the cliques and the candidates missing a subset, misses terms: extension_cv on the
    folds of seed_ from the terms before the stage (the fit with extend_rounds=0), 4 % of a
    fold's training masks a round, the ridge grid, the path at ridge 0, patience 2, at
    most half a fold's training masks in terms, is ``extend_cv_``; the rounds and ridge of
    its lowest error are taken (below the first fit's CV error) and the spectrum is
    extended() on every mask, recovering the function; against a CV error of the terms
    below the one it chose, or where its lowest is at 0 rounds, the terms stay as they
    were. Not run with extend_rounds=0 or a fixed k; bad values are refused."""
    from compattr.proxy import proxyspex
    from compattr.proxy.extension import extended, extension_cv
    from compattr.spectrum.supports import csr_to_padded

    n = 30
    truth = complete_hierarchy(n, n_sets=4, order=4, seed=1)
    X = compattr.sample_masks(n, 400, seed=101)
    truth = truth.with_coefs(truth.coefs * 0.75 / np.abs(truth.predict(X)).max())
    y = truth.predict(X)
    settings = {"seed": 0, "grow": True, "repeats": 1, "pursue": False, "cliques": False, "missing_subsets": 0}
    before = ProxySPEX(**settings, extend_rounds=0).fit(X, y)
    est = ProxySPEX(**settings).fit(X, y)
    assert len(before.extend_cv_) == 0 and "extend" not in before.timings_ and before.extend_rounds_ == 0
    assert est.extend_rounds_ >= 1 and est.timings_["extend"] >= 0.0  # the case this test needs
    folds = list(KFold(5, shuffle=True, random_state=est.seed_).split(X))
    m_train = min(len(train) for train, _ in folds)
    add = int(np.ceil(proxyspex.EXTEND_SHARE * m_train))
    rows = csr_to_padded(before.spectrum_.supports, n)
    options = (proxyspex.EXTEND_ROUNDS, proxyspex.EXTEND_PATIENCE, None, m_train // 2)
    table = extension_cv(rows, X, y, folds, add, proxyspex.RIDGES, 0.0, *options)
    pd.testing.assert_frame_equal(est.extend_cv_, table)
    best = table.loc[table["cv_mse"].idxmin()]
    assert est.extend_rounds_ == best["rounds"] and best["cv_mse"] < before.sparsity_cv_["cv_mse"].min()
    expected = extended(rows, X, y, add, int(best["rounds"]), 0.0, best["ridge"])

    def same(a: Spectrum, b: Spectrum) -> bool:  # BLAS threads may sum in another order
        first, second = a.to_dict(), b.to_dict()
        return first.keys() == second.keys() and all(abs(first[t] - second[t]) < 1e-9 for t in first)

    assert same(est.spectrum_, expected)
    X_test = compattr.sample_masks(n, 500, seed=201)
    y_test = truth.predict(X_test)
    assert compattr.faithfulness(est, X_test, y_test) > 0.999 > compattr.faithfulness(before, X_test, y_test)
    # taken only below the terms' own CV error: the same stage against an error just below
    # and just above the one it chose
    for factor, taken in ((0.999, False), (1.001, True)):
        again = copy.deepcopy(before).set_params(extend_rounds=proxyspex.EXTEND_ROUNDS)
        again._extend(X, y, float(best["cv_mse"]) * factor)
        pd.testing.assert_frame_equal(again.extend_cv_, table)
        assert (again.extend_rounds_ > 0) == taken and same(again.spectrum_, expected) == taken
        assert same(again.spectrum_, before.spectrum_) != taken
    # where the CV's lowest error is the terms' own (0 rounds), they stay as they were
    X_noisy, y_noisy = _noisy_hierarchy(n_sets=2, order=3, masks=200, snr_db=5)
    kept = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=3).fit(X_noisy, y_noisy)
    assert len(kept.extend_cv_) and kept.extend_rounds_ == 0  # the case this needs
    without = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=3, extend_rounds=0).fit(X_noisy, y_noisy)
    assert kept.spectrum_ == without.spectrum_
    fixed = ProxySPEX(**settings, k=40).fit(X, y)
    assert len(fixed.extend_cv_) == 0 and fixed.extend_rounds_ == 0
    for bad in (-1, True, 1.5, "12", None):
        with pytest.raises(ValueError, match="extend_rounds"):
            ProxySPEX(extend_rounds=bad).fit(X, y)


@pytest.mark.parametrize("settings", [dict(k=2), dict(energy=0.3), dict(k=3, refit=True)])
def test_cv_r2_is_the_kept_rules_not_that_of_a_rule_that_could_not_be_kept(settings):
    """With a fixed k or energy, the sparsity CV also scores every tree term (k = 0) and, with
    refit=True, the unrefitted terms: cv_r2_ read the lowest of all (0.471 where the two
    terms kept scored 0.259), and the repeats and growth decided on it."""
    truth = compattr.synthetic.complete_hierarchy(8, n_sets=3, order=3, seed=3)
    X = compattr.sample_masks(8, 256, seed=0)
    y = truth.predict(X)
    est = ProxySPEX(seed=0, **settings).fit(X, y)
    table = est.sparsity_cv_
    allowed = table["refit"] if settings.get("refit") is True else table["k"] > 0
    kept = table[allowed]
    assert est.cv_r2_ == pytest.approx(1 - kept["cv_mse"].min() / np.var(y))
    assert table["cv_mse"].min() < kept["cv_mse"].min()  # a rule it could not keep scored better


def test_spectrum_cv_r2_is_the_cv_of_the_terms_the_spectrum_holds():
    """cv_r2_ is stage 3's (the first top-k); the growth and the extension replace the terms
    where their own CV scores lower, and spectrum_cv_r2_ is that CV's R² of the terms kept
    (PairedShapley read the first and refitted an exact spectrum). NaN for an average of
    repeats that no later stage chose again."""
    truth = complete_hierarchy(40, seed=3)
    X = compattr.sample_masks(40, 900, seed=3)
    y = truth.predict(X)
    extended = ProxySPEX(seed=0, repeats=1).fit(X, y)
    assert extended.extend_rounds_ > 0  # the case this needs
    assert extended.spectrum_cv_r2_ == pytest.approx(1 - extended.extend_cv_["cv_mse"].min() / np.var(y))
    assert extended.spectrum_cv_r2_ > extended.cv_r2_ + 0.1
    truth = complete_hierarchy(40, seed=4)
    X = compattr.sample_masks(40, 900, seed=4)
    y = truth.predict(X)
    grown = ProxySPEX(seed=0, repeats=1).fit(X, y)
    assert grown.grown_ and grown.extend_rounds_ == 0  # the case this needs
    assert grown.spectrum_cv_r2_ == pytest.approx(1 - grown.grow_cv_["cv_mse"].min() / np.var(y))
    averaged = ProxySPEX(seed=0, repeats=3, regrow=False, extend_rounds=0).fit(X, y)
    assert np.isnan(averaged.spectrum_cv_r2_) and np.isfinite(averaged.cv_r2_)
    constant = ProxySPEX(seed=0).fit(X, np.full(len(X), 2.5))
    assert constant.spectrum_cv_r2_ == constant.cv_r2_ == 1.0


def test_spectrum_ridge_is_the_strength_the_final_spectrum_is_the_refit_at():
    """Stages 5-8 refit the terms they choose at the ridge strength their CV chose, while
    ``ridge_`` stays the first fit's choice: ``spectrum_ridge_`` is the final one (what a
    bootstrap of the spectrum refits at), NaN for an average of repeats no stage refitted."""
    from compattr.spectrum import refit_gap

    n, differs = 12, 0
    for seed in range(4):
        truth = complete_hierarchy(n, n_sets=6, order=3, seed=seed)
        X = compattr.sample_masks(n, int(np.ceil(3 * n * np.log2(n))), seed=seed)
        y = add_noise(truth.predict(X), truth, 8, seed=seed)
        est = ProxySPEX(seed=0, repeats=1).fit(X, y)
        assert np.isfinite(est.spectrum_ridge_)
        assert refit_gap(est.spectrum_, X, y, est.spectrum_ridge_) < 1e-8
        differs += est.spectrum_ridge_ != est.ridge_
    assert differs  # the case this test needs: a later stage chose another strength
    X, y = _noisy_hierarchy(n_sets=2, order=3, masks=200, snr_db=5)
    averaged = ProxySPEX(seed=4, grid=SMALL_GRID, repeats=3, regrow=False, extend_rounds=0).fit(X, y)
    assert averaged.repeats_ == 3 and np.isnan(averaged.spectrum_ridge_)
