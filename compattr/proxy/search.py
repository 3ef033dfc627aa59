"""Stage 1 of ProxySPEX: choose the trees' hyper-parameters by cross-validation.

A configuration is a tree depth and a learning rate (:class:`Config`); the tree count is
chosen by early stopping. Every LightGBM fit is scored at every tree prefix on its fold's
held-out masks and stopped early (:mod:`compattr.proxy.stopping`), so one fit covers every
tree count up to its cap. :func:`search` either races the configurations on the first fold by
successive halving, with the grid's tree counts as rungs, and fits only the winner on the
other folds (``race=True``; none when the caller's ``settled`` test finds the first fold's fit
good enough; the caller's ``challenge`` may put the best fit of another tree depth in the
winner's place), or fits every configuration on every fold. A finished fit is
kept as the LightGBM model text of its trees (:class:`Fit`): what the extraction reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from .stopping import EarlyStopping, Hopeless

_MIN_GAIN = 1e-3  # early stopping: smallest validation gain (fraction of var y) that counts


@dataclass(frozen=True)
class Config:
    """One point of the grid: a tree depth (None = unlimited) and a learning rate."""

    max_depth: int | None
    learning_rate: float

    @property
    def leaves(self) -> int:
        """Leaves per tree: a full tree of the depth, LightGBM's default 31 if unlimited."""
        return 31 if self.max_depth is None else 2**self.max_depth

    def params(self, num_threads: int, seed: int) -> dict:
        """LightGBM's parameters for this configuration (deterministic, least squares)."""
        return {
            "objective": "l2",
            "learning_rate": self.learning_rate,
            "max_depth": -1 if self.max_depth is None else self.max_depth,
            "num_leaves": self.leaves,
            "num_threads": num_threads,
            "force_row_wise": True,
            "deterministic": True,
            "seed": seed,
            "verbose": -1,
        }


@dataclass(frozen=True)
class Fit:
    """A finished fit on one fold: the configuration, the LightGBM model text of its trees
    up to the best iteration, that iteration and its validation mean squared error.

    Holding the text instead of the booster frees the booster's training data (hundreds of
    MB at 80,000 masks) and is what extraction reads.
    """

    config: Config
    model: str
    best_iteration: int
    score: float

    @classmethod
    def of(cls, booster: lgb.Booster, config: Config) -> Fit:
        best = booster.best_iteration
        return cls(config, booster.model_to_string(num_iteration=best), best, booster.best_score["valid"]["l2"])


def configurations(grid: dict) -> tuple[list[Config], list[int]]:
    """The (depth, learning rate) configurations of a grid and its tree counts, ascending.

    ``grid`` has the keys ``max_depth``, ``n_estimators`` and ``learning_rate``.
    """
    configs = [Config(d, float(lr)) for d in grid["max_depth"] for lr in grid["learning_rate"]]
    return configs, sorted({int(t) for t in grid["n_estimators"]})  # a count given twice is one rung


def without_depth(grid: dict, depth: int | None) -> dict | None:
    """``grid`` (keys ``max_depth``, ``n_estimators``, ``learning_rate``) without the tree
    depth ``depth`` (None = unlimited), or None when that is its only depth."""
    others = tuple(d for d in grid["max_depth"] if d != depth)
    return {**grid, "max_depth": others} if others else None


