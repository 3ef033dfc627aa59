"""compattr.apps.circuit: the strongest interactions as a layer-ordered graph."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from conftest import all_masks, brute_force_fourier

import compattr
from compattr.apps import circuit, plots


def _heads(layers=4, per=3, seed=0):
    n = layers * per
    sp = compattr.synthetic.complete_hierarchy(n, n_sets=4, order=3, seed=seed)
    names = [f"L{layer}.H{h}" for layer in range(layers) for h in range(per)]
    return sp, names, np.repeat(np.arange(layers), per)


def test_the_edges_are_the_strongest_pairs_and_the_columns_the_layers():
    sp, names, groups = _heads()
    graph = circuit.circuit_graph(sp, names, groups, k=5)
    pairs = {t: v for t, v in compattr.indices.banzhaf_interaction(sp, max_order=2).items() if len(t) == 2 and v}
    strongest = sorted(pairs, key=lambda t: -abs(pairs[t]))[:5]
    assert list(zip(graph.edges["source"], graph.edges["target"])) == strongest
    assert graph.edges["value"].tolist() == pytest.approx([pairs[t] for t in strongest])
    assert set(graph.nodes["feature"]) == {i for t in strongest for i in t}
    banzhaf = compattr.indices.banzhaf(sp)
    assert graph.nodes["value"].tolist() == pytest.approx(banzhaf[graph.nodes["feature"]].tolist())
    # columns follow the layers: a later layer is never left of an earlier one
    order = graph.nodes.sort_values("group")
    assert (np.diff(order["x"]) >= 0).all() and (np.diff(order["x"])[np.diff(order["group"]) == 0] == 0).all()


@pytest.mark.parametrize("index", ["banzhaf_interaction", "shapley_interaction", "moebius"])
def test_pairs_that_are_zero_but_for_rounding_are_not_edges(index):
    """The exact spectrum of a function whose only interacting pairs are (0, 1), (0, 2),
    (1, 2) (a triple), (0, 3) and (1, 4): every other pair reads about 1e-16, not an edge."""
    n = 5
    X = all_masks(n)
    K = X.astype(float)
    f = K @ np.random.default_rng(3).normal(size=n) + 3 * K[:, 0] * K[:, 3] - 2 * K[:, 1] * K[:, 4]
    f += 1.5 * K[:, 0] * K[:, 1] * K[:, 2]
    F = brute_force_fourier(f, X)
    sp = compattr.Spectrum(n, list(F), list(F.values()))
    graph = circuit.circuit_graph(sp, [f"c{i}" for i in range(n)], [0, 0, 1, 1, 2], k=20, index=index)
    true = {(0, 3), (1, 4)} if index == "moebius" else {(0, 1), (0, 2), (1, 2), (0, 3), (1, 4)}
    assert set(zip(graph.edges["source"], graph.edges["target"])) == true
    # the same near the largest floats: the tolerance neither overflows nor drops them all
    huge = circuit.circuit_graph(sp.scaled(3e307), [f"c{i}" for i in range(n)], [0, 0, 1, 1, 2], index=index)
    assert set(zip(huge.edges["source"], huge.edges["target"])) == true


def test_plot_and_page_show_every_edge(tmp_path):
    sp, names, groups = _heads(seed=1)
    graph = circuit.circuit_graph(sp, names, groups, k=6)
    fig = circuit.plot_circuit(graph, title="tiny model")
    ax = fig.axes[0]
    drawn = [a for a in ax.texts if a.get_text() == ""]  # edges are empty annotations
    assert len(drawn) == len(graph.edges) == 6
    assert ax.get_title().startswith("tiny model\n6 strongest pairs by Banzhaf interaction")
    assert plots.save(fig, tmp_path / "circuit.png").stat().st_size > 5000
    page = circuit.circuit_html(graph, title="tiny <model>")
    assert len(re.findall(r"<line class=\"edge", page)) == 6 and page.count('<g class="node"') == len(graph.nodes)
    assert "tiny &lt;model&gt;" in page and "<script>" in page
    for name in graph.edges["names"]:
        assert name in page
    with pytest.raises(ValueError, match="unknown pairwise index"):
        circuit.circuit_graph(sp, names, groups, index="fourier")
    with pytest.raises(ValueError, match="one entry per feature"):
        circuit.circuit_graph(sp, names[:-1], groups)
    for k in (0, -3):  # [:k] drew all but the weakest edges, or none
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            circuit.circuit_graph(sp, names, groups, k=k)
