"""compattr.apps.stats: score intervals of accuracies and of their paired differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from compattr.apps.stats import paired_accuracy_intervals


def _wilson_by_hand(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The p where |k/n - p| = z sqrt(p (1 - p) / n): the roots of its quadratic."""
    z, p = norm.ppf(0.5 + confidence / 2), k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def _paired(rng, Q: int, both: float, first_only: float, second_only: float) -> np.ndarray:
    """(2, Q) right/wrong answers of a reference and a method, from the four cells' odds."""
    cell = rng.choice(4, Q, p=[both, second_only, first_only, 1 - both - first_only - second_only])
    return np.stack([(cell == 0) | (cell == 1), (cell == 0) | (cell == 2)])


def test_accuracies_get_wilsons_interval():
    rng = np.random.default_rng(5)
    right = rng.random((3, 40)) < [[0.9], [0.5], [1.0]]
    table = paired_accuracy_intervals(right, ["a", "b", "c"], confidence=0.9)
    assert table.index.tolist() == ["a", "b", "c"]
    assert table["mean"].tolist() == pytest.approx(right.mean(1).tolist())
    for label, row in zip("abc", right):
        low, high = _wilson_by_hand(int(row.sum()), 40, 0.9)
        assert table.loc[label, ["ci_low", "ci_high"]].tolist() == pytest.approx([low, high])


@pytest.mark.parametrize("right_of_30", [30, 15, 16])
def test_answers_that_do_not_vary_still_leave_an_interval(right_of_30):
    """Two methods that agree on all thirty questions: their difference is not known to be 0
    (a percentile bootstrap read [0, 0]; Newcombe's hybrid score interval too at 15 of 30
    right), nor an accuracy of 30 of 30 to be 1. Agresti and Min's half a question in each
    cell of the 2 × 2 table, each cell 0.5 / 32: the Wald interval ±z·sqrt((1 / 32) / 32)."""
    right = np.zeros((2, 30), bool)
    right[:, :right_of_30] = True
    table = paired_accuracy_intervals(right)
    low, high = _wilson_by_hand(right_of_30, 30)
    assert table.loc[0, ["ci_low", "ci_high"]].tolist() == pytest.approx([low, high])
    half = norm.ppf(0.975) * np.sqrt((1 / 32) / 32)  # cells of 0.5 / 32 each, no difference
    assert table.loc[1, ["diff_low", "diff_high"]].tolist() == pytest.approx([-half, half])
    assert table.loc[0, ["diff", "diff_low", "diff_high"]].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("Q", "cells"),
    [
        (30, (0.7, 0.02, 0.0)),  # the method better on 2 % of questions: the bootstrap missed 53 %
        (30, (0.48, 0.02, 0.0)),  # the same near an accuracy of one half: Newcombe's missed 35 %
        (60, (0.6, 0.05, 0.05)),  # no difference
        (60, (0.5, 0.15, 0.05)),
    ],
)
def test_the_difference_interval_covers_the_true_difference(Q, cells):
    """Paired answers drawn with known odds: the 95 % interval of the difference misses the
    true difference at most about as often as it should (simulated datasets)."""
    rng = np.random.default_rng(Q)
    truth, misses, runs = cells[1] - cells[2], 0, 1500
    for _ in range(runs):
        row = paired_accuracy_intervals(_paired(rng, Q, *cells), reference=0).loc[1]
        misses += not row["diff_low"] <= truth <= row["diff_high"]
    assert misses / runs < 0.075


def test_pairing_narrows_the_difference_of_correlated_methods():
    rng = np.random.default_rng(0)
    base = rng.random(200) < 0.7
    other = base.copy()
    flip = rng.choice(200, 12, replace=False)
    other[flip] = ~other[flip]  # the same questions right but 12
    table = paired_accuracy_intervals(np.stack([base, other]), reference=0)
    width = table.loc[1, "diff_high"] - table.loc[1, "diff_low"]
    unpaired = (table.loc[0, "ci_high"] - table.loc[0, "ci_low"]) * np.sqrt(2)
    assert width < unpaired / 2
    assert table.loc[1, "diff"] == pytest.approx(other.mean() - base.mean())
    assert table.loc[1, "diff_low"] < table.loc[1, "diff"] < table.loc[1, "diff_high"]


def test_the_difference_interval_is_agresti_and_mins_and_holds_the_observed_difference():
    """Half a question added to each cell of the 2 × 2 table, then the Wald interval of the
    difference (by hand here); the interval is widened to the observed difference where the
    shrunk centre leaves it out (a uniform gain at 50 % confidence)."""
    rng = np.random.default_rng(2)
    right = rng.random((3, 40)) < 0.6
    table = paired_accuracy_intervals(right, reference=2, confidence=0.9)
    for i in (0, 1):
        b = np.sum(right[i] & ~right[2]) + 0.5
        c = np.sum(~right[i] & right[2]) + 0.5
        d, se = (b - c) / 42, np.sqrt(((b + c) / 42 - ((b - c) / 42) ** 2) / 42)
        z = norm.ppf(0.95)
        assert table.loc[i, ["diff_low", "diff_high"]].tolist() == pytest.approx([d - z * se, d + z * se])
    gain = np.zeros((2, 50), bool)
    gain[1] = True
    row = paired_accuracy_intervals(gain, reference=0).loc[1]
    assert row["diff"] == 1.0 and 0.85 < row["diff_low"] < 1.0 and row["diff_high"] == 1.0
    row = paired_accuracy_intervals(gain, reference=0, confidence=0.5).loc[1]
    assert row["diff_low"] < row["diff"] == row["diff_high"] == 1.0


def test_inputs_are_checked():
    right = np.random.default_rng(1).random((2, 30)) < 0.5
    with pytest.raises(ValueError, match="questions"):
        paired_accuracy_intervals(np.ones((2, 1)))
    with pytest.raises(ValueError, match="0/1"):
        paired_accuracy_intervals(np.full((2, 5), 0.5))
    with pytest.raises(ValueError, match="confidence"):
        paired_accuracy_intervals(right, confidence=1.5)
    with pytest.raises(ValueError, match="reference"):
        paired_accuracy_intervals(right, reference=2)
