"""Shapley values from paired masks: a ProxySPEX prior, refitted on the function's odd part.

The Shapley value reads only the odd-order Fourier terms: ``φ_i = -2 Σ_{T∋i, |T| odd}
F(T) / |T|`` (:func:`compattr.spectrum.indices.shapley`). A complementary pair of masks
``S, Sᶜ`` gives the odd part of ``f`` exactly, ``g(S) = (f(S) - f(Sᶜ)) / 2 = Σ_{|T| odd}
F(T) χ_T(S)``, the even terms cancelling, because ``χ_T(Sᶜ) = (-1)^{|T|} χ_T(S)``.
:class:`PairedShapley` fits on such pairs (:func:`compattr.query.masks.paired_masks`):

1. **proxy** – :class:`~compattr.proxy.ProxySPEX` on every mask and output (the even terms
   help its trees find the odd ones), with the folds' average of its trees
   (``final_fit=False``) and its sparse spectrum (its default top-k: chosen by
   cross-validation, re-ranked and closed under subsets where that fits better, grown by
   one order where that lowers the CV error).
2. **prior** – the odd part of the trees' untruncated spectrum, averaged over ``proxies``
   fits on fewer than :data:`~compattr.proxy.proxyspex.REPEAT_MASKS` masks (the others
   seeded one after another on the grid without the first fit's tree depth, their trees
   alone: an average of tree shapes is steadier than one ensemble on a few hundred pairs)
   and, there too, one untuned ensemble of deep trees whose leaves hold single masks
   (``untuned_trees``: they reach the high orders the tuned leaves cannot),
   averaged half and half with the sparse spectrum's odd part where the proxy's terms were
   grown (``blend``): the grown terms hold a hierarchy's higher orders, which the trees
   spread over many fragments (unless that odd part holds many times the trees' energy: a
   refit inflating fragments the trees barely see); or, when the sparse spectrum's
   cross-validated R² reaches ``sparse_above`` (that of its first top-k; lower on many
   masks, where that odd part's energy stays within a similar bound; and where the CV R²
   of its final terms, after the proxy's growth and extension, reaches
   :data:`HEDGE_BELOW` within that bound), the odd part of that sparse spectrum, kept as it is
   (a few well-determined terms then beat the refit of many), or kept and averaged with the
   refit of the trees' prior where its odd part holds many times the trees' energy (two
   estimates of similar error, made from different terms).
3. **support** – every singleton, then the prior's odd terms of order ≥ 3 by decreasing
   ``|F(T)|``, up to ``support`` terms per pair (several sizes, chosen by cross-validation:
   at low budgets more terms than pairs, held by the ridge, fit best).
4. **refit** – the support's coefficients by ridge regression of ``g`` on the pairs,
   shrunk towards the prior (not towards 0): the rows weighted so that the regression is
   the Shapley kernel's (KernelSHAP's weighted least squares on odd terms, for masks drawn
   with the same ``kernel_power``), the efficiency constraint ``Σ_i φ_i = f([n]) - f(∅)``
   exact when the pair ``([n], ∅)`` is among the masks, the ridge and the support chosen
   together by cross-validation over the pairs (infinite ridge keeps the prior). A kept sparse prior
   takes only the efficiency constraint (infinite ridge).

:meth:`PairedShapley.uncertainty` gives each Shapley value a standard error and an interval,
from the whole estimator fitted again without each of a few groups of pairs (a jackknife).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.linalg
from sklearn.base import BaseEstimator, clone
from threadpoolctl import threadpool_limits

from .._validation import (
    as_masks,
    as_outputs,
    check_auto_or_int,
    check_int,
    is_real,
    output_offset,
    output_scale,
    scale_errors,
)
from ..query.masks import FEW_PAIRS, check_pairs, resolve_kernel_power
from ..spectrum import Spectrum
from ..spectrum.indices import shapley
from ..spectrum.supports import csr_to_padded, pad_supports, padded_to_csr, parity_matrix, widen_padded
from ..spectrum.uncertainty import SpectrumJackknife, jackknife
from .proxyspex import REPEAT_MASKS, ProxySPEX
from .search import mask_dataset, without_depth

#: Ridge strengths tried, relative to the mean diagonal of the weighted Gram matrix; the
#: infinite one keeps the proxy's coefficients.
RIDGE_GRID = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, np.inf)

#: Terms refitted per pair among which cross-validation chooses (at most ``max_terms``).
SUPPORTS = (0.5, 1.0, 2.0, 4.0)

#: ``max_terms="auto"``: the most terms refitted from
#: :data:`~compattr.query.masks.FEW_PAIRS` pairs on; below, none are left out (the refit's
#: cost, ``pairs × terms × min(pairs, terms)``, stays small there). Tuning functions
#: (complete hierarchies, n = 100, α = 1, seeds 1–5; docs/results.md): refitting all of 4
#: per pair (1,328 terms) instead of 1,024 lowered the mean Shapley error from 0.231 to 0.222
#: (lower on all five), with 10 dB noise 0.299 → 0.296; at α = 2 (664 pairs) a larger bound
#: changed the mean by less than 0.005 for 10 % more CPU.
MAX_TERMS = 1024

#: The proxy's sparse spectrum is kept (not refitted) when its cross-validated R² reaches this.
SPARSE_ABOVE = 0.65

#: ``sparse_above="auto"``: from :data:`~compattr.proxy.proxyspex.REPEAT_MASKS` masks the
#: sparse spectrum is kept from this cross-validated R² too, where its odd part holds less
#: than :data:`KEEP_BELOW` times the energy of the trees' (docs/results.md). Tuning
#: functions: on 2,658 masks (hierarchy, n = 100, 10 dB, α = 4) with a CV R² of 0.50–0.64
#: keeping it lowered the Shapley error on all six seeds (the energy ratio 2–4), and at
#: n = 500 (10 dB, α = 1) on the one seed it changed (ratio 5.6: 0.191 → 0.046); on the
#: Synthetic Peak it raised it on two of three, and on five of six more at α = 4 (the ratio
#: 11–64 there).
SPARSE_ABOVE_MANY = 0.5

#: ``blend="auto"`` averages the trees' odd part with the proxy's grown sparse spectrum's
#: while the latter holds less than this many times the former's energy (sum of squared
#: coefficients). Tuning functions at n = 100 (docs/results.md): on complete hierarchies
#: (α = 2 and 4, with and without 10 dB noise) the ratio was 1.2–3.4 wherever the proxy grew
#: below :data:`SPARSE_ABOVE` (up to 4.2 above it), and the blend lowered the Shapley error on
#: most; on the Synthetic Peak (order-5 terms and nothing below) it was 10–100, the grown
#: refit inflating fragments the trees barely see, and the blend raised the error on 4 of 5.
BLEND_BELOW = 5.0

#: ``sparse_above="auto"`` keeps the sparse spectrum alone only where its odd part holds
#: less than this many times the energy of the trees' (sum of squared coefficients): from
#: :data:`SPARSE_ABOVE` up to :data:`HEDGE_BELOW`, at or above it the kept estimate is
#: averaged half and half with the trees' refit (``hedged_``); from
#: :data:`SPARSE_ABOVE_MANY` on many masks, the trees' prior is refitted instead. Tuning
#: functions (docs/results.md): on the Synthetic Peak, kept from a CV R² of 0.66–0.93 with a
#: ratio of 13–80 (n = 100 and 500), the average lowered the Shapley error on 16 of 17 (one
#: level), and in the band from 0.5 the ratio was 11 or more; on complete hierarchies, where
#: keeping was better, it was at most 7.1 (n = 100, 500 and 1000).
KEEP_BELOW = 10.0

#: Above this cross-validated R² the sparse prior is kept whatever its energy: on the Peak at
#: n = 500 (CV R² 1.000) it was exact (0.0002), and the average ten times worse. The CV R²
#: of the proxy's final terms (``spectrum_cv_r2_``) reaching it keeps the prior too, within
#: the energy bound :data:`KEEP_BELOW` (hedged beyond it): on complete hierarchies at
#: n = 100, α = 3 (seeds 504–506) a first top-k of CV R² 0.43–0.61 grown and extended to
#: 1.000 was exact kept, refitted 0.006–0.097; on sparse peaks whose extension read 0.96
#: (0.61 on fresh masks) with 46–83 times the trees' energy, kept was 2–3 times worse than
#: the refit (docs/results.md).
HEDGE_BELOW = 0.95

#: Fits whose trees are averaged into the trees' prior with ``proxies="auto"`` on fewer than
#: :data:`~compattr.proxy.proxyspex.REPEAT_MASKS` masks (one from there: at n = 100, 10 dB,
#: α = 4 three changed the Shapley error by 1 % for 60 % more CPU).
PROXIES = 3

#: LightGBM's parameters of the untuned ensemble that ``untuned_trees`` averages into the
#: trees' prior: trees of depth 6 split down to single masks, their leaves shrunk by an L2
#: penalty, :data:`UNTUNED_ROUNDS` of them without early stopping. The tuned fits' leaves
#: hold at least 20 masks (LightGBM's default); these reach the high orders a few hundred
#: pairs cannot fill such leaves with, and their errors are not the tuned fits'. Tuning
#: functions (docs/results.md; n = 100, seeds 1–8, mean Shapley error): the Synthetic Peak at
#: α = 1 and 2 0.776 → 0.716 and 0.431 → 0.348, complete hierarchies at α = 1 0.268 → 0.258
#: (with 10 dB noise 0.376 → 0.364), at α = 2 level (0.102; with 10 dB 0.168 → 0.163); trees
#: of that depth with leaves of at least 20 masks (learning rate 0.3) raised it instead. On
#: seeds drawn afterwards at n = 200, α = 1 the Peak's fell by a quarter (0.579 → 0.436) and
#: the hierarchies' rose a little (0.132 → 0.135; with 10 dB 0.213 → 0.224).
UNTUNED_TREES = {
    "objective": "l2",
    "max_depth": 6,
    "num_leaves": 64,
    "learning_rate": 0.1,
    "min_data_in_leaf": 1,
    "min_sum_hessian_in_leaf": 1.0,
    "lambda_l2": 1.0,
    "force_row_wise": True,
    "deterministic": True,
    "verbose": -1,
}

#: Trees of the untuned ensemble (:data:`UNTUNED_TREES`).
UNTUNED_ROUNDS = 300


class PairedShapley(BaseEstimator):
    """Shapley values of a set function from complementary pairs of masks (module docstring).

    Parameters
    ----------
    kernel_power : float or "auto"
        The ``kernel_power`` the masks were drawn with by
        :func:`compattr.query.masks.paired_masks` (``kernel_power_``); a pair of size ``k``
        is weighted by ``(k (n - k))^(kernel_power_ - 1)``, which makes the refit the Shapley
        kernel's. "auto" (default, as :func:`~compattr.query.masks.paired_masks`'s):
        :func:`~compattr.query.masks.resolve_kernel_power` of the masks' pairs, the power
        ``paired_masks`` drew them with by default.
    support : float or sequence of float
        Terms refitted per pair (singletons included; the rest of the prior is kept as is):
        a number, or the sizes among which cross-validation chooses (default
        :data:`SUPPORTS`).
    max_terms : "auto" or int
        At most this many terms are refitted, or ``n`` if more (every singleton is): this
        bounds the refit's cost, ``pairs × terms × min(pairs, terms)``. "auto" (default): no
        bound below :data:`~compattr.query.masks.FEW_PAIRS` pairs, where that cost is small
        (at most 1,600 terms with the default ``support``), :data:`MAX_TERMS` from there on.
    ridges : sequence of float
        Ridge strengths, relative to the mean diagonal of the weighted Gram matrix, among
        which cross-validation chooses; ``inf`` keeps the prior. Default :data:`RIDGE_GRID`.
    sparse_above : "auto" or float
        Keep the odd part of the proxy's sparse spectrum, instead of refitting the trees'
        odd terms, when the proxy's cross-validated R² (``proxy_.cv_r2_``, of its first
        top-k) is at least this (``inf``: always refit). "auto" (default): wherever the CV
        R² of its first top-k reaches :data:`HEDGE_BELOW`, or that of the proxy's final
        terms (``proxy_.spectrum_cv_r2_``, after its growth and extension) does and their odd
        part holds less than :data:`KEEP_BELOW` times the energy of the trees' (else the
        hedge below); otherwise from :data:`SPARSE_ABOVE` (the first top-k's), and on
        :data:`~compattr.proxy.proxyspex.REPEAT_MASKS` masks or more also from
        :data:`SPARSE_ABOVE_MANY` where that odd part holds less than :data:`KEEP_BELOW`
        times the energy of the odd part of the proxy's trees; from :data:`SPARSE_ABOVE` up
        to :data:`HEDGE_BELOW`, where it holds :data:`KEEP_BELOW` times that energy or more,
        the kept estimate is averaged half and half with the trees' refit (``hedged_``).
    blend : "auto" or bool
        Below ``sparse_above``: average the trees' odd part half and half with the odd part
        of the proxy's sparse spectrum before the refit: where the proxy's terms were grown
        by one order (``proxy_.grown_``) and their odd part holds less than
        :data:`BLEND_BELOW` times the trees' energy ("auto", default), always (True) or never
        (False: the trees' odd part alone).
    proxies : "auto" or int
        When the prior is the trees': the number of tree fits averaged into it; "auto"
        (default): :data:`PROXIES` on fewer than
        :data:`~compattr.proxy.proxyspex.REPEAT_MASKS` masks, else one. The first is
        ``proxy_``; the others are seeded ``random_state + 1``, ``+ 2``, ... on the grid
        without ``proxy_``'s tree depth (their trees alone: every fold, no sparsity CV), so
        the average mixes tree shapes. 1: ``proxy_``'s trees alone.
    untuned_trees : "auto" or bool
        When the prior is the trees': also average into it one LightGBM ensemble fitted on
        every mask without tuning (:data:`UNTUNED_TREES`, :data:`UNTUNED_ROUNDS` trees of
        depth 6 whose leaves may hold a single mask; ``untuned_trees_``), one fit among the
        ``proxies`` + 1 averaged; "auto" (default): on fewer than
        :data:`~compattr.proxy.proxyspex.REPEAT_MASKS` masks.
    cv : int
        Folds of pairs for the ridge and of masks for the proxy.
    num_threads : int
        LightGBM and BLAS threads.
    random_state : int
        Seeds the proxy and the folds.

    Attributes
    ----------
    shapley_ : (n,) float64 array
        The estimated Shapley values.
    kernel_power_ : float
        The power the pairs are weighted by (``kernel_power``, "auto" resolved).
    spectrum_ : Spectrum
        The fitted odd part ``g(S) = (f(S) - f(Sᶜ)) / 2``: odd-order terms only (no constant),
        from which ``shapley_`` is read.
    proxy_ : ProxySPEX
        The fitted proxy: ``proxy_.tree_spectrum_`` its trees' whole (odd and even)
        spectrum, ``proxy_.spectrum_`` its sparse spectrum, ``proxy_.cv_r2_`` the
        cross-validated R² of its first top-k and ``proxy_.spectrum_cv_r2_`` that of the
        sparse spectrum's final terms.
    prior_ : {"trees", "blend", "sparse", "exact"}
        Which odd part was the prior: the trees' (refitted), the trees' averaged with the
        sparse spectrum's (refitted; ``blend``) or the sparse spectrum's (kept); "exact"
        where the pairs hold every complementary pair (over at most
        :data:`EXACT_FEATURES` features): the odd part is then read off its values on every
        mask (a pair's repeats averaged) and the Shapley values are exact.
    hedged_ : bool
        Whether ``spectrum_`` is the average, half and half, of the sparse spectrum's odd part
        kept (made efficient) and the refit of ``prior_`` ("trees" or "blend"; see
        ``sparse_above``).
    tree_proxies_ : list of ProxySPEX
        With the trees' prior (blended or not): the fits whose trees are averaged into it,
        ``proxy_`` first; else empty.
    untuned_trees_ : lightgbm.Booster or None
        The untuned ensemble averaged into the trees' prior with them (``untuned_trees``),
        fitted on ``(y - output_offset_) / output_scale_``: its spectrum is
        ``Spectrum.from_trees(untuned_trees_, n).scaled(output_scale_)`` plus the constant
        ``output_offset_``; else None.
    output_offset_ : float
        The outputs' midrange where they do not straddle zero, else 0: the untuned trees'
        labels are the outputs less it, so that outputs far from zero next to their spread keep their
        differences in LightGBM's float32 labels (the proxy removes it too).
    output_scale_ : float
        The power of two the refit, its CV and the untuned trees divide the outputs by
        (``max |y - output_offset_| / output_scale_`` in [0.5, 1)), so that every magnitude
        of the outputs gives the same choices.
    ridge_ : float
        The refit's chosen relative ridge strength (``inf``: the prior was kept).
    support_ : float
        The refit's chosen terms per pair (NaN when the sparse prior was kept alone).
    cv_results_ : pandas.DataFrame
        Weighted CV mean squared error of ``g`` (``cv_mse``) for each ``support`` (terms per
        pair), ``terms`` (refitted terms) and ``ridge`` strength; empty when the sparse prior
        was kept alone: there was nothing to choose.
    n_features_in_ : int
    """

    def __init__(
        self,
        *,
        kernel_power: float | str = "auto",
        support=SUPPORTS,
        max_terms: int | str = "auto",
        ridges=RIDGE_GRID,
        sparse_above="auto",
        blend="auto",
        proxies="auto",
        untuned_trees="auto",
        cv: int = 5,
        num_threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.kernel_power = kernel_power
        self.support = support
        self.max_terms = max_terms
        self.ridges = ridges
        self.sparse_above = sparse_above
        self.blend = blend
        self.proxies = proxies
        self.untuned_trees = untuned_trees
        self.cv = cv
        self.num_threads = num_threads
        self.random_state = random_state

    @property
    def min_masks(self) -> int:
        """The fewest masks :meth:`fit` accepts: its proxy's
        (:attr:`ProxySPEX.min_masks <compattr.proxy.ProxySPEX.min_masks>`), in whole pairs."""
        needed = ProxySPEX(cv=self.cv).min_masks
        return needed + needed % 2

    def fit(self, X, y) -> PairedShapley:
        """Fit on complementary pairs of masks.

        Parameters
        ----------
        X : (m, n) bool array
            Masks, ``True`` = kept; row ``2j + 1`` the complement of row ``2j``, as
            :func:`compattr.query.masks.paired_masks` draws them.
        y : (m,) float array
            The function's outputs on ``X``.

        Returns
        -------
        PairedShapley
            ``self``, fitted.

        Raises
        ------
        ValueError
            If a row ``2j + 1`` is not the complement of row ``2j``, or a parameter is out of
            range, before anything is fitted.
        """
        self.check_params()
        X = as_masks(X)
        y = as_outputs(y, X.shape[0])
        check_pairs(X)
        self.kernel_power_ = resolve_kernel_power(self.kernel_power, X.shape[0] // 2)
        with threadpool_limits(self.num_threads):
            return self._fit(X, y)

    def uncertainty(
        self,
        X,
        y,
        folds: int = 5,
        confidence: float = 0.95,
        names: Sequence[str] | None = None,
        progress: bool = False,
    ) -> pd.DataFrame:
        """Jackknife intervals for ``shapley_``: which features' Shapley values the pairs pin
        down (no model call; ``folds`` more fits).

        The pairs are split at random (seeded by ``random_state``) into ``folds`` groups, and
        the whole estimator, its proxy, prior, support and ridge included, is fitted again
        without each group (:func:`compattr.spectrum.jackknife`). The pair ``([n], ∅)`` is
        in one group like any other: its noise, which the efficiency constraint spreads over
        every feature alike, is measured too (the fit without it has no constraint). The
        spread of the ``K = folds`` estimates ``φ_k`` around ``shapley_`` (``φ̂``) gives each
        Shapley value a grouped (delete-a-group) jackknife standard error,
        ``sqrt((K - 1) / K · Σ_k (φ_k - φ̂)²)``, and a Student-t interval with ``K - 1``
        degrees of freedom around ``φ̂``. Every fit chooses its terms afresh, so the
        intervals hold that choice's variability, which a bootstrap of the chosen terms'
        refit would leave out. On complete
        hierarchies and the Synthetic Peak (n = 100, α = 1–8, with and without 10 dB noise;
        nine functions) the 95 % intervals held 90–100 % of each function's non-zero Shapley
        values (96 % of all) and called 2 of 545 zero ones non-zero; with the untuned trees
        in the prior (``untuned_trees``), at α = 1 and 2 on twelve more, 85–100 % (93 %) and
        none of 714 (docs/results.md).

        Parameters
        ----------
        X : (m, n) bool array
            The masks the estimator was fitted on.
        y : (m,) float array
            Their outputs.
        folds : int
            Groups of pairs (at least 2), each left out of one fit: the CPU is ``folds``
            fits on ``(folds - 1) / folds`` of the pairs.
        confidence, names
            The intervals' coverage and the features' names, as
            :meth:`compattr.spectrum.SpectrumJackknife.index` takes them.
        progress : bool
            Show a progress bar over the ``folds`` fits.

        Returns
        -------
        pandas.DataFrame
            :meth:`~compattr.spectrum.SpectrumJackknife.index`'s table of the Shapley values:
            one row per feature by decreasing ``|shapley_|``, its ``value`` (``shapley_``),
            ``stderr``, ``ci_low``, ``ci_high`` and ``nonzero`` (the interval excludes 0).

        Raises
        ------
        ValueError
            If the estimator is not fitted, ``X`` and ``y`` are not the data it was fitted
            on, ``folds`` is below 2 or above the number of pairs, or ``confidence`` is
            outside (0, 1).
        """
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
        refits = self.jackknife(X, y, folds, progress)
        return refits.index("shapley", confidence=confidence, names=names)

    def jackknife(self, X, y, folds: int = 5, progress: bool = False) -> SpectrumJackknife:
        """The fits behind :meth:`uncertainty`: the whole estimator fitted again without each
        of ``folds`` random groups of pairs (seeded by ``random_state``; a pair's two masks
        stay together; where every complementary pair was queried, ``prior_`` "exact", and
        every pair queried more than once gave the same output each time, as a deterministic
        model does, the groups hold only the repeats, one copy of each pair staying in every
        refit: the refits are then exact too and the intervals zero wide; with repeats that
        disagree (noise), or none to tell, the groups are of pairs as elsewhere), as a
        :class:`~compattr.spectrum.SpectrumJackknife` around
        ``spectrum_``, from which any quantity read off the spectrum gets its interval
        (``index(fn)``: sums of Shapley values per layer, say). Each refit weights the pairs
        by the power they were drawn with (``kernel_power_``), which "auto" might resolve
        otherwise on fewer pairs.

        Raises
        ------
        ValueError
            If the estimator is not fitted, ``X`` and ``y`` are not the data it was fitted
            on, or ``folds`` is below 2 or (but where the values are exact and their repeats
            agree) above the number of pairs.
        """
        if not hasattr(self, "shapley_"):
            raise ValueError("PairedShapley is not fitted yet: call fit(X, y) first.")
        X = as_masks(X, self.n_features_in_)
        y = as_outputs(y, X.shape[0])
        if _digest(X, y) != self._fitted_on:
            raise ValueError("uncertainty() and jackknife() need the masks and outputs the estimator was fitted on.")
        pairs = np.repeat(np.arange(X.shape[0] // 2), 2)  # a pair's two masks stay together
        # the refits weight the pairs as they were drawn, whatever "auto" says for fewer of them
        drawn = clone(self).set_params(kernel_power=self.kernel_power_)
        options = {"seed": self.random_state, "groups": pairs, "spectrum": self.spectrum_, "progress": progress}
        S, g = X[0::2], 0.5 * (y[0::2] - y[1::2])
        if self.prior_ == "exact" and _repeats_agree(S, g):  # deterministic: the values are exact
            check_int(folds, "folds", 2)
            options["assignment"] = np.repeat(_repeats_left_out(S, folds, self.random_state), 2)
        return jackknife(drawn, X, y, folds, **options)

    def check_params(self) -> None:
        """Raise ValueError for a parameter out of its range (``fit`` calls it first; the
        entry points call it before any model query)."""
        resolve_kernel_power(self.kernel_power, 0)  # its ValueError on a bad value
        support = np.atleast_1d(np.asarray(self.support, dtype=np.float64))
        if support.ndim != 1 or support.size == 0 or not ((support > 0) & np.isfinite(support)).all():
            raise ValueError(
                f"support must be a positive number or a non-empty sequence of them, got {self.support!r}."
            )
        check_auto_or_int(self.max_terms, "max_terms", 1)
        ridges = np.atleast_1d(np.asarray(self.ridges, dtype=object))
        if ridges.ndim != 1 or ridges.size == 0 or not all(is_real(r) and r > 0 for r in ridges):
            raise ValueError(f"ridges must be a non-empty sequence of positive numbers, got {self.ridges!r}.")
        above = self.sparse_above
        if not (above == "auto" if isinstance(above, str) else is_real(above) and above >= 0):
            raise ValueError(f'sparse_above must be "auto" or >= 0 (inf: always refit), got {above!r}.')
        check_int(self.random_state, "random_state", 0)
        check_int(self.num_threads, "num_threads", 1)
        for name in ("blend", "untuned_trees"):
            value = getattr(self, name)
            if not (value == "auto" if isinstance(value, str) else isinstance(value, bool)):
                raise ValueError(f'{name} must be "auto", True or False, got {value!r}.')
        check_int(self.cv, "cv", 2)
        check_auto_or_int(self.proxies, "proxies", 1)

    def _fit(self, X: np.ndarray, y: np.ndarray) -> PairedShapley:
        self.n_features_in_ = X.shape[1]
        # one fit, the folds' average alone: the fit on every mask did not lower the Shapley
        # error on the tuning functions (docs/results.md)
        proxy = ProxySPEX(final_fit=False, repeats=1, cv=self.cv, num_threads=self.num_threads, seed=self.random_state)
        self.proxy_ = proxy.fit(X, y)
        # the refits and the untuned trees see the outputs over a power of two (exact), so
        # that outputs of any magnitude give the same choices (their CV errors are squares)
        offset = self.output_offset_ = output_offset(y)
        scale = self.output_scale_ = output_scale(y - offset)
        S, g = X[0::2], 0.5 * (y[0::2] - y[1::2])
        if _every_pair(S):  # the odd part is known on every mask: nothing to estimate
            return self._read_every_pair(X, y)
        sparse = proxy.spectrum_.odd_part()
        role = self._sparse_role(len(y), sparse)
        estimates = []
        if role != "refitted":  # kept as it is: only the efficiency constraint (infinite ridge)
            estimates.append(self._refit(sparse, sparse.predict(S), S, g, np.array([np.inf]), scale))
            self.prior_ = "sparse"
            self.tree_proxies_: list[ProxySPEX] = []
            self.untuned_trees_: lgb.Booster | None = None
        if role != "kept":
            prior, prior_at_pairs = self._trees_prior(X, y, sparse, scale)  # prior_, tree_proxies_
            ridges = np.asarray(self.ridges, dtype=np.float64)
            estimates.append(self._refit(prior, prior_at_pairs, S, g, ridges, scale))
        self.hedged_ = role == "hedged"
        # the refit's choices where it ran, else the kept prior's (nothing chosen)
        self.spectrum_, self.support_, self.ridge_, self.cv_results_ = estimates[-1]
        if self.hedged_:
            self.spectrum_ = Spectrum.mean([estimate[0] for estimate in estimates])
        self.shapley_ = shapley(self.spectrum_)
        self._fitted_on = _digest(X, y)
        return self

    def _read_every_pair(self, X: np.ndarray, y: np.ndarray) -> PairedShapley:
        """Where the pairs hold every complementary pair (``prior_`` "exact"): the odd part's
        coefficients read off its values on every mask (the mean of a pair's repeats), so
        the Shapley values are exact."""
        self.spectrum_ = _odd_part_of_every_pair(X[0::2], 0.5 * (y[0::2] - y[1::2]))
        self.prior_, self.hedged_, self.tree_proxies_, self.untuned_trees_ = "exact", False, [], None
        self.ridge_, self.support_ = 0.0, np.nan
        self.cv_results_ = pd.DataFrame(columns=["support", "terms", "ridge", "cv_mse"], dtype=float)
        self.shapley_ = shapley(self.spectrum_)
        self._fitted_on = _digest(X, y)
        return self

    def _trees_prior(self, X: np.ndarray, y: np.ndarray, sparse: Spectrum, scale: float) -> tuple[Spectrum, np.ndarray]:
        """The trees' odd part, averaged over ``proxies`` fits and the untuned ensemble where
        :meth:`_untuned` fits one (on ``(y - output_offset_) / scale``), blended with ``sparse`` where
        :meth:`_blends` (``prior_``, ``tree_proxies_``, ``untuned_trees_``); and its values at
        the pairs."""
        self.prior_ = "trees"
        fits = self.tree_proxies_ = [self.proxy_, *self._other_trees(X, y)]
        spectra = [fit.tree_spectrum_ for fit in fits]
        # the values at the masks through the trees (their exact transform is the spectrum),
        # at a cost that grows with the trees, not the terms
        at_masks = [fit.predict_trees(X) for fit in fits]
        # its labels about zero, as the proxy's (the odd part and the pairs' differences drop
        # the offset)
        untuned = self.untuned_trees_ = self._untuned(X, (y - self.output_offset_) / scale)
        if untuned is not None:
            spectra.append(Spectrum.from_trees(untuned, X.shape[1]).scaled(scale))
            at_masks.append(scale * np.asarray(untuned.predict(X.astype(np.float32)), dtype=np.float64))
        prior = Spectrum.mean(spectra).odd_part()
        trees = np.mean(at_masks, axis=0)
        prior_at_pairs = 0.5 * (trees[0::2] - trees[1::2])
        if self._blends(sparse, prior):
            self.prior_, prior = "blend", Spectrum.mean([prior, sparse])
            prior_at_pairs = 0.5 * (prior_at_pairs + sparse.predict(X[0::2]))
        return prior, prior_at_pairs

    def _refit(
        self,
        prior: Spectrum,
        prior_at_pairs: np.ndarray,
        S: np.ndarray,
        g: np.ndarray,
        ridges: np.ndarray,
        unit: float,
    ):
        """The odd part ``g`` (pairs,) at the pairs' first masks ``S`` (pairs, n), refitted
        from ``prior`` (whose values at ``S`` are ``prior_at_pairs``): its singletons and
        largest higher terms by ridge regression towards it (module docstring), the support
        and the ridge chosen by CV over pairs among ``ridges`` (only ``inf``: the prior, made
        efficient), all in units of ``unit`` (a power of two, so exact). Returns the
        spectrum, the chosen terms per pair and ridge, and the CV table."""
        prior, prior_at_pairs, g = prior.scaled(1.0 / unit), prior_at_pairs / unit, g / unit
        n = prior.n
        available = n + int(np.sum(prior.degrees >= 3))  # singletons and the prior's higher terms
        candidates = self._candidates(n, S.shape[0], available)  # (terms per pair, terms): prefixes
        rows, start = self._support_rows(prior, candidates[-1][1])
        P = parity_matrix(S, rows)  # (pairs, k)
        sizes = S.sum(axis=1)
        boundary = (sizes == 0) | (sizes == n)
        # the efficiency constraint: χ_T(∅) = 1 and χ_T([n]) = -1 for odd T
        sign = np.where(sizes[boundary] == 0, 1.0, -1.0) if boundary.any() else None
        k = sizes[~boundary].astype(np.float64)
        root = np.sqrt((k * (n - k)) ** (self.kernel_power_ - 1.0))
        root /= np.sqrt(np.mean(root**2))

        def design(t: int):
            """The weighted regression of the first ``t`` support terms (module docstring)."""
            residual = g - prior_at_pairs + P[:, :t] @ start[:t]  # what the terms must explain
            constraint = None if sign is None else (np.ones(t), float(np.mean(sign * residual[boundary])))
            return P[~boundary, :t] * root[:, None], residual[~boundary] * root, constraint

        # every column of A has squared norm Σ root² (= the pairs off the boundary): the scale
        # of a relative ridge, the same for every support
        scale = float(np.sum(root**2)) or 1.0
        t, support, ridge, table = self._choose(candidates, design, start, ridges, scale)
        A, b, constraint = design(t)
        (coefs,) = _ridge_towards(A, b, start[:t], constraint, [ridge * scale])
        update = Spectrum(n, padded_to_csr(rows[:t], n), coefs - start[:t])
        scale_errors(table, ("cv_mse",), unit)
        return Spectrum.sum([prior, update]).scaled(unit), support, ridge, table

    def _sparse_role(self, m: int, sparse: Spectrum) -> str:
        """What becomes of the proxy's sparse spectrum's odd part ``sparse`` on ``m`` masks
        (``sparse_above``): "kept" as the estimate, "hedged" (kept, and averaged with the
        trees' refit) or "refitted" (the trees' prior is refitted instead)."""
        r2 = self.proxy_.cv_r2_
        if self.sparse_above != "auto":
            return "kept" if r2 >= self.sparse_above else "refitted"
        if r2 >= HEDGE_BELOW:
            return "kept"
        # the sparse spectrum's own CV R² (after the proxy's growth and extension; NaN never
        # reaches it) can say it explains the function where its first top-k did not
        final = self.proxy_.spectrum_cv_r2_ >= HEDGE_BELOW
        if not final and r2 < SPARSE_ABOVE and (m < REPEAT_MASKS or r2 < SPARSE_ABOVE_MANY):
            return "refitted"
        # the trees' odd part only where it decides: on deep trees it has millions of terms
        alone = _energy_ratio(sparse, self.proxy_.tree_spectrum_.odd_part()) < KEEP_BELOW
        if final or r2 >= SPARSE_ABOVE:
            return "kept" if alone else "hedged"
        return "kept" if alone else "refitted"

    def _blends(self, sparse: Spectrum, trees: Spectrum) -> bool:
        """Whether the prior averages the trees' odd part ``trees`` with the sparse spectrum's
        ``sparse`` (``blend``): "auto" where the proxy's terms were grown and ``sparse``
        holds less than :data:`BLEND_BELOW` times the energy of ``trees``."""
        if self.blend != "auto":
            return bool(self.blend)
        return bool(self.proxy_.grown_) and _energy_ratio(sparse, trees) < BLEND_BELOW

    def _other_trees(self, X: np.ndarray, y: np.ndarray) -> list[ProxySPEX]:
        """The tree fits after ``proxy_`` (``proxies`` in all): seeded ``random_state + 1``, ...,
        on the grid without ``proxy_``'s depth (the whole grid when it has no other), their
        trees alone (every fold, no top-k, no fit on every mask); none for constant outputs,
        whose constant is exact."""
        if self.proxy_.best_params_ is None:
            return []
        grid = without_depth(self.proxy_.search_grid_, self.proxy_.best_params_["max_depth"])
        return [
            ProxySPEX(
                k=None,
                all_folds=True,
                final_fit=False,
                repeats=1,
                grid=grid,
                cv=self.cv,
                num_threads=self.num_threads,
                seed=self.random_state + r,
            ).fit(X, y)
            for r in range(1, self._proxies(len(y)))
        ]

    def _untuned(self, X: np.ndarray, y: np.ndarray) -> lgb.Booster | None:
        """The untuned ensemble (:data:`UNTUNED_TREES`) fitted on every mask where
        ``untuned_trees`` asks for one; None for constant outputs, whose constant is exact."""
        wanted = len(y) < REPEAT_MASKS if self.untuned_trees == "auto" else self.untuned_trees
        if not wanted or self.proxy_.best_params_ is None:
            return None
        params = {**UNTUNED_TREES, "num_threads": self.num_threads, "seed": self.random_state}
        return lgb.train(params, mask_dataset(X, y, self.num_threads), num_boost_round=UNTUNED_ROUNDS)

    def _proxies(self, m: int) -> int:
        """How many tree fits make the trees' prior on ``m`` masks (``proxies``)."""
        if self.proxies != "auto":
            return int(self.proxies)
        return PROXIES if m < REPEAT_MASKS else 1

    def _choose(self, candidates, design, start: np.ndarray, ridges: np.ndarray, scale: float):
        """Choose the support and the ridge together by CV over pairs; return the chosen
        number of terms, terms per pair (NaN with only infinite ridges: nothing to choose, the
        largest support) and ridge, and the CV table (empty then)."""
        if not np.isfinite(ridges).any():
            table = pd.DataFrame(columns=["support", "terms", "ridge", "cv_mse"], dtype=float)
            return candidates[-1][1], np.nan, np.inf, table
        rows = []
        for per_pair, t in candidates:
            A, b, constraint = design(t)
            cv_mse = self._cv(A, b, start[:t], constraint, ridges * scale)
            rows += [{"support": per_pair, "terms": t, "ridge": r, "cv_mse": e} for r, e in zip(ridges, cv_mse)]
        table = pd.DataFrame(rows)
        best = table.loc[table["cv_mse"].idxmin()]
        return int(best["terms"]), float(best["support"]), float(best["ridge"]), table

    def _candidates(self, n: int, pairs: int, available: int) -> list[tuple[float, int]]:
        """The supports the CV compares, as (terms per pair, terms), ascending: ``support``
        times the pairs, at most ``max_terms`` (:meth:`_max_terms`) and the ``available``
        terms, at least the ``n`` singletons; a count reached by several ``support`` values
        is compared once."""
        out: dict[int, float] = {}
        bound = self._max_terms(pairs)
        for per_pair in sorted(np.atleast_1d(np.asarray(self.support, dtype=np.float64))):
            wanted = int(np.ceil(per_pair * pairs))
            terms = min(available, max(n, wanted if bound is None else min(bound, wanted)))
            out.setdefault(terms, float(per_pair))
        return [(per_pair, t) for t, per_pair in out.items()]

    def _max_terms(self, pairs: int) -> int | None:
        """The most terms refitted on ``pairs`` pairs (``max_terms``; "auto": none below
        :data:`~compattr.query.masks.FEW_PAIRS` pairs, else :data:`MAX_TERMS`); None: no bound."""
        if self.max_terms != "auto":
            return int(self.max_terms)
        return None if pairs < FEW_PAIRS else MAX_TERMS

    def _support_rows(self, prior: Spectrum, budget: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``budget`` (>= n) refitted terms, padded ``(budget, D)``: every singleton, then the
        prior's largest odd terms of order ≥ 3 (fewer if it has fewer); and their prior
        coefficients ``(budget,)``."""
        n = prior.n
        single = np.flatnonzero(prior.degrees == 1)
        start = np.zeros(n)
        start[prior.supports.indices[prior.supports.indptr[single]]] = prior.coefs[single]
        higher = np.flatnonzero(prior.degrees >= 3)[: max(0, budget - n)]  # in order of |F(T)|
        rows = csr_to_padded(prior.supports[higher], n)
        singles = pad_supports([(i,) for i in range(n)], n)
        width = max(rows.shape[1], singles.shape[1])
        rows = np.vstack([widen_padded(singles, width, n), widen_padded(rows, width, n)])
        return rows, np.r_[start, prior.coefs[higher]]

    def _cv(self, A, b, start, constraint, ridges) -> np.ndarray:
        """Weighted CV mean squared error of each ridge strength, over folds of pairs."""
        folds = np.random.default_rng(self.random_state).permutation(len(b)) % self.cv
        sq = np.zeros(len(ridges))
        for fold in range(self.cv):
            train, valid = folds != fold, folds == fold
            fits = _ridge_towards(A[train], b[train], start, constraint, ridges)
            sq += [np.sum((A[valid] @ beta - b[valid]) ** 2) for beta in fits]
        return sq / max(1, len(b))


#: Pairs of masks over at most this many features are solved exactly where every
#: complementary pair was queried (2^(n-1) pairs: 32,768 at n = 16).
EXACT_FEATURES = 16


def _every_pair(S: np.ndarray) -> bool:
    """Whether the pairs' first masks ``S`` (pairs, n) hold each of the ``2^(n-1)``
    complementary pairs (``S`` or ``Sᶜ`` first), over at most :data:`EXACT_FEATURES` features."""
    n = S.shape[1]
    if n > EXACT_FEATURES or len(S) < 2 ** (n - 1):
        return False
    return len(np.unique(_pair_index(S))) == 2 ** (n - 1)


def _pair_index(S: np.ndarray) -> np.ndarray:
    """Each pair's mask without feature 0 (``S`` or its complement) as an integer, bit ``i``
    set where feature ``i`` is kept."""
    canonical = np.where(S[:, :1], ~S, S)
    return canonical.astype(np.int64) @ (1 << np.arange(S.shape[1], dtype=np.int64))


def _repeats_agree(S: np.ndarray, g: np.ndarray) -> bool:
    """Whether some pair of first masks ``S`` (pairs, n) was queried more than once and every
    such pair's odd part ``g`` (pairs,) (taken from its mask without feature 0) is the same
    each time: the outputs of a deterministic function, whose exact values have no noise."""
    index = _pair_index(S)
    oriented = np.where(S[:, 0], -g, g)
    order = np.argsort(index, kind="stable")
    same_pair = index[order][1:] == index[order][:-1]
    return bool(same_pair.any()) and bool(np.all(oriented[order][1:][same_pair] == oriented[order][:-1][same_pair]))


def _repeats_left_out(S: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The jackknife group (pairs,) of each pair of first masks ``S`` (pairs, n) that hold
    every complementary pair: -1 (in every refit) for one copy of each distinct pair, chosen
    at random, and the other copies (its repeats) spread at random over ``0 .. folds - 1``.
    Each refit then holds every pair and is exact: its Shapley values move only with the
    means of the repeated pairs' outputs."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(S))
    _, first = np.unique(_pair_index(S)[order], return_index=True)
    group = np.zeros(len(S), np.int64)
    group[order[first]] = -1  # one copy of each pair stays
    repeats = np.flatnonzero(group == 0)
    group[repeats] = rng.permutation(len(repeats)) % folds
    return group


def _odd_part_of_every_pair(S: np.ndarray, g: np.ndarray) -> Spectrum:
    """The odd part ``g`` (pairs,) on pairs ``S`` (pairs, n) that hold every complementary
    pair, as its exact spectrum: its values on all ``2^n`` masks (a pair's repeats averaged,
    ``g(Sᶜ) = -g(S)``), transformed, ``F(T) = 2^-n Σ_S g(S) (-1)^{|S ∩ T|}`` for odd ``|T|``."""
    n = S.shape[1]
    index = _pair_index(S)
    sign = np.where(S[:, 0], -1.0, 1.0)  # g of the canonical mask
    pairs = np.bincount(index, weights=sign * g, minlength=2**n) / np.maximum(np.bincount(index, minlength=2**n), 1)
    values = pairs - pairs[(2**n - 1) ^ np.arange(2**n)]  # each mask's g: its pair's, or minus it
    table = values.reshape((2,) * n)  # the last axis is feature 0 (bit 0)
    for axis in range(n):
        table = np.stack([table.take(0, axis) + table.take(1, axis), table.take(0, axis) - table.take(1, axis)], axis)
    coefs = table.reshape(-1) / 2**n
    every = np.arange(2**n)
    parity = np.zeros(2**n, dtype=np.int64)
    for i in range(n):
        parity ^= (every >> i) & 1
    odd = np.flatnonzero(parity)
    supports = [tuple(int(i) for i in range(n) if t >> i & 1) for t in odd]
    return Spectrum(n, supports, coefs[odd])


def _digest(X: np.ndarray, y: np.ndarray) -> str:
    """A fingerprint of masks and outputs (:meth:`PairedShapley.uncertainty` checks it)."""
    return hashlib.blake2b(np.packbits(X).tobytes() + np.ascontiguousarray(y, np.float64).tobytes()).hexdigest()


def _energy_ratio(sparse: Spectrum, trees: Spectrum) -> float:
    """The energy (sum of squared coefficients) of ``sparse`` over that of ``trees`` (``inf``
    when ``trees`` has none): large where a refit has inflated fragments the trees barely see.
    Both are summed over the largest coefficient's power of two, so that neither overflows
    nor underflows at any magnitude of the outputs."""
    unit = output_scale(np.r_[trees.coefs, sparse.coefs])
    energy = np.sum((trees.coefs / unit) ** 2)
    return float(np.sum((sparse.coefs / unit) ** 2) / energy) if energy > 0 else np.inf


def _smaller_gram_eigh(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The eigenvalues ``w`` and eigenvectors ``Q`` of the smaller Gram matrix of ``A`` (p, k):
    ``AᵀA`` (k, k) when ``k <= p``, else ``AAᵀ`` (p, p) (``dual`` True). LAPACK's
    divide-and-conquer driver (fast) may fail to converge; the QR-iteration driver then takes
    over."""
    dual = A.shape[1] > A.shape[0]
    gram = A @ A.T if dual else A.T @ A
    try:
        w, Q = scipy.linalg.eigh(gram, driver="evd", check_finite=False)
    except np.linalg.LinAlgError:
        w, Q = scipy.linalg.eigh(gram, driver="ev", check_finite=False)
    return np.maximum(w, 0.0), Q, dual


def _ridge_towards(A, b, prior, constraint, ridges) -> list[np.ndarray]:
    """``argmin ||A β - b||² + λ ||β - prior||²`` for each ``λ > 0`` in ``ridges`` (``inf``:
    the prior), subject to ``cᵀβ = d`` when ``constraint = (c, d)`` is given.

    With ``H = AᵀA + λI``, the free solution is ``β₀ = prior + H⁻¹Aᵀr`` (``r = b - A prior``)
    and the constrained one ``β₀ + H⁻¹c (d - cᵀβ₀) / cᵀH⁻¹c`` (as ``λ → ∞``,
    ``H⁻¹c / cᵀH⁻¹c → c / cᵀc``). One eigendecomposition of the smaller Gram matrix serves
    every ``λ`` (:func:`_smaller_gram_eigh`), at a cost of ``p k m + m³`` for ``A`` of shape
    ``(p, k)`` and ``m = min(p, k)``, a fraction of a thin SVD's: with ``AᵀA = Q diag(w) Qᵀ``,
    ``H⁻¹ = Q diag(1 / (w + λ)) Qᵀ``; with ``AAᵀ = Q diag(w) Qᵀ`` (more terms than rows),
    ``H⁻¹Aᵀ = Aᵀ Q diag(1 / (w + λ)) Qᵀ`` and ``H⁻¹ = (I - Aᵀ Q diag(1 / (w + λ)) Qᵀ A) / λ``
    (Woodbury). Nothing is divided by a singular value, so a rank-deficient ``A`` needs no
    threshold.
    """
    c, d = (None, None) if constraint is None else constraint
    if np.isfinite(ridges).any():
        w, Q, dual = _smaller_gram_eigh(A)
        r = b - A @ prior
        Qr = Q.T @ (r if dual else A.T @ r)
        if c is not None:
            Qc = Q.T @ (A @ c if dual else c)
    out = []
    for ridge in ridges:
        direction = c  # an infinite ridge: the prior moved along c
        if np.isfinite(ridge):
            inverse = 1.0 / (w + ridge)
            if dual:
                beta = prior + A.T @ (Q @ (inverse * Qr))
                if c is not None:
                    direction = (c - A.T @ (Q @ (inverse * Qc))) / ridge
            else:
                beta = prior + Q @ (inverse * Qr)
                if c is not None:
                    direction = Q @ (inverse * Qc)
        else:
            beta = prior.copy()
        if c is not None:
            beta = beta + direction * (d - c @ beta) / (c @ direction)
        out.append(beta)
    return out
