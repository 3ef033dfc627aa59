"""Confidence intervals for comparing methods on the same held-out questions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._validation import check_int, check_resamples


def paired_bootstrap(
    scores,
    labels=None,
    *,
    reference: int = 0,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Percentile bootstrap intervals of each method's mean score and of its difference to a
    reference method, the questions resampled jointly for all methods (paired).

    Pairing matters: two plans tested on the same questions share which questions are hard,
    so the interval of their difference is much narrower than the two intervals suggest.

    Parameters
    ----------
    scores : (p, Q) array
        Score of each of ``p`` methods on each of ``Q`` questions (1/0 for right/wrong).
    labels : sequence of p str, optional
        Method names (the index of the result); default ``0..p-1``.
    reference : int
        Row the differences are taken to (``mean(row) - mean(reference)``).
    confidence : float
        Coverage of the intervals, in (0, 1).
    resamples : int
        Bootstrap resamples of the questions.
    seed : int
        Seeds the resampling.

    Returns
    -------
    pandas.DataFrame
        One row per method: ``mean``, ``ci_low``, ``ci_high`` (its mean's interval) and
        ``diff``, ``diff_low``, ``diff_high`` (the difference to ``reference``; zero for the
        reference itself).
    """
    S = np.asarray(scores, dtype=float)
    if S.ndim != 2 or S.shape[1] < 2 or not np.isfinite(S).all():
        raise ValueError(f"scores must be a finite (methods, questions) array with >= 2 questions, got {S.shape}.")
    p, Q = S.shape
    reference = check_int(reference, "reference", 0, p - 1)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
    resamples = check_resamples(resamples, confidence)
    # each resample draws Q questions with replacement: its counts weigh the questions
    counts = np.random.default_rng(seed).multinomial(Q, np.full(Q, 1 / Q), size=resamples)  # (R, Q)
    means = S @ counts.T / Q  # (p, R)
    diffs = means - means[reference]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail], axis=1)
    diff_low, diff_high = np.percentile(diffs, [tail, 100 - tail], axis=1)
    return pd.DataFrame(
        {
            "mean": S.mean(1),
            "ci_low": low,
            "ci_high": high,
            "diff": S.mean(1) - S[reference].mean(),
            "diff_low": diff_low,
            "diff_high": diff_high,
        },
        index=list(range(p)) if labels is None else list(labels),
    )
