"""recipes/hierarchy.py on a saved explanation and the synthetic references."""

import sys
from pathlib import Path

import numpy as np

import compattr

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))
import hierarchy
import pytest

pytestmark = pytest.mark.slow  # runs a whole recipe script


def test_rates_of_a_downward_closed_spectrum_are_one():
    sp = compattr.Spectrum(4, [(), (0,), (1,), (0, 1), (2,)], [5.0, 4.0, 3.0, 2.0, 1.0])
    X = compattr.sample_masks(4, 200, seed=0)
    rows = hierarchy.hierarchy_rows("toy", sp, X, sp.predict(X), ks=[2, 4, 5, 10])
    assert [r["k"] for r in rows] == [2, 4, 5]  # k beyond the spectrum is skipped
    unsorted = hierarchy.hierarchy_rows("toy", sp, X, sp.predict(X), ks=[10, 4, 2])
    assert [r["k"] for r in unsorted] == [4, 2]  # the rows after a k too large were dropped
    assert all(r["DSR"] == r["SCR"] == r["SHR"] == 1.0 for r in rows)
    assert rows[-1]["R² top-k"] == 1.0


def test_recipe_end_to_end(tmp_path):
    truth = compattr.synthetic.complete_hierarchy(12, n_sets=2, order=3, seed=0)

    class Synthetic:
        n, names, groups = 12, [f"x{i}" for i in range(12)], np.zeros(12, int)

        def evaluate(self, masks):
            return truth.predict(masks)

    ex = compattr.explain(features=Synthetic(), budget=300, test_masks=200, progress=False)
    ex.save(tmp_path / "run" / "explanation")
    hierarchy.main(
        [
            "--out",
            str(tmp_path / "out"),
            "--explanations",
            str(tmp_path / "run" / "explanation"),
            "--k",
            "5",
            "10",
            "--synthetic-n",
            "20",
        ]
    )
    text = (tmp_path / "out" / "results.md").read_text()
    assert "run/explanation" in text and "synthetic peak" in text
    assert (tmp_path / "out" / "hierarchy.png").stat().st_size > 5000
