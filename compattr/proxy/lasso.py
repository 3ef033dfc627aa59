"""The marginal baseline: LASSO on the ±1 features, as a first-order spectrum.

Fits ``f(S) ≈ F(∅) + Σ_i F({i}) χ_i(S)`` with ``χ_i = (-1)^{x_i}`` and the L1 penalty chosen
by 5-fold CV over 100 values with ``λ_min / λ_max = 0.001`` (the paper's LASSO, appendix B),
and exposes the same ``fit`` / ``spectrum_`` / ``predict`` interface as
:class:`compattr.ProxySPEX` so the two can be compared side by side.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LassoCV
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from .._validation import as_masks, as_outputs, check_int, is_real, output_scale
from ..spectrum import Spectrum


class LassoBaseline(RegressorMixin, BaseEstimator):
    """Marginal (order ≤ 1) attribution by cross-validated LASSO.

    Parameters
    ----------
    cv : int
        Folds for choosing the penalty.
    n_alphas : int
        Number of penalties on the path.
    eps : float
        ``λ_min / λ_max``.
    num_threads : int
        BLAS threads while fitting.
    seed : int
        Seeds the fold split.

    Attributes
    ----------
    spectrum_ : Spectrum
        Constant plus one term per feature with a non-zero coefficient.
    alpha_ : float
        The chosen penalty.

    Notes
    -----
    Like :class:`compattr.ProxySPEX`, it fits ``y / s`` for the power of two ``s`` that
    brings ``max |y|`` into ``[0.5, 1)`` and scales the result back (exact), so outputs as
    large as 1e300 fit too.
    """

    def __init__(self, cv: int = 5, n_alphas: int = 100, eps: float = 1e-3, num_threads: int = 1, seed: int = 0):
        self.cv = cv
        self.n_alphas = n_alphas
        self.eps = eps
        self.num_threads = num_threads
        self.seed = seed

    def fit(self, X, y) -> LassoBaseline:
        """Fit on masks ``X`` (m, n) bool and outputs ``y`` (m,)."""
        check_int(self.cv, "cv", 2)
        check_int(self.n_alphas, "n_alphas", 1)
        check_int(self.num_threads, "num_threads", 1)
        check_int(self.seed, "seed", 0)
        if not (is_real(self.eps) and 0.0 < self.eps < 1.0):
            raise ValueError(f"eps (λ_min / λ_max) must lie in (0, 1), got {self.eps!r}.")
        X = as_masks(X)
        y = as_outputs(y, X.shape[0])
        if X.shape[0] < 2 * self.cv:
            raise ValueError(f"LASSO with {self.cv}-fold CV needs at least {2 * self.cv} masks, got {X.shape[0]}.")
        scale = output_scale(y)
        y = y / scale
        chi = 1.0 - 2.0 * X  # (m, n) ±1 parity of each single feature
        folds = KFold(self.cv, shuffle=True, random_state=self.seed)
        with threadpool_limits(self.num_threads):
            model = LassoCV(alphas=_penalty_path(chi, y, self.n_alphas, self.eps), cv=folds, n_jobs=1).fit(chi, y)
        n = X.shape[1]
        self.n_features_in_ = n
        self.alpha_ = float(model.alpha_) * scale
        coefs = np.r_[model.intercept_, model.coef_] * scale
        self.spectrum_ = Spectrum(n, [()] + [(i,) for i in range(n)], coefs)
        return self

    def predict(self, X) -> np.ndarray:
        """Evaluate on masks ``X`` (m, n); returns (m,)."""
        check_is_fitted(self, "spectrum_")
        return self.spectrum_.predict(X)


def _penalty_path(chi: np.ndarray, y: np.ndarray, count: int, eps: float) -> np.ndarray:
    """``count`` penalties from the smallest that zeroes every coefficient down to ``eps`` of it."""
    centred = chi - chi.mean(axis=0)
    top = np.abs(centred.T @ (y - y.mean())).max() / len(y)
    top = top if top > 0 else 1.0
    return np.geomspace(top, top * eps, count)
