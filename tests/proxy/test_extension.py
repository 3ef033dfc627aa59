"""Stage 8: the kept terms extended one feature at a time, led by their residual."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import walsh
from sklearn.model_selection import KFold

import compattr
from compattr import Spectrum
from compattr.proxy.extension import extended, extended_rows, extension_cv
from compattr.spectrum.supports import pad_supports, parity_matrix


def _sets(rows: np.ndarray, n: int) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in row if i < n) for row in rows]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_order", [None, 2])
def test_extended_rows_are_the_extensions_the_residual_correlates_with_most(seed, max_order):
    """Against brute force on 7 features: every held set extended by every feature it lacks,
    the sets held left out, each scored by |Σ r χ_T| (r the residual of the held sets'
    coefficients); the ``add`` largest, largest first, none above ``max_order``. The held
    sets include the constant (it extends to every singleton) and sets of orders 1–3."""
    rng = np.random.default_rng(seed)
    n, m, add = 7, 300, 6
    X = rng.random((m, n)) < 0.5
    held = [(), (0,), (3,), (1, 4), (2, 5, 6)]
    y = rng.normal(size=m) + sum(rng.normal() * walsh(X, t) for t in [(0,), (1, 4), (0, 2), (1, 4, 5), (3, 6)])
    rows = pad_supports(held, n)
    coefs = rng.normal(size=len(held))
    residual = y - parity_matrix(X, rows) @ coefs
    scores = {}
    for parent in held:
        for i in set(range(n)) - set(parent):
            term = tuple(sorted((*parent, i)))
            if term not in held and (max_order is None or len(term) <= max_order):
                scores[term] = abs(residual @ walsh(X, term))
    expected = sorted(scores, key=lambda t: -scores[t])[:add]
    found = _sets(extended_rows(rows, parity_matrix(X, rows, np.float32), coefs, X, y, add, max_order), n)
    assert found == expected


def test_extended_rows_reach_sets_of_a_high_order_from_all_their_parents():
    """Every subset of {0..7} of up to 6 features held: each 7-set is an extension of 7 held
    parents, and a shortlist of 6 (set, correlation) pairs per set added returned 7 sets of
    the 8 asked. Against brute force, as above."""
    rng = np.random.default_rng(3)
    n, m, add = 9, 1500, 8
    X = rng.random((m, n)) < 0.5
    held = [s for k in range(7) for s in itertools.combinations(range(8), k)]
    y = np.prod(1 + (1 - 2 * X[:, :8].astype(float)), axis=1) / 16 + rng.normal(0, 0.2, m)
    rows = pad_supports(held, n)
    coefs = np.linalg.lstsq(parity_matrix(X, rows), y, rcond=None)[0]  # as the path fits them
    residual = y - parity_matrix(X, rows) @ coefs
    scores = {}
    for parent in held:
        for i in set(range(n)) - set(parent):
            term = tuple(sorted((*parent, i)))
            if term not in scores and term not in set(held):
                scores[term] = abs(residual @ walsh(X, term))
    expected = sorted(scores, key=lambda t: -scores[t])[:add]
    found = _sets(extended_rows(rows, parity_matrix(X, rows, np.float32), coefs, X, y, add), n)
    assert found == expected


def test_extended_rows_offer_nothing_where_every_extension_is_held():
    """Every set of 3 features held: no extension is new (an empty array, not an error)."""
    n = 3
    held = [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    X = np.random.default_rng(0).random((40, n)) < 0.5
    rows = pad_supports(held, n)
    y = np.random.default_rng(1).normal(size=40)
    assert len(extended_rows(rows, parity_matrix(X, rows, np.float32), np.zeros(len(held)), X, y, 4)) == 0


@pytest.mark.parametrize("kept", [True, False])
def test_extended_rows_never_extend_by_a_feature_the_masks_never_vary(kept):
    """A feature kept (or dropped) in every mask extends a term to a copy of it up to sign
    (χ_{T ∪ i} = ∓χ_T): the refit split the term's weight with the copy, and the feature got
    a Shapley value the masks say nothing about."""
    truth, X, y = _hierarchy()
    n = X.shape[1]
    X = X.copy()
    X[:, [1, 5]] = kept
    y = truth.predict(X)
    rows = pad_supports([(), (0,), (7,)], n)
    P = parity_matrix(X, rows, np.float32)
    coefs = np.zeros(len(rows))  # the held terms stand out in the residual, so do their copies
    found = _sets(extended_rows(rows, P, coefs, X, y, 40), n)
    assert len(found) == 40 and not {1, 5} & set().union(*found)
    fitted = compattr.ProxySPEX(seed=0).fit(X, y)
    assert not {1, 5} & set().union(*fitted.spectrum_.support_tuples())


def _hierarchy() -> tuple[Spectrum, np.ndarray, np.ndarray]:
    """A chain hierarchy over 30 features, {0} ⊂ {0, 1} ⊂ {0, 1, 2} ⊂ {0, 1, 2, 3} with one
    more singleton and pair, on 600 masks (noise-free)."""
    n = 30
    truth = Spectrum.from_dict(
        {(): 0.5, (0,): 3.0, (7,): -2.0, (0, 1): 2.0, (7, 9): 1.0, (0, 1, 2): 1.5, (0, 1, 2, 3): 1.0}, n
    )
    X = compattr.sample_masks(n, 600, seed=3)
    return truth, X, truth.predict(X)


def test_extended_recovers_a_chain_from_its_first_term():
    """From the constant and {0} alone, each round adds the sets the residual points to: three
    rounds of two sets recover the chain, each term with its coefficient (least squares on
    noise-free outputs); no round is taken past the ones asked."""
    truth, X, y = _hierarchy()
    n = X.shape[1]
    start = pad_supports([(), (0,)], n)
    found = extended(start, X, y, add=2, rounds=3, path_ridge=0.0, ridge=0.0)
    assert len(found) == 2 + 3 * 2
    expected, got = truth.to_dict(), found.to_dict()
    assert set(expected) <= set(got)
    for term, coef in got.items():
        assert coef == pytest.approx(expected.get(term, 0.0), abs=1e-7)  # the Cholesky guard: 1e-9 ridge
    one = extended(start, X, y, add=2, rounds=1, path_ridge=0.0, ridge=0.0)
    assert len(one) == 4 and set(one.to_dict()) < set(got)


def test_extension_cv_scores_each_fold_path_as_extended_on_its_training_masks():
    """Each row of the table recomputed: the path run with :func:`extended` on a fold's
    training masks (the same rounds, the same path ridge), refitted at the row's ridge and
    scored on the fold's held-out masks, summed over the folds; round 0 is the terms as
    given refitted (least squares at each ridge). The rounds stop two rounds after the best
    or before the terms would pass ``max_terms``."""
    _, X, y = _hierarchy()
    n = X.shape[1]
    y = y + np.random.default_rng(5).normal(scale=0.5, size=len(y))  # something to overfit
    start = pad_supports([(), (0,)], n)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    ridges = (0.0, 0.1)
    table = extension_cv(start, X, y, folds, 3, ridges, 0.0, max_rounds=10, patience=2, max_terms=200)
    assert list(table.columns) == ["rounds", "ridge", "terms", "cv_mse"]
    rounds = table["rounds"].max()
    best = table.groupby("rounds")["cv_mse"].min()
    assert rounds == 10 or rounds - best.idxmin() == 2  # stopped by patience
    for _, row in table.iterrows():
        squared = 0.0
        for train, valid in folds:
            path = extended(start, X[train], y[train], 3, int(row["rounds"]), 0.0, row["ridge"])
            squared += np.sum((path.predict(X[valid]) - y[valid]) ** 2)
        assert row["cv_mse"] == pytest.approx(squared / len(y), rel=1e-4)
    assert table.loc[0, "terms"] == 2  # round 0: the terms as given
    capped = extension_cv(start, X, y, folds, 3, ridges, 0.0, max_rounds=10, patience=10, max_terms=9)
    assert capped["terms"].max() <= 9 and capped["rounds"].max() == 2
