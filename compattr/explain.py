"""``compattr.explain``: from "I have a model" to a faithful, readable interaction spectrum.

The pipeline, top-down: features → masks → queries (cached, resumable) → ProxySPEX →
:class:`Explanation` (spectrum, indices, faithfulness against LASSO, energy split,
hierarchy metrics, tables, plots, plans)::

    heads = compattr.AttentionHeads(model)
    ex = compattr.explain(model, features=heads, value=compattr.values.ClassLogit(), inputs=batch)
    print(ex.summary())
    ex.interactions(10)                     # strongest interactions with feature names
    plan = ex.plan(keep=0.3)                # keep 30 % of the heads, exact ILP
    with plan.apply(heads): model(...)      # measure the real effect
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
from typing import Any

import numpy as np
import pandas as pd

from . import optimize
from ._validation import as_value_range, check_format, plan_size, range_note
from .apps import plots
from .proxy import LassoBaseline, ProxySPEX
from .query import Query, run_queries
from .query.masks import budget as _budget
from .query.masks import sample_masks
from .spectrum import EnergySplit, Spectrum, indices, metrics

_FORMAT = "compattr.explanation"
_VERSION = 2  # 2: explanation.json lists the files of the save and their SHA-256 digests
_META = "explanation.json"
_FILES = ("spectrum.json", "lasso.json", "queries.npz")  # what a save may hold besides _META
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
        ProxySPEX's choices and costs: ``best_params``, ``k``, ``refit``, ``timings``.
    value_range : (low, high) or None
        The range the value function's outputs can take (either end may be infinite), when
        known: :meth:`plan` warns (:class:`compattr.optimize.ValueRangeWarning`) when a plan's
        predicted value falls outside it.
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

    def __post_init__(self) -> None:
        self.value_range = as_value_range(self.value_range)

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

    def interactions(self, k: int = 20, index: str | None = None) -> pd.DataFrame:
        """The ``k`` strongest terms with feature names: Fourier (default) or an index."""
        if index is None:
            return self.spectrum.to_frame(k, names=self.names)
        return self.index(index).head(k)

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
            ``kv_groups``, ``min_kv_removed``, ``sense``, ``time_limit``); ``groups``
            defaults to this explanation's groups.

        Returns
        -------
        PruningPlan
            ``value`` is the predicted value; when it lies outside :attr:`value_range`, a
            :class:`compattr.optimize.ValueRangeWarning` says so.
        """
        size = plan_size(keep, self.n)
        constraints.setdefault("groups", self.groups)
        kept = optimize.best_subset(self.spectrum, size, maximize, **constraints)
        plan = optimize.PruningPlan.from_spectrum(self.spectrum, kept, self.names, self.groups)
        note = range_note([plan.value], ["the plan"], self.value_range)
        if note:
            warnings.warn(note, optimize.ValueRangeWarning, stacklevel=2)
        return plan

    # ------------------------------------------------------------------ text
    def summary(self, k: int = 8) -> str:
        """A one-screen report: faithfulness vs LASSO, energy split, strongest terms."""
        e = self.energy()
        if self._constant_test_outputs():
            faithfulness = "undefined: the held-out outputs are all equal"
        else:
            faithfulness = f"ProxySPEX {self.faithfulness:.3f}" + (
                "" if self.lasso is None else f" | LASSO {self.lasso_faithfulness:.3f}"
            )
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
            )
        lines.append("strongest interactions (Fourier coefficient):")
        top = self.spectrum.to_frame(k + 1, names=self.names)
        for _, row in top[top["order"] > 0].head(k).iterrows():
            lines.append(f"  {row['coef']:+.4f}  {row['names']}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        r2 = "undefined" if self._constant_test_outputs() else f"{self.faithfulness:.3f}"
        return f"Explanation(n={self.n}, terms={len(self.spectrum)}, R²={r2})"

    def _constant_test_outputs(self) -> bool:
        return bool(np.ptp(self.test_outputs) == 0) if len(self.test_outputs) else True

    # ------------------------------------------------------------------ plots
    def plot_heads(self, **kwargs):
        """Head-by-head interaction heatmap ordered by layer (:func:`compattr.plots.head_interactions`)."""
        return plots.head_interactions(self.spectrum, self.names, self.groups, **kwargs)

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
        """Write everything (spectra, masks, outputs, names, choices) to ``folder``.

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
                "value_range": None
                if self.value_range is None
                else [v if math.isfinite(v) else None for v in self.value_range],
                "fit_info": _jsonable(self.fit_info),
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
            **arrays,
        )


def _digest(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


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
    model=None,
    features=None,
    value=None,
    inputs=None,
    *,
    budget: int | None = None,
    alpha: float = 4.0,
    test_masks: int = 1000,
    seed: int = 0,
    cache_dir=None,
    estimator: ProxySPEX | None = None,
    baseline: bool = True,
    batch_size: int | str | None = None,
    progress: bool = True,
    value_range: tuple[float, float] | None = None,
) -> Explanation:
    """Explain a model's output by the interactions of its features.

    Parameters
    ----------
    model : torch.nn.Module, optional
        The model whose ``features`` are masked. Not needed when ``features`` is already a
        feature set that evaluates itself (``features.evaluate(masks)``), e.g. a
        :class:`compattr.features.TrainingSubsets` or your own.
    features : Masker or FeatureSet
        What to mask: :class:`~compattr.features.AttentionHeads`, :class:`~compattr.features.Words`,
        :class:`~compattr.features.ImagePatches`, ... or any object with ``n``, ``names``,
        ``groups`` and ``evaluate(masks)``.
    value : compattr.values.Value, optional
        What to measure (class logit, log-likelihood, multiple-choice accuracy, ...); needed
        with a model.
    inputs : tensor or mapping of tensors, optional
        The examples the value is averaged over (for heads); text and image features own theirs.
    budget : int, optional
        Number of fitting queries; default ``ceil(alpha · n · log2 n)``.
    alpha : float
        Budget multiplier when ``budget`` is not given (the paper uses 2–8).
    test_masks : int
        Fresh held-out queries for the faithfulness R² (default 1,000, as in the paper; at
        least 2); never one of the fitting masks (fewer when n is so small that few masks
        remain, and a ``ValueError`` before any query when fewer than 2 remain).
    seed : int
        Seeds the masks and the estimator: the same seed gives the same explanation.
    cache_dir : path, optional
        Query cache folder: a killed run resumes without re-querying.
    estimator : ProxySPEX, optional
        A configured estimator (default ``ProxySPEX(seed=seed)``).
    baseline : bool
        Also fit the LASSO baseline on the same masks.
    batch_size : int or "auto", optional
        Rows per forward pass (see :class:`compattr.query.Query`).
    progress : bool
        Show a progress bar while querying.
    value_range : (low, high), optional
        The range the value's outputs can take, either end possibly infinite: ``(0, 1)``
        for an accuracy, ``(-inf, 0)`` for a log-probability. Default: the ``output_range``
        attribute of ``value`` (or of a self-evaluating ``features``) if it has one. Plans
        predicted outside it warn (:class:`compattr.optimize.ValueRangeWarning`).

    Returns
    -------
    Explanation

    Raises
    ------
    ValueError
        Before any query: a budget below what the estimator needs (ProxySPEX: 50 masks),
        ``test_masks < 2``, or fewer than 2 masks left for held-out testing.
    """
    if features is None:
        raise ValueError("explain needs features=, e.g. compattr.AttentionHeads(model).")
    if hasattr(features, "evaluate"):
        feature_set = features
    else:
        if model is None or value is None:
            raise ValueError(
                f"{type(features).__name__} masks a model: pass model= and value= (e.g. compattr.values.ClassLogit())."
            )
        feature_set = Query(model, features, value, inputs, batch_size=batch_size)
    n = feature_set.n
    m = _budget(n, alpha) if budget is None else int(budget)
    est = estimator if estimator is not None else ProxySPEX(seed=seed)
    needed = getattr(est, "min_masks", 1)
    if m < needed or test_masks < 2:
        raise ValueError(
            f"budget must be at least {needed} masks and test_masks at least 2 (the held-out "
            f"R² compares outputs), got {m} and {test_masks}."
        )
    if value_range is None:
        value_range = getattr(value if value is not None else feature_set, "output_range", None)
    value_range = as_value_range(value_range)
    X = sample_masks(n, m, seed=seed)
    all_masks = np.vstack([X, held_out_masks(X, test_masks, seed=seed, minimum=2)])
    outputs = run_queries(feature_set, all_masks, cache_dir=cache_dir, progress=progress)
    y = outputs[:m]
    est.fit(X, y)
    lasso = LassoBaseline(seed=seed).fit(X, y).spectrum_ if baseline else None
    return Explanation(
        spectrum=est.spectrum_,
        names=list(getattr(feature_set, "names", [str(i) for i in range(n)])),
        groups=np.asarray(getattr(feature_set, "groups", np.zeros(n, int))),
        masks=X,
        outputs=y,
        test_masks=all_masks[m:],
        test_outputs=outputs[m:],
        lasso=lasso,
        fit_info={
            "best_params": getattr(est, "best_params_", None),
            "k": getattr(est, "k_", None),
            "refit": getattr(est, "refit_", None),
            "timings": getattr(est, "timings_", None),
        },
        value_range=value_range,
    )
