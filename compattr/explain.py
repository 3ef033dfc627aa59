"""``compattr.explain``: from "I have a model" to a faithful, readable interaction spectrum.

The pipeline, top-down: features → masks → queries (cached, resumable) → ProxySPEX →
:class:`Explanation` (spectrum, indices, faithfulness against LASSO, energy split,
hierarchy metrics, tables, plots, plans)::

    heads = compattr.AttentionHeads(model)
    ex = compattr.explain(features=heads, value=compattr.values.ClassLogit(), inputs=batch)
    print(ex.summary())
    ex.interactions(10)                     # strongest interactions with feature names
    plan = ex.plan(keep=0.3)                # keep 30 % of the heads, exact ILP
    with plan.apply(heads):                 # the pruned model: measure the real effect
        logits = model(batch).logits
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import optimize
from ._validation import (
    as_masks,
    as_outputs,
    as_value_range,
    check_format,
    check_int,
    check_seed_and_estimator,
    finite_or_none,
    jsonable,
    names_and_groups,
    plan_size,
    range_note,
)
from .apps import circuit, export, plots
from .apps.report import interval_text, signed_format
from .features.base import Inputs, Masker, SetFunction
from .proxy import EXPLAINS_ABOVE, LassoBaseline, ProxySPEX
from .query import bind, run_queries
from .query.masks import resolve_budget, sample_masks
from .query.values import Value, describe
from .spectrum import (
    REFIT_GAP,
    EnergySplit,
    Spectrum,
    SpectrumBootstrap,
    SpectrumJackknife,
    bootstrap,
    indices,
    jackknife,
    metrics,
    refit_gap,
)

#: Below this held-out R² of the spectrum, :meth:`Explanation.summary` points to
#: :func:`compattr.explain_shapley` (:class:`compattr.PairedShapley`) for Shapley values: on
#: the synthetic functions of docs/results.md whose spectrum held out less, its values were
#: 2–30× more accurate on as many queries. (The first fit's CV R² says less: on a complete
#: hierarchy at α = 2 it is near 0.2 where the later stages recover the function exactly.)
PAIRED_SHAPLEY_BELOW = 0.5

_FORMAT = "compattr.explanation"
_VERSION = 2  # 2: explanation.json lists the files of the save and their SHA-256 digests
# Its optional "kinds" needs no new version: saves without it load with kinds=None, and a
# compattr that does not know it ignores it (its plans count every kind of a group alike).
_META = "explanation.json"
_FILES = ("spectrum.json", "lasso.json", "queries.npz")  # what a save may hold besides _META
_RANKING_NOTES = {"refit": ", re-ranked by the refit", "closure": ", re-ranked by the refit, with every subset"}
_INDICES = (
    "shapley",
    "banzhaf",
    "influence",
    "moebius",
    "or_index",
    "banzhaf_interaction",
    "shapley_interaction",
    "shapley_taylor",
    "faith_banzhaf",
    "faith_shapley",
    "k_sii",
)


@dataclass
class Explanation:
    """Everything one ``explain`` run found, and the data it was fitted on.

    Attributes
    ----------
    spectrum : Spectrum
        ProxySPEX's sparse Fourier spectrum of the value function.
    names : list of str
        A name per feature (``'L14.H3'``, a word, ``'P(2,3)'``).
    groups : (n,) array
        A group per feature (the layer of a head); drives the energy split.
    masks, outputs : (m, n) bool array, (m,) float array
        The queries the spectrum was fitted on.
    test_masks, test_outputs : (t, n) bool array, (t,) float array
        Fresh held-out queries, never used for fitting.
    lasso : Spectrum or None
        The marginal LASSO baseline fitted on the same masks.
    fit_info : dict
        ProxySPEX's choices and costs: ``best_params``, ``k``, ``refit``, ``ridge`` (the
        refit's ridge strength, None without refit), ``spectrum_ridge`` (the strength at
        which the final spectrum is the refit of its terms, where a later stage refitted
        them at another; None where it is no one refit), ``tilt`` (the top-k ranking's tilt
        towards higher orders), ``ranking`` ("trees"; "refit" when the top terms were
        re-ranked by their refitted coefficients; "closure" when those re-ranked terms were
        kept with all their subsets), ``repeats`` (fits averaged; the other
        choices are the first fit's), ``grown`` (whether the kept terms were grown one order
        and chosen again), ``regrown`` (whether the repeats' average was), ``regrow_rounds``
        (by how many orders it was, in as many rounds), ``guide_rounds`` (the rounds of
        guided trees whose terms were chosen again after the regrow), ``extend_rounds`` (the
        rounds in which the terms were extended one feature at a time where their residual
        pointed), ``cv_r2`` (the cross-validated R² on the fitting masks of the first fit's
        top-k, as stage 3 chose it, before the later stages: what decides them),
        ``spectrum_cv_r2`` (that of the terms the spectrum holds, as the last stage that chose
        them scored them; None where none did, e.g. an average of repeats),
        ``timings``, ``estimator`` (its class name) and ``params`` (a ``ProxySPEX``'s
        parameters, which :meth:`uncertainty` refits it with; None for another class).
    value_range : (low, high) or None
        The range the value function's outputs can take (either end may be infinite), when
        known: :meth:`plan` warns (:class:`compattr.optimize.ValueRangeWarning`) when a plan's
        predicted value falls outside it.
    kinds : (n,) array of str or None
        The kind of each feature when the feature set says it (``Components.kinds``:
        ``"AttentionHeads"``, ``"MLPBlocks"``): :meth:`plan` then applies per-group minimums
        per kind. None for a feature set of one kind.
    """

    spectrum: Spectrum
    names: list[str]
    groups: np.ndarray
    masks: np.ndarray
    outputs: np.ndarray
    test_masks: np.ndarray
    test_outputs: np.ndarray
    lasso: Spectrum | None = None
    fit_info: dict = field(default_factory=dict)
    value_range: tuple[float, float] | None = None
    kinds: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.value_range = as_value_range(self.value_range)
        if self.kinds is not None:
            self.kinds = np.asarray(self.kinds)
            if self.kinds.shape != (self.n,):
                raise ValueError(f"kinds must have shape ({self.n},), a kind per feature; got {self.kinds.shape}.")

    @classmethod
    def from_fit(
        cls,
        estimator,
        masks,
        outputs,
        test_masks,
        test_outputs,
        names: Sequence[str] | None = None,
        groups=None,
        **fields,
    ) -> Explanation:
        """The explanation of a spectrum estimator fitted on masks of the caller's own: what
        :func:`explain` makes of the fit it runs.

        Parameters
        ----------
        estimator : fitted ProxySPEX or another estimator with ``spectrum_`` and ``predict``
            Fitted on ``masks`` and ``outputs``, its spectrum a model of the outputs (not of a
            part of them: :class:`compattr.PairedShapley`'s odd part is refused, its values
            go to :class:`compattr.ShapleyExplanation`); its choices and costs become
            ``fit_info`` (``params`` only for a ``ProxySPEX``, which :meth:`uncertainty`
            refits).
        masks, outputs : (m, n) bool array, (m,) float array
            The queries it was fitted on.
        test_masks, test_outputs : (t, n) bool array, (t,) float array
            Held-out queries (at least two), never used for fitting (a warning says how many
            are among ``masks``).
        names : sequence of str, optional
            A name per feature; default ``"0"``, ``"1"``, ...
        groups : (n,) array, optional
            A group per feature; default one group.
        **fields
            ``lasso``, ``value_range``, ``kinds``: as the attributes.

        Raises
        ------
        ValueError
            If the estimator is not fitted, or the masks, outputs, names or groups do not
            match its ``n`` features and one another.
        TypeError
            If the estimator has no ``predict`` (its spectrum models no outputs, as
            :class:`compattr.PairedShapley`'s odd part does not).
        """
        _check_models_outputs(estimator)
        spectrum = getattr(estimator, "spectrum_", None)
        if not isinstance(spectrum, Spectrum):
            raise ValueError(f"{type(estimator).__name__} is not fitted (no Spectrum in spectrum_): fit it first.")
        n = spectrum.n
        masks, test_masks = as_masks(masks, n), as_masks(test_masks, n)
        outputs, test_outputs = as_outputs(outputs, masks.shape[0]), as_outputs(test_outputs, test_masks.shape[0])
        if test_masks.shape[0] < 2:
            raise ValueError(
                f"test_masks must hold at least 2 masks (the held-out R² compares outputs), got {test_masks.shape[0]}."
            )
        names, groups = names_and_groups(names, np.zeros(n, int) if groups is None else groups, n)
        fitted = {row.tobytes() for row in np.packbits(masks, axis=1)}
        shared = sum(row.tobytes() in fitted for row in np.packbits(test_masks, axis=1))
        if shared:
            warnings.warn(
                f"{shared} of the {len(test_masks)} test masks are among the fitting masks: the "
                "R² on them is not held out (it flatters the fit). compattr.held_out_masks(masks, "
                "count, seed) draws masks that are not.",
                stacklevel=2,
            )
        info = _fit_info(estimator)
        return cls(spectrum, names, groups, masks, outputs, test_masks, test_outputs, fit_info=info, **fields)

    # ------------------------------------------------------------------ numbers
    @property
    def n(self) -> int:
        return self.spectrum.n

    @property
    def faithfulness(self) -> float:
        """Held-out R² of the spectrum on the fresh test masks (``ValueError`` when the
        held-out outputs are all equal: R² is then undefined)."""
        return metrics.faithfulness(self.spectrum, self.test_masks, self.test_outputs)

    @property
    def lasso_faithfulness(self) -> float | None:
        """Held-out R² of the LASSO baseline on the same test masks."""
        if self.lasso is None:
            return None
        return metrics.faithfulness(self.lasso, self.test_masks, self.test_outputs)

    def faithfulness_interval(
        self, *, against_lasso: bool = False, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
    ) -> tuple[float, float, float]:
        """The held-out R² with its bootstrap interval over the held-out masks, or with
        ``against_lasso``, the difference ``R²(ProxySPEX) - R²(LASSO)`` with its paired
        interval: whether the two fits' faithfulness differs by more than the held-out
        masks' luck (:func:`compattr.metrics.faithfulness_interval`; no model call).

        Returns
        -------
        (estimate, low, high) : tuple of float

        Raises
        ------
        ValueError
            With ``against_lasso`` on an explanation without a LASSO baseline, when the
            held-out outputs are all equal, or when there are fewer than
            :data:`compattr.metrics.MIN_INTERVAL_MASKS` held-out masks.
        """
        if against_lasso and self.lasso is None:
            raise ValueError("this explanation has no LASSO baseline to compare with (lasso is None).")
        return metrics.faithfulness_interval(
            self.spectrum,
            self.test_masks,
            self.test_outputs,
            baseline=self.lasso if against_lasso else None,
            confidence=confidence,
            resamples=resamples,
            seed=seed,
        )

    def energy(self) -> EnergySplit:
        """Linear / within-group / cross-group split of the energy (totals and per group)."""
        return self.spectrum.energy(self.groups)

    def hierarchy(self, k: int | None = None) -> dict[str, float]:
        """DSR, SCR and SHR of the top ``k`` terms (default: up to 100)."""
        k = min(len(self.spectrum), 100) if k is None else k
        return {name: float(getattr(metrics, name)(self.spectrum, k)) for name in ("dsr", "scr", "shr")}

    def index(self, name: str, *args, **kwargs):
        """Any index of :mod:`compattr.indices` by name, e.g. ``index("shapley")``.

        Per-feature indices come back as a pandas Series indexed by feature name;
        interaction indices as a DataFrame sorted by magnitude.
        """
        if name not in _INDICES:
            raise ValueError(f"unknown index {name!r}; choose one of {', '.join(_INDICES)}.")
        values = getattr(indices, name)(self.spectrum, *args, **kwargs)
        if isinstance(values, dict):
            return self._table(values.items())
        return pd.Series(values, index=self.names, name=name)

    def uncertainty(
        self,
        resamples: int = 200,
        seed: int = 0,
        *,
        method: str = "auto",
        folds: int = 5,
        estimator: ProxySPEX | None = None,
        progress: bool = True,
    ) -> SpectrumBootstrap | SpectrumJackknife:
        """Intervals for the coefficients and every index, from refits on the fitting masks
        (no model call).

        ``ex.uncertainty().to_frame(10, names=ex.names)`` gives the strongest terms with
        their standard errors, intervals and whether the interval excludes zero;
        ``ex.uncertainty().index("shapley", names=ex.names)`` any index's.

        Parameters
        ----------
        resamples : int
            The bootstrap's resamples of the masks.
        seed : int
            Seeds the resamples, or the jackknife's split of the masks into groups.
        method : {"auto", "bootstrap", "jackknife"}
            "bootstrap": the spectrum's terms refitted on ``resamples`` resamples of the
            masks, at the ridge strength the spectrum is the refit at
            (``fit_info["spectrum_ridge"]``, ProxySPEX's ``spectrum_ridge_``;
            :func:`compattr.spectrum.bootstrap`). The intervals are conditional on the
            selected terms, cheap, and where the fit explains little (low budgets) too
            narrow: on complete hierarchies at α = 2 the 95 % intervals of the Shapley values
            held 34–53 % of the non-zero exact ones, though the strongest terms it called
            non-zero were nearly all real. "jackknife": the whole estimator fitted again
            without each of ``folds`` groups of masks, so that each refit chooses its terms
            afresh (:func:`compattr.spectrum.jackknife`): ``folds`` fits' CPU, and wider
            intervals (there 95–100 %, no zero value called non-zero), which call few values
            non-zero where the fit is poor, and still miss its bias where it explains
            nothing (α = 1: 42–46 %). "auto" (default): the bootstrap where it varies this
            explanation's own estimate, the jackknife elsewhere: where the spectrum is not
            the refit of its terms at the fit's ridge (:func:`compattr.spectrum.refit_gap`;
            an average of ProxySPEX's ``repeats``, below 2,000 masks wherever one fit
            explains little: on the real explanations measured it was 7–99 % away from that
            refit), has as many terms as masks or more with no ridge (a fit that kept its
            trees' whole spectrum), or explains nothing (CV R² ``fit_info["cv_r2"]`` below
            :data:`~compattr.proxy.EXPLAINS_ABOVE`; on the Synthetic Peak the bootstrap
            called 4–6 of its 8 spurious terms non-zero). Where the jackknife cannot refit
            either (no recorded estimator; too few masks to leave a group out), "auto" is
            the bootstrap, which then warns (:class:`compattr.spectrum.RefitMismatchWarning`)
            where it varies another estimate. For Shapley values at low budgets,
            :class:`compattr.PairedShapley` and its ``uncertainty``. Measured by
            ``benchmarks/uncertainty.py`` (docs/results.md).
        folds : int
            The jackknife's groups of masks, left out one at a time (at least 2).
        estimator : ProxySPEX, optional
            The jackknife's estimator (its parameters and seed; it
            need not be fitted). Default: a ``ProxySPEX`` with the parameters
            :func:`explain` fitted with (``fit_info["params"]``, kept by a save); required
            for explanations that do not record them (saved before compattr kept them, or
            fitted by another estimator).
        progress : bool
            Show a progress bar over the jackknife's fits.

        Returns
        -------
        SpectrumBootstrap or SpectrumJackknife
            Either gives ``stderr()``, ``interval()``, ``to_frame()`` and ``index()``.
        """
        if method not in ("auto", "bootstrap", "jackknife"):
            raise ValueError(f"method must be 'auto', 'bootstrap' or 'jackknife', got {method!r}.")
        folds = check_int(folds, "folds", 2)  # before "auto" reads it
        # the strength the spectrum is the refit at; where it is none (an average of repeats)
        # or was not recorded (saved before), the first fit's
        recorded = (self.fit_info.get("spectrum_ridge"), self.fit_info.get("ridge"))
        ridge = next((r for r in recorded if r is not None), 0.0)
        if estimator is None and self.fit_info.get("estimator") == ProxySPEX.__name__ and self.fit_info.get("params"):
            estimator = ProxySPEX(**self.fit_info["params"])
        # "auto" where the jackknife cannot refit: the bootstrap all the same (it warns where
        # it varies another estimate), or its error
        if method == "bootstrap" or (
            method == "auto"
            and (self._bootstrap_describes_the_fit(ridge) or not self._jackknife_can_refit(estimator, folds))
        ):
            return bootstrap(self.spectrum, self.masks, self.outputs, resamples, seed, ridge=ridge)
        if estimator is None:
            raise ValueError(
                "this explanation does not record the ProxySPEX parameters it was fitted with "
                "(fit_info['params']); pass the estimator to refit as estimator=."
            )
        return jackknife(estimator, self.masks, self.outputs, folds, seed, spectrum=self.spectrum, progress=progress)

    def _jackknife_can_refit(self, estimator: ProxySPEX | None, folds: int) -> bool:
        """Whether there is an estimator to refit and it can fit the masks left when the
        largest of ``folds`` groups is left out (its ``min_masks``)."""
        m = len(self.masks)
        return estimator is not None and m - -(-m // folds) >= getattr(estimator, "min_masks", 1)

    def _bootstrap_describes_the_fit(self, ridge: float) -> bool:
        """Whether :func:`bootstrap` at ``ridge`` varies this explanation's own estimate: the
        fit explains something (CV R² at least ``EXPLAINS_ABOVE``, else its terms are noise),
        and its spectrum is the refit of its terms on the masks (:func:`refit_gap`; not an
        average of repeats, which may hold more terms than masks)."""
        cv_r2 = self.fit_info.get("cv_r2")
        if cv_r2 is not None and cv_r2 < EXPLAINS_ABOVE:
            return False
        if ridge == 0 and len(self.masks) <= len(self.spectrum):
            return False
        return refit_gap(self.spectrum, self.masks, self.outputs, ridge) <= REFIT_GAP

    def to_shapiq(self, index: str = "k-SII", max_order: int = 2):
        """``index`` up to ``max_order`` as a ``shapiq.InteractionValues``, for shapiq's plots
        (needs shapiq; :meth:`save_shapiq` writes its JSON file without it).
        ``estimation_budget`` is the number of masks fitted on."""
        return export.to_shapiq(self.spectrum, index, max_order, budget=len(self.masks))

    def save_shapiq(self, path, index: str = "k-SII", max_order: int = 2) -> Path:
        """Write ``index`` up to ``max_order`` as the JSON file that
        ``shapiq.InteractionValues.from_json_file`` loads (shapiq's index names:
        ``"k-SII"``, ``"SII"``, ``"STII"``, ``"FSII"``, ``"FBII"``, ``"BII"``, ``"Moebius"``)."""
        description = f"compattr explanation of {self.fit_info.get('value') or 'a set function'}"
        return export.write_shapiq_json(
            self.spectrum, path, index, max_order, budget=len(self.masks), description=description
        )

    def interactions(self, k: int = 20, index: str | None = None, **options) -> pd.DataFrame:
        """The ``k`` strongest terms with feature names: Fourier (default) or an interaction
        index, with its ``options`` (``order=2`` for ``shapley_taylor``, ``faith_shapley``,
        ``faith_banzhaf``, ``k_sii``)."""
        k = check_int(k, "k", 0)
        if index is None:
            if options:
                raise TypeError(f"options {sorted(options)} are an index's; the Fourier terms take none.")
            return self.spectrum.to_frame(k, names=self.names)
        table = self.index(index, **options)
        if not isinstance(table, pd.DataFrame):
            raise ValueError(f"{index!r} is a per-feature index, not an interaction index; use index({index!r}).")
        return table.head(k)

    def _table(self, items) -> pd.DataFrame:
        rows = sorted(((tuple(t), float(v)) for t, v in items), key=lambda tv: -abs(tv[1]))
        return pd.DataFrame(
            {
                "features": [t for t, _ in rows],
                "names": [" × ".join(self.names[i] for i in t) or "∅" for t, _ in rows],
                "order": [len(t) for t, _ in rows],
                "value": [v for _, v in rows],
            }
        )

    # ------------------------------------------------------------------ plans
    def plan(self, keep: int | float, maximize: bool = True, **constraints) -> optimize.PruningPlan:
        """The kept-set of ``keep`` features that maximises (or minimises) the predicted
        value, solved exactly by integer programming.

        Parameters
        ----------
        keep : int or float
            An int ``1..n`` is a count of features; a float in ``(0, 1]`` a fraction of
            ``n`` (``1.0`` keeps all). Anything else (``1.5``, ``0``, ``-0.3``, a count
            above ``n``, a fraction that rounds to no feature) is a ``ValueError``; the
            rule shared with ``compattr prune --keep`` and the recipes.
        maximize : bool
            Maximise (default) or minimise the predicted value.
        **constraints
            Passed to :func:`compattr.optimize.best_subset` (``min_per_group``,
            ``kv_groups``, ``min_kv_removed``, ``sense``, ``time_limit``); ``groups`` and
            ``kinds`` default to this explanation's, so on heads + MLP blocks
            ``min_per_group`` counts each kind apart (``{"AttentionHeads": 1}``: a head in
            every layer); pass ``kinds=None`` to count every feature of a layer alike.

        Returns
        -------
        PruningPlan
            ``value`` is the predicted value; when it lies outside :attr:`value_range`, a
            :class:`compattr.optimize.ValueRangeWarning` says so.
        """
        size = plan_size(keep, self.n)
        constraints.setdefault("groups", self.groups)
        constraints.setdefault("kinds", self.kinds)
        kept = optimize.best_subset(self.spectrum, size, maximize, **constraints)
        plan = optimize.PruningPlan.from_spectrum(self.spectrum, kept, self.names, self.groups)
        note = range_note([plan.value], ["the plan"], self.value_range)
        if note:
            warnings.warn(note, optimize.ValueRangeWarning, stacklevel=2)
        return plan

    # ------------------------------------------------------------------ text
    def summary(self, k: int = 8) -> str:
        """A one-screen report: faithfulness vs LASSO (with the bootstrap intervals of
        :meth:`faithfulness_interval`), energy split, the proxy's choices, a
        note when the fit's CV R² is below :data:`compattr.proxy.EXPLAINS_ABOVE` (it explains
        nothing) or else a pointer to :func:`compattr.explain_shapley` when the held-out R² is
        below :data:`PAIRED_SHAPLEY_BELOW`, strongest terms."""
        e = self.energy()
        r2 = None
        if self._constant_test_outputs():
            faithfulness = "undefined: the held-out outputs are all equal"
        elif len(self.test_masks) < metrics.MIN_INTERVAL_MASKS:  # too few for an interval
            r2, lasso = (self.faithfulness, np.nan, np.nan), self.lasso_faithfulness
            faithfulness = f"ProxySPEX {r2[0]:.3f}"
            if lasso is not None:
                faithfulness += f" | LASSO {lasso:.3f}"
            faithfulness += (
                f"\n  no intervals: {len(self.test_masks)} held-out masks, fewer than {metrics.MIN_INTERVAL_MASKS}"
            )
        else:  # each fit predicts the held-out masks once
            predicted = self.spectrum.predict(self.test_masks)
            r2 = metrics.r2_interval(self.test_outputs, predicted)
            faithfulness = f"ProxySPEX {interval_text(r2)}"
            if self.lasso is not None:
                gap = metrics.r2_interval(self.test_outputs, predicted, self.lasso.predict(self.test_masks))
                faithfulness += f" | LASSO {r2[0] - gap[0]:.3f}; difference {interval_text(gap, signed=True)}"
            faithfulness += f"\n  [ ]: 95 % bootstrap intervals over the {len(self.test_masks)} held-out masks"
        lines = [
            f"compattr explanation: n={self.n} features, {len(self.masks)} queries "
            f"(+{len(self.test_masks)} held out), {len(self.spectrum)} Fourier terms",
            f"faithfulness R² (held out): {faithfulness}",
            f"energy: linear {e.linear:.1%} | within-group {e.within:.1%} | cross-group {e.cross:.1%}",
        ]
        if self.fit_info.get("best_params"):
            p = self.fit_info["best_params"]
            lines.append(
                f"proxy: depth={p['max_depth']} lr={p['learning_rate']} trees={p['n_estimators']}, "
                f"k={self.fit_info.get('k')}, refit={self.fit_info.get('refit')}"
                + (f" (ridge {self.fit_info['ridge']:g})" if self.fit_info.get("ridge") else "")
                + (f", ranked with tilt {self.fit_info['tilt']:g}" if (self.fit_info.get("tilt") or 1.0) != 1.0 else "")
                + _RANKING_NOTES.get(str(self.fit_info.get("ranking")), "")
                + (", grown one order" if self.fit_info.get("grown") else "")
                + _final_refit_note(self.fit_info)
            )
            if (self.fit_info.get("repeats") or 1) > 1:
                lines[-1] += f"; the spectrum averages {self.fit_info['repeats']} fits (these choices: the first's)"
            if self.fit_info.get("regrown"):
                rounds = self.fit_info.get("regrow_rounds") or 1
                orders = "one order" if rounds == 1 else f"{rounds} orders"
                lines[-1] += f", the average's terms grown {orders} and chosen again"
            guided = self.fit_info.get("guide_rounds") or 0
            if guided:
                lines[-1] += f", then with guided trees' terms ({_rounds(guided)})"
            extended = self.fit_info.get("extend_rounds") or 0
            if extended:
                lines[-1] += f", extended where the residual pointed ({_rounds(extended)})"
        cv_r2 = self.fit_info.get("cv_r2")
        if cv_r2 is not None and cv_r2 < EXPLAINS_ABOVE:
            lines.append(
                f"the fit's CV R² is {cv_r2:.3f}: the masks of these features explain nothing of the outputs, "
                "so the terms below are noise (check that the value responds to these features)"
            )
        elif r2 is not None and r2[0] < PAIRED_SHAPLEY_BELOW:
            lines.append(
                f"the held-out R² is {r2[0]:.2f}: for Shapley values, compattr.explain_shapley "
                "(complementary pairs of masks, compattr.PairedShapley) was 2-30x more accurate than a spectrum "
                "this far from the function, on as many queries (docs/results.md)"
            )
        lines.append("strongest terms (Fourier coefficient F(T); plot_heads shows Banzhaf interactions):")
        top = self.spectrum.to_frame(k + 1, names=self.names)
        top = top[top["order"] > 0].head(k)
        style = signed_format(top["coef"])
        lines += [f"  {row['coef']:{style}}  {row['names']}" for _, row in top.iterrows()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        r2 = "undefined" if self._constant_test_outputs() else f"{self.faithfulness:.3f}"
        return f"Explanation(n={self.n}, terms={len(self.spectrum)}, R²={r2})"

    def _constant_test_outputs(self) -> bool:
        return bool(np.ptp(self.test_outputs) == 0) if len(self.test_outputs) else True

    # ------------------------------------------------------------------ plots
    def plot_heads(self, title: str | None = None, **kwargs):
        """Head-by-head interaction heatmap ordered by layer, single heads on the diagonal
        (:func:`compattr.plots.head_interactions`). Its title names ``title`` (e.g. the model
        and task), the value explained and the held-out R²."""
        r2 = "undefined" if self._constant_test_outputs() else f"{self.faithfulness:.2f}"
        value = self.fit_info.get("value")
        parts = [title, None if value is None else f"value: {value}", f"held-out R² {r2}"]
        heading = " · ".join(p for p in parts if p)
        return plots.head_interactions(self.spectrum, self.names, self.groups, title=heading, **kwargs)

    def plot_circuit(self, k: int = 20, index: str = "banzhaf_interaction", title: str | None = None):
        """The ``k`` strongest pairwise interactions as a layer-ordered graph
        (:func:`compattr.apps.circuit.plot_circuit`); ``circuit_html`` gives it as a page."""
        graph = circuit.circuit_graph(self.spectrum, self.names, self.groups, k, index)
        return circuit.plot_circuit(graph, title=title)

    def circuit_html(self, k: int = 20, index: str = "banzhaf_interaction", title: str | None = None) -> str:
        """:meth:`plot_circuit` as a self-contained interactive HTML page (save it with
        :func:`compattr.plots.save` to a ``.html`` file)."""
        graph = circuit.circuit_graph(self.spectrum, self.names, self.groups, k, index)
        return circuit.circuit_html(graph, title=title)

    def plot_energy(self, **kwargs):
        """Per-group linear / within / cross energy bars (:func:`compattr.plots.layer_energy`)."""
        return plots.layer_energy(self.spectrum, self.groups, **kwargs)

    def words_html(self, words: Sequence[str] | None = None, **kwargs) -> str:
        """Words highlighted by attribution, with their strongest interactions (HTML).

        ``words`` defaults to the feature names; pass the plain words when the names carry
        positions (e.g. ``'3:movie'``).
        """
        return plots.words_html(self.names if words is None else words, self.spectrum, **kwargs)

    def plot_patches(self, image, grid: tuple[int, int], **kwargs):
        """Patch attributions over ``image`` (:func:`compattr.plots.patch_overlay`)."""
        return plots.patch_overlay(image, self.spectrum, grid, **kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, folder) -> Path:
        """Write everything (spectra, masks, outputs, names, groups, kinds, choices) to ``folder``.

        Files: ``spectrum.json``, ``lasso.json`` (when there is a baseline),
        ``queries.npz`` and ``explanation.json``, which lists the others with their SHA-256
        digests. They are written to a temporary folder next to ``folder`` and renamed into
        place, ``explanation.json`` last; a file of an earlier save that this one does not
        have (a ``lasso.json``) is removed, and other files in ``folder`` are left alone. A
        save killed part-way therefore never loads as a mix of two runs: :meth:`load`
        checks every file against the digests.

        Returns
        -------
        Path
            ``folder``.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder.resolve()
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-saving-", dir=target.parent))
        try:
            self.spectrum.save(staging / "spectrum.json")
            if self.lasso is not None:
                self.lasso.save(staging / "lasso.json")
            np.savez_compressed(
                staging / "queries.npz",
                masks=self.masks,
                outputs=self.outputs,
                test_masks=self.test_masks,
                test_outputs=self.test_outputs,
            )
            files = {name: _digest(staging / name) for name in _FILES if (staging / name).exists()}
            meta = {
                "format": _FORMAT,
                "version": _VERSION,
                "files": files,
                "names": list(self.names),
                "groups": np.asarray(self.groups).tolist(),
                "kinds": None if self.kinds is None else np.asarray(self.kinds).tolist(),
                "value_range": None
                if self.value_range is None
                else [v if math.isfinite(v) else None for v in self.value_range],
                "fit_info": jsonable(self.fit_info),
            }
            (staging / _META).write_text(json.dumps(meta, indent=1))
            for name in [*files, _META]:
                os.replace(staging / name, target / name)
            for name in set(_FILES) - set(files):
                (target / name).unlink(missing_ok=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder) -> Explanation:
        """Read an explanation written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            ``folder`` holds no ``explanation.json``.
        ValueError
            Not a compattr explanation, written by a newer compattr, or its files do not
            match ``explanation.json`` (a save was interrupted, or files were replaced).
        """
        folder = Path(folder)
        meta_path = folder / _META
        if not meta_path.exists():
            raise FileNotFoundError(f"{folder} holds no compattr explanation (no {_META}).")
        meta = json.loads(meta_path.read_text())
        version = check_format(
            meta.get("format"), meta.get("version"), _FORMAT, _VERSION, meta_path, "compattr explanation"
        )
        if version >= 2:
            files = meta["files"]
            for name, digest in files.items():
                if not (folder / name).exists() or _digest(folder / name) != digest:
                    raise ValueError(
                        f"{folder / name} does not match {meta_path}: the folder mixes files of "
                        "two saves (a save was interrupted, or a file was replaced). Save the "
                        "explanation again."
                    )
        else:  # version 1 listed no files: read those present
            files = {name: None for name in _FILES if (folder / name).exists()}
        with np.load(folder / "queries.npz") as q:
            arrays = {k: q[k] for k in q.files}
        value_range = meta.get("value_range")
        if value_range is not None:
            value_range = [
                -math.inf if value_range[0] is None else value_range[0],
                math.inf if value_range[1] is None else value_range[1],
            ]
        return cls(
            spectrum=Spectrum.load(folder / "spectrum.json"),
            names=meta["names"],
            groups=np.asarray(meta["groups"]),
            lasso=Spectrum.load(folder / "lasso.json") if "lasso.json" in files else None,
            fit_info=meta["fit_info"],
            value_range=value_range,
            kinds=None if meta.get("kinds") is None else np.asarray(meta["kinds"]),
            **arrays,
        )


