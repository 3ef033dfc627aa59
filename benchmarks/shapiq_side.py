"""shapiq 1.8's estimators, run in shapiq's own environment for the benchmarks beside it.

Kept free of compattr imports (and imports shapiq only to run a job, so that the benchmarks
read its method names): ``core.run_shapiq`` (and the benchmarks that use it) start
this file with the python of an environment holding shapiq (``python3.12 -m venv shapiq-env
&& shapiq-env/bin/pip install "shapiq[proxy]==1.8.0"``; without the ``proxy`` extra its
ProxySHAP and ProxySPEX fall back to a decision tree), one method per process, so that the
peak memory is the method's own::

    SHAPIQ_PYTHON benchmarks/shapiq_side.py JOB.json OUT.json

``JOB`` has a ``mode``:

* ``"game"``: a method of :data:`GAME_METHODS` samples its own ``budget`` coalitions of the
  function given as a sparse Fourier spectrum (``n``, ``supports``, ``coefs``), with Gaussian
  noise of standard deviation ``sigma`` (``noise_seed``); ``X_test`` are held-out masks.
* ``"saved"``: a method of :data:`SAVED_METHODS` refits saved queries ``X``, ``y``
  (shapiq's ProxySPEX is handed ``X`` as its own uniform draw; ProxySHAP's tree proxy is
  fitted by shapiq's ``fit_proxy``).
* ``"indices"``: shapiq's exact ``MoebiusConverter`` computes interaction indices of given
  Möbius transforms (``cases``: ``n``, ``sets``, ``values``, ``empty``, ``indices`` as
  [index, order] pairs).

``OUT`` receives, for the estimators, ``cpu_s`` (of the estimation alone), ``peak_mb`` (the
process's), ``shapley`` where the method estimates Shapley values, and the fitted function
where it has one: ``fourier`` ([support, coefficient] pairs of shapiq ProxySPEX's refined
spectrum) or ``test_pred`` (ProxySHAP's tree proxy on ``X_test``, plus the offset it was
fitted without). For ``"indices"``: per case, ``"INDEX/ORDER"`` -> [set, value] pairs.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from memory import peak_mb

#: Estimators that sample the function themselves (``"game"`` jobs).
GAME_METHODS = ("shapiq ProxySHAP", "shapiq ProxySHAP (HPO, adjusted)", "shapiq OddSHAP", "shapiq ProxySPEX")

#: Estimators refitted on saved queries (``"saved"`` jobs).
SAVED_METHODS = ("shapiq ProxySPEX", "shapiq ProxySHAP proxy", "shapiq ProxySHAP proxy (HPO)")


def fourier_kept(approximator) -> dict:
    """Keep the refined Fourier spectrum a shapiq ProxySPEX converts (filled by ``approximate``)."""
    fourier: dict = {}
    convert = approximator.fourier_to_moebius
    approximator.fourier_to_moebius = lambda f: convert(fourier.update(f) or f)
    return fourier


def one_thread(approximator) -> None:
    """Set the approximator's proxy (and a grid search's estimator) to one thread: LightGBM
    takes its threads from ``n_jobs``, which shapiq's ProxySPEX leaves at None (LightGBM's
    "every physical core", passed explicitly, so ``OMP_NUM_THREADS=1`` does not reach it),
    and a process's CPU seconds add up its threads' spinning too."""
    model = getattr(approximator, "proxy_model", None)
    for part in (model, getattr(model, "estimator", None)):
        if part is not None and hasattr(part, "get_params") and "n_jobs" in part.get_params(deep=False):
            part.set_params(n_jobs=1)


def game_of(job: dict):
    """The job's function with Gaussian noise: (coalitions (m, n) bool) -> (m,) outputs."""
    supports = [np.array(t, dtype=int) for t in job["supports"]]
    coefs, noise = np.array(job["coefs"]), np.random.default_rng(job["noise_seed"])

    def game(X):
        X = np.asarray(X, dtype=bool)
        out = np.zeros(len(X))
        for t, c in zip(supports, coefs):
            out += c * (1 - 2 * (X[:, t].sum(1) % 2)) if len(t) else c
        return out + noise.normal(0.0, job["sigma"], len(X))

    return game


