"""recipes/heads_mc.py end to end on a tiny random Llama and a tiny question file."""

import sys
from pathlib import Path

import pytest

from compattr import Explanation

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))
import heads_mc

pytestmark = pytest.mark.slow  # runs a whole recipe script


def test_layer_range():
    """The layer groups are read by the CLI's one layer parser, and labelled by its inverse."""
    assert heads_mc.parse_layers("2-4") == [2, 3, 4] and heads_mc.parse_layers("7") == [7]
    assert heads_mc.format_layers([2, 3, 4]) == "2-4" and heads_mc.format_layers([0, 5]) == "0,5"


def test_recipe_end_to_end(tmp_path, tiny_mc_folder):
    out = tmp_path / "out"
    heads_mc.main(
        [
            "--model",
            str(tiny_mc_folder / "model"),
            "--task",
            str(tiny_mc_folder / "questions.jsonl"),
            "--groups",
            "0-1",
            "1-2",
            "--keep",
            "0.5",
            "--train-questions",
            "6",
            "--alpha",
            "3",
            "--test-masks",
            "20",
            "--best-of",
            "10",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    text = (out / "results.md").read_text()
    for needle in ("L0-1", "L1-2", "ProxySPEX", "LASSO", "Best-of-10", "cross-layer"):
        assert needle in text
    assert (out / "heads_mc.png").stat().st_size > 5000
    ex = Explanation.load(out / "explanation-L1-2")
    assert ex.n == 8 and ex.names[0] == "L1.H0"