def search(
    data: lgb.Dataset,
    y: np.ndarray,
    folds,
    grid: dict,
    *,
    race: bool,
    num_threads: int,
    seed: int,
    settled: Callable[[Fit], bool] | None = None,
    challenge: Callable[[Fit, list[Fit]], Fit] | None = None,
) -> tuple[Config, list[Fit], pd.DataFrame]:
    """Choose the configuration; return it, its fold fits and the score table.

    Parameters
    ----------
    data : lightgbm.Dataset
        All masks and outputs (:func:`mask_dataset`); each fold is a row subset of it.
    y : (m,) array
        The outputs (for the early-stopping margin).
    folds : list of (train, valid) index arrays
    grid : dict
        ``max_depth``, ``n_estimators`` and ``learning_rate`` values.
    race : bool
        True: :func:`_race` on the first fold picks the winner, which is then fitted on the
        other folds with at most the trees it kept there. False: every configuration on every
        fold, up to the largest tree count.
    num_threads, seed : int
        LightGBM's threads and seed.
    settled : callable, optional
        With ``race``: called with the winner's fit on the first fold; when it returns True
        the search is settled there and the other folds are not fitted (the returned fits,
        and the score table's ``folds``, then hold the first fold alone).
    challenge : callable, optional
        With ``race``: called with the race's winner on the first fold and the best fit of
        each other tree depth there (lowest validation error, stopped where the race stopped
        it), when the grid has several depths; the fit it returns goes on in the winner's
        place (to the settle check and the other folds).

    Returns
    -------
    config : Config
        The configuration of lowest CV mean squared error.
    fits : list of Fit
        Its fit on each fold fitted, in fold order (a prefix of ``folds``).
    table : pandas.DataFrame
        One row per configuration scored: rung, folds, best iteration, CV mean squared error.
    """
    configs, tree_counts = configurations(grid)
    if race:
        first, rows, rivals = _race(data, y, folds[0], configs, tree_counts, num_threads, seed, challenge is not None)
        if challenge is not None and rivals:
            first = challenge(first, rivals)
        started = {first.config: [first]}
    else:
        started, rows = {c: [] for c in configs}, []
    fits = {}
    for c, done in started.items():
        # Each booster is read into a Fit before the next is trained (its data freed).
        # The race chose the tree count too: the other folds grow at most that many.
        cap = done[0].best_iteration if done else tree_counts[-1]
        rest = [] if done and settled is not None and settled(done[0]) else folds[len(done) :]
        fits[c] = done + [
            Fit.of(train(_fold_sets(data, *f), c, cap, y, num_threads=num_threads, seed=seed).booster, c) for f in rest
        ]
        iters = int(round(np.mean([f.best_iteration for f in fits[c]])))
        rows.append(_row(c, "cv", len(fits[c]), iters, cv_mse(fits[c], folds)))
    best = min(fits, key=lambda c: cv_mse(fits[c], folds))
    return best, fits[best], pd.DataFrame(rows)


def _race(
    data: lgb.Dataset,
    y: np.ndarray,
    fold,
    configs: list[Config],
    rungs: list[int],
    num_threads: int,
    seed: int,
    keep_rivals: bool = False,
) -> tuple[Fit, list[dict], list[Fit]]:
    """Successive halving on one fold with the grid's tree counts as rungs.

    All configurations are fitted up to the smallest count, the best third go on to the
    next count, and so on. Survivors continue training where they stopped, their
    callbacks reading the earlier rounds' scores (the same model as training from scratch
    to the larger count); a fit that stopped early is final, since a larger cap cannot
    change it. Each fit is stopped as soon as it cannot beat the best score
    of its rung so far (:class:`~compattr.proxy.stopping.Hopeless`). Returns the winner's
    fit, the score rows and, with ``keep_rivals``, the best fit of each other tree depth
    (else none): only those fits keep their models.
    """
    # Fast, high-capacity learners first (learning rate, then leaves per tree): they set
    # the incumbent that hopeless fits are stopped against. Where a stopped fit's curve
    # would have dropped again, the order can change the winner (Hopeless).
    configs = sorted(configs, key=lambda c: (-c.learning_rate, -c.leaves))
    fresh = _fold_sets(data, *fold)  # shared by the fresh fits
    running: dict[Config, Trained] = {}  # reached their cap without being stopped: may go on
    scores: dict[Config, tuple[int, float]] = {}  # best iteration and score so far
    winner, rows = None, []
    best_of_depth: dict[int | None, Fit] = {}  # with keep_rivals: each depth's best fit so far
    for i, cap in enumerate(rungs):
        incumbent, last = np.inf, i == len(rungs) - 1
        for c in configs:
            if i == 0 or c in running:
                init = running.pop(c, None)
                # A continued fit gives its Datasets init scores: those must be its own.
                sets = fresh if init is None else _fold_sets(data, *fold)
                trained = train(sets, c, cap, y, num_threads=num_threads, seed=seed, init=init, incumbent=incumbent)
                booster = trained.booster
                scores[c] = booster.best_iteration, booster.best_score["valid"]["l2"]
                best = best_of_depth.get(c.max_depth)
                if keep_rivals and (best is None or scores[c][1] < best.score):
                    best_of_depth[c.max_depth] = Fit.of(booster, c)
                if not trained.stopped and not last:  # ran to the cap: a larger one may go on
                    running[c] = trained
                elif winner is None or scores[c][1] < winner.score:
                    winner = Fit.of(booster, c)
            incumbent = min(incumbent, scores[c][1])
            rows.append(_row(c, f"race {cap}", 1, *scores[c]))
        if not last:
            configs = sorted(configs, key=lambda c: scores[c][1])[: max(1, math.ceil(len(configs) / 3))]
            running = {c: b for c, b in running.items() if c in configs}  # free the eliminated
    assert winner is not None  # the last rung finishes every fit it trains
    rivals = [fit for depth, fit in best_of_depth.items() if depth != winner.config.max_depth]
    return winner, rows, rivals


