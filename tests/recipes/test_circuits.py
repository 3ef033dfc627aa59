"""recipes/_circuits.py: the circuit by exhaustive ablation and the recovery scores, on
functions whose circuit is known by construction."""

from __future__ import annotations

import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))

import compattr

import _circuits as circuits
from _toy_transformer import all_masks, exact_spectrum, walsh_hadamard


def table(f, n):
    """``f`` on all masks, in the bit order the module expects."""
    return np.array([f(m) for m in all_masks(n)], float)


def test_walsh_hadamard_equals_the_dense_transform():
    """``F(T) = 2^-n Σ_S (-1)^{|S∩T|} f(S)`` written out as a parity matrix."""
    values = np.random.default_rng(0).normal(size=2**6)
    masks = all_masks(6).astype(np.int64)
    dense = (1 - 2 * ((masks @ masks.T) % 2)) @ values / len(values)
    np.testing.assert_allclose(walsh_hadamard(values), dense, atol=1e-12)
    for support, coef in exact_spectrum(values).to_dict().items():
        assert dense[sum(1 << i for i in support)] == pytest.approx(coef, abs=1e-12)


def test_the_smallest_sufficient_sets_and_strongest_pairs_of_a_known_circuit():
    """f = (x0 AND x1) OR (x0 AND x2), plus a small linear x3 and noise-free unused x4, x5:
    the smallest circuits are {0, 1} and {0, 2}; x3 alone never reaches 80 %. The three pairs
    of x0, x1, x2 interact equally (two AND-like, one OR-like), and x3 interacts with none."""
    f = lambda m: float(m[0] and (m[1] or m[2])) + 0.1 * m[3]
    circuit = circuits.exhaustive_circuit(table(f, 6), quality=0.8, top_pairs=3)
    assert circuit.smallest_sets == [(0, 1), (0, 2)]
    assert circuit.components.tolist() == [True, True, True, False, False, False]
    assert circuit.threshold == pytest.approx(0.88)
    assert circuit.pairs == {(0, 1), (0, 2), (1, 2)}
    # a value that falls as components are kept: sufficiency is measured the other way
    low = circuits.exhaustive_circuit(-table(f, 6), quality=0.8, top_pairs=3)
    assert low.smallest_sets == circuit.smallest_sets
    with pytest.raises(ValueError, match="all 2"):
        circuits.exhaustive_circuit(np.ones(6))


def test_single_ablation_and_scores_match_brute_force():
    rng = np.random.default_rng(1)
    values = rng.normal(size=2**5)
    f = lambda masks: np.array([values[int(np.dot(m, 1 << np.arange(5)))] for m in masks])
    drops = circuits.single_ablation(f, 5)
    full = values[-1]
    for i in range(5):
        assert drops[i] == pytest.approx(full - values[(2**5 - 1) ^ (1 << i)])
    sp = exact_spectrum(values)
    components, pairs = circuits.spectrum_scores(sp)
    np.testing.assert_allclose(components, compattr.indices.banzhaf(sp))
    for a, b in combinations(range(5), 2):  # Banzhaf interaction = mean of f(ab)-f(a)-f(b)+f(0)
        ms = all_masks(5)
        rest = ms[~ms[:, a] & ~ms[:, b]]
        effect = []
        for m in rest:
            idx = lambda extra: int(np.dot(m | extra, 1 << np.arange(5)))
            ea, eb = np.eye(5, dtype=bool)[a], np.eye(5, dtype=bool)[b]
            effect.append(values[idx(ea | eb)] - values[idx(ea)] - values[idx(eb)] + values[idx(np.zeros(5, bool))])
        assert pairs[(a, b)] == pytest.approx(abs(np.mean(effect)))


def test_recovery_row_scores_a_perfect_and_a_reversed_ranking():
    f = lambda m: float(m[0] and (m[1] or m[2])) + 0.1 * m[3]
    circuit = circuits.exhaustive_circuit(table(f, 6), top_pairs=3)
    truth = circuit.components.astype(float)
    pairs = {p: float(p in circuit.pairs) for p in combinations(range(6), 2)}
    good = circuits.recovery_row("good", "1", circuit, truth, pairs)
    bad = circuits.recovery_row("bad", "1", circuit, -truth, {p: -v for p, v in pairs.items()})
    assert good["component ROC AUC"] == good["component precision@3"] == 1.0
    assert good["interaction ROC AUC"] == good["interaction precision@3"] == 1.0
    assert bad["component ROC AUC"] == bad["component precision@3"] == 0.0
    assert bad["interaction precision@3"] == 0.0
    # a value that falls as components are kept (a loss): the same circuit, the same scores
    falling = circuits.exhaustive_circuit(-table(f, 6), top_pairs=3)
    assert not falling.rising and circuit.rising
    lowered = circuits.recovery_row("exact", "1", falling, -truth, pairs)  # kept components lower it
    assert lowered["component ROC AUC"] == lowered["component precision@3"] == 1.0
    # scores that tie at the cut: no information scores by chance, not by feature index
    blind = circuits.recovery_row("blind", "1", circuit, np.ones(6), dict.fromkeys(pairs, 0.0))
    assert blind["component precision@3"] == pytest.approx(0.5)  # 3 of 6 true, all tied
    assert blind["interaction precision@3"] == 0.0  # magnitudes of 0: no pair picked
    # scores of single components make pair scores through the weaker member
    assert circuits.pair_scores_from(np.array([3.0, -1.0, 2.0]))[(0, 2)] == 2.0
