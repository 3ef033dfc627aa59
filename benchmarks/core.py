"""Faithfulness and cost of ProxySPEX vs LASSO (and shapiq) on the paper's synthetic functions.

For the Synthetic Complete Hierarchy and the Synthetic Peak (appendix B.4), each n and alpha: m
= ceil(alpha n log2 n) uniform masks, held-out R^2 on 1,000 fresh masks against the noise-free
function, CPU seconds per stage and peak memory (of a fresh process per case, its own alone).
``--variants`` adds ProxySPEX rows that undo one of its default choices (:data:`VARIANTS`).
``--shapiq PYTHON`` also runs shapiq 1.8's estimators that fit a function (``--shapiq-methods``:
its ProxySPEX by default, ProxySHAP's tree proxy with or without its grid search) in their own
environment (``benchmarks/shapiq_side.py``: ``python3.12 -m venv shapiq-env &&
shapiq-env/bin/pip install "shapiq[proxy]==1.8.0"``) on the same function with the same
budget, in the same run; ``speedup`` is shapiq ProxySPEX's CPU over compattr's. ``--repeats
R`` runs every case R times, the methods taking turns, and reports each method's fastest run
(``cpu_s``) and slowest (``cpu_max_s``): the least disturbed CPU time of each on a shared
machine, measured under the same conditions.

    python benchmarks/core.py --shapiq shapiq-env/bin/python --out docs/core.md   # full table
    python benchmarks/core.py --small             # a quick table (make demo)
    python benchmarks/core.py --n 500 --alpha 4 --snr 10 --shapiq shapiq-env/bin/python
    python benchmarks/core.py --n 100 --alpha 8 --repeats 3 --shapiq shapiq-env/bin/python
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from memory import peak_mb

from shapiq_side import GAME_METHODS as SHAPIQ_GAME_METHODS

FUNCTIONS = ("hierarchy", "peak")

#: The paper's learning rates, as a ``grid`` (:data:`compattr.PAPER_GRID`'s; importing compattr
#: here would load it into every fresh process the benchmarks measure).
PAPER_RATES = {"learning_rate": (0.01, 0.1)}

#: ProxySPEX's settings by row name: the default, and variants that undo one of its choices
#: (``--variants``) so that a change of default is measured beside the default it replaced.
VARIANTS = {
    "proxyspex": {},
    "proxyspex ridge=0": {"ridge": 0.0},  # the paper's plain least-squares refit
    "proxyspex folds-only": {"final_fit": False},  # no fit on every mask
    "proxyspex final-fit<0.99": {"final_fit": 0.99},  # the fit on every mask only below a CV R² of 0.99
    "proxyspex repeats=1": {"repeats": 1},  # one fit, even where its CV explains little
    "proxyspex same-depth": {"vary_depth": False},  # every repeat searches the whole grid
    "proxyspex unchallenged": {"challenge": False},  # the race's winner goes on, however little its spectrum explains
    "proxyspex paper-rates": {"grid": PAPER_RATES},  # the paper's learning rates at every budget
    "proxyspex all-folds": {"all_folds": True},  # every fold fitted, even when the first settles it
    "proxyspex tilt=cv": {"tilt": "cv"},  # the top-k's tilt towards higher orders chosen by the CV
    "proxyspex ranking=trees": {"ranking": "trees"},  # top-k by the trees' coefficients, never re-ranked
    "proxyspex no-closure": {"ranking": ("trees", "refit")},  # top-k never extended by its subsets
    "proxyspex no-grow": {"grow": False},  # the kept terms' hierarchy never grown by one order
    "proxyspex no-pursuit": {"pursue": False},  # grown without the trees' terms the residual picks
    "proxyspex no-cliques": {"cliques": False},  # grown by one order only, not to the cliques of the kept pairs
    "proxyspex no-regrow": {"regrow": False},  # the repeats' average as it is, never regrown
    "proxyspex regrow-once": {"regrow_rounds": 1},  # the repeats' average regrown by one order alone
    "proxyspex regrow>=0.14": {"regrow": 0.14},  # regrown only from a first-fit CV R² of 0.14
    "proxyspex capped-stays": {"regrow_capped": 0.0},  # a regrow round whose CV chooses the cap never taken
    "proxyspex no-guide": {"guide_rounds": 0},  # no guided trees after the regrow
    "proxyspex every-subset": {"missing_subsets": 0},  # grown only to sets whose subsets one order below are all kept
    "proxyspex no-extension": {"extend_rounds": 0},  # without stage 8 (the terms extended where their residual points)
    # the defaults before all of the above
    "proxyspex previous": {
        "ridge": 0.0,
        "final_fit": False,
        "all_folds": True,
        "tilt": 1.0,
        "ranking": "trees",
        "repeats": 1,
        "grow": False,
        "pursue": False,
        "challenge": False,
        "grid": PAPER_RATES,
        "regrow": False,
        "guide_rounds": 0,
        "missing_subsets": 0,
        "extend_rounds": 0,
    },
}


#: shapiq's estimators that fit a function, whose held-out R² this benchmark can report.
SHAPIQ_FUNCTIONS = tuple(m for m in SHAPIQ_GAME_METHODS if m != "shapiq OddSHAP")  # OddSHAP: the odd part only


#: shapiq's process runs its libraries on one thread, as compattr's estimators run here: the
#: CPU seconds of a process add up all its threads, and LightGBM's and XGBoost's idle threads
#: spin (ProxySHAP with its grid search took 14.7 CPU s on both cores of the 2-core machine,
#: 6.5 s on one, for the same result; docs/results.md). LightGBM takes its threads from its
#: ``n_jobs``, not from these variables: ``shapiq_side.one_thread`` sets that.
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def run_shapiq(python: str, job: dict):
    """Run ``benchmarks/shapiq_side.py`` (its docstring: the jobs and what they return) with the
    interpreter ``python`` of shapiq's environment on ``job``, in a process of its own on one
    thread (:data:`ONE_THREAD`). Returns what it wrote; its standard output (shapiq's logs)
    is dropped."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "job.json"), Path(tmp, "out.json")
        src.write_text(json.dumps(job))
        script = Path(__file__).with_name("shapiq_side.py")
        command = [python, str(script), str(src), str(dst)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, **ONE_THREAD})
        return json.loads(dst.read_text())


