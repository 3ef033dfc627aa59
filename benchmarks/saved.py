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

    python benchmarks/saved.py results/heads_mc-seed0/explanation-* --seed 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import compattr

from core import VARIANTS

ESTIMATORS = {
    name: (lambda seed, s=settings: compattr.ProxySPEX(seed=seed, **s)) for name, settings in VARIANTS.items()
}
ESTIMATORS["lasso"] = lambda seed: compattr.LassoBaseline(seed=seed)


def rows(folder: Path, seed: int) -> list[dict]:
    """One row per estimator: held-out R² of its refit of the explanation in ``folder``."""
    ex = compattr.Explanation.load(folder)
    out = []
    for name, make in ESTIMATORS.items():
        start = time.process_time()
        est = make(seed).fit(ex.masks, ex.outputs)
        cpu = time.process_time() - start
        r2 = compattr.faithfulness(est, ex.test_masks, ex.test_outputs)
        row = {"explanation": folder.name, "n": ex.n, "masks": len(ex.masks), "method": name, "r2": r2, "cpu_s": cpu}
        row["ridge"] = getattr(est, "ridge_", None)
        out.append(row)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", type=Path, nargs="+", help="folders written by Explanation.save")
    p.add_argument("--seed", type=int, default=0, help="seeds the folds and LightGBM (default %(default)s)")
    args = p.parse_args(argv)
    print("| explanation | n | masks | method | held-out R² | ridge | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.folders:
        for r in rows(folder, args.seed):
            ridge = "" if r["ridge"] is None else ("no refit" if np.isnan(r["ridge"]) else f"{r['ridge']:g}")
            cells = [r["explanation"], r["n"], r["masks"], r["method"], f"{r['r2']:.3f}", ridge, f"{r['cpu_s']:.1f}"]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
