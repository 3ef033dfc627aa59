"""Faithfulness on real functions: refit saved explanations' queries with each estimator.

An explanation saved by :meth:`compattr.Explanation.save` holds the masks and model outputs it
was fitted on and held-out masks with their outputs. The recipes save theirs in their
``--out``: ``recipes/heads_mc.py`` one per layer group and seed, ``recipes/sentiment_words.py``
one per sentence and budget, ``recipes/image_patches.py`` one per photo and
``recipes/induction_heads.py`` one. This refits the same queries
with ProxySPEX, its variants that undo one of its default choices (``core.VARIANTS``: the
paper's plain least-squares refit, no fit on every mask, both) and the marginal LASSO, and
prints each one's held-out R² and CPU seconds: the real-function rows next to the synthetic
ones, without a model call.

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

from core import VARIANTS, held_out_r2, predictions, run_shapiq, with_function
from shapiq_side import SAVED_METHODS

ESTIMATORS = {
    name: (lambda seed, s=settings: compattr.ProxySPEX(seed=seed, **s)) for name, settings in VARIANTS.items()
}
ESTIMATORS["lasso"] = lambda seed: compattr.LassoBaseline(seed=seed)


def rows(folder: Path, seed: int, shapiq: str | None = None, methods=SAVED_METHODS) -> list[dict]:
    """One row per estimator: held-out R² of its refit of the explanation in ``folder``
    (shapiq's ``methods`` too, in the environment of the python ``shapiq``, if given)."""
    ex = compattr.Explanation.load(folder)
    out = []
    for name, make in ESTIMATORS.items():
        start = time.process_time()
        est = make(seed).fit(ex.masks, ex.outputs)
        cpu = time.process_time() - start
        r2 = compattr.faithfulness(est, ex.test_masks, ex.test_outputs)
        out.append(_row(folder, ex, name, r2, cpu, getattr(est, "ridge_", None)))
    if shapiq:
        for name, r in shapiq_side(shapiq, ex, seed, methods).items():
            pred = predictions(r["function"], ex.test_masks)  # a Fourier spectrum evaluated as ours are
            out.append(_row(folder, ex, name, held_out_r2(pred, ex.test_outputs), r["cpu_s"], None))
    return out


def shapiq_side(python: str, ex: compattr.Explanation, seed: int, methods) -> dict:
    """shapiq's ``methods`` refitted on the explanation's queries in the environment of
    ``python``, each in a process of its own; each result holds its CPU seconds and its
    ``function`` (:func:`core.with_function`)."""
    job = {"mode": "saved", "X": ex.masks.astype(int).tolist(), "y": np.asarray(ex.outputs, float).tolist()}
    job |= {"seed": seed, "X_test": ex.test_masks.astype(int).tolist()}
    return {method: with_function(run_shapiq(python, job | {"method": method}), ex.n) for method in methods}


def _row(folder: Path, ex: compattr.Explanation, method: str, r2: float, cpu: float, ridge) -> dict:
    """A printed row: the explanation, its size, the method, its R², CPU seconds and ridge."""
    size = {"explanation": folder.name, "n": ex.n, "masks": len(ex.masks)}
    return size | {"method": method, "r2": r2, "cpu_s": cpu, "ridge": ridge}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", type=Path, nargs="+", help="folders written by Explanation.save")
    p.add_argument("--seed", type=int, default=0, help="seeds the folds and LightGBM (default %(default)s)")
    p.add_argument("--shapiq", metavar="PYTHON", help="python of an environment with shapiq 1.8")
    p.add_argument("--shapiq-methods", nargs="+", default=list(SAVED_METHODS), choices=SAVED_METHODS, metavar="NAME")
    args = p.parse_args(argv)
    print("| explanation | n | masks | method | held-out R² | ridge | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.folders:
        for r in rows(folder, args.seed, args.shapiq, args.shapiq_methods):
            ridge = "" if r["ridge"] is None else ("no refit" if np.isnan(r["ridge"]) else f"{r['ridge']:g}")
            cells = [r["explanation"], r["n"], r["masks"], r["method"], f"{r['r2']:.3f}", ridge, f"{r['cpu_s']:.1f}"]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
