import itertools

import numpy as np
import pytest

import compattr
from compattr.synthetic import add_noise, complete_hierarchy, noise_sd, peak


def test_complete_hierarchy_is_downward_closed():
    sp = complete_hierarchy(50, n_sets=10, order=5, seed=0)
    supports = set(sp.to_dict())
    for T in supports:
        for r in range(len(T)):
            assert all(sub in supports for sub in itertools.combinations(T, r))
    assert sp.max_order == 5 and len(sp) <= 10 * 32
    assert np.all(np.abs(sp.coefs) <= 1.0)


def test_peak_has_only_the_top_sets():
    sp = peak(50, n_sets=10, order=5, seed=0)
    assert set(sp.degrees.tolist()) == {5} and len(sp) == 10


@pytest.mark.parametrize("seed", range(6))
def test_the_sets_are_distinct_at_few_features(seed):
    """At n = 8 a set drawn twice merged two coefficients into one (|c| up to 2), and the
    Peak had fewer than n_sets terms (peak(9, seed=0): 8)."""
    sp = peak(8, n_sets=10, order=5, seed=seed)
    assert len(sp) == 10 and np.all(np.abs(sp.coefs) < 1.0)
    assert len(peak(9, seed=0)) == 10
    with pytest.raises(ValueError, match="only 6 sets of order 5"):
        peak(6, n_sets=10, order=5)


def test_noise_has_the_requested_snr():
    sp = complete_hierarchy(30, seed=1)
    X = compattr.sample_masks(30, 50_000, seed=2)
    y = sp.predict(X)
    noisy = add_noise(y, sp, snr_db=10, seed=3)
    snr = 10 * np.log10(np.sum(sp.coefs[sp.degrees > 0] ** 2) / np.var(noisy - y))
    assert snr == pytest.approx(10, abs=0.1)


def test_order_larger_than_n_is_refused():
    with pytest.raises(ValueError, match="need n"):
        complete_hierarchy(3, order=5)


@pytest.mark.parametrize("kwargs", [dict(n_sets=0), dict(n_sets=-3), dict(n_sets=2.5), dict(order=0)])
@pytest.mark.parametrize("function", [complete_hierarchy, peak])
def test_set_counts_and_orders_must_be_positive_integers(function, kwargs):
    """n_sets=0 gave the zero function (every R² NaN) and 2.5 three sets."""
    with pytest.raises(ValueError, match="n_sets|order"):
        function(20, **kwargs)


@pytest.mark.parametrize("snr_db", [float("nan"), float("-inf"), "10"])
def test_a_signal_to_noise_ratio_that_is_no_number_is_refused(snr_db):
    """NaN filled the outputs with NaN; -inf divided by zero."""
    sp = complete_hierarchy(20, n_sets=3, order=3, seed=1)
    with pytest.raises(ValueError, match="snr_db"):
        add_noise(np.zeros(3), sp, snr_db)
    assert noise_sd(sp, float("inf")) == 0.0  # no noise
