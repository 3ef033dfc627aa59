"""Faithfulness and cost of ProxySPEX vs LASSO (and shapiq) on the paper's synthetic functions.

For the Synthetic Complete Hierarchy and the Synthetic Peak (appendix B.4), each n and alpha: m
= ceil(alpha n log2 n) uniform masks, held-out R^2 on 1,000 fresh masks against the noise-free
function, CPU seconds per stage and peak memory (max RSS of a fresh process per case).
``--variants`` adds ProxySPEX rows that undo one of its default choices (:data:`VARIANTS`).
``--shapiq PYTHON`` also runs shapiq's ProxySPEX (in its own environment, e.g. ``python -m venv
shapiq-env && shapiq-env/bin/pip install torch==2.13.0 shapiq==1.4.1 lightgbm``) on the same
function with the same budget, in the same run. ``--repeats R`` runs every case R times, the
methods taking turns, and reports each method's fastest run (``cpu_s``) and slowest
(``cpu_max_s``): the least disturbed CPU time of each on a shared machine, measured under the
same conditions.

    python benchmarks/core.py --shapiq shapiq-env/bin/python --out docs/core.md   # full table
    python benchmarks/core.py --small             # a quick table (make demo)
    python benchmarks/core.py --n 500 --alpha 4 --snr 10 --shapiq shapiq-env/bin/python
    python benchmarks/core.py --n 100 --alpha 8 --repeats 3 --shapiq shapiq-env/bin/python
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FUNCTIONS = ("hierarchy", "peak")

#: ProxySPEX's settings by row name: the default, and variants that undo one of its choices
#: (``--variants``) so that a change of default is measured beside the default it replaced.
VARIANTS = {
    "proxyspex": {},
    "proxyspex ridge=0": {"ridge": 0.0},  # the paper's plain least-squares refit
    "proxyspex folds-only": {"final_fit": False},  # no fit on every mask
    "proxyspex all-folds": {"all_folds": True},  # every fold fitted, even when the first settles it
    "proxyspex tilt=1": {"tilt": 1.0},  # top-k by |F(T)| alone, the paper's ranking
    "proxyspex ranking=trees": {"ranking": "trees"},  # top-k by the trees' coefficients, never re-ranked
    # the defaults before all five of the above
    "proxyspex previous": {"ridge": 0.0, "final_fit": False, "all_folds": True, "tilt": 1.0, "ranking": "trees"},
}


def run_elsewhere(python: str, script: str, job):
    """Run the Python source ``script`` with the interpreter ``python`` (another environment,
    e.g. shapiq's) on ``job``: the paths of ``job`` as JSON and of the JSON to write back are
    its two arguments. Returns what it wrote; its standard output (that library's logs) is
    dropped."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "job.json"), Path(tmp, "out.json")
        src.write_text(json.dumps(job))
        subprocess.run([python, "-c", script, str(src), str(dst)], check=True, stdout=subprocess.DEVNULL)
        return json.loads(dst.read_text())


def held_out_r2(pred: np.ndarray, y: np.ndarray) -> float:
    """R² of predictions ``pred`` (m,) of the outputs ``y`` (m,)."""
    return float(1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2))


def synthetic_function(name: str, n: int, seed: int):
    """The benchmark function ``name`` ("hierarchy" or "peak") with ``n`` features, as its
    exact :class:`compattr.Spectrum`."""
    from compattr.synthetic import complete_hierarchy, peak

    return (complete_hierarchy if name == "hierarchy" else peak)(n, seed=seed)


def _case(function: str, n: int, alpha: float, snr: float | None, seed: int, method: str) -> dict:
    """One (function, n, alpha, method) run in a fresh process; returns its table row."""
    import torch  # noqa: F401  (imported by compattr's features; keep it out of the timings)
    from threadpoolctl import threadpool_limits

    import compattr
    from compattr.synthetic import add_noise

    # One BLAS thread for the data: a multi-threaded BLAS call leaves its worker thread
    # spinning for ~0.1 s, which process_time() would charge to the method timed next.
    with threadpool_limits(1):
        truth = synthetic_function(function, n, seed)
        m = compattr.budget(n, alpha)
        X = compattr.sample_masks(n, m, seed=seed + 1)
        y = truth.predict(X)
        if snr is not None:
            y = add_noise(y, truth, snr, seed=seed + 2)
        X_test = compattr.sample_masks(n, 1000, seed=seed + 3)
        y_test = truth.predict(X_test)
    row = {"function": function, "n": n, "alpha": alpha, "m": m, "snr_db": snr, "method": method}
    start = time.process_time()
    if method in VARIANTS:
        est = compattr.ProxySPEX(seed=seed, **VARIANTS[method]).fit(X, y)
        row.update({f"{k}_s": v for k, v in est.timings_.items()})
        row["k"] = est.k_
        row["ridge"] = est.ridge_
        best = est.best_params_
        row["params"] = f"d={best['max_depth']} lr={best['learning_rate']} T={best['n_estimators']}"
        pred = est.predict(X_test)
    elif method == "lasso":
        pred = compattr.LassoBaseline(seed=seed).fit(X, y).predict(X_test)
    row["cpu_s"] = time.process_time() - start
    row["r2"] = 1 - np.sum((pred - y_test) ** 2) / np.sum((y_test - y_test.mean()) ** 2)
    row["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _shapiq_case(python: str, function: str, n: int, alpha: float, snr: float | None, seed: int) -> dict:
    """shapiq's ProxySPEX on the same function and budget, via benchmarks/shapiq_reference.py."""
    import compattr

    truth = synthetic_function(function, n, seed)
    m = compattr.budget(n, alpha)
    X_test = compattr.sample_masks(n, 1000, seed=seed + 3)
    y_test = truth.predict(X_test)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "in.npz"), Path(tmp, "out.npz")
        np.savez(
            src,
            n=n,
            indptr=truth.supports.indptr,
            indices=truth.supports.indices,
            coefs=truth.coefs,
            budget=m,
            snr_db=np.nan if snr is None else snr,
            seed=seed,
            X_test=X_test,
        )
        script = Path(__file__).with_name("shapiq_reference.py")
        subprocess.run([python, str(script), str(src), str(out)], check=True)
        result = np.load(out)
        pred, cpu, peak_mb = result["pred"], float(result["cpu"]), float(result["peak_mb"])
    r2 = held_out_r2(pred, y_test)
    return {
        "function": function,
        "n": n,
        "alpha": alpha,
        "m": m,
        "snr_db": snr,
        "method": "shapiq",
        "cpu_s": cpu,
        "r2": r2,
        "peak_mb": peak_mb,
    }


def _run_isolated(*args) -> dict:
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_case, args)


