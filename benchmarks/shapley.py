"""Shapley values per model call: compattr against shapiq 1.8's newest estimators.

On the Synthetic Complete Hierarchy or Peak (functions with known sparse spectra, so their
exact Shapley values are known), optionally with Gaussian noise (``--snr``), each method gets
the same number of model calls ``m = ceil(alpha n log2 n)`` and estimates the ``n`` Shapley
values:

* ``compattr ProxySPEX``: ProxySPEX on ``m`` uniform masks, Shapley values read exactly off
  its spectrum (``--variants`` adds rows that undo one of its default choices, as in
  ``core.py``);
* ``compattr Shapley (paired)``: :class:`compattr.PairedShapley` on ``m`` masks drawn as
  complementary pairs by :func:`compattr.paired_masks` (an odd ``m`` loses its last call;
  ``--paired-variants`` adds rows that undo one of its default choices,
  :data:`PAIRED_VARIANTS`, the masks drawn with the variant's ``kernel_power`` where it sets
  one); its function is its proxy's spectrum (``proxy_``: ProxySPEX on the pairs' masks,
  whose sizes lean towards the extremes);
* shapiq 1.8 (its own environment, ``--shapiq PYTHON``): ``ProxySHAP`` (index SV) with its
  defaults and with its grid search and MSR residual adjustment on, ``OddSHAP`` and
  ``ProxySPEX`` (index SV), each sampling its own coalitions (``--shapiq-methods`` picks).

Reported per (n, alpha, seed, method): held-out R² of the fitted function on 1,000 fresh
uniform masks against the noise-free function (compattr's spectra, the paired mode's that of
its proxy, shapiq ProxySPEX's refined Fourier spectrum, ProxySHAP's tree proxy; OddSHAP fits
the odd part only, so none), relative
squared error of the Shapley vector ``||phi_hat - phi||^2 / ||phi||^2``, precision of its top
10 (by magnitude) against the true top 10, precision of the 10 strongest pairwise Shapley
interactions where a method gives a whole spectrum (compattr's rows, shapiq ProxySPEX), CPU
seconds and peak memory (each method runs in a process of its own, one after the other). A
last table names, per case, the method with the best R² and the one with the lowest Shapley
error, and how many times faster compattr's ProxySPEX ran than shapiq's (CPU seconds; the
methods run one after the other, so load on the machine skews the ratio: ``--repeats R``
runs every method of a case R times, the methods taking turns, and reports each one's
fastest run). Functions and
masks are drawn with the seeds the run is given (``--seeds``) or draws afresh (``--draw K``,
printed first so that the run can be repeated); nothing is tuned here.

    python benchmarks/shapley.py --shapiq /tmp/shapiq-env/bin/python --n 100 --alpha 2 4 --seeds 11 12
    python benchmarks/shapley.py --shapiq /tmp/shapiq-env/bin/python --n 100 --alpha 1 2 4 8 --draw 2

(shapiq >= 1.5 needs Python >= 3.12: ``python3.12 -m venv shapiq-env &&
shapiq-env/bin/pip install "shapiq[proxy]==1.8.0"``; without the ``proxy`` extra its
ProxySHAP and ProxySPEX fall back to a decision tree.)
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

import compattr

from core import (
    SHAPIQ_GAME_METHODS,
    VARIANTS,
    add_seed_arguments,
    chosen_seeds,
    fastest,
    held_out_r2,
    in_fresh_process,
    noise_sd,
    predictions,
    shapiq_game,
    synthetic_function,
)

#: PairedShapley's settings by row name: variants that undo one of its default choices.
PAIRED_VARIANTS = {
    "paired proxies=1": {"proxies": 1},  # the prior from one fit's trees, not three averaged
    "paired no-blend": {"blend": False},  # the trees' odd part alone, even where the proxy grew
    "paired sparse>=0.65": {"sparse_above": 0.65},  # the sparse prior kept from 0.65 on any budget
    "paired no-untuned": {"untuned_trees": False},  # the tuned fits' trees alone in the prior
    "paired kernel=0.25": {"kernel_power": 0.25},  # the pairs' sizes drawn by 0.25 at any budget
    "paired max_terms=1024": {"max_terms": 1024},  # the refit's terms bounded below 400 pairs too
}


def pair_precision(estimate: compattr.Spectrum, truth: compattr.Spectrum, top: int = 10) -> float | None:
    """Precision of the strongest pairwise Shapley interactions (SII) of a spectrum against
    the true ``top`` strongest non-zero pairs (all of them where there are fewer), or None
    where the truth has none (the Synthetic Peak: its order-5 terms give every pair 0)."""

    def strongest(sp: compattr.Spectrum, count: int) -> set:
        sii = compattr.indices.shapley_interaction(sp, max_order=2)
        pairs = {t: v for t, v in sii.items() if len(t) == 2 and v != 0.0}
        return set(sorted(pairs, key=lambda t: -abs(pairs[t]))[:count])

    true = strongest(truth, top)
    return len(strongest(estimate, len(true)) & true) / len(true) if true else None


def errors(estimate: np.ndarray, truth: np.ndarray, top: int = 10) -> tuple[float, float]:
    """Relative squared error and top-``top`` precision of a Shapley vector: the share of
    ``top`` that the estimate's ``top`` largest non-zero values (by magnitude) place among
    the true ones. The true ones are the features whose non-zero value is at least the
    ``top``-th largest, ties included (the Synthetic Peak gives the features of one set one
    value, so a cut at exactly ``top`` would pick among them arbitrarily); an estimate's
    zero values are no picks (ranked by index, they would find features by chance)."""
    rel = float(np.sum((estimate - truth) ** 2) / np.sum(truth**2))
    size = np.abs(truth)
    cut = np.sort(size)[::-1][min(top, len(size)) - 1]
    best = set(np.flatnonzero((size >= cut - 1e-9 * size.max()) & (size > 0)))
    picks = [i for i in np.argsort(-np.abs(estimate), kind="stable")[:top] if estimate[i] != 0]
    return rel, len(best.intersection(picks)) / top


def observe(truth: compattr.Spectrum, X: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """The function's outputs on masks ``X`` with Gaussian noise of standard deviation ``sigma``."""
    return truth.predict(X) + np.random.default_rng(seed + 2).normal(0.0, sigma, len(X))


