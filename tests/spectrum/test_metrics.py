"""Faithfulness (held-out R²), its bootstrap interval, and the hierarchy rates DSR, SCR and SHR on hand-made spectra."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from compattr import Spectrum, sample_masks
from compattr.metrics import dsr, faithfulness, faithfulness_interval, r2_interval, scr, shr


def ranked(*supports, n: int = 5) -> Spectrum:
    """A spectrum whose term order is the given order (decreasing coefficients)."""
    return Spectrum(n, list(supports), np.arange(len(supports), 0, -1.0))


# ---------------------------------------------------------------------- faithfulness
class Linear:
    """A minimal model with predict(): anything with .predict is accepted."""

    def __init__(self, w):
        self.w = np.asarray(w, dtype=float)

    def predict(self, X):
        return np.asarray(X, dtype=float) @ self.w


def test_faithfulness_is_r2():
    X = sample_masks(4, 200, seed=1)
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3
    model = Linear([1.0, -2.0, 0.0, 0.0])
    y_hat = model.predict(X)
    expected = 1 - np.sum((y_hat - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert faithfulness(model, X, y) == pytest.approx(expected)
    assert faithfulness(Linear([1.0, -2.0, 0.5, 0.0]), X, y - 0.3) == pytest.approx(1.0)


def test_faithfulness_of_exact_spectrum_and_mean():
    sp = Spectrum.from_dict({(): 1.0, (0,): 0.5, (1, 2): -0.7}, n=6)
    X = sample_masks(6, 300, seed=2)
    y = sp.predict(X)
    assert faithfulness(sp, X, y) == pytest.approx(1.0)
    mean_model = Spectrum.from_dict({(): float(y.mean())}, n=6)
    assert faithfulness(mean_model, X, y) == pytest.approx(0.0, abs=1e-12)
    assert faithfulness(sp, X.astype(int).tolist(), list(y)) == pytest.approx(1.0)


def test_faithfulness_accepts_lightgbm():
    lgb = pytest.importorskip("lightgbm")

    def f(X):
        return X[:, 0] * 1.0 + X[:, 1] * X[:, 2]

    X, X_test = sample_masks(5, 400, seed=3), sample_masks(5, 200, seed=4)
    model = lgb.LGBMRegressor(n_estimators=50, verbose=-1, n_jobs=1).fit(X, f(X))
    assert faithfulness(model, X_test, f(X_test)) > 0.95


def test_faithfulness_errors():
    sp = Spectrum.from_dict({(0,): 1.0}, n=3)
    X = sample_masks(3, 10, seed=0)
    y = sp.predict(X)
    with pytest.raises(ValueError, match="columns"):
        faithfulness(sp, X[:, :2], y)
    with pytest.raises(ValueError, match="masks"):
        faithfulness(sp, X, y[:5])
    with pytest.raises(ValueError, match="NaN"):
        faithfulness(sp, X, np.where(np.arange(10) == 3, np.nan, y))
    with pytest.raises(ValueError, match="binary"):
        faithfulness(sp, X * 2, y)
    with pytest.raises(ValueError, match="constant"):
        faithfulness(sp, X, np.ones(10))
    with pytest.raises(ValueError, match="predictions"):
        faithfulness(Linear([np.nan, 0, 0]), X, y)
    with pytest.raises(TypeError, match="predict"):
        faithfulness(object(), X, y)


# ---------------------------------------------------------------------- faithfulness interval
def _noisy_linear(m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of 6 features and outputs of a linear function plus noise of sd 1."""
    X = sample_masks(6, m, seed=seed)
    y = X @ np.array([1.0, -1.0, 0.5, 0.5, 0.0, 0.0]) + np.random.default_rng(seed).normal(0, 1.0, m)
    return X, y


def _bias_corrected(samples, estimate, confidence):
    """The bias-corrected percentile interval of bootstrap ``samples`` around ``estimate``."""
    share = np.mean(np.asarray(samples) < estimate) + 0.5 * np.mean(np.asarray(samples) == estimate)
    bias, z = norm.ppf(share), norm.ppf(0.5 + confidence / 2)
    return tuple(np.percentile(samples, 100 * norm.cdf([2 * bias - z, 2 * bias + z])))


