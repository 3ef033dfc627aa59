"""The circuit view: the strongest interactions between components as a layer-ordered graph.

:func:`circuit_graph` picks the ``k`` strongest pairwise interactions of an index and the
components they join; :func:`plot_circuit` draws them (layers left to right, a component per
node, edge width = |interaction|, red raises the output and blue lowers it, as in every
compattr plot); :func:`circuit_html` writes the same graph as a self-contained HTML page
whose nodes and edges name themselves on hover and light up their neighbourhood.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from .._validation import check_int
from ..spectrum import Spectrum, indices

_PAIR_INDICES = {
    "banzhaf_interaction": ("Banzhaf interaction", "Banzhaf value"),
    "shapley_interaction": ("Shapley interaction", "Shapley value"),
    "moebius": ("Möbius coefficient", "Möbius coefficient m({i})"),
}
_RED, _BLUE = "#d62728", "#1f77b4"


#: A pair's index value at most this times the spectrum's total non-constant weight
#: (``Σ |F(T)|``) is rounding, not an interaction: the indices sum terms weighted by up to a
#: few powers of two, each off by about 1e-16 of itself.
_ROUNDING = 1e-9


@dataclass
class CircuitGraph:
    """Components and their strongest interactions.

    Attributes
    ----------
    nodes : pandas.DataFrame
        One row per component in an edge: ``feature`` (index), ``name``, ``group`` (layer),
        ``x`` (the group's position, left to right), ``y`` (rank within the group) and
        ``value`` (its own index value, e.g. its Banzhaf value).
    edges : pandas.DataFrame
        The ``k`` strongest pairs: ``source``, ``target`` (feature indices), ``names``,
        ``value``.
    index : str
        The index the edges hold.
    """

    nodes: pd.DataFrame
    edges: pd.DataFrame
    index: str


def circuit_graph(
    sp: Spectrum, names: Sequence[str], groups, k: int = 20, index: str = "banzhaf_interaction"
) -> CircuitGraph:
    """The ``k`` strongest pairwise interactions of ``index`` and the components they join.

    Parameters
    ----------
    sp : Spectrum
    names : sequence of n str
        Component names (``'L3.H5'``, ``'L3.MLP'``).
    groups : (n,) array_like
        Their layers: the graph's columns, in sorted order.
    k : int
        Edges drawn.
    index : {"banzhaf_interaction", "shapley_interaction", "moebius"}

    Pairs whose value is zero up to rounding (at most :data:`_ROUNDING` times the sum of the
    spectrum's non-constant ``|F(T)|``) are not drawn: there may be fewer than ``k`` edges.
    """
    if index not in _PAIR_INDICES:
        raise ValueError(f"unknown pairwise index {index!r}; choose one of {', '.join(_PAIR_INDICES)}.")
    k = check_int(k, "k", 1)
    n = sp.n
    names, groups = list(map(str, names)), np.asarray(groups)
    if len(names) != n or groups.shape != (n,):
        raise ValueError(f"names and groups must have one entry per feature ({n}).")
    values = getattr(indices, index)(sp, max_order=2)
    # a pair whose value is zero but for rounding is no interaction (an exact spectrum of a
    # function without it reads ±1e-16 there)
    weights = np.abs(sp.coefs[sp.degrees > 0])
    largest = float(weights.max(initial=0.0))
    zero = _ROUNDING * largest * float(np.sum(weights / largest)) if largest > 0 else 0.0  # no overflow
    pairs = sorted((t for t in values if len(t) == 2 and abs(values[t]) > zero), key=lambda t: -abs(values[t]))[:k]
    edges = pd.DataFrame(
        {
            "source": [t[0] for t in pairs],
            "target": [t[1] for t in pairs],
            "names": [f"{names[a]} × {names[b]}" for a, b in pairs],
            "value": [values[t] for t in pairs],
        }
    )
    used = sorted({i for t in pairs for i in t})
    layers = {g: x for x, g in enumerate(np.unique(groups[used]))} if used else {}
    rank = {i: sum(1 for j in used if groups[j] == groups[i] and j < i) for i in used}
    nodes = pd.DataFrame(
        {
            "feature": used,
            "name": [names[i] for i in used],
            "group": [groups[i] for i in used],
            "x": [layers[groups[i]] for i in used],
            "y": [rank[i] for i in used],
            "value": [values.get((i,), 0.0) for i in used],
        }
    )
    return CircuitGraph(nodes, edges, index)


def plot_circuit(graph: CircuitGraph, *, title: str | None = None, ax: Axes | None = None) -> Figure | SubFigure:
    """Draw a :class:`CircuitGraph`: layers left to right, edge width ∝ |interaction|, node
    colour = the component's own value (same red/blue convention)."""
    if ax is None:
        fig: Figure | SubFigure = Figure(figsize=(9, 6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    nodes, edges = graph.nodes, graph.edges
    where = {f: (x, y) for f, x, y in zip(nodes["feature"], nodes["x"], nodes["y"])}
    top = float(edges["value"].abs().max()) if len(edges) else 1.0
    for a, b, v in zip(edges["source"], edges["target"], edges["value"]):
        (x0, y0), (x1, y1) = where[a], where[b]
        rad = 0.3 if x0 == x1 else 0.0  # within a layer: bend the edge off the column
        ax.annotate(
            "",
            (x1, y1),
            (x0, y0),
            arrowprops={
                "arrowstyle": "-",
                "lw": 0.5 + 5 * abs(v) / top,
                "color": _RED if v > 0 else _BLUE,
                "alpha": 0.75,
                "connectionstyle": f"arc3,rad={rad}",
            },
        )
    own = nodes["value"].to_numpy(float)
    scale = float(np.abs(own).max(initial=0.0)) or 1.0
    ax.scatter(nodes["x"], nodes["y"], s=320, c=own, cmap="RdBu_r", vmin=-scale, vmax=scale, edgecolors="k", zorder=3)
    for name, x, y in zip(nodes["name"], nodes["x"], nodes["y"]):
        ax.annotate(name, (x, y), xytext=(0, -16), textcoords="offset points", ha="center", fontsize=7)
    groups = nodes.drop_duplicates("x").sort_values("x")
    ax.set_xticks(groups["x"], [_layer(g) for g in groups["group"]])
    ax.set_yticks([])
    ax.set_xlim(-0.6, max(nodes["x"].max(), 0) + 0.6 if len(nodes) else 0.6)
    ax.set_ylim(-1, max(nodes["y"].max(), 0) + 1 if len(nodes) else 1)
    ax.invert_yaxis()
    pair_label, single_label = _PAIR_INDICES[graph.index]
    lines = [] if title is None else [title]
    lines.append(f"{len(edges)} strongest pairs by {pair_label} (width ∝ |value|, red +, blue −)")
    lines.append(f"node colour: the component's own {single_label}")
    ax.set_title("\n".join(lines), fontsize=10)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return fig


def circuit_html(graph: CircuitGraph, *, title: str | None = None, width: int = 900, height: int = 560) -> str:
    """A self-contained HTML page of a :class:`CircuitGraph` (inline SVG, no scripts from the
    web): hovering a node or an edge shows its name and value and highlights its edges."""
    nodes, edges = graph.nodes, graph.edges
    columns = max(int(nodes["x"].max()) + 1, 1) if len(nodes) else 1
    rows = max(int(nodes["y"].max()) + 1, 1) if len(nodes) else 1
    px = lambda x: 60 + x * (width - 120) / max(columns - 1, 1)
    py = lambda y: 50 + y * (height - 100) / max(rows - 1, 1)
    where = {f: (px(x), py(y)) for f, x, y in zip(nodes["feature"], nodes["x"], nodes["y"])}
    top = float(edges["value"].abs().max()) if len(edges) else 1.0
    scale = float(nodes["value"].abs().max()) if len(nodes) else 1.0
    pair_label, single_label = _PAIR_INDICES[graph.index]
    parts = []
    for a, b, v, name in zip(edges["source"], edges["target"], edges["value"], edges["names"]):
        (x0, y0), (x1, y1) = where[a], where[b]
        parts.append(
            f'<line class="edge n{a} n{b}" x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" '
            f'stroke="{_RED if v > 0 else _BLUE}" stroke-width="{1 + 8 * abs(v) / top:.2f}">'
            f"<title>{html.escape(name)}: {pair_label} {v:+.4g}</title></line>"
        )
    for f, name, group, v in zip(nodes["feature"], nodes["name"], nodes["group"], nodes["value"]):
        x, y = where[f]
        shade = _shade(v / scale if scale else 0.0)
        parts.append(
            f'<g class="node" data-id="n{f}"><circle cx="{x:.1f}" cy="{y:.1f}" r="11" fill="{shade}" stroke="#222">'
            f"<title>{html.escape(name)} ({html.escape(_layer(group))}): {single_label} {v:+.4g}</title></circle>"
            f'<text x="{x:.1f}" y="{y + 25:.1f}">{html.escape(name)}</text></g>'
        )
    heading = html.escape(title or "compattr circuit view")
    caption = html.escape(f"{len(edges)} strongest pairs by {pair_label}; node colour: own {single_label}")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{heading}</title>
<style>
body {{ font-family: sans-serif; }}
svg text {{ font-size: 11px; text-anchor: middle; fill: #222; }}
line.edge {{ opacity: 0.7; }}
svg.focus line.edge {{ opacity: 0.08; }}
svg.focus line.edge.on {{ opacity: 1; }}
</style></head>
<body><h3>{heading}</h3><p>{caption}. Hover a node or an edge.</p>
<svg id="circuit" width="{width}" height="{height}">{"".join(parts)}</svg>
<script>
const svg = document.getElementById("circuit");
svg.querySelectorAll("g.node").forEach(node => {{
  node.addEventListener("mouseenter", () => {{
    svg.classList.add("focus");
    svg.querySelectorAll("line." + node.dataset.id).forEach(e => e.classList.add("on"));
  }});
  node.addEventListener("mouseleave", () => {{
    svg.classList.remove("focus");
    svg.querySelectorAll("line.on").forEach(e => e.classList.remove("on"));
  }});
}});
</script></body></html>
"""


def _layer(group) -> str:
    return f"L{group}" if isinstance(group, (int, np.integer)) else str(group)


def _shade(t: float) -> str:
    """A colour on the red (t = 1) – white (0) – blue (t = -1) scale."""
    t = max(-1.0, min(1.0, t))
    red, blue = (214, 39, 40), (31, 119, 180)
    end = red if t > 0 else blue
    mix = [round(255 + (c - 255) * abs(t)) for c in end]
    return "#" + "".join(f"{c:02x}" for c in mix)
