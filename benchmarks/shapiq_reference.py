"""Run shapiq's public ProxySPEX on a function given as a sparse spectrum (own environment).

Usage: ``SHAPIQ_PYTHON benchmarks/shapiq_reference.py IN.npz OUT.npz``. ``IN.npz`` holds the
ground-truth spectrum (``indptr``, ``indices``, ``coefs``, ``n``), the ``budget``, the
``snr_db`` (NaN for none), ``seed`` and the held-out masks ``X_test``. ``OUT.npz`` receives
the predictions on ``X_test`` of shapiq's refined Fourier transform and the CPU seconds of
``approximate()`` and the process's peak memory. Kept free of compattr imports so it runs in shapiq's own environment.
"""

import resource
import sys
import time

import numpy as np
import shapiq
import shapiq.approximator.sparse.base as shapiq_base


def main(path_in: str, path_out: str) -> None:
    z = np.load(path_in)
    n, indptr, indices, coefs = int(z["n"]), z["indptr"], z["indices"], z["coefs"]
    S = np.zeros((coefs.size, n))
    for r in range(coefs.size):
        S[r, indices[indptr[r] : indptr[r + 1]]] = 1.0
    rng = np.random.default_rng(int(z["seed"]))
    signal = float(np.sum(coefs[np.diff(indptr) > 0] ** 2))
    snr = float(z["snr_db"])
    sigma = 0.0 if np.isnan(snr) else np.sqrt(signal / 10 ** (snr / 10))

    def evaluate(X):
        return (1 - 2 * np.mod(np.asarray(X, float) @ S.T, 2)) @ coefs

    def game(X):
        return evaluate(X) + rng.normal(0, sigma, len(X))

    captured = {}
    original = shapiq_base.fourier_to_moebius

    def capture(transform):
        captured["fourier"] = transform
        return original(transform)

    shapiq_base.fourier_to_moebius = capture
    approximator = shapiq.ProxySPEX(n=n, random_state=int(z["seed"]))
    start = time.process_time()
    approximator.approximate(int(z["budget"]), game)
    cpu = time.process_time() - start
    fourier = captured["fourier"]
    T = np.zeros((len(fourier), n))
    for r, key in enumerate(fourier):
        T[r, list(key)] = 1.0
    F = np.array(list(fourier.values()), float)
    X_test = z["X_test"].astype(float)
    pred = (1 - 2 * np.mod(X_test @ T.T, 2)) @ F
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.savez(path_out, pred=pred, cpu=cpu, peak_mb=peak_mb)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