def shapiq_game(python: str, truth, budget: int, sigma: float, seed: int, X_test: np.ndarray, method: str) -> dict:
    """shapiq's estimator ``method`` on the function ``truth`` (a :class:`compattr.Spectrum`)
    with ``budget`` calls and Gaussian noise of standard deviation ``sigma``. Returns its CPU
    seconds, peak memory, Shapley values and, where it fits a function, ``function``: a
    :class:`compattr.Spectrum` (ProxySPEX) or its predictions on ``X_test`` (ProxySHAP).

    ``seed`` is the function's: shapiq draws its masks with ``seed + 1``, as compattr's
    estimators do here (one seed for both would make the first masks copies of the
    function's random draws), and the noise with ``seed + 2``."""
    job = {"mode": "game", "method": method, "n": truth.n, "budget": budget, "seed": seed + 1, "sigma": sigma}
    job |= {"noise_seed": seed + 2, "coefs": truth.coefs.tolist(), "X_test": X_test.astype(int).tolist()}
    job["supports"] = [list(t) for t in truth.support_tuples()]
    return with_function(run_shapiq(python, job), truth.n)


def with_function(result: dict, n: int) -> dict:
    """A ``shapiq_side.py`` result with its fitted function, where it has one, as ``function``:
    a :class:`compattr.Spectrum` over ``n`` features (its ``fourier`` pairs) or its
    predictions on the held-out masks (its ``test_pred``)."""
    import compattr

    if "fourier" in result:
        result["function"] = compattr.Spectrum.from_dict({tuple(t): c for t, c in result.pop("fourier")}, n)
    elif "test_pred" in result:
        result["function"] = np.asarray(result.pop("test_pred"))
    return result


def predictions(fitted, X_test: np.ndarray) -> np.ndarray | None:
    """A fitted function's outputs on ``X_test``: a spectrum evaluated there, predictions
    already made there as they are, or None for none."""
    import compattr

    return fitted.predict(X_test) if isinstance(fitted, compattr.Spectrum) else fitted