def ours(truth: compattr.Spectrum, m: int, sigma: float, seed: int, settings: dict) -> dict:
    """ProxySPEX on ``m`` uniform masks drawn with ``seed + 1`` (``seed`` is the function's)."""
    X = compattr.sample_masks(truth.n, m, seed=seed + 1)
    y = observe(truth, X, sigma, seed)
    start = time.process_time()
    est = compattr.ProxySPEX(seed=seed, **settings).fit(X, y)
    shapley = compattr.indices.shapley(est.spectrum_)
    return {"shapley": shapley, "cpu_s": time.process_time() - start, "function": est.spectrum_}


def paired(truth: compattr.Spectrum, m: int, sigma: float, seed: int, settings: dict) -> dict:
    """PairedShapley on ``m`` paired masks drawn with ``seed + 1`` (``seed`` is the function's)."""
    X = compattr.paired_masks(truth.n, m, seed=seed + 1, kernel_power=settings.get("kernel_power", "auto"))
    y = observe(truth, X, sigma, seed)
    start = time.process_time()
    est = compattr.PairedShapley(random_state=seed, **settings).fit(X, y)
    return {"shapley": est.shapley_, "cpu_s": time.process_time() - start, "function": est.proxy_.spectrum_}


def case_rows(n: int, alpha: float, seed: int, args) -> list[dict]:
    """Every method's row of one case: its held-out R² (None without a function), Shapley
    error and precision, pair precision (None without a spectrum), CPU seconds, peak memory."""
    m = compattr.budget(n, alpha)
    truth = synthetic_function(args.function, n, seed)
    sigma = noise_sd(truth, args.snr)
    exact = compattr.indices.shapley(truth)
    X_test = compattr.sample_masks(n, 1000, seed=seed + 10_000)
    y_test = truth.predict(X_test)
    runs = {"compattr ProxySPEX": partial(in_fresh_process, ours, truth, m, sigma, seed, {})}
    for variant in args.variants:
        name = f"compattr {variant.replace('proxyspex', 'ProxySPEX')}"
        runs[name] = partial(in_fresh_process, ours, truth, m, sigma, seed, VARIANTS[variant])
    runs["compattr Shapley (paired)"] = partial(in_fresh_process, paired, truth, m, sigma, seed, {})
    for variant in args.paired_variants:
        settings = PAIRED_VARIANTS[variant]
        runs[f"compattr Shapley ({variant})"] = partial(in_fresh_process, paired, truth, m, sigma, seed, settings)
    for method in args.shapiq_methods if args.shapiq else []:
        runs[method] = partial(shapiq_game, args.shapiq, truth, m, sigma, seed, X_test, method)
    trials = [{name: run() for name, run in runs.items()} for _ in range(args.repeats)]  # methods take turns
    results = {name: fastest([trial[name] for trial in trials]) for name in runs}
    rows = []
    for method, r in results.items():
        rel, precision = errors(np.asarray(r["shapley"]), exact)
        fitted = r.get("function")
        pred = predictions(fitted, X_test)
        spectrum = isinstance(fitted, compattr.Spectrum)
        rows.append(
            {"n": n, "alpha": alpha, "seed": seed, "masks": m, "method": method}
            | {"r2": None if pred is None else held_out_r2(pred, y_test), "error": rel, "precision": precision}
            | {
                "pairs": pair_precision(fitted, truth) if spectrum else None,
                "cpu_s": r["cpu_s"],
                "peak_mb": r["peak_mb"],
            }
        )
    return rows