def _fastest(runs: Sequence[dict]) -> dict:
    """The row of a method's fastest run of a case, with the slowest run's CPU seconds."""
    row = dict(min(runs, key=lambda r: r["cpu_s"]))
    if len(runs) > 1:
        row["cpu_max_s"] = max(r["cpu_s"] for r in runs)
    return row


def _format(rows: list[dict]) -> str:
    cols = [
        "function",
        "n",
        "alpha",
        "m",
        "snr_db",
        "method",
        "r2",
        "cpu_s",
        "cpu_max_s",
        "search_s",
        "extract_s",
        "sparsify_s",
        "peak_mb",
        "k",
        "ridge",
        "params",
        "speedup",
    ]
    header = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"

    def cell(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        return f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.1f}" if isinstance(v, float) else str(v))

    return header + "".join("| " + " | ".join(cell(r.get(c)) for c in cols) + " |\n" for r in rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--alpha", type=float, nargs="+", default=[2, 4, 8])
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=FUNCTIONS)
    parser.add_argument("--snr", type=float, default=None, help="Gaussian noise at this SNR (dB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-lasso", action="store_true")
    parser.add_argument(
        "--variants", nargs="+", default=[], choices=list(VARIANTS)[1:], help="also these ProxySPEX variants"
    )
    parser.add_argument("--shapiq", metavar="PYTHON", help="python of an environment with shapiq 1.4.1")
    parser.add_argument(
        "--shapiq-max-n", type=int, default=500, help="run shapiq only up to this n (default %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per case and method; the fastest is reported")
    parser.add_argument("--small", action="store_true", help="n=100, alpha=4, hierarchy only (quick)")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.small:
        args.n, args.alpha, args.functions = [100], [4.0], ["hierarchy"]
    rows = []
    for function in args.functions:
        for n in args.n:
            for alpha in args.alpha:
                methods = ["proxyspex", *args.variants] + ([] if args.no_lasso else ["lasso"])
                runs = []  # per repeat, one row per method
                for _ in range(args.repeats):
                    runs.append([_run_isolated(function, n, alpha, args.snr, args.seed, m) for m in methods])
                    if args.shapiq and n <= args.shapiq_max_n:
                        runs[-1].append(_shapiq_case(args.shapiq, function, n, alpha, args.snr, args.seed))
                case = [_fastest(method_runs) for method_runs in zip(*runs)]
                if case[-1]["method"] == "shapiq":
                    case[0]["speedup"] = f"{case[-1]['cpu_s'] / case[0]['cpu_s']:.1f}x"
                rows += case
                print(f"done: {function} n={n} alpha={alpha}", file=sys.stderr, flush=True)
    table = _format(rows)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