@dataclass(frozen=True)
class Trained:
    """A LightGBM fit of :func:`train`: the booster (keeping its training data, to be
    continued or turned into a :class:`Fit`), the validation score of every round it
    trained, and whether its stopping rules ended it (then it is final; else it ran to the
    cap it was given and may be continued)."""

    booster: lgb.Booster
    scores: list[float]
    stopped: bool


def train(
    sets: tuple[lgb.Dataset, lgb.Dataset],
    config: Config,
    max_trees: int,
    y: np.ndarray,
    *,
    num_threads: int,
    seed: int,
    init: Trained | None = None,
    incumbent: float = np.inf,
) -> Trained:
    """One LightGBM fit on ``sets`` (training and validation Datasets) up to ``max_trees``
    trees in all, scored at every prefix and stopped early on the validation set.

    Continues ``init`` (a fit on the same rows that was not stopped) if given, its stopping
    rules reading the earlier rounds' scores as their own (the same stops as one fit from
    scratch), and stops as soon as it cannot reach ``incumbent`` (see
    :class:`~compattr.proxy.stopping.Hopeless`).
    """
    params = config.params(num_threads, seed)
    patience = max(20, int(round(2.0 / config.learning_rate)))
    # Improvements below _MIN_GAIN of the output variance do not reset the patience.
    min_delta = _MIN_GAIN * float(np.var(y))
    booster, history = (None, []) if init is None else (init.booster, init.scores)
    done = 0 if booster is None else booster.current_iteration()
    stopping, hopeless = (
        EarlyStopping(patience, min_delta, history=history),
        Hopeless(incumbent, max_trees, history=history),
    )
    fitted = lgb.train(
        params,
        sets[0],
        num_boost_round=max_trees - done,
        valid_sets=[sets[1]],
        valid_names=["valid"],
        init_model=booster,
        keep_training_booster=True,
        callbacks=[stopping, hopeless],
    )
    return Trained(fitted, stopping.scores, stopping.stopped or hopeless.stopped)


def fit_all(data: lgb.Dataset, config: Config, trees: int, num_threads: int, seed: int) -> str:
    """The LightGBM model text of ``config`` fitted on every mask of ``data`` with ``trees``
    trees (no validation set: the tree count was chosen on the folds)."""
    booster = lgb.train(config.params(num_threads, seed), data, num_boost_round=max(1, trees))
    return booster.model_to_string()


def mask_dataset(X: np.ndarray, y: np.ndarray, num_threads: int) -> lgb.Dataset:
    """The LightGBM Dataset of masks ``X`` (m, n) and outputs ``y``.

    Every feature is 0/1, so its two bins are known: they are taken from a two-row
    reference (all 0, all 1) instead of LightGBM's search over the data, which costs more
    than the rest of the construction. The trees are the same (``feature_pre_filter`` off:
    on the two rows every feature would look unsplittable).
    """
    params = {
        "verbose": -1,
        "max_bin": 2,
        "min_data_in_bin": 1,
        "feature_pre_filter": False,
        "num_threads": num_threads,
    }
    n = X.shape[1]
    bins = lgb.Dataset(np.array([np.zeros(n), np.ones(n)], np.float32), np.zeros(2), params=params).construct()
    return lgb.Dataset(X.astype(np.float32), y, params=params, reference=bins, free_raw_data=False).construct()


def _fold_sets(data: lgb.Dataset, train_rows, valid_rows) -> tuple[lgb.Dataset, lgb.Dataset]:
    """The training and validation Datasets of one fold (row subsets of ``data``)."""
    # LightGBM annotates used_indices as a list but takes any int sequence (an array is not copied)
    train_set = data.subset(np.asarray(train_rows, np.int32))  # type: ignore[arg-type]
    return train_set, data.subset(np.asarray(valid_rows, np.int32))  # type: ignore[arg-type]


def cv_mse(fits: list[Fit], folds) -> float:
    """Validation mean squared error pooled over the folds that ``fits`` were fitted on."""
    pairs = list(zip(fits, folds))
    sq = sum(f.score * len(va) for f, (_, va) in pairs)
    return float(sq / sum(len(va) for _, (_, va) in pairs))


def _row(config: Config, rung: str, folds: int, iteration: int, score: float) -> dict:
    """A row of the score table (``cv_results_``)."""
    return {
        "max_depth": config.max_depth,
        "learning_rate": config.learning_rate,
        "rung": rung,
        "folds": folds,
        "best_iteration": iteration,
        "cv_mse": score,
    }