def test_faithfulness_interval_is_the_bias_corrected_bootstrap_of_r2_over_the_held_out_masks():
    """Against a loop that scores each resample (the masks repeated as the counts draw them)
    with :func:`faithfulness` itself, for the R² and for the difference to a baseline: the
    percentiles at Φ(2 z0 ± z), z0 placing the estimate among the resampled values."""
    X, y = _noisy_linear(60, seed=3)
    model, baseline = Linear([1.0, -1.0, 0.0, 0.0, 0.0, 0.0]), Linear([0.5, -0.5, 0.5, 0.0, 0.0, 0.0])
    counts = np.random.default_rng(7).multinomial(60, np.full(60, 1 / 60), size=300)
    rows = [np.repeat(np.arange(60), c) for c in counts]
    own = [faithfulness(model, X[r], y[r]) for r in rows]
    diff = [a - faithfulness(baseline, X[r], y[r]) for a, r in zip(own, rows)]
    estimate, low, high = faithfulness_interval(model, X, y, confidence=0.9, resamples=300, seed=7)
    assert estimate == pytest.approx(faithfulness(model, X, y))
    assert (low, high) == pytest.approx(_bias_corrected(own, estimate, 0.9))
    estimate, low, high = faithfulness_interval(model, X, y, baseline=baseline, confidence=0.9, resamples=300, seed=7)
    assert estimate == pytest.approx(faithfulness(model, X, y) - faithfulness(baseline, X, y))
    assert (low, high) == pytest.approx(_bias_corrected(diff, estimate, 0.9))


