"""The benchmark scripts run end to end at a tiny size (their numbers live in docs/results.md)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the benchmark scripts in subprocesses


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def table_rows(out: str, start: str) -> list[str]:
    """The Shapley benchmark's main-table rows that begin with ``start`` (its last table, the
    verdict, has fewer columns)."""
    return [line for line in out.splitlines() if line.startswith(start) and line.count("|") > 8]


def test_queries_benchmark_prints_every_setting():
    out = run("queries.py", "--layers", "3", "--masks", "4", "--batch", "8", "--repeats", "1")
    for setting in ("naive", "per-row", "+ replay", "hook overhead", "batching ceiling", "prefix KV cache", "packed"):
        assert setting in out, out


def test_core_benchmark_prints_its_table(tmp_path):
    out = run("core.py", "--small", "--out", str(tmp_path / "table.md"))
    rows = [line for line in out.splitlines() if line.startswith("| hierarchy | 100 | 4")]
    assert {row.split("|")[6].strip() for row in rows} == {"proxyspex", "lasso"}
    assert (tmp_path / "table.md").read_text().strip() == out.strip()


def test_core_benchmark_reports_the_fastest_of_its_repeats():
    out = run("core.py", "--small", "--no-lasso", "--repeats", "2")
    header = next(line for line in out.splitlines() if line.startswith("| function"))
    cols = [c.strip() for c in header.split("|")]
    row = next(line for line in out.splitlines() if line.startswith("| hierarchy | 100 | 4"))
    cells = dict(zip(cols, (c.strip() for c in row.split("|"))))
    assert cells["method"] == "proxyspex"
    assert 0 < float(cells["cpu_s"]) <= float(cells["cpu_max_s"])


def test_shapley_benchmark_scores_compattr_against_the_exact_values():
    out = run("shapley.py", "--n", "20", "--alpha", "4", "--seeds", "5")
    rows = [[c.strip() for c in line.split("|")] for line in table_rows(out, "| 20 | 4 | 5 |")]
    assert [cells[5] for cells in rows] == ["compattr ProxySPEX", "compattr Shapley (paired)"]
    for cells in rows:
        assert float(cells[7]) >= 0 and 0 <= float(cells[8]) <= 1


def test_shapley_benchmark_takes_peak_noise_and_variants():
    out = run(
        "shapley.py",
        "--n",
        "20",
        "--alpha",
        "4",
        "--seeds",
        "6",
        "--function",
        "peak",
        "--snr",
        "10",
        "--variants",
        "proxyspex ridge=0",
        "--paired-variants",
        "paired proxies=1",
        "paired no-blend",
        "paired sparse>=0.65",
        "paired no-untuned",
        "paired kernel=0.25",
        "paired max_terms=1024",
    )
    rows = [[c.strip() for c in line.split("|")] for line in table_rows(out, "| 20 | 4 | 6 |")]
    assert [cells[5] for cells in rows] == [
        "compattr ProxySPEX",
        "compattr ProxySPEX ridge=0",
        "compattr Shapley (paired)",
        "compattr Shapley (paired proxies=1)",
        "compattr Shapley (paired no-blend)",
        "compattr Shapley (paired sparse>=0.65)",
        "compattr Shapley (paired no-untuned)",
        "compattr Shapley (paired kernel=0.25)",
        "compattr Shapley (paired max_terms=1024)",
    ]
    # R² of every row's function: ProxySPEX's spectrum, the paired mode's proxy
    assert all(float(cells[6]) <= 1 for cells in rows)


def test_shapley_benchmark_draws_a_variants_pairs_with_its_kernel_power(monkeypatch):
    """A paired variant that sets ``kernel_power`` is fitted on pairs drawn with it; the
    others on pairs drawn with the default ("auto")."""
    sys.path.insert(0, str(BENCHMARKS))
    import compattr

    import shapley

    drawn, fitted = [], []
    draw, estimator = compattr.paired_masks, compattr.PairedShapley

    def paired_masks(n, m, seed=0, kernel_power="auto"):
        drawn.append(kernel_power)
        return draw(n, m, seed=seed, kernel_power=kernel_power)

    monkeypatch.setattr(shapley.compattr, "paired_masks", paired_masks)
    monkeypatch.setattr(shapley.compattr, "PairedShapley", lambda **kw: fitted.append(kw) or estimator(**kw))
    truth = shapley.synthetic_function("hierarchy", 12, seed=3)
    for settings in ({}, shapley.PAIRED_VARIANTS["paired kernel=0.25"]):
        shapley.paired(truth, 120, 0.0, 1, settings)
    assert drawn == ["auto", 0.25]
    assert [f.get("kernel_power", "auto") for f in fitted] == ["auto", 0.25]


def test_shapley_benchmarks_paired_row_scores_its_proxys_spectrum():
    """The paired mode's function is its proxy's spectrum (ProxySPEX on the pairs' masks,
    drawn with the function's seed + 1)."""
    sys.path.insert(0, str(BENCHMARKS))
    import compattr

    import shapley

    truth = shapley.synthetic_function("hierarchy", 12, seed=3)
    result = shapley.paired(truth, 120, 0.0, 1, {})
    X = compattr.paired_masks(12, 120, seed=2)
    est = compattr.PairedShapley(random_state=1).fit(X, truth.predict(X))
    assert result["function"] == est.proxy_.spectrum_
    assert result["function"] != compattr.ProxySPEX(seed=1).fit(X, truth.predict(X)).spectrum_  # the proxy's settings


def test_shapley_benchmark_noise_has_the_asked_signal_to_noise_ratio():
    sys.path.insert(0, str(BENCHMARKS))
    import numpy as np

    import shapley

    truth = shapley.synthetic_function("hierarchy", 30, seed=3)
    X = np.random.default_rng(0).random((20_000, 30)) < 0.5
    noise = shapley.observe(truth, X, shapley.noise_sd(truth, 10.0), seed=1) - truth.predict(X)
    assert 10 * np.log10(np.var(truth.predict(X)) / np.var(noise)) == pytest.approx(10.0, abs=0.2)
    assert shapley.noise_sd(truth, None) == 0.0


def test_shapley_benchmark_reports_each_methods_fastest_of_its_repeats(monkeypatch):
    """``--repeats R``: every method of a case runs R times, the methods taking turns, and
    its row holds its fastest run's CPU seconds."""
    import argparse

    sys.path.insert(0, str(BENCHMARKS))
    import compattr

    import shapley

    calls, cpu = [], iter([3.0, 5.0, 1.0, 2.0, 4.0, 6.0])  # run 1: ours 3, paired 5; run 2: 1, 2; ...

    def fake_run(fn, truth, m, sigma, seed, settings):
        calls.append(fn.__name__)
        return {"shapley": compattr.indices.shapley(truth), "cpu_s": next(cpu), "peak_mb": 1.0}

    monkeypatch.setattr(shapley, "in_fresh_process", fake_run)
    args = argparse.Namespace(function="hierarchy", snr=None, variants=[], paired_variants=[], shapiq=None, repeats=3)
    rows = shapley.case_rows(12, 2.0, 7, args)
    assert calls == ["ours", "paired"] * 3  # taking turns
    assert {r["method"]: r["cpu_s"] for r in rows} == {"compattr ProxySPEX": 1.0, "compattr Shapley (paired)": 2.0}
    refused = subprocess.run([sys.executable, str(BENCHMARKS / "shapley.py"), "--repeats", "0"], capture_output=True)
    assert refused.returncode != 0 and b"--repeats must be at least 1" in refused.stderr


def _allocate_mb(mb: int) -> dict:
    """Touch ``mb`` MB in this process; the benchmark adds its peak memory."""
    import numpy as np

    return {"sum": float(np.ones(mb * 2**17).sum())}


def test_a_fresh_process_reports_its_own_peak_memory_not_its_parents():
    """A process spawned by a parent holding 600 MB reports its own peak (ru_maxrss would
    report at least the parent's), and grows with what it allocates."""
    sys.path.insert(0, str(BENCHMARKS))
    import numpy as np

    from core import in_fresh_process

    held = np.ones(600 * 2**17)  # 600 MB in this process
    small, large = in_fresh_process(_allocate_mb, 1), in_fresh_process(_allocate_mb, 300)
    assert small["peak_mb"] < 400 < held.nbytes / 2**20
    assert large["peak_mb"] - small["peak_mb"] == pytest.approx(300, abs=60)


def test_shapley_errors_are_relative_squared_error_and_top_k_precision():
    sys.path.insert(0, str(BENCHMARKS))
    import numpy as np

    import shapley

    truth = np.array([5.0, -4.0, 3.0, 0.1, 0.0])
    assert shapley.errors(truth, truth, top=3) == (0.0, 1.0)
    rel, precision = shapley.errors(np.array([5.0, -4.0, 0.0, 3.0, 0.0]), truth, top=3)
    assert rel == pytest.approx((9 + 2.9**2) / (25 + 16 + 9 + 0.01)) and precision == pytest.approx(2 / 3)
    # ties at the cut: a perfect estimate scores 1 whichever tied features it ranks first
    tied = np.array([0.0, 2.0, 1.0, 1.0, 1.0, 0.5])
    assert shapley.errors(tied + 1e-12 * np.arange(6)[::-1], tied, top=3)[1] == 1.0
    # zeros are no picks: an all-zero estimate found features by their index before
    assert shapley.errors(np.zeros(5), truth, top=3)[1] == 0.0
    assert shapley.errors(np.array([0.0, 0.0, 0.0, 0.0, 7.0]), np.array([1.0, 2.0, 3.0, 0.0, 0.0]), top=3)[1] == 0.0


def test_uncertainty_benchmark_prints_every_method_and_its_totals():
    out = run("uncertainty.py", "--n", "20", "--alpha", "2", "--seeds", "3", "--folds", "3")
    rows = [[c.strip() for c in line.split("|")] for line in out.splitlines() if line.startswith("| hierarchy | 20 |")]
    assert [cells[6] for cells in rows][:2] == ["bootstrap", "jackknife"] and rows[3][6] == "paired jackknife"
    assert rows[2][6] in ("auto (bootstrap)", "auto (jackknife)")
    for cells in rows:
        if cells[8].startswith("refused"):  # the bootstrap, where the spectrum has more terms than masks
            assert cells[6] == "bootstrap"
            continue
        for cell in cells[8:10]:  # held: at most every feature of its kind
            held, count = map(int, cell.split("/"))
            assert 0 <= held <= count
        assert sum(int(c.split("/")[1]) for c in cells[8:10]) == 20
    totals = [line.split("|")[1].strip() for line in out.splitlines() if line.count("|") == 8 and "%" in line]
    assert totals == ["bootstrap", "jackknife", "auto", "paired jackknife"]


def test_uncertainty_benchmark_counts_held_and_called_by_exact_value():
    sys.path.insert(0, str(BENCHMARKS))
    import numpy as np
    import uncertainty

    exact = np.array([1.0, 0.0, -2.0, 0.0])
    low, high = np.array([0.5, -1.0, -1.0, 0.1]), np.array([2.0, 1.0, 1.0, 0.5])
    assert uncertainty.held_and_called(low, high, exact) == {
        "real": 2,
        "zero": 2,
        "held_real": 1,  # 1 in [0.5, 2]; -2 outside [-1, 1]
        "held_zero": 1,  # 0 in [-1, 1]; 0 outside [0.1, 0.5]
        "called_real": 1,  # [0.5, 2] excludes 0
        "called_zero": 1,  # [0.1, 0.5] does: a false alarm
    }


def save_hierarchy(folder: Path, seed: int, offset: float = 0.0):
    """Save an explanation of a 16-feature hierarchy (seed ``seed``) in ``folder``: 300 fitting
    and 50 held-out masks, outputs shifted by ``offset``; returns the hierarchy and fitting masks."""
    import numpy as np

    import compattr

    truth = compattr.synthetic.complete_hierarchy(16, n_sets=2, order=3, seed=seed)
    X, X_test = compattr.sample_masks(16, 300, seed=seed - 1), compattr.sample_masks(16, 50, seed=seed)
    ex = compattr.Explanation(
        spectrum=truth,
        names=[f"f{i}" for i in range(16)],
        groups=np.zeros(16, int),
        masks=X,
        outputs=truth.predict(X) + offset,
        test_masks=X_test,
        test_outputs=truth.predict(X_test) + offset,
    )
    ex.save(folder)
    return truth, X


def test_saved_benchmark_refits_a_saved_explanation(tmp_path):
    save_hierarchy(tmp_path / "explanation-toy", seed=2)
    out = run("saved.py", str(tmp_path / "explanation-toy"))
    rows = [[c.strip() for c in line.split("|")] for line in out.splitlines() if line.startswith("| explanation-toy")]
    names = ["proxyspex", "proxyspex ridge=0", "proxyspex folds-only", "proxyspex final-fit<0.99"]
    names += ["proxyspex repeats=1", "proxyspex same-depth", "proxyspex unchallenged", "proxyspex paper-rates"]
    names += ["proxyspex all-folds", "proxyspex tilt=cv", "proxyspex ranking=trees"]
    names += ["proxyspex no-closure", "proxyspex no-grow", "proxyspex no-pursuit", "proxyspex no-cliques"]
    names += ["proxyspex no-regrow"]
    names += ["proxyspex regrow-once", "proxyspex regrow>=0.14", "proxyspex capped-stays", "proxyspex no-guide"]
    names += ["proxyspex every-subset", "proxyspex no-extension", "proxyspex previous"]
    assert [cells[4] for cells in rows] == [*names, "lasso"]
    assert float(rows[0][5]) > 0.9 and float(rows[0][5]) > float(rows[-1][5])  # a hierarchy: trees beat LASSO
    assert rows[0][6] == "+0.000 [+0.000, +0.000]"  # the default against itself
    gap, low, high = (float(x) for x in rows[-1][6].replace("[", "").replace("]", "").replace(",", "").split())
    assert gap == pytest.approx(float(rows[-1][5]) - float(rows[0][5]), abs=2e-3) and low <= gap <= high < 0


def test_saved_benchmark_refits_only_the_methods_asked_after_the_default(tmp_path):
    save_hierarchy(tmp_path / "explanation-toy", seed=2)
    out = run("saved.py", str(tmp_path / "explanation-toy"), "--methods", "lasso", "proxyspex ridge=0")
    rows = [[c.strip() for c in line.split("|")] for line in out.splitlines() if line.startswith("| explanation-toy")]
    assert [cells[4] for cells in rows] == ["proxyspex", "proxyspex ridge=0", "lasso"]  # in the table's order
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    summary = {cells[1]: cells[2:] for cells in ([c.strip() for c in line.split("|")] for line in lines)}
    r2 = {cells[4]: cells[5] for cells in rows}
    assert summary["proxyspex"][:3] == ["1", r2["proxyspex"], "0 / 1 / 0"]  # itself: no difference
    assert summary["lasso"][:3] == ["1", r2["lasso"], "1 / 0 / 0"]  # a hierarchy: the trees clearly higher


FAKE_SHAPIQ = {
    "__init__.py": """
import json, os
import numpy as np

TRUTH = {tuple(t): c for t, c in json.loads(os.environ["FAKE_SHAPIQ_TRUTH"])}
SHAPLEY = json.loads(os.environ.get("FAKE_SHAPIQ_SHAPLEY", "[]"))


def truth(X):
    X = np.asarray(X, dtype=bool)
    return sum(c * (1 - 2 * (X[:, list(t)].sum(1) % 2)) if t else c * np.ones(len(X)) for t, c in TRUTH.items())


class Values:  # the exact Shapley values, and f(empty) (every parity is +1 there)
    baseline_value = sum(TRUTH.values())

    def get_n_order_values(self, order):
        return np.array(SHAPLEY)


def asks(n, budget, game):  # its own coalitions: the game must answer with the exact, noise-free function
    X = np.random.default_rng(0).random((budget, n)) < 0.5
    assert np.allclose(game(X), truth(X))


class ProxySPEX:  # hands the exact spectrum, in shapiq's (tuple -> coefficient) form, to be converted
    def __init__(self, n, max_order, index, random_state):
        self.n, self._sampler = n, None

    def fourier_to_moebius(self, fourier):
        return fourier

    def approximate(self, budget, game):
        if self._sampler is None:
            asks(self.n, budget, game)
        else:
            self._sampler.sample(budget)
            X = self._sampler.coalitions_matrix
            np.save(os.environ["FAKE_SHAPIQ_SEEN"], X)
            assert np.allclose(game(X), truth(X))
        self.fourier_to_moebius(dict(TRUTH))
        return Values()


class Proxy:  # the exact function less f(empty), as ProxySHAP fits it
    def predict(self, X):
        return truth(X) - Values.baseline_value


class ProxySHAP:
    def __init__(self, n, max_order, index, hpo=False, adjustment=False, random_state=None):
        self.n, self.proxy_model = n, Proxy()

    def approximate(self, budget, game):
        asks(self.n, budget, game)
        return Values()


class OddSHAP:
    def __init__(self, n, random_state):
        self.n = n

    def approximate(self, budget, game):
        asks(self.n, budget, game)
        return Values()
""",
    "approximator/__init__.py": "",
    "approximator/proxy/__init__.py": "",
    "approximator/proxy/_routes.py": """
import numpy as np
from shapiq import truth


class Fitted:  # the truth less the offset its training values were shifted by
    def __init__(self, shift):
        self.shift = shift

    def predict(self, X):
        return truth(X) - self.shift


def fit_proxy(estimator, X, y, max_order):
    return Fitted(float(np.mean(truth(X) - y)))


def predict_proxy(fitted, X, max_order):
    return fitted.predict(X)
""",
}


def fake_shapiq(tmp_path: Path, truth: dict, shapley=()) -> dict:
    """The environment of a stand-in shapiq whose estimators return the exact function
    ``truth`` (support -> coefficient) and Shapley values ``shapley``."""
    import json
    import os

    for name, text in FAKE_SHAPIQ.items():
        (tmp_path / "fake" / "shapiq" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fake" / "shapiq" / name).write_text(text)
    return os.environ | {
        "PYTHONPATH": str(tmp_path / "fake"),
        "FAKE_SHAPIQ_TRUTH": json.dumps([[list(t), c] for t, c in truth.items()]),
        "FAKE_SHAPIQ_SHAPLEY": json.dumps(list(shapley)),
        "FAKE_SHAPIQ_SEEN": str(tmp_path / "seen.npy"),
    }


def run_with(env: dict, script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_saved_benchmark_hands_shapiq_the_saved_queries(tmp_path):
    """With --shapiq, shapiq's ProxySPEX gets the saved masks as its draw and the saved outputs as
    the game's answers, and each shapiq function is scored on the held-out masks: a stand-in
    shapiq that returns the exact function must score R² 1 (Fourier signs and offsets right)."""
    import numpy as np

    # an offset the proxy fits must carry back
    truth, X = save_hierarchy(tmp_path / "explanation-toy", seed=3, offset=3.0)
    env = fake_shapiq(tmp_path, {**truth.to_dict(), (): truth.constant + 3.0})
    out = run_with(env, "saved.py", str(tmp_path / "explanation-toy"), "--shapiq", sys.executable)
    rows = {
        cells[4]: float(cells[5])
        for cells in ([c.strip() for c in line.split("|")] for line in out.splitlines())
        if len(cells) > 5 and cells[4].startswith("shapiq")
    }
    assert set(rows) == {"shapiq ProxySPEX", "shapiq ProxySHAP proxy", "shapiq ProxySHAP proxy (HPO)"}
    assert all(r2 == 1.0 for r2 in rows.values())
    np.testing.assert_array_equal(np.load(tmp_path / "seen.npy"), X)  # the saved masks were its draw


def test_shapley_benchmark_scores_shapiq_in_its_own_processes(tmp_path):
    """Each shapiq estimator samples the benchmark's function itself (noise-free here) and is
    scored like compattr's rows: a stand-in shapiq returning the exact function and Shapley
    values scores R² 1 and error 0, and every row has its own peak memory."""
    import compattr

    sys.path.insert(0, str(BENCHMARKS))
    import shapley

    truth = shapley.synthetic_function("hierarchy", 12, seed=5)
    env = fake_shapiq(tmp_path, truth.to_dict(), compattr.indices.shapley(truth))
    out = run_with(env, "shapley.py", "--n", "12", "--alpha", "4", "--seeds", "5", "--shapiq", sys.executable)
    lines = table_rows(out, "| 12 | 4 | 5 |")
    rows = {cells[5]: cells[6:] for cells in ([c.strip() for c in line.split("|")] for line in lines)}
    assert list(rows) == ["compattr ProxySPEX", "compattr Shapley (paired)", *shapley.SHAPIQ_GAME_METHODS]
    for method in shapley.SHAPIQ_GAME_METHODS:
        r2, error, precision = rows[method][:3]
        assert r2 == ("—" if method == "shapiq OddSHAP" else "1.000")
        assert (float(error), float(precision)) == (0.0, 1.0)
    assert all(float(cells[-2]) > 0 for cells in rows.values())  # peak MB


def test_core_benchmark_runs_shapiq_beside_compattr(tmp_path):
    """``core.py --shapiq``: shapiq's functions scored on the same held-out masks, with the
    speedup over shapiq's ProxySPEX."""
    sys.path.insert(0, str(BENCHMARKS))
    import core

    env = fake_shapiq(tmp_path, core.synthetic_function("hierarchy", 100, seed=0).to_dict())
    methods = ["shapiq ProxySPEX", "shapiq ProxySHAP"]
    out = run_with(env, "core.py", "--small", "--no-lasso", "--shapiq", sys.executable, "--shapiq-methods", *methods)
    header = next(line for line in out.splitlines() if line.startswith("| function"))
    cols = [c.strip() for c in header.split("|")]
    rows = [dict(zip(cols, (c.strip() for c in line.split("|")))) for line in out.splitlines() if "| 100 | 4" in line]
    assert [r["method"] for r in rows] == ["proxyspex", *methods]
    assert [float(r["r2"]) for r in rows[1:]] == [1.0, 1.0] and float(rows[1]["peak_mb"]) > 0
    assert rows[0]["speedup"].endswith("x")


def test_pair_precision_counts_the_true_strongest_pairs_found():
    sys.path.insert(0, str(BENCHMARKS))
    import numpy as np

    import compattr

    import shapley

    pairs = [(i, i + 1) for i in range(12)]
    truth = compattr.Spectrum(14, [(), *pairs], [1.0, *np.linspace(2.0, 0.9, 12)])
    assert shapley.pair_precision(truth, truth) == 1.0
    weaker = truth.to_dict()
    weaker[(0, 1)], weaker[(1, 2)] = 0.1, 0.05  # two of the true top 10 fall below the rest
    assert shapley.pair_precision(compattr.Spectrum.from_dict(weaker, 14), truth) == pytest.approx(0.8)
    few = compattr.Spectrum(14, [(), (0, 1), (2, 3), (5,)], [1.0, 2.0, 1.0, 3.0])  # 2 non-zero pairs
    assert shapley.pair_precision(few, few) == 1.0  # out of those 2, not of 10
    peak = compattr.synthetic.peak(14, n_sets=3, order=5, seed=0)  # every pair's interaction is 0
    assert shapley.pair_precision(peak, peak) is None


def test_shapley_verdict_names_the_best_method_of_each_case_and_ties():
    sys.path.insert(0, str(BENCHMARKS))
    import shapley

    def row(seed, method, r2, error, cpu_s=1.0):
        return {"n": 10, "alpha": 2.0, "seed": seed, "method": method, "r2": r2, "error": error, "cpu_s": cpu_s}

    rows = [row(1, "a", 0.5, 0.2), row(1, "b", None, 0.1), row(1, "c", 0.7, 0.3)]
    rows += [row(2, "a", 0.9, 0.1004), row(2, "b", 0.8, 0.1001)]
    rows += [row(3, "compattr ProxySPEX", 0.9, 0.1, 2.0), row(3, "shapiq ProxySPEX", 0.8, 0.2, 25.0)]
    lines = [line for line in shapley.verdict(rows).splitlines() if line.startswith("| 10 |")]
    assert lines == [
        "| 10 | 2 | 1 | c (0.700) | b (0.100) | — |",
        "| 10 | 2 | 2 | a (0.900) | a = b (0.100) | — |",
        "| 10 | 2 | 3 | compattr ProxySPEX (0.900) | compattr ProxySPEX (0.100) | 12.5× |",
    ]


def test_the_paper_rates_variant_is_the_papers_grid():
    sys.path.insert(0, str(BENCHMARKS))
    import compattr

    import core

    assert {**compattr.PAPER_GRID, **core.PAPER_RATES} == compattr.PAPER_GRID