def _digest(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_models_outputs(estimator) -> None:
    """TypeError unless ``estimator`` has ``predict``: a spectrum estimator whose spectrum is a
    model of the outputs, which an :class:`Explanation` needs."""
    if not callable(getattr(estimator, "predict", None)):
        raise TypeError(
            f"{type(estimator).__name__} has no predict(): its spectrum_ is not a model of the outputs "
            "(PairedShapley's is their odd part alone: compattr.explain_shapley explains with it)."
        )


def held_out_masks(X, count: int, seed: int = 0, minimum: int = 0) -> np.ndarray:
    """``count`` fresh uniform masks that are not among the fitting masks ``X``.

    Drawn from the same seeded stream as ``sample_masks(n, m + ..., seed)`` after the rows of
    ``X``, skipping repeats of ``X`` and of each other; when fewer than ``count`` unused masks
    exist (small n), all of them, in random order.

    Parameters
    ----------
    X : (m, n) bool array
        The fitting masks.
    count : int
        How many held-out masks to return (at most).
    seed : int
        Seeds the stream.
    minimum : int
        Raise ``ValueError`` (instead of warning) when fewer than this many unused masks
        exist.

    Returns
    -------
    (t, n) bool array, t = min(count, 2^n - #distinct rows of X)
    """
    m, n = X.shape
    seen = {row.tobytes() for row in np.packbits(X, axis=1)}
    available = 2**n - len(seen) if n < 63 else count
    if available < minimum:
        raise ValueError(
            f"only {available} of the 2^{n} = {2**n} masks are not among the {m} fitting masks, "
            f"but at least {minimum} are needed for held-out testing: fit on fewer masks (a "
            "lower budget or alpha) or explain more features."
        )
    if available < count:
        warnings.warn(
            f"only {available} of the 2^{n} masks were not used for fitting; holding out "
            f"{available} instead of {count}.",
            stacklevel=3,
        )
        count = available
    if n <= 20 and count > available // 2:  # few unused masks left: enumerate them
        every = ((np.arange(2**n)[:, None] >> np.arange(n)[::-1]) & 1).astype(bool)
        unused = every[[row.tobytes() not in seen for row in np.packbits(every, axis=1)]]
        return np.random.default_rng(seed).permutation(unused)[:count]
    fresh: list[np.ndarray] = []
    drawn = m
    while len(fresh) < count:
        batch = sample_masks(n, drawn + 2 * count, seed=seed)[drawn:]
        drawn += len(batch)
        for row, key in zip(batch, np.packbits(batch, axis=1)):
            if key.tobytes() not in seen and len(fresh) < count:
                seen.add(key.tobytes())
                fresh.append(row)
    return np.array(fresh, dtype=bool).reshape(-1, n)


def explain(
    model: torch.nn.Module | None = None,
    features: Masker | SetFunction | None = None,
    value: Value | None = None,
    inputs: Inputs | None = None,
    *,
    budget: int | None = None,
    alpha: float | None = None,
    test_masks: int = 1000,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    estimator: ProxySPEX | None = None,
    baseline: bool = True,
    batch_size: int | str | None = None,
    progress: bool = True,
    value_range: tuple[float, float] | None = None,
) -> Explanation:
    """Explain a model's output by the interactions of its features.

    Required: ``features``, and for features that mask a model (attention heads, words,
    image patches) also ``value`` and the examples, ``inputs`` (text and image features own
    theirs). The model is read from the features when they carry it (``heads.model``);
    pass ``model`` for those that do not (words, patches). A set function that evaluates
    itself (a :class:`~compattr.query.MaskedModel`, a
    :class:`~compattr.features.TrainingSubsets`, your own) needs nothing else::

        explain(features=heads, value=value, inputs=inputs, alpha=2)   # the model: heads.model
        explain(model, heads, value, inputs, alpha=2)                  # the same, positionally
        explain(model, features=words, value=compattr.values.ClassLogit())
        explain(features=compattr.TrainingSubsets(300, retrain))      # a set function: nothing else

    Every argument is checked before any query, and one that would be ignored is refused.

    Parameters
    ----------
    model : torch.nn.Module, optional
        The model whose ``features`` are masked; the first positional argument is always the
        model. Default: ``features.model`` (a model given must be that same object). Needed
        for a masker that does not carry its model (:class:`~compattr.features.Words`,
        :class:`~compattr.features.ImagePatches`); not used by a set function.
    features : Masker or SetFunction
        What to mask. A :class:`~compattr.features.Masker`
        (:class:`~compattr.features.AttentionHeads`, :class:`~compattr.features.Words`,
        :class:`~compattr.features.ImagePatches`, ...) is bound to the model, ``value`` and
        ``inputs`` by a :class:`~compattr.query.MaskedModel`; a
        :class:`~compattr.features.SetFunction` (any object with ``n``, ``names``, ``groups``
        and ``evaluate(masks)``) is queried as it is.
    value : compattr.values.Value
        What to measure (class logit, log-likelihood, multiple-choice accuracy, ...); required
        with a masker, refused with a set function (it measures itself).
    inputs : tensor or mapping of tensors
        The ``E`` examples the value is averaged over, on the first axis; required with
        attention heads, optional with text and image features (default: the text or image
        they own), refused with a set function.
    budget : int, optional
        Number of fitting queries; default ``ceil(alpha · n · log2 n)``.
    alpha : float, optional
        Budget multiplier when ``budget`` is not given (default 4; the paper uses 2–8);
        refused with ``budget``.
    test_masks : int
        Fresh held-out queries for the faithfulness R² (default 1,000, as in the paper; at
        least 2); never one of the fitting masks (fewer when n is so small that few masks
        remain, and a ``ValueError`` before any query when fewer than 2 remain).
    seed : int
        Seeds the masks and the estimator: the same seed gives the same explanation on the same
        device with the same ``batch_size`` (a batch size below the number of examples
        splits them across forward passes, which changes the outputs at float rounding, and
        a fit on outputs that differ at all may choose other terms).
    cache_dir : path, optional
        A query cache root, shared by every model, feature set, value and inputs: the
        outputs go to the subfolder named by a digest of the set function's fingerprint
        (:func:`compattr.query.cache.cache_folder`), so a killed run resumes without
        re-querying and other runs (another model, other questions) use their own
        subfolders. A folder that itself holds a cache (its ``manifest.json``, the layout
        before roots) is used as that one cache and refuses other fingerprints
        (:class:`compattr.query.CacheMismatchError`).
    estimator : ProxySPEX, optional
        A configured estimator (default ``ProxySPEX(seed=seed)``).
    baseline : bool
        Also fit the LASSO baseline on the same masks.
    batch_size : int or "auto", optional
        Rows per forward pass (see :class:`compattr.query.MaskedModel`); with a masker only.
    progress : bool
        Show a progress bar while querying.
    value_range : (low, high), optional
        The range the value's outputs can take, either end possibly infinite: ``(0, 1)``
        for an accuracy, ``(-inf, 0)`` for a log-probability. Default: the ``output_range``
        attribute of ``value`` (or of a set function, or of its ``value``) if it has one.
        Plans predicted outside it warn (:class:`compattr.optimize.ValueRangeWarning`).

    Returns
    -------
    Explanation

    Raises
    ------
    TypeError
        ``model`` is not a ``torch.nn.Module`` (a feature set passed first says to pass it as
        ``features=``), or ``features`` is neither a masker nor a set function; before any
        query, an ``estimator`` without ``predict`` (``PairedShapley``: use
        :func:`compattr.explain_shapley`).
    ValueError
        Before any query: no ``features``; a masker without ``value``, or without a model
        (none given, none carried); a ``model`` other than ``features.model``; ``value``,
        ``inputs`` or ``batch_size`` given with a set function (or a ``model``, when the set
        function carries none); a budget below what the
        estimator needs (ProxySPEX: 50 masks), ``test_masks < 2``, or fewer than 2 masks
        left for held-out testing.
    """
    feature_set = bind(model, features, value, inputs, batch_size)
    n = feature_set.n
    m = resolve_budget(n, budget, alpha, default_alpha=4.0, low=1)
    est = estimator if estimator is not None else ProxySPEX(seed=seed)
    check_seed_and_estimator(seed, est)
    _check_models_outputs(est)
    names_and_groups(getattr(feature_set, "names", None), getattr(feature_set, "groups", None), n)
    needed = getattr(est, "min_masks", 1)
    if m < needed or test_masks < 2:
        raise ValueError(
            f"budget must be at least {needed} masks and test_masks at least 2 (the held-out "
            f"R² compares outputs), got {m} and {test_masks}."
        )
    if value_range is None:
        source = value if value is not None else feature_set
        value_range = getattr(source, "output_range", None)
        if value_range is None and value is None:
            value_range = getattr(getattr(feature_set, "value", None), "output_range", None)
    value_range = as_value_range(value_range)
    X = sample_masks(n, m, seed=seed)
    all_masks = np.vstack([X, held_out_masks(X, test_masks, seed=seed, minimum=2)])
    outputs = run_queries(feature_set, all_masks, cache_dir=cache_dir, progress=progress)
    y = outputs[:m]
    est.fit(X, y)
    lasso = LassoBaseline(seed=seed).fit(X, y).spectrum_ if baseline else None
    explanation = Explanation.from_fit(
        est,
        X,
        y,
        all_masks[m:],
        outputs[m:],
        names=getattr(feature_set, "names", None),
        groups=getattr(feature_set, "groups", None),
        lasso=lasso,
        value_range=value_range,
        kinds=getattr(feature_set, "kinds", None),  # a MaskedModel passes on its masker's
    )
    explanation.fit_info["value"] = describe(feature_set)  # a MaskedModel's value, or the set function
    return explanation


def _rounds(count: int) -> str:
    """``count`` rounds, in words: "1 round", "2 rounds"."""
    return f"{count} round{'s' if count > 1 else ''}"


def _final_refit_note(fit_info: dict) -> str:
    """The summary's note where a later stage refitted the final terms at a ridge strength
    other than the first fit's choice: ", final terms refitted at ridge r"."""
    final = fit_info.get("spectrum_ridge")
    if final is None or final == fit_info.get("ridge"):
        return ""
    return f", final terms refitted at ridge {final:g}"


def _fit_info(est) -> dict:
    """A fitted estimator's choices and costs, as :attr:`Explanation.fit_info` holds them
    (None where it has no such attribute)."""
    return {
        "best_params": getattr(est, "best_params_", None),
        "k": getattr(est, "k_", None),
        "refit": getattr(est, "refit_", None),
        "ridge": finite_or_none(getattr(est, "ridge_", None)),
        "spectrum_ridge": finite_or_none(getattr(est, "spectrum_ridge_", None)),
        "tilt": getattr(est, "tilt_", None),
        "ranking": getattr(est, "ranking_", None),
        "repeats": getattr(est, "repeats_", None),
        "grown": getattr(est, "grown_", None),
        "regrown": getattr(est, "regrown_", None),
        "regrow_rounds": getattr(est, "regrow_rounds_", None),
        "guide_rounds": getattr(est, "guide_rounds_", None),
        "extend_rounds": getattr(est, "extend_rounds_", None),
        "cv_r2": finite_or_none(getattr(est, "cv_r2_", None)),
        "spectrum_cv_r2": finite_or_none(getattr(est, "spectrum_cv_r2_", None)),
        "timings": getattr(est, "timings_", None),
        "estimator": type(est).__name__,
        "params": est.get_params() if type(est) is ProxySPEX else None,  # what uncertainty() refits
    }
