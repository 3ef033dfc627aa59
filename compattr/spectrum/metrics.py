"""How well a spectrum explains a model (held-out R²), and how hierarchical it is.

* :func:`faithfulness` is the held-out ``R²`` of paper eq. 2, on masks not used for fitting.
* :func:`dsr`, :func:`scr` and :func:`shr` measure hierarchy over ``F_k``, the supports of
  the ``k`` largest ``|F(T)|`` (a prefix of the spectrum's term order; paper eq. 3, 10, 11).
  The empty set counts as a set like any other: a singleton ``{i}`` is backed by its subset
  ``∅`` only when the constant term is among the top ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from .._validation import as_masks, as_outputs, check_int, check_spectrum, output_scale
from .spectrum import Spectrum

Support = tuple[int, ...]


def faithfulness(model, X_test, y_test) -> float:
    """Held-out ``R² = 1 - Σ(ŷ - y)² / Σ(y - ȳ)²`` of a model's predictions.

    Parameters
    ----------
    model : Spectrum or any object with ``predict(X) -> (m,)``
        E.g. a :class:`~compattr.Spectrum`, a fitted LightGBM or scikit-learn regressor.
    X_test : (m, n) bool array
        Masks (``True`` = kept) that were **not** used for fitting; the paper uses 1,000
        fresh uniform masks.
    y_test : (m,) float array
        The true model outputs on those masks.

    Returns
    -------
    float
        1 for a perfect fit, 0 for predicting the mean, negative for worse.
    """
    predict = getattr(model, "predict", None)
    if not callable(predict):
        raise TypeError(f"model must have a predict method, got {type(model).__name__}.")
    X = as_masks(X_test, model.n if isinstance(model, Spectrum) else None, name="X_test")
    y = as_outputs(y_test, X.shape[0], name="y_test")
    y_hat = as_outputs(predict(X), X.shape[0], name="predictions")
    scale = output_scale(y)  # a power of two: exact, and safe from overflow near 1e300
    y, y_hat = y / scale, y_hat / scale
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0.0:
        raise ValueError("y_test is constant, so R² is undefined; evaluate on masks where the model's output varies.")
    return 1.0 - float(np.sum((y_hat - y) ** 2)) / total


def dsr(sp: Spectrum, k: int) -> float:
    """Direct Subset Rate (paper eq. 3).

    ``DSR = (1/k) Σ_{S∈F_k} (1/|S|) Σ_{i∈S} 1{S ∖ {i} ∈ F_k}``, with ``0/0 := 1`` for
    ``S = ∅``. For ``F_4 = {∅, {1}, {2}, {1,3}}`` it is ``(1 + 1 + 1 + 1/2) / 4 = 7/8``.

    Parameters
    ----------
    sp : Spectrum
    k : int
        Number of top terms, ``1 <= k <= len(sp)``.

    Returns
    -------
    float in [0, 1]
    """
    top = _top_supports(sp, k)
    present = set(top)
    rates = [float(np.mean([Q in present for Q in _direct_subsets(S)])) if S else 1.0 for S in top]
    return float(np.mean(rates))


def scr(sp: Spectrum, k: int) -> float:
    """Staircase Rate (paper eq. 10).

    Fraction of ``S ∈ F_k`` with an ordering ``e_1, ..., e_|S|`` of its features whose every
    prefix set ``∅, {e_1}, {e_1, e_2}, ..., S`` is in ``F_k``.

    Parameters and return value as in :func:`dsr`.
    """
    return _chain_rate(_top_supports(sp, k), any)


def shr(sp: Spectrum, k: int) -> float:
    """Strong Hierarchy Rate (paper eq. 11).

    Fraction of ``S ∈ F_k`` all of whose subsets (``∅`` included) are in ``F_k``.

    Parameters and return value as in :func:`dsr`.
    """
    return _chain_rate(_top_supports(sp, k), all)


def _top_supports(sp: Spectrum, k: int) -> list[Support]:
    check_spectrum(sp)
    if check_int(k, "k", 1) > len(sp):
        raise ValueError(f"k={k} is larger than the spectrum, which has {len(sp)} terms.")
    return sp.support_tuples()[:k]


def _direct_subsets(S: Support) -> list[Support]:
    return [S[:j] + S[j + 1 :] for j in range(len(S))]


def _chain_rate(top: list[Support], combine: Callable[[Iterable[bool]], bool]) -> float:
    """Fraction of sets ``S`` whose flag holds, with ``flag(∅) = True`` and
    ``flag(S) = combine(flag(S ∖ {i}) for i ∈ S)``, a missing set's flag being False.

    ``combine=any`` gives a staircase (some chain of prefixes in ``F_k``), ``combine=all``
    gives strong hierarchy (every subset in ``F_k``).
    """
    flag: dict[Support, bool] = {}
    for S in sorted(top, key=len):
        flag[S] = combine(flag.get(Q, False) for Q in _direct_subsets(S)) if S else True
    return float(np.mean(list(flag.values())))
