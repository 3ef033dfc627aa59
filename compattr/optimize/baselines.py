"""The baselines plans are compared with: LASSO's marginal ranking and the best of N random kept-sets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._validation import as_outputs, check_bool, check_int, check_spectrum
from ..spectrum import Spectrum
from ..spectrum.indices import banzhaf


def lasso_subset(lasso_spectrum: Spectrum, size: int, maximize: bool = True) -> np.ndarray:
    """Keep the ``size`` features of largest marginal effect (the LASSO baseline).

    Ranks features by their Banzhaf value ``-2 F({i})`` (the effect of keeping ``i``) and
    ignores interactions, so it is exact for a linear spectrum such as a LASSO fit on masks.

    Returns
    -------
    (n,) bool array
        ``True`` = kept.
    """
    check_spectrum(lasso_spectrum)
    size = check_int(size, "size", 1, lasso_spectrum.n)
    maximize = check_bool(maximize, "maximize")
    score = banzhaf(lasso_spectrum) * (1.0 if maximize else -1.0)
    kept = np.zeros(lasso_spectrum.n, dtype=bool)
    kept[np.argsort(-score, kind="stable")[:size]] = True
    return kept


def best_of_n(
    sp_or_value_fn: Spectrum | Callable[[np.ndarray], np.ndarray],
    size: int,
    n_samples: int = 5000,
    seed: int | None = 0,
    *,
    n: int | None = None,
    maximize: bool = True,
) -> np.ndarray:
    """The best of ``n_samples`` random kept-sets of exactly ``size`` features (paper C.2).

    Parameters
    ----------
    sp_or_value_fn : Spectrum, object with ``predict``, or callable
        Scores a ``(m, n)`` bool mask matrix (``True`` = kept) with ``(m,)`` values; called
        once with all samples, so a model-backed callable should batch internally.
    size : int
        Features kept in every sample.
    n_samples : int
        Number of random kept-sets (the paper uses 5,000).
    seed : int or None
        Seed of the NumPy generator.
    n : int, optional
        Number of features; read from ``.n`` when the scorer has it (a Spectrum does), which
        ``n``, when given too, must equal.
    maximize : bool
        Take the highest (default) or lowest value.

    Returns
    -------
    (n,) bool array
        ``True`` = kept.
    """
    score = getattr(sp_or_value_fn, "predict", sp_or_value_fn)
    if not callable(score):
        raise TypeError("sp_or_value_fn must be a Spectrum, have predict(), or be callable.")
    own = getattr(sp_or_value_fn, "n", None)
    if n is not None and own is not None and n != own:
        raise ValueError(f"n={n} disagrees with the scorer's own n={own}.")
    n = own if own is not None else n
    if n is None:
        raise ValueError("pass n (the number of features) with a plain value function.")
    size = check_int(size, "size", 1, n)
    n_samples = check_int(n_samples, "n_samples", 1)
    maximize = check_bool(maximize, "maximize")
    rng = np.random.default_rng(seed)
    chosen = rng.random((n_samples, n)).argsort(axis=1)[:, :size]
    X = np.zeros((n_samples, n), dtype=bool)
    np.put_along_axis(X, chosen, True, axis=1)
    values = as_outputs(score(X), n_samples, name="values")
    return X[int(np.argmax(values if maximize else -values))].copy()