def test_the_difference_to_a_baseline_wrong_on_a_few_masks_stays_among_the_resampled_values():
    """The model exact on every mask, the baseline off on one of 10: every resampled
    difference is at least 0, and so is the interval's low end (the basic interval, the
    percentiles reflected about the estimate, read [-0.98, 0.29] there)."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.normal(size=10)
        baseline = y.copy()
        baseline[rng.integers(10)] += rng.normal(0, 2.0)
        estimate, low, high = r2_interval(y, y, baseline, seed=0)
        assert 0 <= low <= estimate <= high


def test_faithfulness_interval_covers_the_r2_on_all_masks_about_as_often_as_it_says():
    """A fixed model scored on 150 fresh masks at a time: its 90 % intervals hold its R² on
    20,000 masks (the R² it would have on endless masks, to about ±0.01) in 80-97 % of 200
    draws, and the paired interval of its difference to a baseline is narrower than its own."""
    model, baseline = Linear([1.0, -1.0, 0.0, 0.0, 0.0, 0.0]), Linear([1.0, -1.0, 0.5, 0.0, 0.0, 0.0])
    truth = faithfulness(model, *_noisy_linear(20_000, seed=0))
    covered, narrower = 0, 0
    for seed in range(1, 201):
        X, y = _noisy_linear(150, seed)
        options = {"confidence": 0.9, "resamples": 500, "seed": seed}
        _, low, high = faithfulness_interval(model, X, y, **options)
        _, d_low, d_high = faithfulness_interval(model, X, y, baseline=baseline, **options)
        covered += low <= truth <= high
        narrower += d_high - d_low < high - low
    assert 160 <= covered <= 194
    assert narrower == 200


def test_the_intervals_cover_on_few_held_out_masks():
    """On 10 held-out masks a resampled R² reads low: the bias-corrected 95 % intervals of
    the R² and of the difference to a baseline hold the truth (the R²s on 20,000 masks) in
    at least 87 % of 300 draws, the shortfall the docstring states."""
    model, baseline = Linear([1.0, -1.0, 0.0, 0.0, 0.0, 0.0]), Linear([1.0, -0.5, 0.5, 0.0, 0.0, 0.0])
    X, y = _noisy_linear(20_000, seed=0)
    truth = faithfulness(model, X, y)
    difference = truth - faithfulness(baseline, X, y)
    covered = np.zeros(2, int)
    for seed in range(1, 301):
        X, y = _noisy_linear(10, seed)
        _, low, high = faithfulness_interval(model, X, y, resamples=500, seed=seed)
        _, d_low, d_high = faithfulness_interval(model, X, y, baseline=baseline, resamples=500, seed=seed)
        covered += [low <= truth <= high, d_low <= difference <= d_high]
    assert (covered >= 261).all(), covered  # 87 % of 300


def test_r2_interval_draws_the_same_resamples_a_block_at_a_time(monkeypatch):
    from compattr.spectrum import metrics

    X, y = _noisy_linear(60, seed=5)
    predictions = Linear([1.0, -1.0, 0.0, 0.0, 0.0, 0.0]).predict(X)
    whole = r2_interval(y, predictions, resamples=301, seed=2)
    monkeypatch.setattr(metrics, "_RESAMPLE_CELLS", 600)  # blocks of 10 resamples, the last of 1
    assert r2_interval(y, predictions, resamples=301, seed=2) == whole


def test_r2_interval_of_predictions_is_the_models_interval():
    X, y = _noisy_linear(50, seed=2)
    model, baseline = Linear([1.0, -1.0, 0.0, 0.0, 0.0, 0.0]), Linear([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert r2_interval(y, model.predict(X), seed=4) == faithfulness_interval(model, X, y, seed=4)
    both = r2_interval(y, model.predict(X), baseline.predict(X), confidence=0.8, seed=4)
    assert both == faithfulness_interval(model, X, y, baseline=baseline, confidence=0.8, seed=4)
    with pytest.raises(ValueError, match="baseline_predictions"):
        r2_interval(y, model.predict(X), baseline.predict(X)[:-1])
    with pytest.raises(ValueError, match="predictions"):
        r2_interval(y, np.full(50, np.nan))


@pytest.mark.parametrize("offset, spread", [(1e4, 1e-3), (1e8, 1.0)])
def test_r2_interval_does_not_move_with_an_offset_of_the_outputs(offset, spread):
    """Outputs far from 0 (a log-likelihood near -50, say) cancel in Σy² − (Σy)²/t unless
    centred first: the interval moved, or every resample looked constant."""
    rng = np.random.default_rng(0)
    y, noise = rng.normal(size=200), 0.3 * rng.normal(size=200)
    y_hat, baseline = y + noise, y + 2 * noise
    expected = r2_interval(y, y_hat, baseline)
    shifted = r2_interval(offset + spread * y, offset + spread * y_hat, offset + spread * baseline)
    assert np.allclose(shifted, expected, atol=1e-6)


def test_faithfulness_interval_errors_and_a_baseline_equal_to_the_model():
    X, y = _noisy_linear(40, seed=1)
    model = Linear([1.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    assert faithfulness_interval(model, X, y, baseline=model) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="confidence"):
        faithfulness_interval(model, X, y, confidence=1.0)
    with pytest.raises(ValueError, match="resamples"):
        faithfulness_interval(model, X, y, resamples=0)
    with pytest.raises(ValueError, match="constant"):
        faithfulness_interval(model, X, np.ones(40))
    # on 2 masks every resample that varies has the whole sample's R²: no interval below 10
    with pytest.raises(ValueError, match="at least 10 held-out masks, got 9"):
        faithfulness_interval(model, X[:9], y[:9])
    # one output of 10 differs: a seed whose 4 resamples all miss it
    draws = lambda s: np.random.default_rng(s).multinomial(10, np.full(10, 0.1), size=4)
    seed = next(s for s in range(2000) if (draws(s)[:, 9] == 0).all())
    with pytest.raises(ValueError, match="constant on every resample"):
        faithfulness_interval(model, X[:10], np.r_[np.zeros(9), 1.0], confidence=0.5, resamples=4, seed=seed)
    with pytest.raises(ValueError, match="at least 40"):  # one resample was a zero-width "interval"
        faithfulness_interval(model, X, y, resamples=39)
    with pytest.raises(TypeError, match="predict"):
        faithfulness_interval(model, X, y, baseline=object())


# ---------------------------------------------------------------------- hierarchy rates
def test_paper_example():
    # F_4 = {∅, {1}, {2}, {1,3}}: DSR = (1 + 1 + 1 + 1/2) / 4 = 7/8 (paper §3)
    sp = ranked((), (1,), (2,), (1, 3))
    assert dsr(sp, 4) == pytest.approx(7 / 8)
    assert scr(sp, 4) == pytest.approx(1.0)  # {1,3} is reached through {1}
    assert shr(sp, 4) == pytest.approx(3 / 4)  # {3} is missing


def test_staircase_without_strong_hierarchy():
    sp = ranked((), (0,), (0, 1), (0, 1, 2), (3, 4))
    assert dsr(sp, 4) == pytest.approx((1 + 1 + 1 / 2 + 1 / 3) / 4)
    assert scr(sp, 4) == pytest.approx(1.0)
    assert shr(sp, 4) == pytest.approx(2 / 4)
    assert dsr(sp, 5) == pytest.approx((1 + 1 + 1 / 2 + 1 / 3 + 0) / 5)
    assert scr(sp, 5) == pytest.approx(4 / 5)
    assert shr(sp, 5) == pytest.approx(2 / 5)


def test_empty_set_counts():
    sp = ranked((0,), (0, 1), (1,), ())
    assert dsr(sp, 2) == pytest.approx((0 + 1 / 2) / 2)  # ∅ is not in the top 2
    assert scr(sp, 2) == 0.0 and shr(sp, 2) == 0.0
    assert dsr(sp, 4) == scr(sp, 4) == shr(sp, 4) == pytest.approx(1.0)


def test_uses_top_k_by_magnitude():
    sp = Spectrum.from_dict({(0, 1): -5.0, (): 0.1, (0,): 3.0, (1,): -0.2}, n=2)
    assert dsr(sp, 2) == pytest.approx((1 / 2 + 0) / 2)  # F_2 = {{0,1}, {0}}
    assert shr(sp, 4) == pytest.approx(1.0)


def test_rate_errors():
    sp = ranked((), (0,))
    for fn in (dsr, scr, shr):
        with pytest.raises(ValueError, match="larger than the spectrum"):
            fn(sp, 3)
        with pytest.raises(ValueError, match="integer"):
            fn(sp, 0)
        with pytest.raises(TypeError, match="Spectrum"):
            fn({(): 1.0}, 1)
