"""ProxySPEX against a plain reference of the paper's procedure, written independently here.

The reference does each stage the slow, obvious way, with no helper of compattr:

1. **search**: one fixed configuration, fitted with LightGBM on each of 5 folds; the tree
   count is chosen by early stopping on the fold's held-out masks (LightGBM's rule: the best
   round is the first to beat the best score so far by more than ``min_delta``; the fit ends
   ``patience`` rounds later), read off the full validation curve;
2. **extract**: the Fourier transform of each fold ensemble by brute force, from its
   predictions on all ``2^n`` masks, averaged over the folds;
3. **sparsify**: the constant and the ``k - 1`` other terms of largest ``|F(T)|``;
4. **refit**: least squares (``numpy.linalg.lstsq``) on the ±1 parity features of the masks
   (``ridge=0``, the paper's refit).
"""

import itertools
import math

import lightgbm as lgb
import numpy as np
from sklearn.model_selection import KFold

from compattr import ProxySPEX, sample_masks
from compattr.synthetic import add_noise, complete_hierarchy

N, M, FOLDS, K, SEED = 8, 240, 5, 16, 0
# At most 48 trees: ProxySPEX's early stopping ends a visibly convex validation curve sooner
# than LightGBM's rule only after two windows of 25 rounds, so here both follow the rule.
DEPTH, RATE, TREES = 3, 0.3, 48
PATIENCE = 20  # max(20, 2 / learning rate)
MIN_GAIN = 1e-3  # early stopping: a gain below this fraction of var y does not count


def all_masks(n: int) -> np.ndarray:
    """Every subset of the n features, as (2^n, n) 0/1 rows."""
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)


def parity(masks: np.ndarray, supports: list[tuple[int, ...]]) -> np.ndarray:
    """(m, k) ±1 features (-1)^{|S ∩ T|} of masks S and supports T."""
    return np.column_stack([(-1.0) ** masks[:, list(T)].sum(axis=1) for T in supports])


def fold_ensemble(X_train, y_train, X_valid, y_valid, min_delta: float) -> tuple[lgb.Booster, int]:
    """A fold's trees and the tree count LightGBM's early stopping keeps."""
    params = {
        "objective": "l2",
        "learning_rate": RATE,
        "max_depth": DEPTH,
        "num_leaves": 2**DEPTH,
        "num_threads": 1,
        "force_row_wise": True,
        "deterministic": True,
        "seed": SEED,
        "verbose": -1,
    }
    binary = {"max_bin": 2, "min_data_in_bin": 1, "feature_pre_filter": False, "verbose": -1}
    train = lgb.Dataset(X_train.astype(np.float64), y_train, params=binary)
    valid = lgb.Dataset(X_valid.astype(np.float64), y_valid, params=binary, reference=train)
    curve: dict = {}
    booster = lgb.train(
        params, train, TREES, valid_sets=[valid], valid_names=["valid"], callbacks=[lgb.record_evaluation(curve)]
    )
    scores = curve["valid"]["l2"]
    best, best_at = math.inf, -1
    for t, score in enumerate(scores):
        if score < best - min_delta:
            best, best_at = score, t
        if t - best_at >= PATIENCE:
            break
    return booster, best_at + 1


def reference_proxyspex(X: np.ndarray, y: np.ndarray) -> tuple[dict, np.ndarray, list[int]]:
    """The reference's final spectrum ``{support: coefficient}``, its averaged tree spectrum
    over all 2^n supports (in the order of :func:`all_masks`) and each fold's tree count."""
    n = X.shape[1]
    every = all_masks(n)
    supports = [tuple(np.flatnonzero(T)) for T in every]
    H = parity(every, supports)  # (2^n masks, 2^n supports)
    spectra, counts = [], []
    for train, valid in KFold(FOLDS, shuffle=True, random_state=SEED).split(X):
        min_delta = MIN_GAIN * float(np.var(y[train]))
        booster, trees = fold_ensemble(X[train], y[train], X[valid], y[valid], min_delta)
        counts.append(trees)
        f = booster.predict(every.astype(np.float64), num_iteration=trees)
        spectra.append(H.T @ f / 2**n)  # F(T) = 2^-n Σ_S f(S) (-1)^{|S ∩ T|}
    tree_spectrum = np.mean(spectra, axis=0)
    order = sorted(range(1, 2**n), key=lambda i: -abs(tree_spectrum[i]))
    gap = abs(tree_spectrum[order[K - 2]]) - abs(tree_spectrum[order[K - 1]])
    assert gap > 1e-9, "the top k is not well defined on this function; pick another"
    kept = [supports[0]] + [supports[i] for i in order[: K - 1]]
    coefs = np.linalg.lstsq(parity(X, kept), y, rcond=None)[0]
    return dict(zip(kept, coefs)), tree_spectrum, counts


def test_proxyspex_equals_the_reference_pipeline():
    truth = complete_hierarchy(N, n_sets=4, order=4, seed=3)
    X = sample_masks(N, M, seed=4)
    y = add_noise(truth.predict(X), truth, snr_db=0, seed=5)
    y = y / 2.0 ** math.frexp(np.abs(y).max())[1]  # max |y| in [0.5, 1): no output scaling
    grid = {"max_depth": (DEPTH,), "learning_rate": (RATE,), "n_estimators": (TREES,)}
    est = ProxySPEX(k=K, refit=True, ridge=0.0, grid=grid, search="full", final_fit=False, cv=FOLDS, seed=SEED)
    est.fit(X, y)

    expected, tree_spectrum, counts = reference_proxyspex(X, y)
    assert min(counts) < TREES - PATIENCE  # early stopping chose the tree count on some fold
    supports = [tuple(np.flatnonzero(T)) for T in all_masks(N)]
    fast_trees = est.tree_spectrum_.to_dict()
    np.testing.assert_allclose([fast_trees.get(T, 0.0) for T in supports], tree_spectrum, rtol=0, atol=1e-9)
    got = est.spectrum_.to_dict()
    assert set(got) == set(expected) and len(got) == K
    np.testing.assert_allclose([got[T] for T in expected], list(expected.values()), rtol=0, atol=1e-6)
