"""compattr.apps.stats: paired bootstrap intervals over questions."""

from __future__ import annotations

import numpy as np
import pytest

from compattr.apps.stats import paired_bootstrap


def _explicit_bootstrap(S: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of resamples drawn question by question (slow, independent of the weights trick)."""
    rng = np.random.default_rng(seed)
    Q = S.shape[1]
    return np.stack([S[:, rng.integers(0, Q, Q)].mean(1) for _ in range(resamples)], 1)


def test_intervals_match_an_explicit_resampling_in_distribution():
    rng = np.random.default_rng(5)
    S = (rng.random((3, 150)) < [[0.8], [0.6], [0.7]]).astype(float)
    table = paired_bootstrap(S, ["a", "b", "c"], resamples=20_000, seed=1)
    explicit = _explicit_bootstrap(S, 4_000, seed=2)
    low, high = np.percentile(explicit, [2.5, 97.5], axis=1)
    assert table.index.tolist() == ["a", "b", "c"]
    assert table["mean"].tolist() == pytest.approx(S.mean(1).tolist())
    assert table["ci_low"].to_numpy() == pytest.approx(low, abs=0.012)
    assert table["ci_high"].to_numpy() == pytest.approx(high, abs=0.012)
    # the normal approximation of a proportion's interval, as a second, independent check
    half = 1.96 * np.sqrt(S.mean(1) * (1 - S.mean(1)) / 150)
    assert (table["ci_high"] - table["ci_low"]).to_numpy() == pytest.approx(2 * half, rel=0.15)


def test_pairing_narrows_the_difference_of_correlated_methods():
    rng = np.random.default_rng(0)
    base = (rng.random(200) < 0.7).astype(float)
    other = base.copy()
    flip = rng.choice(200, 12, replace=False)
    other[flip] = 1 - other[flip]  # the same questions right but 12
    table = paired_bootstrap(np.stack([base, other]), reference=0)
    width = table.loc[1, "diff_high"] - table.loc[1, "diff_low"]
    unpaired = (table.loc[0, "ci_high"] - table.loc[0, "ci_low"]) * np.sqrt(2)
    assert width < unpaired / 2
    assert table.loc[1, "diff"] == pytest.approx(other.mean() - base.mean())
    assert table.loc[0, ["diff", "diff_low", "diff_high"]].tolist() == [0, 0, 0]


def test_a_uniform_gain_has_a_degenerate_interval_and_excludes_zero():
    S = np.zeros((2, 50))
    S[1, :] = 1.0
    table = paired_bootstrap(S, reference=0)
    assert table.loc[1, ["diff", "diff_low", "diff_high"]].tolist() == [1.0, 1.0, 1.0]


def test_seeded_and_checked():
    S = np.random.default_rng(1).random((2, 30))
    assert paired_bootstrap(S, seed=3).equals(paired_bootstrap(S, seed=3))
    with pytest.raises(ValueError, match="questions"):
        paired_bootstrap(np.ones((2, 1)))
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(S, confidence=1.5)
    with pytest.raises(ValueError, match="reference"):
        paired_bootstrap(S, reference=2)


def test_too_few_resamples_for_the_confidence_are_refused():
    """One resample gave a zero-width "interval" that may exclude the estimate (a method
    with diff +0.033 got [-0.2, -0.2], and a verdict from it)."""
    S = np.random.default_rng(0).random((2, 30))
    with pytest.raises(ValueError, match="at least 40"):
        paired_bootstrap(S, ["a", "b"], resamples=1)
    assert len(paired_bootstrap(S, ["a", "b"], resamples=40)) == 2
