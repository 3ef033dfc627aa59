"""What each coefficient and index is worth: bootstrap intervals over the fitting masks.

ProxySPEX's last step is a least-squares fit of the outputs on the Fourier terms it selected.
:func:`bootstrap` repeats that fit on masks drawn with replacement from the fitting data, so
the spread of each coefficient across resamples says how well the data pin it down. Every
index of :mod:`compattr.spectrum.indices` is a function of the coefficients, so applying it
to each resampled spectrum gives its interval too (:meth:`SpectrumBootstrap.index`). An
interaction whose interval excludes zero is one the data support; one whose interval
straddles zero may be noise.

The intervals are conditional on the selected terms: the uncertainty of which terms were
selected is not in them, so read them as lower bounds on the real uncertainty.

:func:`jackknife` refits the whole estimator instead, without each of a few groups of masks,
so each fit selects its terms afresh and the intervals hold that choice's variability too
(several fits' cost, still no model call). Neither holds an estimate's bias, so where a
fit explains little of the function both hold fewer of the exact values than their level
says, the bootstrap far fewer (docs/results.md). :meth:`compattr.PairedShapley.uncertainty`,
the jackknife of the paired mode, held 96 % of the non-zero exact Shapley values on the
functions measured. ``benchmarks/uncertainty.py`` measures all three against exact values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
from scipy.linalg import cho_factor, cho_solve
from sklearn.base import clone
from tqdm.auto import tqdm

from .._validation import as_masks, as_outputs, check_int, output_scale
from . import indices
from .spectrum import Spectrum, term_names
from .supports import csr_to_padded, find_rows

#: :func:`refit_gap` above which a spectrum is not the refit of its terms (a refit is below
#: 1e-9; an average of ProxySPEX's repeats was 0.07–0.99 on the saved real explanations).
REFIT_GAP = 1e-6


class RefitMismatchWarning(UserWarning):
    """:func:`bootstrap` was given a spectrum that is not the refit of its terms on the masks:
    its intervals vary that refit, not the spectrum."""


class _Refitted:
    """What :class:`SpectrumBootstrap` and :class:`SpectrumJackknife` share: the strongest
    terms and any index, each with its standard error and interval, from the refitted
    spectra (``_refits``) and the way their spread makes an interval (``_spread``)."""

    spectrum: Spectrum

    def stderr(self) -> np.ndarray:
        """(k,) standard error of each coefficient of ``spectrum``."""
        return self._spread(self.spectrum.coefs, self._refit_coefs(), 0.95)[0]

    def interval(self, confidence: float = 0.95) -> np.ndarray:
        """(k, 2) interval of each coefficient of ``spectrum``."""
        return np.stack(self._spread(self.spectrum.coefs, self._refit_coefs(), confidence)[1:], 1)

    def to_frame(
        self, k: int | None = 20, names: Sequence[str] | None = None, confidence: float = 0.95
    ) -> pd.DataFrame:
        """The ``k`` strongest terms (all when None) as :meth:`Spectrum.to_frame` gives them,
        with ``stderr``, ``ci_low``, ``ci_high`` and ``nonzero`` (the interval excludes 0)."""
        frame = self.spectrum.to_frame(k, names)
        rows = len(frame)
        stderr, low, high = (a[:rows] for a in self._spread(self.spectrum.coefs, self._refit_coefs(), confidence))
        return frame.assign(stderr=stderr, ci_low=low, ci_high=high, nonzero=(low > 0) | (high < 0))

    def index(
        self,
        index: str | Callable[..., Any],
        *args,
        confidence: float = 0.95,
        names: Sequence[str] | None = None,
        **kwargs,
    ) -> pd.DataFrame:
        """An index of :mod:`compattr.indices` with its interval.

        Parameters
        ----------
        index : str or callable
            A name (``"shapley"``, ``"banzhaf_interaction"``, ``"k_sii"``, ...) or a function
            ``(spectrum, *args, **kwargs)`` returning an ``(n,)`` array or a
            ``{tuple: value}`` dict.
        *args, **kwargs
            Passed on (e.g. the ``order`` of ``k_sii``).
        confidence : float
            Coverage of the intervals.
        names : sequence of str, optional
            Feature names, for the ``names`` column.

        Returns
        -------
        pandas.DataFrame
            One row per feature (per-feature indices) or per set of the point estimate
            (interaction indices), sorted by the point estimate's magnitude: ``features``,
            ``names``, ``value``, ``stderr``, ``ci_low``, ``ci_high``, ``nonzero``.
        """
        fn = getattr(indices, index) if isinstance(index, str) else index
        point = fn(self.spectrum, *args, **kwargs)
        refits = [fn(s, *args, **kwargs) for s in self._refits()]
        if isinstance(point, dict):
            keys = list(point)
            values = np.array([point[t] for t in keys])
            samples = np.array([[d.get(t, 0.0) for t in keys] for d in refits])
        else:
            keys = [(i,) for i in range(len(point))]
            values, samples = np.asarray(point, float), np.stack([np.asarray(d, float) for d in refits])
        stderr, low, high = self._spread(values, samples, confidence)
        frame = pd.DataFrame(
            {
                "features": keys,
                "names": term_names(keys, names, self.spectrum.n),
                "value": values,
                "stderr": stderr,
                "ci_low": low,
                "ci_high": high,
                "nonzero": (low > 0) | (high < 0),
            }
        )
        return frame.iloc[np.argsort(-np.abs(values), kind="stable")].reset_index(drop=True)

    def _refits(self) -> list[Spectrum]:
        raise NotImplementedError

    def _refit_coefs(self) -> np.ndarray:
        raise NotImplementedError

    def _spread(self, values, samples, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Standard errors and interval bounds (p,) of ``values`` from ``samples`` (R, p)."""
        raise NotImplementedError


