"""Confidence intervals for comparing methods on the same held-out questions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from .._validation import check_int


def paired_accuracy_intervals(right, labels=None, *, reference: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Score intervals of each method's accuracy and of its difference to a reference method
    answering the same questions (paired).

    Each accuracy gets Wilson's score interval; each difference Newcombe's hybrid score
    interval for paired proportions (Newcombe 1998, method 10), which combines the two
    methods' Wilson intervals through the correlation of their answers. Pairing matters: two
    plans tested on the same questions share which questions are hard, so the interval of
    their difference is much narrower than the two intervals suggest. Unlike a percentile
    bootstrap, neither interval collapses to a point where the answers do not vary (30 of
    30 right reads [0.886, 1], not [1, 1]) or where the methods differ on a few questions.

    Parameters
    ----------
    right : (p, Q) array of 0/1 or bool
        Whether each of ``p`` methods answers each of ``Q`` questions right.
    labels : sequence of p str, optional
        Method names (the index of the result); default ``0..p-1``.
    reference : int
        Row the differences are taken to (``mean(row) - mean(reference)``).
    confidence : float
        Coverage of the intervals, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        One row per method: ``mean``, ``ci_low``, ``ci_high`` (its accuracy's interval) and
        ``diff``, ``diff_low``, ``diff_high`` (the difference to ``reference``; zero for the
        reference itself).
    """
    R = np.asarray(right)
    if R.ndim != 2 or R.shape[1] < 2 or not np.isin(R, (0, 1)).all():
        raise ValueError(f"right must be a (methods, questions) array of 0/1 with >= 2 questions, got {R.shape}.")
    R = R.astype(bool)
    p, Q = R.shape
    reference = check_int(reference, "reference", 0, p - 1)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
    mean = R.mean(axis=1)
    wilson = np.array([_wilson(int(k), Q, confidence) for k in R.sum(axis=1)])  # (p, 2)
    diff = mean - mean[reference]
    diff_low, diff_high = np.zeros(p), np.zeros(p)
    for i in range(p):
        if i != reference:
            phi = _phi(R[i], R[reference])
            diff_low[i], diff_high[i] = _newcombe(mean[i], mean[reference], wilson[i], wilson[reference], phi)
    return pd.DataFrame(
        {
            "mean": mean,
            "ci_low": wilson[:, 0],
            "ci_high": wilson[:, 1],
            "diff": diff,
            "diff_low": diff_low,
            "diff_high": diff_high,
        },
        index=list(range(p)) if labels is None else list(labels),
    )


def _wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson's score interval of ``k`` successes in ``n`` trials."""
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _phi(first: np.ndarray, second: np.ndarray) -> float:
    """The correlation of two methods' right/wrong answers (Q,) bool, from their 2 × 2 table
    (0 where a margin is empty, as Newcombe takes it)."""
    a, b = np.sum(first & second), np.sum(first & ~second)
    c, d = np.sum(~first & second), np.sum(~first & ~second)
    margins = float(a + b) * float(c + d) * float(a + c) * float(b + d)
    return 0.0 if margins == 0 else float(a * d - b * c) / np.sqrt(margins)


def _newcombe(p1: float, p2: float, ci1, ci2, phi: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``p1 - p2`` from the Wilson intervals ``ci1``,
    ``ci2`` (low, high) of two paired proportions and the correlation ``phi`` of the pairs."""
    (l1, u1), (l2, u2) = ci1, ci2
    below = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    above = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    return p1 - p2 - np.sqrt(max(below, 0.0)), p1 - p2 + np.sqrt(max(above, 0.0))
