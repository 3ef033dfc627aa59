import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import compattr
from compattr import LassoBaseline, ProxySPEX
from compattr.synthetic import complete_hierarchy


def test_recovers_a_linear_function_as_first_order_spectrum():
    n = 20
    X = compattr.sample_masks(n, 2000, seed=0)
    w = np.random.default_rng(1).normal(size=n)
    y = 3.0 + (1 - 2 * X) @ w  # f = F(∅) + Σ F({i}) χ_i
    est = LassoBaseline().fit(X, y)
    d = est.spectrum_.to_dict()
    assert est.spectrum_.max_order <= 1
    assert d[()] == pytest.approx(3.0, abs=0.05)
    np.testing.assert_allclose([d.get((i,), 0.0) for i in range(n)], w, atol=0.05)


def test_same_interface_as_proxyspex_and_worse_on_interactions():
    n = 24
    truth = complete_hierarchy(n, n_sets=3, order=4, seed=2)
    X = compattr.sample_masks(n, compattr.budget(n, 6), seed=3)
    y = truth.predict(X)
    X_test = compattr.sample_masks(n, 1000, seed=4)
    grid = {"max_depth": (5,), "n_estimators": (300,), "learning_rate": (0.1,)}
    scores = {
        type(e).__name__: compattr.faithfulness(e.spectrum_, X_test, truth.predict(X_test))
        for e in (LassoBaseline().fit(X, y), ProxySPEX(grid=grid).fit(X, y))
    }
    assert scores["ProxySPEX"] > scores["LassoBaseline"] + 0.1


def test_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        LassoBaseline().fit(np.ones((20, 3), bool), np.r_[np.nan, np.ones(19)])
    with pytest.raises(ValueError, match="at least"):
        LassoBaseline().fit(np.ones((4, 3), bool), np.ones(4))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(eps=np.nan),
        dict(eps=2.0),
        dict(eps=0),
        dict(eps=True),
        dict(n_alphas=0),
        dict(n_alphas=True),
        dict(cv=1),
        dict(num_threads=0),
        dict(seed=None),
    ],
)
def test_bad_parameters_are_refused_before_fitting(kwargs):
    """eps=nan fitted every coefficient to zero with alpha_ nan; the others failed deep inside."""
    X = compattr.sample_masks(5, 60, seed=0)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LassoBaseline(**kwargs).fit(X, X.sum(axis=1).astype(float))


def test_numpy_numbers_are_parameters_like_python_ones():
    """A NumPy float32 eps (a value read from an array) was refused as not a number."""
    X = compattr.sample_masks(5, 60, seed=0)
    y = X.sum(axis=1).astype(float)
    given = LassoBaseline(eps=np.float32(1e-3), cv=np.int64(5)).fit(X, y)
    plain = LassoBaseline(eps=1e-3, cv=5).fit(X, y)
    np.testing.assert_allclose(given.predict(X), plain.predict(X), rtol=1e-5)


def test_predict_before_fit_is_sklearns_not_fitted_error():
    with pytest.raises(NotFittedError):
        LassoBaseline().predict(np.ones((2, 3), bool))
