"""The ProxySPEX estimator: gradient-boosted trees as a proxy, read as a sparse spectrum.

Pipeline (paper §3.3), each stage timed in ``timings_``:

1. **search** – LightGBM hyper-parameters by 5-fold CV over the paper's grid (depth 3 / 5 /
   unlimited × learning rate 0.01 / 0.1 × up to 5,000 trees). Efficiently: every fit is scored
   at every tree prefix and stopped early (so one fit covers every tree count up to 5,000,
   a superset of the paper's {500, 1000, 5000}). With ``search="race"`` (default) the six
   (depth, learning-rate) configurations race on the first fold by successive halving with
   the grid's tree counts as rungs (all six up to 500 trees, the best two up to 1,000, the
   best one up to 5,000), and only the winner is fitted on the other four folds, with at
   most the trees it kept on the first (the race chose the tree count too);
   ``search="full"`` cross-validates every configuration on all folds.
2. **extract** – the exact Fourier spectrum of each of the 5 fold ensembles; their average
   is the proxy's spectrum (a bagged ensemble, exactly representable).
3. **sparsify + refit** – keep the top-k terms by ``|F(T)|``, with k chosen by the same
   5-fold CV among powers of two, and refit their coefficients by least squares on the
   ±1 parity features when that lowers the CV error. Each fold is scored with the ranking
   of the ensemble that never saw it, so the choice of k is honest.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sps
from scipy.linalg import blas, lapack, solve_triangular
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from ._validation import as_masks, as_outputs, output_scale
from .masks import budget
from .spectrum import Spectrum, _csr_to_padded, _padded_to_csr, parity_matrix

#: The paper's grid (appendix B): tree depth (None = unlimited), trees, learning rate.
PAPER_GRID = {"max_depth": (3, 5, None), "n_estimators": (500, 1000, 5000), "learning_rate": (0.01, 0.1)}

_MIN_MASKS = 50  # 5 folds of at least 10 masks
_MIN_GAIN = 1e-3  # early stopping: smallest validation gain (fraction of var y) that counts


@dataclass(frozen=True)
class _Config:
    max_depth: int | None
    learning_rate: float

    @property
    def leaves(self) -> int:
        """Leaves per tree: a full tree of the depth, LightGBM's default 31 if unlimited."""
        return 31 if self.max_depth is None else 2**self.max_depth

    def params(self, num_threads: int, seed: int) -> dict:
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


