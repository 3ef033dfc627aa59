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
    rows = [[c.strip() for c in line.split("|")] for line in out.splitlines() if line.startswith("| 20 | 4 | 5 |")]
    assert [cells[5] for cells in rows] == ["compattr ProxySPEX", "compattr Shapley (paired)"]
    for cells in rows:
        assert float(cells[7]) >= 0 and 0 <= float(cells[8]) <= 1


def test_shapley_benchmark_takes_peak_noise_and_the_paper_refit():
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
    )
    rows = [[c.strip() for c in line.split("|")] for line in out.splitlines() if line.startswith("| 20 | 4 | 6 |")]
    assert [cells[5] for cells in rows] == [
        "compattr ProxySPEX",
        "compattr ProxySPEX ridge=0",
        "compattr Shapley (paired)",
    ]
    assert float(rows[0][6]) <= 1 and rows[2][6] == "—"  # R² where a function is fitted


def test_shapley_benchmark_noise_has_the_asked_signal_to_noise_ratio():
    sys.path.insert(0, str(BENCHMARKS))
    import numpy as np
    import shapley

    truth = shapley.synthetic_function("hierarchy", 30, seed=3)
    X = np.random.default_rng(0).random((20_000, 30)) < 0.5
    noise = shapley.observe(truth, X, shapley.noise_sd(truth, 10.0), seed=1) - truth.predict(X)
    assert 10 * np.log10(np.var(truth.predict(X)) / np.var(noise)) == pytest.approx(10.0, abs=0.2)
    assert shapley.noise_sd(truth, None) == 0.0


def test_shapley_errors_are_relative_squared_error_and_top_k_precision():
    sys.path.insert(0, str(BENCHMARKS))
    import numpy as np
    import shapley

    truth = np.array([5.0, -4.0, 3.0, 0.1, 0.0])
    assert shapley.errors(truth, truth, top=3) == (0.0, 1.0)
    rel, precision = shapley.errors(np.array([5.0, -4.0, 0.0, 3.0, 0.0]), truth, top=3)
    assert rel == pytest.approx((9 + 2.9**2) / (25 + 16 + 9 + 0.01)) and precision == pytest.approx(2 / 3)


def test_saved_benchmark_refits_a_saved_explanation(tmp_path):
    import numpy as np

    import compattr

    truth = compattr.synthetic.complete_hierarchy(16, n_sets=2, order=3, seed=2)
    X, X_test = compattr.sample_masks(16, 300, seed=1), compattr.sample_masks(16, 50, seed=2)
    ex = compattr.Explanation(
        spectrum=truth,
        names=[f"f{i}" for i in range(16)],
        groups=np.zeros(16, int),
        masks=X,
        outputs=truth.predict(X),
        test_masks=X_test,
        test_outputs=truth.predict(X_test),
    )
    ex.save(tmp_path / "explanation-toy")
    out = run("saved.py", str(tmp_path / "explanation-toy"))
    rows = [[c.strip() for c in line.split("|")] for line in out.splitlines() if line.startswith("| explanation-toy")]
    names = ["proxyspex", "proxyspex ridge=0", "proxyspex folds-only", "proxyspex previous", "lasso"]
    assert [cells[4] for cells in rows] == names
    assert float(rows[0][5]) > 0.9 and float(rows[0][5]) > float(rows[-1][5])  # a hierarchy: trees beat LASSO


def test_pair_precision_counts_the_true_strongest_pairs_found():
    sys.path.insert(0, str(BENCHMARKS))
    import numpy as np
    import shapley

    import compattr

    pairs = [(i, i + 1) for i in range(12)]
    truth = compattr.Spectrum(14, [(), *pairs], [1.0, *np.linspace(2.0, 0.9, 12)])
    assert shapley.pair_precision(truth, truth) == 1.0
    weaker = truth.to_dict()
    weaker[(0, 1)], weaker[(1, 2)] = 0.1, 0.05  # two of the true top 10 fall below the rest
    assert shapley.pair_precision(compattr.Spectrum.from_dict(weaker, 14), truth) == pytest.approx(0.8)
