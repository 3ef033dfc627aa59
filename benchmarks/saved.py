"""Faithfulness on real functions: refit saved explanations' queries with each estimator.

An explanation saved by :meth:`compattr.Explanation.save` holds the masks and model outputs it
was fitted on and held-out masks with their outputs. The recipes save theirs in their
``--out``: ``recipes/heads_mc.py`` one per layer group and seed, ``recipes/sentiment_words.py``
one per sentence and budget, ``recipes/image_patches.py`` one per photo and
``recipes/induction_heads.py`` one. This refits the same queries
with ProxySPEX, its variants that undo one of its default choices (``core.VARIANTS``: the
paper's plain least-squares refit, no fit on every mask, both) and the marginal LASSO, and
prints each one's held-out R², its difference to the default ProxySPEX's with the paired
95 % bootstrap interval over the held-out masks (:func:`compattr.metrics.r2_interval`: an
interval that holds 0 is no evidence either way) and CPU seconds: the real-function rows
next to the synthetic ones, without a model call. A last table sums each method up over
every explanation given: its mean R² and CPU, and on how many the default ProxySPEX is
higher, not clearly different, or lower.

With ``--shapiq PYTHON`` (an environment with shapiq 1.8, as in ``shapley.py``) shapiq's
estimators that have a function refit the same queries in that environment:

* ``shapiq ProxySPEX`` (its defaults, grid search on): it draws uniform masks, the design the
  saved masks were drawn from, so it is handed the saved masks as its draw and the saved
  outputs as the game's answers; its function is its refined Fourier spectrum;
* ``shapiq ProxySHAP proxy`` (its default XGBoost) and ``shapiq ProxySHAP proxy (HPO)`` (its
  grid search): ProxySHAP's function is its tree proxy, fitted here by shapiq's own
  ``fit_proxy`` on the saved queries. ProxySHAP itself would draw masks weighted towards small
  and large coalitions; uniform masks are the design the held-out masks share.

OddSHAP fits only the odd part of the function, so it has no held-out R².

    python benchmarks/saved.py results/heads_mc-seed0/explanation-* --seed 0
    python benchmarks/saved.py results/heads_mc-seed0/explanation-* --shapiq /tmp/shapiq-env/bin/python
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import compattr
from compattr.apps.report import interval_text

from core import VARIANTS, held_out_r2, predictions, run_shapiq, with_function
from shapiq_side import SAVED_METHODS

ESTIMATORS = {
    name: (lambda seed, s=settings: compattr.ProxySPEX(seed=seed, **s)) for name, settings in VARIANTS.items()
}
ESTIMATORS["lasso"] = lambda seed: compattr.LassoBaseline(seed=seed)


def rows(
    folder: Path, seed: int, shapiq: str | None = None, methods=SAVED_METHODS, estimators=tuple(ESTIMATORS)
) -> list[dict]:
    """One row per estimator named in ``estimators`` (the default ProxySPEX always first):
    held-out R² of its refit of the explanation in ``folder`` (shapiq's ``methods`` too, in
    the environment of the python ``shapiq``, if given), and ``vs_proxyspex``, its
    difference to the default ProxySPEX's with the paired bootstrap interval over the
    held-out masks: (difference, low, high)."""
    ex = compattr.Explanation.load(folder)
    out = []
    for name in ["proxyspex", *(e for e in ESTIMATORS if e in estimators and e != "proxyspex")]:
        make = ESTIMATORS[name]
        start = time.process_time()
        est = make(seed).fit(ex.masks, ex.outputs)
        cpu = time.process_time() - start
        out.append(_row(folder, ex, name, est.predict(ex.test_masks), cpu, getattr(est, "ridge_", None)))
    if shapiq:
        for name, r in shapiq_side(shapiq, ex, seed, methods).items():
            pred = predictions(r["function"], ex.test_masks)  # a Fourier spectrum evaluated as ours are
            out.append(_row(folder, ex, name, pred, r["cpu_s"], None))
    enough = len(ex.test_masks) >= compattr.metrics.MIN_INTERVAL_MASKS  # else the difference alone
    for r in out:
        if enough:
            r["vs_proxyspex"] = compattr.metrics.r2_interval(ex.test_outputs, r["pred"], out[0]["pred"])
        else:
            r["vs_proxyspex"] = (r["r2"] - out[0]["r2"], np.nan, np.nan)
    return out


def shapiq_side(python: str, ex: compattr.Explanation, seed: int, methods) -> dict:
    """shapiq's ``methods`` refitted on the explanation's queries in the environment of
    ``python``, each in a process of its own; each result holds its CPU seconds and its
    ``function`` (:func:`core.with_function`)."""
    job = {"mode": "saved", "X": ex.masks.astype(int).tolist(), "y": np.asarray(ex.outputs, float).tolist()}
    job |= {"seed": seed, "X_test": ex.test_masks.astype(int).tolist()}
    return {method: with_function(run_shapiq(python, job | {"method": method}), ex.n) for method in methods}


def _row(folder: Path, ex: compattr.Explanation, method: str, pred: np.ndarray, cpu: float, ridge) -> dict:
    """A printed row: the explanation, its size, the method, its predictions of the held-out
    outputs and their R², CPU seconds and ridge."""
    size = {"explanation": folder.name, "n": ex.n, "masks": len(ex.masks)}
    r2 = held_out_r2(pred, ex.test_outputs)
    return size | {"method": method, "pred": pred, "r2": r2, "cpu_s": cpu, "ridge": ridge}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", type=Path, nargs="+", help="folders written by Explanation.save")
    p.add_argument("--seed", type=int, default=0, help="seeds the folds and LightGBM (default %(default)s)")
    p.add_argument("--shapiq", metavar="PYTHON", help="python of an environment with shapiq 1.8")
    p.add_argument("--shapiq-methods", nargs="+", default=list(SAVED_METHODS), choices=SAVED_METHODS, metavar="NAME")
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(ESTIMATORS),
        choices=list(ESTIMATORS),
        metavar="NAME",
        help="compattr's estimators to refit (default: every variant and lasso; the default proxyspex always runs)",
    )
    args = p.parse_args(argv)
    print("| explanation | n | masks | method | held-out R² | − proxyspex's [95 %] | ridge | CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    every = []
    for folder in args.folders:
        for r in rows(folder, args.seed, args.shapiq, args.shapiq_methods, args.methods):
            ridge = "" if r["ridge"] is None else ("no refit" if np.isnan(r["ridge"]) else f"{r['ridge']:g}")
            gap = interval_text(r["vs_proxyspex"], signed=True)
            cells = [r["explanation"], r["n"], r["masks"], r["method"], f"{r['r2']:.3f}", gap, ridge]
            cells.append(f"{r['cpu_s']:.1f}")
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
            every.append(r)
    print("\n" + summary(every))


def summary(every: list[dict]) -> str:
    """Per method over every explanation: the mean held-out R² and CPU seconds, and on how
    many explanations the default ProxySPEX's R² is higher, not clearly different, or lower
    (the paired 95 % interval of the difference below 0, holding it, above it)."""
    lines = [
        "| method | explanations | mean held-out R² | proxyspex higher / no clear difference / lower | mean CPU s |",
        "|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(r["method"] for r in every):
        mine = [r for r in every if r["method"] == method]
        higher = sum(r["vs_proxyspex"][2] < 0 for r in mine)
        lower = sum(r["vs_proxyspex"][1] > 0 for r in mine)
        r2, cpu = np.mean([r["r2"] for r in mine]), np.mean([r["cpu_s"] for r in mine])
        counts = f"{higher} / {len(mine) - higher - lower} / {lower}"
        lines.append(f"| {method} | {len(mine)} | {r2:.3f} | {counts} | {cpu:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
