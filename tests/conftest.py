"""Shared fixtures: brute-force helpers computed from the set function itself."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest


def all_masks(n: int) -> np.ndarray:
    """Every mask over n features, (2^n, n) bool, in binary counting order."""
    return np.array(list(itertools.product([False, True], repeat=n)), dtype=bool)


def walsh(X: np.ndarray, term) -> np.ndarray:
    """χ_T(S) = (-1)^|S ∩ T| of each mask (X: (m, n) bool), by its definition."""
    return np.prod(1.0 - 2.0 * X[:, list(term)], axis=1) if len(term) else np.ones(len(X))


def brute_force_fourier(values: np.ndarray, masks: np.ndarray) -> dict[tuple, float]:
    """F(T) = 2^-n Σ_S (-1)^{|S ∩ T|} f(S), by the definition, for every T."""
    n = masks.shape[1]
    M = masks.astype(np.int64)
    chi = 1 - 2 * ((M @ M.T) % 2)  # rows: T, columns: S
    F = chi @ values / 2**n
    return {tuple(np.flatnonzero(t)): float(c) for t, c in zip(masks, F)}


def brute_force_shapley(table: np.ndarray, n: int) -> np.ndarray:
    """``φ_i = Σ_{S ∌ i} |S|! (n - |S| - 1)! / n! (f(S ∪ i) - f(S))`` from the outputs on
    ``all_masks(n)`` (row index = the mask's bits read as a binary number, feature 0 first)."""
    masks = all_masks(n)
    sizes = masks.sum(axis=1)
    phi = np.zeros(n)
    for i in range(n):
        without = np.flatnonzero(~masks[:, i])
        with_i = without + (1 << (n - 1 - i))
        s = sizes[without]
        weights = np.array([factorial(k) * factorial(n - k - 1) for k in s]) / factorial(n)
        phi[i] = np.sum(weights * (table[with_i] - table[without]))
    return phi


def random_spectrum(n: int, k: int, max_degree: int, seed: int, constant: bool = True):
    """A spectrum of ``k`` random supports of order 1..max_degree (plus ∅), N(0, 1) coefficients."""
    from compattr import Spectrum

    rng = np.random.default_rng(seed)
    supports = [tuple(rng.choice(n, size=rng.integers(1, max_degree + 1), replace=False)) for _ in range(k)]
    if constant:
        supports.append(())
    return Spectrum(n, supports, rng.normal(size=len(supports)))


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One torch thread: on small shared machines two were measured 5-30x slower."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_mc_folder(tmp_path_factory):
    """A saved tiny Llama (3 layers x 4 heads) + word tokenizer in ``model/``, and 12
    three-option questions in ``questions.jsonl``: the CLI's and the recipes' real inputs."""
    from compattr._testing import WORDS, tiny_llama, word_tokenizer
    from compattr.tasks import QuestionSet

    root = tmp_path_factory.mktemp("tiny-mc")
    tiny_llama().save_pretrained(root / "model")
    word_tokenizer().save_pretrained(root / "model")
    rng = np.random.default_rng(0)
    QuestionSet(
        [" ".join(f"w{i}" for i in rng.integers(0, WORDS, 4)) for _ in range(12)],
        [[f"w{i}" for i in rng.choice(WORDS, 3, replace=False)] for _ in range(12)],
        rng.integers(0, 3, 12),
    ).to_jsonl(root / "questions.jsonl")
    return root


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def check_lens_layer_replay(model, heads, x, masks) -> np.ndarray:
    """Query with layer replay on a TransformerLens model (``model.blocks``) gives the outputs
    of full forwards, runs the blocks before the first masked layer only in the prepare and
    capture passes (not once per mask batch), and restores them; returns the full outputs."""
    from compattr.query import Query
    from compattr.values import ClassLogit

    full = Query(model, heads, ClassLogit(), x, replay=False, batch_size=4).evaluate(masks)
    calls = []
    handle = model.blocks[0].attn.register_forward_hook(lambda *a: calls.append(1))
    try:
        replayed = Query(model, heads, ClassLogit(), x, batch_size=4).evaluate(masks)
    finally:
        handle.remove()
    np.testing.assert_allclose(replayed, full, atol=1e-5)
    assert 0 < len(calls) <= 2
    assert "forward" not in model.blocks[0].__dict__
    return full


def printed_under_hash_seeds(*args: str, seeds=(1, 2, 3, 4)) -> set[str]:
    """What ``python ARGS`` prints in one process per ``PYTHONHASHSEED`` of ``seeds``
    (string hashing, and so the order of a set, differs between them)."""
    import os
    import subprocess
    import sys

    printed = set()
    for seed in seeds:
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        printed.add(
            subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, check=True).stdout.strip()
        )
    return printed


def check_lens_values(hf, lens, heads_of, inputs, tokens) -> None:
    """A TransformerLens model gives its Hugging Face twin's outputs on a mapping of inputs
    (``inputs``: ``input_ids`` and ``attention_mask``) with the full-input and the sequence
    values, and on ``tokens`` with multiple choice; ``heads_of(model)`` builds its heads."""
    from compattr.query import Query
    from compattr.values import ClassLogit, LogLikelihood, MultipleChoice

    masks = np.random.default_rng(5).random((4, heads_of(hf).n)) < 0.5
    choice = MultipleChoice([[[10], [11, 12], [13]], [[14], [15], [16, 17]], [[18], [19], [20]]], [1, 0, 2])
    for value, given in ((ClassLogit(), inputs), (LogLikelihood(max_new_tokens=2), inputs), (choice, tokens)):
        expected = Query(hf, heads_of(hf), value, given).evaluate(masks)
        got = Query(lens, heads_of(lens), value, given).evaluate(masks)
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=repr(value))
        assert np.ptp(expected) > 0
