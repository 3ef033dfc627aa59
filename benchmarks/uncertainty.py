"""How often compattr's intervals hold the exact values, on functions with known spectra.

On the Synthetic Complete Hierarchy or Peak, optionally with Gaussian noise (``--snr``), each
case fits on ``m = ceil(alpha n log2 n)`` masks and asks for 95 % intervals three ways:

* ``bootstrap``: ``Explanation.uncertainty()``'s default: ProxySPEX on uniform masks, its
  terms refitted on 200 bootstrap resamples (:func:`compattr.spectrum.bootstrap`);
* ``jackknife``: ``Explanation.uncertainty(method="jackknife")``: the same ProxySPEX fitted
  again without each of 5 groups of masks (:func:`compattr.spectrum.jackknife`);
* ``auto (...)``: ``Explanation.uncertainty()``'s default on the same fit, and which of the
  two it picked (the bootstrap only where the spectrum is its terms' refit and the fit
  explains something);
* ``paired jackknife``: :meth:`compattr.PairedShapley.uncertainty` on as many masks drawn as
  complementary pairs (Shapley values only).

Reported per (case, method): the point estimate's Shapley error (relative squared error),
how many of the features whose exact Shapley value is non-zero / zero have it inside their
interval ("held"), how many intervals exclude 0 for features whose exact value is non-zero /
zero ("called": a real value found / a false alarm); for the spectrum's 30 strongest terms
(bootstrap and jackknife), how many exact coefficients their intervals hold and how many of
the real / spurious terms they call non-zero; and the CPU seconds of the intervals (the fit's
excluded). The bootstrap refuses a spectrum of more terms than masks fitted without a ridge
(a row says so). Totals per method close the run. Seeds are given (``--seeds``) or drawn afresh
(``--draw K``, printed first); nothing is tuned here.

    python benchmarks/uncertainty.py --alpha 1 2 4 --draw 2
    python benchmarks/uncertainty.py --alpha 2 4 --snr 10 --draw 2
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict

import numpy as np
from threadpoolctl import threadpool_limits

import compattr

from core import FUNCTIONS, add_seed_arguments, chosen_seeds, noise_sd, synthetic_function
from shapley import observe

METHODS = ("bootstrap", "jackknife", "paired jackknife")  # and "auto": what Explanation.uncertainty() picks
CONFIDENCE = 0.95
TOP_TERMS = 30


def shapley_rows(table, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds (n,) of each feature's Shapley interval from an index table."""
    by_feature = table.set_index(table["features"].map(lambda f: f[0])).sort_index()
    assert len(by_feature) == n
    return by_feature["ci_low"].to_numpy(), by_feature["ci_high"].to_numpy()


def held_and_called(low: np.ndarray, high: np.ndarray, exact: np.ndarray) -> dict:
    """Counts of exact values inside their intervals and of intervals excluding 0, split by
    whether the exact value is non-zero (``real``) or zero."""
    real = np.abs(exact) > 1e-12
    held = (low <= exact) & (exact <= high)
    called = (low > 0) | (high < 0)
    return {
        "real": int(real.sum()),
        "zero": int((~real).sum()),
        "held_real": int(held[real].sum()),
        "held_zero": int(held[~real].sum()),
        "called_real": int(called[real].sum()),
        "called_zero": int(called[~real].sum()),
    }


def term_counts(refitted, truth: compattr.Spectrum) -> dict:
    """The ``TOP_TERMS`` strongest terms' intervals against the exact coefficients (0 for a
    term the function lacks)."""
    frame = refitted.to_frame(TOP_TERMS, confidence=CONFIDENCE)
    exact_of = truth.to_dict()
    exact = np.array([exact_of.get(tuple(sorted(t)), 0.0) for t in frame["features"]])
    counts = held_and_called(frame["ci_low"].to_numpy(), frame["ci_high"].to_numpy(), exact)
    return {"terms_" + key: value for key, value in counts.items()}


def case_rows(function: str, n: int, alpha: float, snr: float | None, seed: int, folds: int) -> list[dict]:
    """Every method's row of one case."""
    truth = synthetic_function(function, n, seed)
    exact = compattr.indices.shapley(truth)
    sigma = noise_sd(truth, snr)
    m = compattr.budget(n, alpha)
    case = {"function": function, "n": n, "alpha": alpha, "snr": snr, "seed": seed, "masks": m}
    rows = []

    X = compattr.sample_masks(n, m, seed=seed + 1)  # not the function's seed: its draws would repeat
    y = observe(truth, X, sigma, seed)
    est = compattr.ProxySPEX(seed=seed).fit(X, y)
    error = _error(compattr.indices.shapley(est.spectrum_), exact)
    ridge = est.ridge_ if np.isfinite(est.ridge_) else 0.0
    for method in METHODS[:2]:
        start = time.process_time()
        if method == "bootstrap":
            try:
                refitted = compattr.spectrum.bootstrap(est.spectrum_, X, y, 200, seed, ridge=ridge)
            except ValueError:  # more terms than masks and no ridge: no least-squares refit
                rows.append(case | {"method": method, "error": error, "refused": True})
                continue
        else:
            refitted = compattr.spectrum.jackknife(est, X, y, folds, seed=seed)
        low, high = shapley_rows(refitted.index("shapley", confidence=CONFIDENCE), n)
        counts = held_and_called(low, high, exact) | term_counts(refitted, truth)
        rows.append(case | counts | {"method": method, "error": error, "cpu_s": time.process_time() - start})
    rows.append(case | {"error": error} | auto_row(est, X, y, truth, exact, folds, seed))

    X = compattr.paired_masks(n, m, seed=seed + 1)
    y = observe(truth, X, sigma, seed)
    paired = compattr.PairedShapley(random_state=seed).fit(X, y)
    start = time.process_time()
    low, high = shapley_rows(paired.uncertainty(X, y, folds=folds, confidence=CONFIDENCE), n)
    counts = held_and_called(low, high, exact)
    error = _error(paired.shapley_, exact)
    rows.append(case | counts | {"method": METHODS[2], "error": error, "cpu_s": time.process_time() - start})
    return rows