@dataclass
class SpectrumBootstrap(_Refitted):
    """Bootstrap resamples of a spectrum's coefficients (see :func:`bootstrap`): standard
    errors are the resamples' standard deviations, intervals their percentiles.

    Attributes
    ----------
    spectrum : Spectrum
        The point estimate.
    coefs : (R, k) array
        Column ``j``: term ``j`` of ``spectrum`` (in its order) refitted on each of ``R``
        resamples of the masks.
    """

    spectrum: Spectrum
    coefs: np.ndarray

    def resampled(self) -> list[Spectrum]:
        """The ``R`` refitted spectra."""
        return [self.spectrum.with_coefs(c) for c in self.coefs]

    def _refits(self) -> list[Spectrum]:
        return self.resampled()

    def _refit_coefs(self) -> np.ndarray:
        return self.coefs

    def _spread(self, values, samples, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = output_scale(samples)  # squares of values near 1e±300 would overflow or vanish
        return (scale * (samples / scale).std(0, ddof=1), *_percentiles(samples, confidence))


@dataclass
class SpectrumJackknife(_Refitted):
    """A spectrum and its refits without each of ``K`` groups of masks (see :func:`jackknife`):
    standard errors are the grouped jackknife's (the refits' spread around the point
    estimate), intervals Student-t's with ``K - 1`` degrees of freedom around it.

    Attributes
    ----------
    spectrum : Spectrum
        The point estimate (fitted on every mask).
    spectra : list of Spectrum
        The ``K`` refits, each without one group; their terms may differ from
        ``spectrum``'s (a term a refit lacks has coefficient 0 there).
    """

    spectrum: Spectrum
    spectra: list[Spectrum]

    def _refits(self) -> list[Spectrum]:
        return self.spectra

    def _refit_coefs(self) -> np.ndarray:
        """(K, k): each refit's coefficient on each term of ``spectrum`` (0 where it lacks it)."""
        n = self.spectrum.n
        rows = csr_to_padded(self.spectrum.supports, n)
        out = np.zeros((len(self.spectra), len(rows)))
        for r, refit in enumerate(self.spectra):
            at = find_rows(csr_to_padded(refit.supports, n), rows, n)
            out[r, at >= 0] = refit.coefs[at[at >= 0]]
        return out

    def _spread(self, values, samples, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
        K = len(samples)
        deviations = samples - values
        scale = output_scale(deviations)  # their squares near 1e±300 would overflow or vanish
        stderr = scale * np.sqrt((K - 1) / K * np.sum((deviations / scale) ** 2, axis=0))
        half = scipy.stats.t.ppf(0.5 + confidence / 2, K - 1) * stderr
        return stderr, values - half, values + half


def jackknife(
    estimator,
    X,
    y,
    folds: int = 5,
    seed: int = 0,
    groups=None,
    spectrum: Spectrum | None = None,
    progress: bool = False,
    assignment=None,
) -> SpectrumJackknife:
    """Refit a fitted estimator without each of ``folds`` random groups of masks: a grouped
    (delete-a-group) jackknife of its spectrum and of every index read from it.

    Each refit is a clone of ``estimator`` with its parameters, fitted on the masks outside
    one group, so it chooses its terms afresh: the intervals hold the variability of that
    choice, which :func:`bootstrap` (a refit of the chosen terms) leaves out. For ``K``
    groups, the standard error of a quantity ``θ`` is ``sqrt((K - 1) / K · Σ_k (θ_k - θ̂)²)``,
    its spread around the point estimate ``θ̂`` (not around the refits' mean: where every
    refit leaves out a term the fit on all masks holds, that difference is uncertainty too),
    and its interval the Student-t one with ``K - 1`` degrees of freedom around ``θ̂``.

    A value that neither the point estimate nor any refit gives a term (a feature no fit
    used) reads exactly 0 with a zero-width interval. The refits agree on it because none
    found it, which is not knowing it is 0. Where the fit explains little, read such zeros
    as unknown: on twenty Synthetic Peaks (n = 16, 128 masks, fits that explain next to
    nothing) 8 of the 131 features whose Shapley value is above 0.1 read so.

    Parameters
    ----------
    estimator : estimator
        With ``fit(X, y)`` and ``spectrum_`` (``ProxySPEX``, ``PairedShapley``), fitted on
        ``X`` and ``y``; its ``spectrum_`` is the point estimate. It need not be fitted when
        ``spectrum`` is given.
    X : (m, n) bool array
        The masks it was fitted on.
    y : (m,) array
        Their outputs.
    folds : int
        Groups (at least 2): the cost is ``folds`` fits on ``(folds - 1) / folds`` of the masks.
    seed : int
        Seeds the split into groups.
    groups : (m,) array, optional
        Masks that must stay together (equal labels: complementary pairs, a mask and its
        repeats); the labels, not the masks, are split into groups. Default: each mask alone.
    spectrum : Spectrum, optional
        The point estimate: what ``estimator`` (with its parameters and seed) fits on ``X``
        and ``y``, when that fit is at hand already (a saved explanation's spectrum).
        Default: ``estimator.spectrum_``.
    progress : bool
        Show a progress bar over the ``folds`` fits.
    assignment : (m,) int array, optional
        Each mask's group given, ``0 .. folds - 1``, or -1 for a mask in every refit; it
        replaces the random split (``groups`` and ``seed`` are not read). A group with no mask
        leaves nothing out: its refit is the point estimate, not fitted again.

    Returns
    -------
    SpectrumJackknife
    """
    spectrum = estimator.spectrum_ if spectrum is None else spectrum
    X = as_masks(X, spectrum.n)
    y = as_outputs(y, len(X))
    if assignment is None:
        labels = np.arange(len(X)) if groups is None else np.asarray(groups)
        if labels.shape != (len(X),):
            raise ValueError(f"groups must hold one label per mask ({len(X)}), got shape {labels.shape}.")
        unique, inverse = np.unique(labels, return_inverse=True)
        folds = check_int(folds, "folds", 2, len(unique))
        group = (np.random.default_rng(seed).permutation(len(unique)) % folds)[inverse]
    else:
        folds = check_int(folds, "folds", 2)
        group = np.asarray(assignment)
        if group.shape != (len(X),) or not np.issubdtype(group.dtype, np.integer):
            raise ValueError(f"assignment must hold one int per mask ({len(X)}), got {group.dtype} {group.shape}.")
        if group.size and not (group.min() >= -1 and group.max() < folds):
            raise ValueError(f"assignment must lie in -1 .. {folds - 1}, got {group.min()} .. {group.max()}.")
    fits = tqdm(range(folds), desc="jackknife fits", unit="fit", disable=not progress)
    spectra = [
        clone(estimator).fit(X[group != k], y[group != k]).spectrum_ if np.any(group == k) else spectrum for k in fits
    ]
    return SpectrumJackknife(spectrum, spectra)


def bootstrap(spectrum: Spectrum, X, y, resamples: int = 200, seed: int = 0, ridge: float = 0.0) -> SpectrumBootstrap:
    """Refit ``spectrum``'s terms by (ridge) least squares on ``resamples`` bootstrap resamples
    of the masks it was fitted on.

    Parameters
    ----------
    spectrum : Spectrum
        The fitted spectrum (e.g. ``ProxySPEX().fit(X, y).spectrum_``); its terms are kept,
        their coefficients refitted.
    X : (m, n) bool array
        The fitting masks.
    y : (m,) array
        Their outputs.
    resamples : int
        Bootstrap resamples (each draws ``m`` masks with replacement).
    seed : int
        Seeds the draws.
    ridge : float
        Ridge strength of the refit, as ProxySPEX's ``spectrum_ridge_``: each non-constant coefficient
        is penalised by ``ridge · m`` (0, the default, is plain least squares, which needs more
        masks than terms; a spectrum averaged over several fits can hold more terms than masks,
        and a ridge above 0 refits it).

    Returns
    -------
    SpectrumBootstrap

    Warns
    -----
    RefitMismatchWarning
        When ``spectrum`` is not the refit of its terms on every mask at ``ridge``
        (:func:`refit_gap` above :data:`REFIT_GAP`): the resamples then vary that refit, not
        the spectrum (ProxySPEX's average of several ``repeats``, or a spectrum refitted at
        another ridge). :func:`jackknife` refits the estimator itself.

    Notes
    -----
    Each resample solves the normal equations ``Pᵀ W P c = Pᵀ W y`` of the ±1 parity features
    ``P`` (m, k) with ``W`` the resample's counts of each mask, by Cholesky: ``O(m k²)``
    arithmetic per resample, shared memory for ``P``. With a ridge and more than half as many
    terms as masks it solves the same ridge problem in the dual instead, a system over the
    masks drawn: ``O(m² k)`` (a sixth less CPU at ``k = 0.5 m``, 60 % less at ``0.75 m``).
    """
    X = as_masks(X, spectrum.n)
    y = as_outputs(y, len(X))
    resamples = check_int(resamples, "resamples", 2)
    _check_refittable(spectrum, len(X), ridge)
    P = spectrum.parity_matrix(X)
    m = len(P)
    gap = _refit_gap_on(spectrum, P, y, ridge)
    if gap > REFIT_GAP:
        warnings.warn(
            f"the spectrum's coefficients are not the refit of its terms on these masks at ridge={ridge:g} "
            f"(relative distance {gap:.2g}; an average of several fits, or a refit at another ridge): the "
            "intervals vary that refit, not this spectrum. compattr.spectrum.jackknife refits the "
            "estimator that made it.",
            RefitMismatchWarning,
            stacklevel=2,
        )
    counts = np.random.default_rng(seed).multinomial(m, np.full(m, 1 / m), size=resamples)
    coefs = np.stack([_weighted_refit(P, y, w, spectrum.degrees > 0, ridge) for w in counts])
    return SpectrumBootstrap(spectrum, coefs)


def refit_gap(spectrum: Spectrum, X, y, ridge: float = 0.0) -> float:
    """How far ``spectrum``'s coefficients are from the (ridge) least-squares refit of its
    terms on masks ``X`` (m, n) and outputs ``y`` (m,): ``||c_refit − c|| / ||c||`` over the
    non-constant terms (the constant's too when it is the only one), ``ridge`` as in
    :func:`bootstrap`. Below 1e-9 for a spectrum that is that refit (ProxySPEX's on one fit);
    far from 0 for an average of several fits or a refit at another ridge, whose
    :func:`bootstrap` intervals vary a different estimate than the spectrum's.

    Raises
    ------
    ValueError
        ``ridge`` is 0 and the spectrum has as many terms as masks or more (no refit).
    """
    X = as_masks(X, spectrum.n)
    y = as_outputs(y, len(X))
    _check_refittable(spectrum, len(X), ridge)
    return _refit_gap_on(spectrum, spectrum.parity_matrix(X), y, ridge)


def _refit_gap_on(spectrum: Spectrum, P: np.ndarray, y: np.ndarray, ridge: float) -> float:
    """``refit_gap`` of ``spectrum`` from its parities ``P`` (m, k) on the masks and outputs ``y``."""
    refit = _weighted_refit(P, y, np.ones(len(P)), spectrum.degrees > 0, ridge)
    terms = spectrum.degrees > 0 if np.any(spectrum.degrees > 0) else np.ones(len(spectrum), bool)
    scale = float(np.linalg.norm(spectrum.coefs[terms]))
    distance = float(np.linalg.norm(refit[terms] - spectrum.coefs[terms]))
    return distance / scale if scale > 0 else distance


def _check_refittable(spectrum: Spectrum, m: int, ridge: float) -> None:
    """Refuse a ridge that is not finite and >= 0, and a plain least-squares refit of as many
    terms as masks or more."""
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be finite and >= 0, got {ridge}.")
    if ridge == 0 and m <= len(spectrum):
        raise ValueError(
            f"{m} masks cannot refit {len(spectrum)} terms by plain least squares: the bootstrap "
            "needs more masks than terms, or a ridge strength above 0. The jackknife refits the whole "
            "estimator instead (compattr.spectrum.jackknife; Explanation.uncertainty(method='jackknife'))."
        )


def _weighted_refit(P: np.ndarray, y: np.ndarray, w: np.ndarray, penalised: np.ndarray, ridge: float) -> np.ndarray:
    """The coefficients (k,) minimising ``Σ_i w_i (y_i − P_i c)² + ridge · m Σ_{j penalised} c_j²``
    for parities ``P`` (m, k) and weights ``w`` (m,) (a resample's counts of each mask): by
    the normal equations, or with a ridge and more than half as many terms as masks in the
    dual (:func:`_ridge_in_dual`), whose system over the masks drawn is then the cheaper."""
    m, k = P.shape
    if ridge > 0 and 2 * k > m:
        return _ridge_in_dual(P, y, w, penalised, ridge * m)
    # 1e-9·m only guards exact collinearity (the Gram's diagonal is m·(count mean)); it
    # shrinks the constant by 1e-9 of the outputs' offset, so the outputs are centred on
    # their weighted mean first, which the constant (the unpenalised column, as in
    # _ridge_in_dual) takes back
    constant = np.flatnonzero(~penalised)[:1]
    offset = float(np.average(y, weights=w)) if constant.size else 0.0
    Pw = P * w[:, None]
    gram = P.T @ Pw
    gram.flat[:: k + 1] += 1e-9 * m + np.where(penalised, ridge * m, 0.0)
    coefs = cho_solve(cho_factor(gram, lower=True, check_finite=False), Pw.T @ (y - offset), check_finite=False)
    coefs[constant] += offset
    return coefs


def _ridge_in_dual(P: np.ndarray, y: np.ndarray, w: np.ndarray, penalised: np.ndarray, strength: float) -> np.ndarray:
    """The minimiser ``c`` (k,) of ``Σ_i w_i (y_i - P_i c)² + strength Σ_{j penalised} c_j²``:
    the ridge refit of one resample (``w``: each mask's count), solved in the dual.

    The unpenalised column, the constant's (all ones; at most one), is taken out by centring
    on the weighted means; the penalised ones ``B`` (rows scaled by ``sqrt(w)``) then give
    ``c = Bᵀ (B Bᵀ + strength I)⁻¹ sqrt(w) y``, an ``r × r`` system for the ``r`` masks drawn
    (``O(r² k)``) where the normal equations are ``k × k`` (``O(r k² + k³)``).
    """
    drawn = w > 0
    A, t, w = P[drawn][:, penalised], y[drawn], w[drawn].astype(np.float64)
    free = ~penalised
    if free.any():  # the constant: fitted by the weighted means
        mean_A, mean_t = (w @ A) / w.sum(), (w @ t) / w.sum()
        A, t = A - mean_A, t - mean_t
    root = np.sqrt(w)
    B = A * root[:, None]
    gram = B @ B.T
    gram.flat[:: len(gram) + 1] += strength
    coefs = np.empty(P.shape[1])
    coefs[penalised] = B.T @ cho_solve(cho_factor(gram, lower=True, check_finite=False), root * t, check_finite=False)
    if free.any():
        coefs[free] = mean_t - mean_A @ coefs[penalised]
    return coefs


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile of each column of ``samples`` (R, p)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return low, high
