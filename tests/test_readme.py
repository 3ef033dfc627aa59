"""The README's quick start runs as written: its code block, verbatim, on a tiny model.

Only the two loaders that need offline assets are swapped, SmolLM2 for a 30-layer random-weight
Llama and the capital-city questions for questions in that model's word vocabulary; every other
line (the explain call, the plan, the accuracy on held-out questions, the pruned forward, the
save) runs as a reader would run it, so the snippet cannot silently rot.
"""

import re
from pathlib import Path

import numpy as np
import pytest

import compattr
from compattr._testing import WORDS, tiny_llama, word_tokenizer
from compattr.tasks import QuestionSet

REPO = Path(__file__).resolve().parents[1]


def python_block(heading: str) -> str:
    """The first python block of the README's section that starts with ``heading``."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n{heading}")
    level = heading.split(" ", 1)[0]  # "##" or "###": the section ends at the next of its level
    block = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert block is not None and block.start() < text[start:].index(f"\n{level} ", 1), f"no python block in {heading}"
    return block.group(1)


def quick_start() -> str:
    """The python block of the README's "Quick start" section (its first)."""
    return python_block("## Quick start")


def tiny_questions(count: int = 60, seed: int = 0) -> QuestionSet:
    """4-way questions in the word tokenizer's vocabulary (``w0`` .. ``w57``)."""
    rng = np.random.default_rng(seed)
    return QuestionSet(
        [" ".join(f"w{i}" for i in rng.integers(0, WORDS, 4)) for _ in range(count)],
        [[f"w{i}" for i in rng.choice(WORDS, 4, replace=False)] for _ in range(count)],
        rng.integers(0, 4, count),
    )


def test_the_quick_start_has_no_placeholders():
    code = quick_start()
    assert "..." not in code and "model(...)" not in code
    assert "compattr.explain(features=heads" in code and "cache_dir=" in code  # the documented signature


@pytest.mark.slow  # explains 16 heads with 228 masked queries and fits ProxySPEX: ~10 s
def test_the_quick_start_runs_as_written(tmp_path, monkeypatch, capsys):
    model = tiny_llama(layers=30, heads=4, kv_heads=2, hidden=16, seed=3)
    monkeypatch.setattr(compattr.models, "smollm2", lambda *a, **k: (model, word_tokenizer()))
    monkeypatch.setattr(compattr.tasks, "capitals", lambda *a, **k: tiny_questions())
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(quick_start(), "README.md (quick start)", "exec"), scope)

    ex, heads, plan = scope["ex"], scope["heads"], scope["plan"]
    assert heads.model is model and ex.n == heads.n == 16  # layers 26-29 x 4 heads
    assert len(ex.masks) == compattr.budget(16, 2) and len(ex.test_masks) == 100
    assert plan.kept.sum() == 8 and (plan.kept_per_group()["kept"] >= 1).all()
    assert len(scope["test"]) == 40 and len(scope["train"]) == 8
    (cache,) = (tmp_path / "cache").iterdir()  # the cache root holds this run's folder
    assert (cache / "manifest.json").is_file()
    assert (tmp_path / "heads.png").stat().st_size > 1000
    again = compattr.Explanation.load(tmp_path / "explanation")
    np.testing.assert_array_equal(again.outputs, ex.outputs)
    printed = capsys.readouterr().out
    assert "faithfulness" in printed
    for line in ("test accuracy, all heads:", "test accuracy, plan:"):
        accuracy = float(re.search(re.escape(line) + r"\s*([0-9.]+)", printed).group(1))
        assert 0.0 <= accuracy <= 1.0
    assert scope["logits"].shape[-1] == 64  # the pruned model ran (the tiny vocabulary)


