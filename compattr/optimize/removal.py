"""Feature removal (paper eq. 4): the ``r`` features whose removal moves the output most."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int, check_spectrum
from ..spectrum import Spectrum
from .ilp import best_subset


@dataclass(frozen=True)
class Removal:
    """The result of :func:`removal`.

    Attributes
    ----------
    kept : (n,) bool array
        The ``n - r`` features left in place (``True`` = kept).
    value : float
        ``f̂(kept)``, the predicted output once the others are removed.
    full_value : float
        ``f̂([n])``, the predicted output with every feature kept.
    """

    kept: np.ndarray
    value: float
    full_value: float

    @property
    def removed(self) -> np.ndarray:
        """(n,) bool array: ``True`` for the ``r`` removed features."""
        return ~self.kept

    @property
    def predicted_change(self) -> float:
        """``f̂(kept) - f̂([n])``: how much removing them moves the predicted output."""
        return self.value - self.full_value


def removal(sp: Spectrum, r: int, **options) -> Removal:
    """The ``r`` features whose removal moves ``f̂`` farthest from ``f̂([n])`` (paper eq. 4).

    Solves ``argmax_{|S| = n - r} |f̂([n]) - f̂(S)|`` over kept-sets ``S`` by maximising and
    minimising ``f̂`` over kept-sets of size ``n - r`` and taking the one farther from
    ``f̂([n])``. The features to remove are the complement of that kept-set.

    Parameters
    ----------
    sp : Spectrum
    r : int
        Number of features to remove, ``0 <= r <= n``.
    **options
        Passed to :func:`best_subset` (``groups``, ``min_per_group``, ``kinds``,
        ``kv_groups``, ``min_kv_removed``, ``time_limit``, ``max_variables``): both the
        maximising and the minimising kept-set meet them.

    Returns
    -------
    Removal
        ``.removed`` is the (n,) bool mask of removed features, ``.kept`` its complement,
        ``.predicted_change`` the predicted ``f̂(kept) - f̂([n])``.
    """
    check_spectrum(sp)
    r = check_int(r, "r", 0, sp.n)
    if "sense" in options:
        raise TypeError("removal removes exactly r features; sense is best_subset's (use it for at most / at least).")
    candidates = np.stack([best_subset(sp, sp.n - r, m, **options) for m in (True, False)])
    values = sp.predict(candidates)
    full_value = float(sp.predict(np.ones((1, sp.n), dtype=bool))[0])
    best = int(np.argmax(np.abs(values - full_value)))
    return Removal(candidates[best], float(values[best]), full_value)