def verdict(rows: list[dict]) -> str:
    """Per case, the method with the best held-out R² and the one with the lowest Shapley
    error (ties to three decimals named together), and how many times compattr's ProxySPEX
    is faster than shapiq's (their CPU seconds' ratio; "—" without both), as a markdown table."""
    out = (
        "| n | alpha | seed | best held-out R² | lowest Shapley rel. sq. error "
        "| speed-up over shapiq ProxySPEX |\n|---|---|---|---|---|---|\n"
    )
    cases = dict.fromkeys((r["n"], r["alpha"], r["seed"]) for r in rows)
    for n, alpha, seed in cases:
        case = [r for r in rows if (r["n"], r["alpha"], r["seed"]) == (n, alpha, seed)]

        def best(key, sign):
            scored = [(round(sign * r[key], 3), r["method"]) for r in case if r[key] is not None]
            top = max(v for v, _ in scored)
            return " = ".join(m for v, m in scored if v == top) + f" ({sign * top:.3f})"

        cpu = {r["method"]: r.get("cpu_s") for r in case}
        ours, theirs = cpu.get("compattr ProxySPEX"), cpu.get("shapiq ProxySPEX")
        speedup = "—" if not ours or theirs is None else f"{theirs / ours:.1f}×"
        out += f"| {n} | {alpha:g} | {seed} | {best('r2', 1)} | {best('error', -1)} | {speedup} |\n"
    return out


def _format(r: dict) -> str:
    """One row of the table."""
    missing = "—"
    cells = [r["n"], f"{r['alpha']:g}", r["seed"], r["masks"], r["method"]]
    cells += [missing if r["r2"] is None else f"{r['r2']:.3f}", f"{r['error']:.3f}", f"{r['precision']:.1f}"]
    cells += [missing if r["pairs"] is None else f"{r['pairs']:.1f}", f"{r['cpu_s']:.2f}", f"{r['peak_mb']:.0f}"]
    return "| " + " | ".join(map(str, cells)) + " |"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapiq", metavar="PYTHON", help="python of an environment with shapiq 1.8")
    p.add_argument(
        "--shapiq-methods", nargs="+", default=list(SHAPIQ_GAME_METHODS), choices=SHAPIQ_GAME_METHODS, metavar="NAME"
    )
    p.add_argument("--function", default="hierarchy", choices=("hierarchy", "peak"))
    p.add_argument("--snr", type=float, default=None, help="Gaussian noise at this SNR (dB)")
    p.add_argument(
        "--variants", nargs="+", default=[], choices=list(VARIANTS)[1:], help="also these ProxySPEX variants"
    )
    p.add_argument(
        "--paired-variants",
        nargs="+",
        default=[],
        choices=list(PAIRED_VARIANTS),
        help="also these PairedShapley variants",
    )
    p.add_argument("--n", type=int, nargs="+", default=[100])
    p.add_argument("--alpha", type=float, nargs="+", default=[2, 4])
    p.add_argument(
        "--repeats", type=int, default=1, help="runs per case and method, taking turns; the fastest is reported"
    )
    add_seed_arguments(p)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    args.seeds = chosen_seeds(p, args)
    print(
        "| n | alpha | seed | masks | method | held-out R² | Shapley rel. sq. error | top-10 precision "
        "| top-10 pair precision (SII) | CPU s | peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for n in args.n:
        for alpha in args.alpha:
            for seed in args.seeds:
                for r in case_rows(n, alpha, seed, args):
                    print(_format(r), flush=True)
                    rows.append(r)
    print("\n" + verdict(rows))


if __name__ == "__main__":
    main()