def test_the_contributing_examples_run_as_written(tmp_path, monkeypatch):
    """CONTRIBUTING.md's two ways of adding a feature set, a set function and a masker."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "CONTRIBUTING.md").read_text(), re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        scope: dict = {}
        exec(compile(block, "CONTRIBUTING.md", "exec"), scope)
        ex = scope["ex"]
        assert np.isfinite(ex.faithfulness) and len(ex.masks) in (200, 60)


def readme_block(heading: str, which: int = 0) -> str:
    """The python block number ``which`` (0: the first) of the README section ``heading``."""
    text = (REPO / "README.md").read_text()
    start = text.index(heading)
    section = text[start : text.find("\n#", start + len(heading))]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) > which, heading
    return blocks[which]


@pytest.mark.slow  # explains 16 heads + 4 MLPs with ~200 patched queries: a few seconds
def test_the_heads_and_mlps_block_runs_as_written(tmp_path, monkeypatch):
    """The README's heads + MLPs + patching + circuit block, on a 30-layer random Llama."""
    monkeypatch.chdir(tmp_path)
    scope = {"compattr": compattr, "model": tiny_llama(layers=30, heads=4, kv_heads=2, hidden=16, seed=3)}
    scope["tokenizer"] = _WordHashing()
    exec(compile(readme_block("### Heads and MLPs together"), "README.md (heads and MLPs)", "exec"), scope)
    ex = scope["ex"]
    assert ex.n == 16 + 4 and ex.names[-1] == "L29.MLP" and ex.names[0] == "L26.H0"
    assert "<line" in (tmp_path / "circuit.html").read_text() and (tmp_path / "k_sii.json").is_file()
    assert len(ex.spectrum) > 1  # the name swap changes the output: there is something to explain
    exec(compile(readme_block("### Heads and MLPs together", 1), "README.md (plans on heads and MLPs)", "exec"), scope)
    kept, kinds = scope["plan"].kept, ex.kinds
    heads_kept = [int(kept[(ex.groups == layer) & (kinds == "AttentionHeads")].sum()) for layer in range(26, 30)]
    assert min(heads_kept) >= 1 and kept.sum() == 10
    kv = scope["features"].kv_groups
    assert (kv[kinds == "MLPBlocks"] == -1).all()
    removed = [g for g in np.unique(kv[kv >= 0]) if not kept[kv == g].any()]
    assert len(removed) >= 2
    assert scope["query"].mask_gradient().shape == (20,)


class _WordHashing:
    """The word tokenizer, after mapping every English word to one of its words ``w0..w54``."""

    def __init__(self):
        self.inner = word_tokenizer()

    def __call__(self, texts, **kwargs):
        import zlib

        return self.inner([" ".join(f"w{zlib.crc32(w.encode()) % WORDS}" for w in t.split()) for t in texts], **kwargs)


def test_the_paired_shapley_block_runs_as_written():
    """The README's Shapley-mode block, on a smaller synthetic function than its n = 500."""
    n = 40
    truth = compattr.synthetic.complete_hierarchy(n, seed=3)
    scope = {"compattr": compattr, "n": n, "truth": truth}
    exec(compile(readme_block("### The core, on any function", 1), "README.md (paired Shapley)", "exec"), scope)
    X = scope["X"]
    assert (X[1::2] == ~X[0::2]).all()
    exact = compattr.indices.shapley(truth)
    fitted = compattr.PairedShapley(random_state=0).fit(X, truth.predict(X)).shapley_
    assert np.sum((fitted - exact) ** 2) < 0.5 * np.sum(exact**2)


@pytest.mark.slow  # 16 heads, 128 masked queries in pairs, PairedShapley and its jackknife: ~15 s
def test_the_shapley_section_runs_as_written(tmp_path, monkeypatch, capsys):
    model, tokenizer = tiny_llama(layers=30, heads=4, kv_heads=2, hidden=16, seed=3), word_tokenizer()
    inputs, value = tiny_questions(8).encode(tokenizer)
    heads = compattr.AttentionHeads(model, layers=range(26, 30))
    monkeypatch.chdir(tmp_path)
    scope: dict = {"compattr": compattr, "heads": heads, "value": value, "inputs": inputs}
    exec(compile(python_block("### Shapley values alone"), "README.md (explain_shapley)", "exec"), scope)
    sv = scope["sv"]
    assert len(sv.masks) == compattr.budget(16, 2) and sv.intervals is not None
    assert (tmp_path / "shapley.png").stat().st_size > 0 and any((tmp_path / "cache").iterdir())
    assert "f(all kept) - f(none kept)" in capsys.readouterr().out