class ProxySPEX(RegressorMixin, BaseEstimator):
    """Sparse Fourier attribution through a gradient-boosted-tree proxy (Butler et al., 2025).

    Parameters
    ----------
    k : "cv", int or None
        Number of Fourier terms kept: chosen by cross-validation (default), a fixed number,
        or None to keep every term of the trees.
    refit : "auto", bool
        Refit the kept coefficients by least squares: when it lowers the CV error ("auto"),
        always, or never.
    energy : float, optional
        Instead of top-k, keep the fewest terms holding this fraction of the non-constant
        energy (the public shapiq rule, e.g. 0.95). Overrides ``k``.
    max_k : int
        Largest k of the top-k candidates in the CV (also capped at half the training
        masks). The untruncated tree spectrum competes too and wins when its CV error is
        lowest, so the result can hold more than ``max_k`` terms.
    max_cv_rows : int
        The choice of k is cross-validated on at most this many masks (a random subset),
        which bounds its cost (masks × k²) on large budgets; the final refit uses all.
    grid : dict, optional
        Hyper-parameter grid with keys ``max_depth``, ``n_estimators``, ``learning_rate``;
        default :data:`PAPER_GRID`.
    search : {"race", "full"}
        How the grid is searched (see module docstring).
    cv : int
        Number of folds.
    num_threads : int
        LightGBM threads. Keep 1 on small shared machines (more was measured 8-26× slower
        under load); raise it on a dedicated many-core machine.
    max_order : int, optional
        Drop tree terms above this order (needed only for very deep trees).
    seed : int
        Seeds the folds, the subsamples and LightGBM.

    Attributes
    ----------
    spectrum_ : Spectrum
        The final sparse spectrum.
    tree_spectrum_ : Spectrum
        The full spectrum of the averaged fold ensembles, before sparsification.
    best_params_ : dict
        The chosen ``max_depth``, ``learning_rate`` and ``n_estimators`` (mean best
        iteration of the folds).
    k_ : int
        Number of kept terms; ``refit_`` : bool, whether they were refitted.
    cv_results_ : pandas.DataFrame
        Every configuration scored: rung, rows, folds, best iteration, CV mean squared error.
    sparsity_cv_ : pandas.DataFrame
        CV mean squared error for each k, with and without refit.
    timings_ : dict
        CPU seconds per stage: ``search``, ``extract``, ``sparsify``.

    Notes
    -----
    The trees are fitted to ``y / s``, ``s`` the power of two that brings ``max |y|`` into
    ``[0.5, 1)``, and the spectra are scaled back by ``s``: exact in floating point, so the
    result is the same for any scale of ``y``, and outputs as large as 1e300 fit too (the
    CV errors are in units of ``y²``, infinite where that overflows).

    Constant outputs have an exact answer: the spectrum holds only the constant (no tree is
    fitted, ``best_params_`` is None) and a warning says so. Masks that are all the same
    while the outputs vary cannot be attributed to any feature: ``ValueError``.
    """

    def __init__(
        self,
        k="cv",
        *,
        refit="auto",
        energy: float | None = None,
        max_k: int = 1000,
        max_cv_rows: int = 20_000,
        grid: dict | None = None,
        search: str = "race",
        cv: int = 5,
        num_threads: int = 1,
        max_order: int | None = None,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.refit = refit
        self.energy = energy
        self.max_k = max_k
        self.max_cv_rows = max_cv_rows
        self.grid = grid
        self.search = search
        self.cv = cv
        self.num_threads = num_threads
        self.max_order = max_order
        self.seed = seed

    # ------------------------------------------------------------------ public API
    @property
    def min_masks(self) -> int:
        """The fewest masks :meth:`fit` accepts: 10 per fold, and at least 50."""
        return max(_MIN_MASKS, 10 * self.cv)

    def fit(self, X, y) -> "ProxySPEX":
        """Fit the proxy on masks ``X`` (m, n) bool and model outputs ``y`` (m,)."""
        with threadpool_limits(self.num_threads):  # BLAS for the refit, like LightGBM
            return self._fit(X, y)

    def _fit(self, X, y) -> "ProxySPEX":
        self._check_params()
        X = as_masks(X)
        y = as_outputs(y, X.shape[0])
        m, n = X.shape
        needed = self.min_masks
        if m < needed:
            raise ValueError(
                f"ProxySPEX needs at least {needed} masks for {self.cv}-fold cross-validation, "
                f"got {m}. Query at least max({needed}, compattr.budget(n={n}, alpha=4)) = "
                f"{max(needed, budget(max(n, 2), 4.0))} masks."
            )
        self.n_features_in_ = n
        if np.all(y == y[0]):
            return self._fit_constant(n, float(y[0]))
        if np.all(X == X[0]):
            raise ValueError(
                f"all {m} masks are the same but the outputs vary: the variation cannot be "
                "attributed to any feature. Fit on masks that differ, e.g. "
                "compattr.sample_masks(n, m)."
            )
        scale = output_scale(y)
        y = y / scale
        folds = list(KFold(self.cv, shuffle=True, random_state=self.seed).split(X))
        data = _mask_dataset(X, y, self.num_threads)
        timings = {}

        clock = time.process_time()
        config, fits, self.cv_results_ = self._search(data, y, folds)
        timings["search"] = time.process_time() - clock

        clock = time.process_time()
        fold_spectra = [Spectrum.from_trees(f.model, n, max_order=self.max_order) for f in fits]
        self.tree_spectrum_ = _average(fold_spectra, n)
        timings["extract"] = time.process_time() - clock

        clock = time.process_time()
        self.spectrum_ = _scaled(self._sparsify(X, y, folds, fold_spectra, fits), scale)
        self.tree_spectrum_ = _scaled(self.tree_spectrum_, scale)
        with np.errstate(over="ignore"):  # MSEs in units of y², inf where that overflows
            for table in (self.cv_results_, self.sparsity_cv_):
                if len(table):
                    table["cv_mse"] = table["cv_mse"] * scale * scale
        timings["sparsify"] = time.process_time() - clock

        self.best_params_ = {
            "max_depth": config.max_depth,
            "learning_rate": config.learning_rate,
            "n_estimators": int(round(np.mean([f.best_iteration for f in fits]))),
        }
        self.timings_ = timings
        return self

    def _fit_constant(self, n: int, value: float) -> "ProxySPEX":
        """The exact answer for constant outputs: a spectrum holding only ``value``."""
        warnings.warn(
            f"every output equals {value!r}: the spectrum is that constant alone, with no "
            "interactions (check that the value function responds to the masks).",
            stacklevel=4,
        )
        self.spectrum_ = self.tree_spectrum_ = Spectrum(n, [()], [value])
        self.best_params_ = None
        self.k_, self.refit_ = len(self.spectrum_), False
        self.cv_results_, self.sparsity_cv_ = pd.DataFrame(), pd.DataFrame()
        self.timings_ = {"search": 0.0, "extract": 0.0, "sparsify": 0.0}
        return self

    def predict(self, X) -> np.ndarray:
        """Evaluate the fitted sparse spectrum on masks ``X`` (m, n); returns (m,)."""
        if not hasattr(self, "spectrum_"):
            raise RuntimeError("this ProxySPEX is not fitted yet; call fit(X, y) first.")
        return self.spectrum_.predict(X)

    # ------------------------------------------------------------------ stage 1: search
    def _check_params(self) -> None:
        if self.search not in ("race", "full"):
            raise ValueError(f"search must be 'race' or 'full', got {self.search!r}.")
        if not (self.k in ("cv", None) or (isinstance(self.k, (int, np.integer)) and self.k > 0)):
            raise ValueError(f"k must be 'cv', None or a positive int, got {self.k!r}.")
        if self.refit not in ("auto", True, False):
            raise ValueError(f"refit must be 'auto', True or False, got {self.refit!r}.")
        if self.energy is not None and not 0.0 < self.energy <= 1.0:
            raise ValueError(f"energy must lie in (0, 1], got {self.energy}.")
        if self.cv < 2:
            raise ValueError(f"cv must be at least 2, got {self.cv}.")

    def _grid(self) -> tuple[list[_Config], list[int]]:
        grid = {**PAPER_GRID, **(self.grid or {})}
        configs = [
            _Config(d, float(lr)) for d in grid["max_depth"] for lr in grid["learning_rate"]
        ]
        return configs, sorted(int(t) for t in grid["n_estimators"])

    def _search(self, data: lgb.Dataset, y: np.ndarray, folds):
        """Choose the configuration; return it, its fold fits and the score table.

        ``"race"``: :meth:`_race` on the first fold picks the winner, which is then fitted on
        the other folds with at most the trees it kept there. ``"full"``: every configuration
        on every fold, up to the largest tree count.
        """
        configs, tree_counts = self._grid()
        if self.search == "race":
            first, rows = self._race(data, y, folds[0], configs, tree_counts)
            started = {first.config: [first]}
        else:
            started, rows = {c: [] for c in configs}, []
        fits = {}
        for c, done in started.items():
            # Each booster is read into a _Fit before the next is trained (its data freed).
            # The race chose the tree count too: the other folds grow at most that many.
            cap = done[0].best_iteration if done else tree_counts[-1]
            rest = folds[len(done) :]
            fits[c] = done + [_Fit.of(self._train(_fold_sets(data, *f), c, cap, y), c) for f in rest]
            iters = int(round(np.mean([f.best_iteration for f in fits[c]])))
            rows.append(_row(c, "cv", len(folds), iters, _cv_mse(fits[c], folds)))
        best = min(fits, key=lambda c: _cv_mse(fits[c], folds))
        return best, fits[best], pd.DataFrame(rows)

    def _race(self, data: lgb.Dataset, y: np.ndarray, fold, configs: list[_Config], rungs: list[int]):
        """Successive halving on one fold with the grid's tree counts as rungs.

        All configurations are fitted up to the smallest count, the best third go on to the
        next count, and so on. Survivors continue training where they stopped (the same
        model as training from scratch); a fit that stopped early is final, since a larger
        cap cannot change it. Each fit is stopped as soon as it cannot beat the best score
        of its rung so far (:class:`_Hopeless`). Returns the winner's fit and the score
        rows; only the best finished fit keeps its model.
        """
        # Fast, high-capacity learners first (learning rate, then leaves per tree): they set
        # the incumbent that hopeless fits are stopped against. The order changes the cost,
        # not the winner.
        configs = sorted(configs, key=lambda c: (-c.learning_rate, -c.leaves))
        fresh = _fold_sets(data, *fold)  # shared by the fresh fits
        running: dict[_Config, lgb.Booster] = {}  # reached their cap: may go on
        scores: dict[_Config, tuple[int, float]] = {}  # best iteration and score so far
        winner, rows = None, []
        for i, cap in enumerate(rungs):
            incumbent, last = np.inf, i == len(rungs) - 1
            for c in configs:
                if i == 0 or c in running:
                    init = running.pop(c, None)
                    # A continued fit gives its Datasets init scores: those must be its own.
                    sets = fresh if init is None else _fold_sets(data, *fold)
                    booster = self._train(sets, c, cap, y, init=init, incumbent=incumbent)
                    scores[c] = booster.best_iteration, booster.best_score["valid"]["l2"]
                    if booster.current_iteration() >= cap and not last:
                        running[c] = booster
                    elif winner is None or scores[c][1] < winner.score:
                        winner = _Fit.of(booster, c)
                incumbent = min(incumbent, scores[c][1])
                rows.append(_row(c, f"race {cap}", 1, *scores[c]))
            if not last:
                configs = sorted(configs, key=lambda c: scores[c][1])[: max(1, math.ceil(len(configs) / 3))]
                running = {c: b for c, b in running.items() if c in configs}  # free the eliminated
        return winner, rows

    def _train(
        self, sets, config: _Config, max_trees: int, y, init=None, incumbent: float = np.inf
    ) -> lgb.Booster:
        """One LightGBM fit on ``sets`` (training and validation Datasets) up to
        ``max_trees`` trees in all, scored at every prefix and stopped early on the
        validation set; continues ``init`` (a fit on the same rows) if given, and stops as
        soon as it cannot reach ``incumbent`` (see :class:`_Hopeless`). The booster keeps
        its training data, to be continued or turned into a :class:`_Fit`."""
        params = config.params(self.num_threads, self.seed)
        patience = max(20, int(round(2.0 / config.learning_rate)))
        # Improvements below _MIN_GAIN of the output variance do not reset the patience.
        min_delta = _MIN_GAIN * float(np.var(y))
        done = 0 if init is None else init.current_iteration()
        return lgb.train(
            params,
            sets[0],
            num_boost_round=max_trees - done,
            valid_sets=[sets[1]],
            valid_names=["valid"],
            init_model=init,
            keep_training_booster=True,
            callbacks=[_EarlyStopping(patience, min_delta), _Hopeless(incumbent, max_trees)],
        )

    # ------------------------------------------------------------------ stage 3: sparsify
    def _sparsify(self, X, y, folds, fold_spectra, fits) -> Spectrum:
        full = self.tree_spectrum_
        self.sparsity_cv_ = pd.DataFrame()
        if self.energy is not None:
            kept, refit = full.top_energy(self.energy), self.refit is True
        elif self.k is None:
            kept, refit = full, False
        elif self.k != "cv":
            kept, refit = _top_terms(full, int(self.k)), self.refit is True
        else:
            m_train = min(len(tr) for tr, _ in folds)
            ks = _candidate_ks(max(2, min(self.max_k, m_train // 2)))
            table = _sparsity_cv(X, y, folds, fold_spectra, fits, ks, self.max_cv_rows, self.seed)
            allowed = {"auto": (False, True), True: (True,), False: (False,)}[self.refit]
            choices = table[table["refit"].isin(allowed)]
            best = choices.loc[choices["cv_mse"].idxmin()]
            self.sparsity_cv_ = table
            refit = bool(best["refit"])
            kept = full if best["k"] == 0 else _top_terms(full, int(best["k"]))
        self.k_, self.refit_ = len(kept), refit
        return _least_squares(kept, X, y) if refit else kept


# ---------------------------------------------------------------------- helpers
class _Hopeless:
    """LightGBM callback: stop a fit that cannot beat ``incumbent`` by round ``cap``.

    Boosting's validation curve is convex once past its start (each round gains less than
    the one before), so from round t the best reachable score by ``cap`` is at least the
    best so far minus the current gain per round times the rounds left. The current gain is
    bounded by the mean gain of the last ``window`` rounds, which on a convex curve is an
    over-estimate, so the bound is exact there. It is used as is when the curve is visibly
    convex (the last window gained no more than the one before it); otherwise, at the start
    of a fit or on a noisy curve, the gain is multiplied by ``safety``. A fit whose bound
    still misses the incumbent is stopped; its recorded score (the best so far) is then
    worse than the incumbent, so it loses the race as it would have at ``cap``.
    """

    order = 40  # after early stopping (30)

    def __init__(self, incumbent: float, cap: int, window: int = 10, safety: float = 2.0):
        self.incumbent, self.cap, self.window, self.safety = incumbent, cap, window, safety
        self.scores: list[float] = []
        self.best = 0  # round of the best score so far

    def __call__(self, env) -> None:
        s = self.scores
        s.append(env.evaluation_result_list[0][2])
        t = len(s)
        if s[-1] < s[self.best]:
            self.best = t - 1
        if not np.isfinite(self.incumbent) or t <= self.window:
            return
        gain, convex = _recent_gain(s, self.window)
        reachable = s[self.best] - (1.0 if convex else self.safety) * gain * (self.cap - env.iteration - 1)
        if reachable > self.incumbent:
            raise _stop(env, t, self.best, s[self.best])


class _EarlyStopping:
    """LightGBM callback: early stopping that ends a fit as soon as its outcome is settled.

    The rule is LightGBM's own (``lightgbm.early_stopping`` with ``min_delta``): a round
    that beats the best score by more than ``min_delta`` becomes the best; the fit ends
    ``patience`` rounds after the best round, or at its last round, and keeps the model of
    the best round. On a visibly convex validation curve (see :class:`_Hopeless`) no later
    round gains more than the recent mean gain, so once even that pace cannot beat the best
    by ``min_delta`` before the patience runs out, the outcome is known: the fit ends then,
    instead of boosting the remaining rounds. Real curves are only nearly convex: a late
    step down that the full patience would have caught is missed, and the fit keeps fewer
    trees (docs/results.md measures the effect).
    """

    order = 30  # LightGBM's early stopping slot: before _Hopeless

    def __init__(self, patience: int, min_delta: float, window: int = 25):
        self.patience, self.min_delta, self.window = patience, min_delta, window
        self.scores: list[float] = []
        self.best, self.best_at = np.inf, -1

    def __call__(self, env) -> None:
        score = env.evaluation_result_list[0][2]
        self.scores.append(score)
        t = len(self.scores)
        if score < self.best - self.min_delta:
            self.best, self.best_at = score, t - 1
        rounds_left = self.best_at + self.patience - (t - 1)  # rounds that could still beat it
        settled = False
        if t > 2 * self.window:
            gain, convex = _recent_gain(self.scores, self.window)
            settled = convex and score - gain * rounds_left >= self.best - self.min_delta
        if settled or rounds_left <= 0 or env.iteration == env.end_iteration - 1:
            raise _stop(env, t, self.best_at, self.best)


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


def _mask_dataset(X: np.ndarray, y: np.ndarray, num_threads: int) -> lgb.Dataset:
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


def _fold_sets(data: lgb.Dataset, train, valid) -> tuple[lgb.Dataset, lgb.Dataset]:
    """The training and validation Datasets of one fold (row subsets of ``data``)."""
    return data.subset(np.asarray(train, np.int32)), data.subset(np.asarray(valid, np.int32))


@dataclass(frozen=True)
class _Fit:
    """A finished fit on one fold: the configuration, the LightGBM model text of its trees
    up to the best iteration, that iteration and its validation mean squared error.

    Holding the text instead of the booster frees the booster's training data (hundreds of
    MB at 80,000 masks) and is what extraction reads.
    """

    config: _Config
    model: str
    best_iteration: int
    score: float

    @classmethod
    def of(cls, booster: lgb.Booster, config: _Config) -> "_Fit":
        best = booster.best_iteration
        return cls(config, booster.model_to_string(num_iteration=best), best, booster.best_score["valid"]["l2"])


def _row(config: _Config, rung: str, folds: int, iteration: int, score: float) -> dict:
    return {
        "max_depth": config.max_depth,
        "learning_rate": config.learning_rate,
        "rung": rung,
        "folds": folds,
        "best_iteration": iteration,
        "cv_mse": score,
    }


def _cv_mse(fits: list[_Fit], folds) -> float:
    """Validation mean squared error pooled over the folds that ``fits`` were fitted on."""
    pairs = list(zip(fits, folds))
    sq = sum(f.score * len(va) for f, (_, va) in pairs)
    return float(sq / sum(len(va) for _, (_, va) in pairs))


def _scaled(spectrum: Spectrum, scale: float) -> Spectrum:
    """``spectrum`` with every coefficient multiplied by ``scale``."""
    return spectrum.with_coefs(spectrum.coefs * scale)


def _average(spectra: list[Spectrum], n: int) -> Spectrum:
    supports = sps.vstack([s.supports for s in spectra], format="csr")
    coefs = np.concatenate([s.coefs for s in spectra]) / len(spectra)
    return Spectrum(n, supports, coefs)


def _candidate_ks(k_max: int) -> list[int]:
    ks = [2**e for e in range(3, int(math.log2(k_max)) + 1)]
    return sorted(set(ks + [k_max]))


def _ranked_terms(spectrum: Spectrum, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The constant, then the ``k - 1`` largest other terms: (k', D) supports padded with
    ``n`` and their coefficients."""
    nonconst = np.flatnonzero(spectrum.degrees > 0)[: k - 1]
    rows = _csr_to_padded(spectrum.supports[nonconst], spectrum.n)
    constant = np.full((1, rows.shape[1]), spectrum.n)
    return np.vstack([constant, rows]), np.r_[spectrum.constant, spectrum.coefs[nonconst]]


def _top_terms(spectrum: Spectrum, k: int) -> Spectrum:
    """The spectrum truncated to :func:`_ranked_terms`."""
    rows, coefs = _ranked_terms(spectrum, k)
    return Spectrum(spectrum.n, _padded_to_csr(rows, spectrum.n), coefs)


_POTRF = {np.dtype(np.float64): lapack.dpotrf, np.dtype(np.float32): lapack.spotrf}


def _cholesky(gram: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Lower Cholesky factor, in ``dtype``, of a Gram matrix (only its lower triangle is
    read), with a tiny ridge against exact collinearity (below float32's resolution).

    Only the lower triangle of the result is the factor (its strict upper triangle is left
    as it was): read it with ``solve_triangular(..., lower=True)`` or its transpose with
    ``lower=False``.
    """
    gram = gram.astype(dtype)
    gram.flat[:: len(gram) + 1] += 1e-9 * np.trace(gram) / len(gram)
    factor, info = _POTRF[gram.dtype](gram, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"the Gram matrix is not positive definite (LAPACK potrf info={info}).")
    return factor


def _normal_equations(X, rows: np.ndarray, y, block: int = 512, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of ``y`` (m,) on the ±1 parity features ``P`` of the padded supports
    ``rows`` (k, D) over masks ``X`` (m, n): the lower Cholesky factor ``L`` of ``PᵀP`` (see
    :func:`_cholesky`) and ``z = L⁻¹ Pᵀ y``. The coefficients of the first j supports
    solve ``L[:j, :j]ᵀ β = z[:j]``.

    ``P`` is made and consumed a block of masks at a time, never held whole: its Gram
    accumulates in float32 (exact: ±1 products sum to integers below 2^24), ``Pᵀy`` in
    float64. ``dtype`` is that of ``L`` and ``z``: float32 halves the factorisation's cost
    for about 1e-6 relative accuracy (the Gram of parity features is well conditioned),
    enough to choose k; a Gram that float32 cannot factor is factored in float64.
    """
    k = rows.shape[0]
    gram = np.zeros((k, k), np.float32, order="F")  # lower triangle, updated in place
    projection = np.zeros(k)
    for lo in range(0, X.shape[0], block):
        P = parity_matrix(X[lo : lo + block], rows, dtype=np.float32)  # (b, k), column-major
        gram = blas.ssyrk(1.0, P, beta=1.0, c=gram, trans=1, lower=1, overwrite_c=1)
        projection += P.T.astype(np.float64) @ y[lo : lo + block]
    try:
        L = _cholesky(gram, dtype)
    except np.linalg.LinAlgError:
        if np.dtype(dtype) == np.float64:
            raise
        L = _cholesky(gram)
    return L, solve_triangular(L, projection.astype(L.dtype), lower=True)


def _least_squares(kept: Spectrum, X, y) -> Spectrum:
    """Refit the kept supports' coefficients by least squares (constant included)."""
    rows = _csr_to_padded(kept.supports, kept.n)
    if not (kept.degrees == 0).any():
        rows = np.vstack([np.full((1, rows.shape[1]), kept.n), rows])
    L, z = _normal_equations(X, rows, y)
    return Spectrum(kept.n, _padded_to_csr(rows, kept.n), solve_triangular(L.T, z, lower=False))


def _sparsity_cv(X, y, folds, fold_spectra, fits, ks, max_rows: int, seed: int) -> pd.DataFrame:
    """CV mean squared error of top-k truncation, with and without refit, for each k.

    Every fold is scored with the ranking of the ensemble trained without it. One Cholesky
    factor of the fold's Gram matrix gives the least-squares solution of every prefix k
    (the factor of a leading block is the leading block of the factor). Beyond
    ``max_rows`` masks the CV runs on a random subset of them, bounding its cost. The
    untruncated ensembles (k = 0) are scored by their early-stopping validation error, on
    all of each fold's held-out masks.
    """
    m = X.shape[0]
    subset = np.sort(np.random.default_rng(seed).permutation(m)[:max_rows]) if m > max_rows else np.arange(m)
    sq_refit, sq_trunc, count = np.zeros(len(ks)), np.zeros(len(ks)), 0
    for spectrum, (train, valid) in zip(fold_spectra, folds):
        train, valid = np.intersect1d(train, subset), np.intersect1d(valid, subset)
        rows, coefs = _ranked_terms(spectrum, max(ks))
        L, z = _normal_equations(X[train], rows, y[train], dtype=np.float32)  # only chooses k
        P_valid = parity_matrix(X[valid], rows)
        for i, k in enumerate(ks):
            k = min(k, len(rows))
            beta = solve_triangular(L[:k, :k].T, z[:k], lower=False)
            sq_refit[i] += np.sum((P_valid[:, :k] @ beta - y[valid]) ** 2)
            sq_trunc[i] += np.sum((P_valid[:, :k] @ coefs[:k] - y[valid]) ** 2)
        count += len(valid)
    table = [{"k": k, "refit": True, "cv_mse": s / count} for k, s in zip(ks, sq_refit)]
    table += [{"k": k, "refit": False, "cv_mse": s / count} for k, s in zip(ks, sq_trunc)]
    table.append({"k": 0, "refit": False, "cv_mse": _cv_mse(fits, folds)})  # 0 = every tree term
    return pd.DataFrame(table)