def in_fresh_process(fn, *args) -> dict:
    """``fn(*args)`` (a dict) in a fresh process, with that process's peak memory as ``peak_mb``
    (so each method's peak is its own, and methods run one after the other take turns)."""
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_with_peak_memory, (fn, *args))


def _with_peak_memory(fn, *args) -> dict:
    return fn(*args) | {"peak_mb": peak_mb()}


def held_out_r2(pred: np.ndarray, y: np.ndarray) -> float:
    """R² of predictions ``pred`` (m,) of the outputs ``y`` (m,)."""
    return float(1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2))


def add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    """``--seeds S ...`` (default 11 12) or ``--draw K``, one of the two; read them back with
    :func:`chosen_seeds`."""
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    seeds.add_argument("--draw", type=int, metavar="K", help="draw K seeds afresh (printed first), instead of --seeds")


def chosen_seeds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """The seeds of :func:`add_seed_arguments`: ``--seeds``, or ``--draw K`` seeds drawn afresh
    and printed first, so that the run can be repeated with ``--seeds``."""
    if args.draw is None:
        return list(args.seeds)
    if args.draw < 1:
        parser.error(f"--draw must be at least 1, got {args.draw}")
    seeds = [int(s) for s in np.random.default_rng().integers(1_000, 1_000_000, args.draw)]
    print(f"Seeds drawn by this run: {' '.join(map(str, seeds))}\n")
    return seeds


def synthetic_function(name: str, n: int, seed: int):
    """The benchmark function ``name`` ("hierarchy" or "peak") with ``n`` features, as its
    exact :class:`compattr.Spectrum`."""
    from compattr.synthetic import complete_hierarchy, peak

    return (complete_hierarchy if name == "hierarchy" else peak)(n, seed=seed)


def noise_sd(truth, snr_db: float | None) -> float:
    """Standard deviation of Gaussian noise at ``snr_db`` dB for the function ``truth`` (a
    :class:`compattr.Spectrum`): :func:`compattr.synthetic.noise_sd`, or 0 without noise (None)."""
    from compattr import synthetic

    return 0.0 if snr_db is None else synthetic.noise_sd(truth, snr_db)


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
    row["r2"] = held_out_r2(pred, y_test)
    return row


def _shapiq_case(python: str, function: str, n: int, alpha: float, snr: float | None, seed: int, method: str) -> dict:
    """shapiq's ``method`` on the same function and budget (:func:`shapiq_game`); its table row."""
    import compattr

    truth = synthetic_function(function, n, seed)
    m = compattr.budget(n, alpha)
    X_test = compattr.sample_masks(n, 1000, seed=seed + 3)
    sigma = noise_sd(truth, snr)
    result = shapiq_game(python, truth, m, sigma, seed, X_test, method)
    pred = predictions(result["function"], X_test)
    row = {"function": function, "n": n, "alpha": alpha, "m": m, "snr_db": snr, "method": method}
    r2 = held_out_r2(pred, truth.predict(X_test))
    return row | {"cpu_s": result["cpu_s"], "r2": r2, "peak_mb": result["peak_mb"]}


def fastest(runs: Sequence[dict]) -> dict:
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
    parser.add_argument("--shapiq", metavar="PYTHON", help="python of an environment with shapiq 1.8")
    parser.add_argument(
        "--shapiq-methods", nargs="+", default=["shapiq ProxySPEX"], choices=SHAPIQ_FUNCTIONS, metavar="NAME"
    )
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
                    case = (function, n, alpha, args.snr, args.seed)
                    runs.append([in_fresh_process(_case, *case, m) for m in methods])
                    if args.shapiq and n <= args.shapiq_max_n:
                        runs[-1] += [_shapiq_case(args.shapiq, *case, m) for m in args.shapiq_methods]
                case = [fastest(method_runs) for method_runs in zip(*runs)]
                theirs = [r for r in case if r["method"] == "shapiq ProxySPEX"]
                if theirs:
                    case[0]["speedup"] = f"{theirs[0]['cpu_s'] / case[0]['cpu_s']:.1f}x"
                rows += case
                print(f"done: {function} n={n} alpha={alpha}", file=sys.stderr, flush=True)
    table = _format(rows)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