def auto_row(est, X, y, truth, exact, folds: int, seed: int) -> dict:
    """What ``Explanation.uncertainty()`` (``method="auto"``) gives for the fit ``est``: the
    explanation ``explain`` would have made of it (the fit's ridge, CV R² and parameters), its
    intervals counted as the others', and which method it picked."""
    n = truth.n
    ex = compattr.Explanation.from_fit(est, X, y, X[:2], y[:2])
    start = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compattr.spectrum.RefitMismatchWarning)
        refitted = ex.uncertainty(seed=seed, folds=folds, progress=False)
    low, high = shapley_rows(refitted.index("shapley", confidence=CONFIDENCE), n)
    picked = "jackknife" if isinstance(refitted, compattr.spectrum.SpectrumJackknife) else "bootstrap"
    counts = held_and_called(low, high, exact) | term_counts(refitted, truth)
    return counts | {"method": "auto", "picked": picked, "cpu_s": time.process_time() - start}


def _error(estimate: np.ndarray, exact: np.ndarray) -> float:
    return float(np.sum((estimate - exact) ** 2) / np.sum(exact**2))


def _format(r: dict) -> str:
    noise = "—" if r["snr"] is None else f"{r['snr']:g} dB"
    method = f"auto ({r['picked']})" if "picked" in r else r["method"]
    cells = [r["function"], r["n"], f"{r['alpha']:g}", noise, r["seed"], method, f"{r['error']:.3f}"]
    if r.get("refused"):
        return "| " + " | ".join(map(str, cells + ["refused: more terms than masks"] + ["—"] * 5)) + " |"
    cells += [
        f"{r['held_real']}/{r['real']}",
        f"{r['held_zero']}/{r['zero']}",
        f"{r['called_real']} / {r['called_zero']}",
    ]
    if "terms_real" in r:
        held = r["terms_held_real"] + r["terms_held_zero"]
        cells += [f"{held}/{r['terms_real'] + r['terms_zero']}", f"{r['terms_called_real']} / {r['terms_called_zero']}"]
    else:
        cells += ["—", "—"]
    cells.append(f"{r['cpu_s']:.1f}")
    return "| " + " | ".join(map(str, cells)) + " |"


def totals(rows: list[dict]) -> str:
    """Per method: the shares held and the calls, over every case of the run."""
    sums: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        sums[r["method"]]["refused"] += bool(r.get("refused"))
        for key, value in r.items():
            if key.startswith(("held", "called", "real", "zero", "terms_")):
                sums[r["method"]][key] += value
    lines = [
        "| method | non-zero held | zero held | called non-zero: real / false | top terms held "
        "| top terms called: real / spurious | cases refused |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, s in sums.items():
        cells = [
            method,
            f"{s['held_real']}/{s['real']} ({s['held_real'] / max(s['real'], 1):.0%})",
            f"{s['held_zero']}/{s['zero']} ({s['held_zero'] / max(s['zero'], 1):.0%})",
            f"{s['called_real']} / {s['called_zero']}",
        ]
        if "terms_real" in s:
            held, count = s["terms_held_real"] + s["terms_held_zero"], s["terms_real"] + s["terms_zero"]
            cells += [
                f"{held}/{count} ({held / max(count, 1):.0%})",
                f"{s['terms_called_real']} / {s['terms_called_zero']}",
            ]
        else:
            cells += ["—", "—"]
        lines.append("| " + " | ".join([*cells, str(s["refused"])]) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--function", default="hierarchy", choices=FUNCTIONS)
    p.add_argument("--snr", type=float, default=None, help="Gaussian noise at this SNR (dB)")
    p.add_argument("--n", type=int, nargs="+", default=[100])
    p.add_argument("--alpha", type=float, nargs="+", default=[1, 2, 4])
    p.add_argument("--folds", type=int, default=5, help="groups of the jackknives")
    add_seed_arguments(p)
    args = p.parse_args(argv)
    args.seeds = chosen_seeds(p, args)
    print(
        f"{CONFIDENCE:.0%} intervals. held: exact value inside; called: interval excludes 0 "
        f"(real / false); top terms: the spectrum's {TOP_TERMS} strongest.\n"
    )
    print(
        "| function | n | alpha | noise | seed | method | Shapley error | non-zero held | zero held "
        "| called: real / false | top terms held | top terms called: real / spurious | CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    with threadpool_limits(1):
        for n in args.n:
            for alpha in args.alpha:
                for seed in args.seeds:
                    for r in case_rows(args.function, n, alpha, args.snr, seed, args.folds):
                        print(_format(r), flush=True)
                        rows.append(r)
    print("\n" + totals(rows))


if __name__ == "__main__":
    main()
