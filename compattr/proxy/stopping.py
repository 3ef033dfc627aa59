"""Early stopping for the search: LightGBM callbacks that end a fit once its outcome is settled.

Both read the validation score LightGBM reports after every round and end the fit by raising
``lightgbm.callback.EarlyStopException`` with the model of its best round:

* :class:`EarlyStopping` is LightGBM's own early stopping (patience and ``min_delta``), ended
  sooner when a visibly convex validation curve shows the patience cannot be beaten;
* :class:`Hopeless` ends a fit of the race that cannot beat the best score of its rung.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np


class _Curve:
    """The validation curve a callback reads: every round's score (``history``'s, a
    continued fit's earlier rounds, first), the best round so far (one that beats the best
    by more than ``min_delta``) and its score, and whether the callback ``stopped`` the fit."""

    def __init__(self, min_delta: float, history) -> None:
        self.min_delta = min_delta
        self.scores: list[float] = []
        self.best_at, self.best = -1, np.inf
        for score in history:
            self._record(score)
        self.first = len(self.scores)  # this call's first round
        self.stopped = False

    def _record(self, score: float) -> None:
        self.scores.append(score)
        if score < self.best - self.min_delta:
            self.best, self.best_at = score, len(self.scores) - 1

    def _end(self, env) -> lgb.callback.EarlyStopException:
        """The exception that ends this call of ``lgb.train`` with the model of the best round."""
        return _stop(env, len(self.scores) - self.first, self.best_at - self.first, self.best)


class Hopeless(_Curve):
    """LightGBM callback: stop a fit that cannot beat ``incumbent`` by round ``cap``.

    Both callbacks take ``history``: for a fit that continues an earlier one
    (``init_model``), the validation scores of its earlier rounds, which they read as if
    they had seen those rounds themselves, so the continued fit ends where one fit from
    scratch to ``cap`` would (given the same ``incumbent``).

    Boosting's validation curve is convex once past its start (each round gains less than
    the one before), so from round t the best reachable score by ``cap`` is at least the
    best so far minus the current gain per round times the rounds left. The current gain is
    bounded by the mean gain of the last ``window`` rounds, which on a convex curve is an
    over-estimate, so the bound is exact there. It is used as is when the curve is visibly
    convex (the last window gained no more than the one before it); otherwise, at the start
    of a fit or on a noisy curve, the gain is multiplied by ``safety``. A fit whose bound
    still misses the incumbent is stopped; its recorded score (the best so far) is then
    worse than the incumbent, so it loses the race as it would have at ``cap`` on a convex
    curve. Real curves are not always convex: one that drops again when a tree finds an
    interaction can be stopped although it would have won, so the order the race tries its
    fits in can change the winner.
    """

    order = 40  # after early stopping (30)

    def __init__(self, incumbent: float, cap: int, window: int = 10, safety: float = 2.0, history=()):
        super().__init__(0.0, history)
        self.incumbent, self.cap, self.window, self.safety = incumbent, cap, window, safety

    def __call__(self, env) -> None:
        self._record(env.evaluation_result_list[0][2])
        if not np.isfinite(self.incumbent) or len(self.scores) <= self.window:
            return
        gain, convex = _recent_gain(self.scores, self.window)
        reachable = self.best - (1.0 if convex else self.safety) * gain * (self.cap - env.iteration - 1)
        if reachable > self.incumbent:
            self.stopped = True
            raise self._end(env)


class EarlyStopping(_Curve):
    """LightGBM callback: early stopping that ends a fit as soon as its outcome is settled.

    The rule is LightGBM's own (``lightgbm.early_stopping`` with ``min_delta``): a round
    that beats the best score by more than ``min_delta`` becomes the best; the fit ends
    ``patience`` rounds after the best round, or at its last round, and keeps the model of
    the best round. On a visibly convex validation curve (see :class:`Hopeless`) no later
    round gains more than the recent mean gain, so once even that pace cannot beat the best
    by ``min_delta`` before the patience runs out, the outcome is known: the fit ends then,
    instead of boosting the remaining rounds. Real curves are only nearly convex: a late
    step down that the full patience would have caught is missed, and the fit keeps fewer
    trees (docs/results.md measures the effect). ``history``: as :class:`Hopeless` takes it.
    """

    order = 30  # LightGBM's early stopping slot: before Hopeless

    def __init__(self, patience: int, min_delta: float, window: int = 25, history=()):
        super().__init__(min_delta, history)
        self.patience, self.window = patience, window

    def __call__(self, env) -> None:
        score = env.evaluation_result_list[0][2]
        self._record(score)
        t = len(self.scores)
        rounds_left = self.best_at + self.patience - (t - 1)  # rounds that could still beat it
        settled = False
        if t > 2 * self.window:
            gain, convex = _recent_gain(self.scores, self.window)
            settled = convex and score - gain * rounds_left >= self.best - self.min_delta
        self.stopped = settled or rounds_left <= 0  # its rule, not the call's last round alone
        if self.stopped or env.iteration == env.end_iteration - 1:
            raise self._end(env)


def _recent_gain(scores: list[float], window: int) -> tuple[float, bool]:
    """The mean gain per round of the last ``window`` rounds (at least 0), and whether the
    curve is visibly convex there: that window gained no more than the one before it."""
    w = window
    gain = (scores[-1 - w] - scores[-1]) / w
    convex = len(scores) > 2 * w and gain <= (scores[-1 - 2 * w] - scores[-1 - w]) / w
    return max(0.0, gain), convex


def _stop(env, rounds: int, best: int, score: float) -> lgb.callback.EarlyStopException:
    """The exception that ends a fit with the model of round ``best`` (counted, like
    ``rounds``, within this call of ``lgb.train``), whose validation score was ``score``."""
    first = env.iteration + 1 - rounds  # global index of this call's first round
    return lgb.callback.EarlyStopException(first + best, [("valid", "l2", score, False)])
