"""Shapley values per model call: compattr against shapiq 1.8's newest estimators.

On the Synthetic Complete Hierarchy (a function with a known sparse spectrum, so its exact
Shapley values are known), each method gets the same number of model calls
``m = ceil(alpha n log2 n)`` and estimates the ``n`` Shapley values:

* ``compattr ProxySPEX``: ProxySPEX on ``m`` uniform masks, Shapley values read exactly off
  its spectrum (and its held-out R² on 1,000 fresh masks);
* ``compattr Shapley (paired)``: :class:`compattr.PairedShapley` on ``m`` masks drawn as
  complementary pairs by :func:`compattr.paired_masks` (an odd ``m`` loses its last call);
* shapiq 1.8 (its own environment, ``--shapiq PYTHON``), with its defaults: ``ProxySHAP``
  (index SV), ``OddSHAP`` and ``ProxySPEX`` (index SV), each sampling its own coalitions.

Reported per (n, alpha, seed, method): relative squared error of the Shapley vector
``||phi_hat - phi||^2 / ||phi||^2``, precision of its top 10 (by magnitude) against the true
top 10, and CPU seconds. Functions and masks are drawn with seeds the run is given
(``--seeds``); nothing is tuned here.

    python benchmarks/shapley.py --shapiq /tmp/shapiq-env/bin/python --n 100 --alpha 2 4 --seeds 11 12

(shapiq >= 1.5 needs Python >= 3.12: ``python3.12 -m venv shapiq-env &&
shapiq-env/bin/pip install "shapiq[proxy]==1.8.0"``; without the ``proxy`` extra its
ProxySHAP and ProxySPEX fall back to a decision tree.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import compattr

SHAPIQ_SIDE = r"""
import json, sys, time
import numpy as np
import shapiq

job = json.load(open(sys.argv[1]))
n = job["n"]
supports = [np.array(t, dtype=int) for t in job["supports"]]
coefs = np.array(job["coefs"])

def game(X):
    X = np.asarray(X, dtype=bool)
    out = np.zeros(len(X))
    for t, c in zip(supports, coefs):
        out += c * (1 - 2 * (X[:, t].sum(1) % 2)) if len(t) else c
    return out

makers = {
    "shapiq ProxySHAP": lambda: shapiq.ProxySHAP(n, max_order=1, index="SV", random_state=job["seed"]),
    "shapiq OddSHAP": lambda: shapiq.OddSHAP(n, random_state=job["seed"]),
    "shapiq ProxySPEX": lambda: shapiq.ProxySPEX(n=n, max_order=1, index="SV", random_state=job["seed"]),
}
out = {}
for name, make in makers.items():
    start = time.process_time()
    values = make().approximate(job["budget"], game)
    out[name] = {"shapley": [float(v) for v in values.get_n_order_values(1)], "cpu_s": time.process_time() - start}
json.dump(out, open(sys.argv[2], "w"))
"""


def errors(estimate: np.ndarray, truth: np.ndarray, top: int = 10) -> tuple[float, float]:
    """Relative squared error and top-``top`` precision of a Shapley vector."""
    rel = float(np.sum((estimate - truth) ** 2) / np.sum(truth**2))
    best = set(np.argsort(-np.abs(truth))[:top])
    found = set(np.argsort(-np.abs(estimate))[:top])
    return rel, len(best & found) / top


def ours(truth: compattr.Spectrum, n: int, m: int, seed: int) -> dict:
    X = compattr.sample_masks(n, m, seed=seed)
    start = time.process_time()
    est = compattr.ProxySPEX(seed=seed).fit(X, truth.predict(X))
    shapley = compattr.indices.shapley(est.spectrum_)
    cpu = time.process_time() - start
    X_test = compattr.sample_masks(n, 1000, seed=seed + 10_000)
    r2 = compattr.faithfulness(est.spectrum_, X_test, truth.predict(X_test))
    return {"shapley": shapley, "cpu_s": cpu, "r2": r2}


def paired(truth: compattr.Spectrum, n: int, m: int, seed: int) -> dict:
    X = compattr.paired_masks(n, m, seed=seed)
    start = time.process_time()
    est = compattr.PairedShapley(random_state=seed).fit(X, truth.predict(X))
    return {"shapley": est.shapley_, "cpu_s": time.process_time() - start}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapiq", metavar="PYTHON", help="python of an environment with shapiq 1.8")
    p.add_argument("--n", type=int, nargs="+", default=[100])
    p.add_argument("--alpha", type=float, nargs="+", default=[2, 4])
    p.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    args = p.parse_args(argv)
    print("| n | alpha | seed | masks | method | held-out R² | Shapley rel. sq. error | top-10 precision | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.n:
        for alpha in args.alpha:
            m = compattr.budget(n, alpha)
            for seed in args.seeds:
                truth = compattr.synthetic.complete_hierarchy(n, seed=seed)
                exact = compattr.indices.shapley(truth)
                results = {"compattr ProxySPEX": ours(truth, n, m, seed)}
                results["compattr Shapley (paired)"] = paired(truth, n, m, seed)
                if args.shapiq:
                    job = {"n": n, "budget": m, "seed": seed, "coefs": truth.coefs.tolist()}
                    job["supports"] = [list(t) for t in truth.support_tuples()]
                    with tempfile.TemporaryDirectory() as tmp:
                        src, dst = Path(tmp) / "job.json", Path(tmp) / "out.json"
                        src.write_text(json.dumps(job))
                        subprocess.run([args.shapiq, "-c", SHAPIQ_SIDE, str(src), str(dst)], check=True)
                        results |= json.loads(dst.read_text())
                for method, r in results.items():
                    rel, precision = errors(np.asarray(r["shapley"]), exact)
                    r2 = f"{r['r2']:.3f}" if "r2" in r else "—"
                    cells = [
                        n,
                        f"{alpha:g}",
                        seed,
                        m,
                        method,
                        r2,
                        f"{rel:.3f}",
                        f"{precision:.1f}",
                        f"{r['cpu_s']:.1f}",
                    ]
                    print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
