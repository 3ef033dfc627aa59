"""compattr's interaction indices against shapiq's on the same functions.

Each function is a random sparse spectrum; compattr computes its Möbius transform and every
index from the Fourier coefficients; shapiq (in its own environment, given by ``--shapiq``)
receives the same Möbius coefficients and computes the indices with its exact
``MoebiusConverter``. Prints, per index and order, the largest absolute difference over all
sets and functions:

    python benchmarks/shapiq_indices.py --shapiq shapiq-env/bin/python

(shapiq >= 1.5 needs Python >= 3.12: ``python3.12 -m venv shapiq-env &&
shapiq-env/bin/pip install shapiq==1.8.0``.)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from compattr import Spectrum, indices

from core import run_shapiq

#: shapiq's index name -> compattr's function (order-limited indices take ``order``).
INDICES = {"k-SII": indices.k_sii, "STII": indices.shapley_taylor, "FSII": indices.faith_shapley}


def random_spectrum(n: int, terms: int, max_degree: int, seed: int) -> Spectrum:
    rng = np.random.default_rng(seed)
    supports = [tuple(rng.choice(n, size=rng.integers(1, max_degree + 1), replace=False)) for _ in range(terms)]
    return Spectrum(n, [*supports, ()], rng.normal(size=terms + 1))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapiq", required=True, help="Python of an environment with shapiq installed")
    p.add_argument("--functions", type=int, default=5, help="random spectra per setting (default 5)")
    args = p.parse_args(argv)
    settings = [(8, 12, 4), (12, 30, 5)]  # (n, terms, max degree)
    orders = [1, 2, 3]
    spectra = [random_spectrum(n, t, d, seed) for n, t, d in settings for seed in range(args.functions)]
    job = []
    for sp in spectra:
        m = indices.moebius(sp)
        job.append(
            {
                "n": sp.n,
                "sets": [list(s) for s in m],
                "values": list(m.values()),
                "empty": m.get((), 0.0),
                "indices": [[index, order] for index in INDICES for order in orders],
            }
        )
    theirs = run_shapiq(args.shapiq, {"mode": "indices", "cases": job})
    print(f"{len(spectra)} random spectra (n, terms, max degree in {settings})")
    print("| index | order | largest |ours - shapiq| over all sets | sets compared |")
    print("|---|---|---|---|")
    for index, ours_fn in INDICES.items():
        for order in orders:
            worst, count = 0.0, 0
            for sp, result in zip(spectra, theirs):
                ours = ours_fn(sp, order)
                for s, value in result[f"{index}/{order}"]:
                    worst = max(worst, abs(ours.get(tuple(s), 0.0) - value))
                    count += 1
            print(f"| {index} | {order} | {worst:.2e} | {count} |")


if __name__ == "__main__":
    sys.exit(main())