def run_game(job: dict) -> dict:
    """One of :data:`GAME_METHODS` on the job's function and budget."""
    import shapiq

    n, seed, method = job["n"], job["seed"], job["method"]
    makers = {
        "shapiq ProxySHAP": lambda: shapiq.ProxySHAP(n, max_order=1, index="SV", random_state=seed),
        "shapiq ProxySHAP (HPO, adjusted)": lambda: shapiq.ProxySHAP(
            n, max_order=1, index="SV", hpo=True, adjustment=True, random_state=seed
        ),
        "shapiq OddSHAP": lambda: shapiq.OddSHAP(n, random_state=seed),
        "shapiq ProxySPEX": lambda: shapiq.ProxySPEX(n=n, max_order=1, index="SV", random_state=seed),
    }
    approximator, game = makers[method](), game_of(job)
    one_thread(approximator)
    fourier = fourier_kept(approximator) if method == "shapiq ProxySPEX" else {}
    start = time.process_time()
    values = approximator.approximate(job["budget"], game)
    out = {"cpu_s": time.process_time() - start, "shapley": [float(v) for v in values.get_n_order_values(1)]}
    if fourier:
        out["fourier"] = [[list(map(int, t)), float(c)] for t, c in fourier.items()]
    elif method.startswith("shapiq ProxySHAP"):  # its proxy (fitted to f - f(empty)) is its function
        model = getattr(approximator.proxy_model, "best_estimator_", approximator.proxy_model)
        X_test = np.asarray(job["X_test"], dtype=float)
        out["test_pred"] = [float(v) for v in model.predict(X_test) + values.baseline_value]
    return out


def run_saved(job: dict) -> dict:
    """One of :data:`SAVED_METHODS` refitted on the job's saved queries."""
    import shapiq

    X, y = np.asarray(job["X"], dtype=bool), np.asarray(job["y"], dtype=float)
    n, seed, method = X.shape[1], job["seed"], job["method"]
    start = time.process_time()
    if method == "shapiq ProxySPEX":
        approximator = shapiq.ProxySPEX(n=n, max_order=1, index="SV", random_state=seed)
        one_thread(approximator)
        approximator._sampler = SavedDraw(X)
        fourier = fourier_kept(approximator)

        def answers(coalitions):
            assert coalitions is X, "the estimator asked for masks that were not saved"
            return y

        approximator.approximate(len(X), answers)
        out = {"fourier": [[list(map(int, t)), float(c)] for t, c in fourier.items()]}
    else:
        from shapiq.approximator.proxy._routes import fit_proxy, predict_proxy

        hpo = method == "shapiq ProxySHAP proxy (HPO)"
        approximator = shapiq.ProxySHAP(n, max_order=1, index="SV", hpo=hpo, random_state=seed)
        one_thread(approximator)
        offset = float(y.mean())  # ProxySHAP fits the values less f(empty); trees do not mind the shift
        fitted = fit_proxy(approximator.proxy_model, X, y - offset, max_order=1)
        X_test = np.asarray(job["X_test"], dtype=bool)
        out = {"test_pred": [float(v) for v in predict_proxy(fitted, X_test, max_order=1) + offset]}
    return {"cpu_s": time.process_time() - start, **out}


class SavedDraw:
    """The saved masks as a shapiq sampler's draw (ProxySPEX samples uniform masks, as they were)."""

    def __init__(self, X: np.ndarray) -> None:
        self.coalitions_matrix = X

    def sample(self, budget: int) -> None:
        assert budget == len(self.coalitions_matrix)


def run_indices(job: dict) -> list[dict]:
    """shapiq's exact interaction indices of each case's Möbius transform."""
    from shapiq.game_theory.moebius_converter import MoebiusConverter
    from shapiq.interaction_values import InteractionValues

    out = []
    for case in job["cases"]:
        sets = [tuple(s) for s in case["sets"]]
        moebius = InteractionValues(
            values=np.array(case["values"]),
            index="Moebius",
            n_players=case["n"],
            min_order=0,
            max_order=case["n"],
            interaction_lookup={s: i for i, s in enumerate(sets)},
            baseline_value=case["empty"],
        )
        converter = MoebiusConverter(moebius)
        result = {}
        for index, order in case["indices"]:
            values = converter(index=index, order=order)
            result[f"{index}/{order}"] = [[list(s), float(values[s])] for s in values.interaction_lookup]
        out.append(result)
    return out


def main(path_in: str, path_out: str) -> None:
    with open(path_in) as f:
        job = json.load(f)
    if job["mode"] == "indices":
        out = run_indices(job)
    else:
        out = (run_game if job["mode"] == "game" else run_saved)(job)
        out["peak_mb"] = peak_mb()
    with open(path_out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
