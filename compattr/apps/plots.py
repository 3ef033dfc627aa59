"""Figures and HTML views of a spectrum.

* :func:`head_interactions`: head × head map of pairwise interactions, ordered by layer.
* :func:`layer_energy`: linear / within-layer / cross-layer energy per layer (paper Fig. 9).
* :func:`words_html`: words highlighted by attribution, plus their strongest interactions.
* :func:`patch_overlay`: per-patch attribution over an image, strongest pair marked.
* :func:`top_interactions`: the strongest terms as labelled bars, coloured by order.
* :func:`feature_bars`: the largest per-feature values (Shapley values) with their intervals.
* :func:`spectrum_orders`: how the energy divides between interaction orders.
* :func:`pair_matrix`: the ``(n, n)`` matrix :func:`head_interactions` draws.

Every plot returns a :class:`matplotlib.figure.Figure` built without pyplot (no global figure
state, nothing to close, safe under any backend; it displays as a notebook cell's value) or,
given ``ax``, draws there and returns ``ax.figure``. :func:`save` writes figures and HTML.
Colours follow one convention: red raises the output, blue lowers it, both centred at 0.
Fourier coefficients (``index="fourier"``) are the exception: their colour is their sign,
which is not a direction, since ``χ_i = -1`` where feature ``i`` is kept (a positive
``F({i})`` lowers the output when ``i`` is kept); their colour bar says so.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from math import ceil, comb
from pathlib import Path

import numpy as np
import scipy.sparse as sps
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Patch
from matplotlib.patheffects import withStroke

from ..spectrum import EnergySplit, Spectrum, indices

#: Resolution of :func:`save` for raster formats.
DPI = 150
_DIVERGING = "RdBu_r"
_POSITIVE_RGB, _NEGATIVE_RGB = (214, 39, 40), (31, 119, 180)  # red / blue of words_html
_ENERGY_COLORS = {"linear": "#8c8c8c", "within": "#1f77b4", "cross": "#ff7f0e"}
_ENERGY_LABELS = {"linear": "linear", "within": "within-layer", "cross": "cross-layer"}
# Up to this many features, axes are labelled per feature (names) rather than per group.
_MAX_NAME_TICKS = 40
# At most this many group tick labels per axis; more are thinned.
_MAX_GROUP_TICKS = 40


SetValues = dict[tuple[int, ...], float]  # {sorted feature tuple: value}


def _fourier(sp: Spectrum, max_order: int | None = None) -> SetValues:
    """The spectrum itself as ``{support: F(T)}``, optionally up to order ``max_order``."""
    return (sp if max_order is None else sp.restrict_order(max_order)).to_dict()


_FEATURE_INDICES: dict[str, Callable[[Spectrum], np.ndarray]] = {
    "shapley": indices.shapley,
    "banzhaf": indices.banzhaf,
}
_SET_INDICES: dict[str, Callable[..., SetValues]] = {
    "fourier": _fourier,
    "banzhaf_interaction": indices.banzhaf_interaction,
    "shapley_interaction": indices.shapley_interaction,
    "moebius": indices.moebius,
}
# The interaction index whose singletons are each per-feature index.
_PARTNER = {"shapley": "shapley_interaction", "banzhaf": "banzhaf_interaction"}
#: What the heatmap's diagonal shows for each pairwise index: the same index of one feature.
_SINGLE_LABELS = {
    "fourier": "F({i})",
    "banzhaf_interaction": "Banzhaf value",
    "shapley_interaction": "Shapley value",
    "moebius": "Möbius coefficient m({i})",
}
_INDEX_LABELS = {
    "shapley": "Shapley value",
    "banzhaf": "Banzhaf value",
    "fourier": "Fourier coefficient F(T) (its sign, not a direction)",
    "banzhaf_interaction": "Banzhaf interaction",
    "shapley_interaction": "Shapley interaction",
    "moebius": "Möbius coefficient",
}


# ---------------------------------------------------------------------- input checks
def _n_features(sp) -> int:
    if not isinstance(sp, Spectrum):
        raise TypeError(f"expected a compattr.Spectrum, got {type(sp).__name__}.")
    return sp.n


def _check_index(index: str, table: dict) -> str:
    if index not in table:
        raise ValueError(f"unknown index {index!r}; choose one of {sorted(table)}.")
    return index


def _check_names(names: Sequence[str], n: int, what: str = "names") -> list[str]:
    if isinstance(names, str) or len(names) != n:
        size = "a string" if isinstance(names, str) else f"{len(names)} entries"
        raise ValueError(f"{what} must hold one entry per feature (n={n}), got {size}.")
    return [str(name) for name in names]


def _check_groups(groups, n: int) -> np.ndarray:
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},) (one label per feature), got {groups.shape}.")
    return groups


def _check_grid(grid, n: int) -> tuple[int, int]:
    valid = (
        isinstance(grid, (tuple, list))
        and len(grid) == 2
        and all(isinstance(g, (int, np.integer)) and g > 0 for g in grid)
    )
    if not valid or grid[0] * grid[1] != n:
        raise ValueError(f"grid must be (rows, cols) of positive ints with rows * cols = n = {n}, got {grid!r}.")
    return int(grid[0]), int(grid[1])


def _as_rgb(image) -> np.ndarray:
    """(H, W, 3) float image in [0, 1] from uint8 or float input, or ValueError."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}.")
    if image.dtype == np.uint8:
        return image / 255.0
    in_range = image.dtype.kind == "f" and np.isfinite(image).all()
    if not (in_range and image.min() >= 0 and image.max() <= 1):
        raise ValueError("image must be uint8, or float with every value in [0, 1].")
    return image


# ---------------------------------------------------------------------- values drawn
def _feature_values(sp: Spectrum, index: str) -> np.ndarray:
    """(n,) per-feature attribution ``index`` (``"shapley"`` or ``"banzhaf"``)."""
    return _FEATURE_INDICES[_check_index(index, _FEATURE_INDICES)](sp)


def _set_values(sp: Spectrum, index: str, max_order: int | None = None) -> SetValues:
    """``{sorted feature tuple: value}`` of a set-valued ``index``, up to ``max_order``."""
    return _SET_INDICES[_check_index(index, _SET_INDICES)](sp, max_order=max_order)


def _strongest(values: SetValues, k: int, min_order: int) -> list[tuple[int, ...]]:
    """The ``k`` sets of order ``>= min_order`` with the largest ``|value|``."""
    sets = [t for t in values if len(t) >= min_order]
    return sorted(sets, key=lambda t: -abs(values[t]))[:k]


def _incidence(sets: Sequence[tuple[int, ...]], n: int, row_values: np.ndarray) -> sps.csr_array:
    """(K, n) sparse matrix with ``row_values[r]`` at the features of ``sets[r]``."""
    lengths = np.array([len(t) for t in sets], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    columns = np.fromiter((i for t in sets for i in t), dtype=np.int64, count=int(indptr[-1]))
    return sps.csr_array((np.repeat(row_values, lengths), columns, indptr), shape=(len(sets), n))


def pair_matrix(sp: Spectrum, index: str = "banzhaf_interaction", *, aggregate: bool = False) -> np.ndarray:
    """Pairwise interaction strengths as a symmetric matrix.

    Parameters
    ----------
    sp : Spectrum
    index : {"banzhaf_interaction", "fourier", "shapley_interaction", "moebius"}
        Set-valued index read off the spectrum (``"fourier"``: the coefficients ``F(T)``).
    aggregate : bool
        False: ``M[i, j] = I({i, j})``. True: every set ``T`` with ``|T| >= 2`` is shared
        equally among its ``C(|T|, 2)`` pairs, ``M[i, j] = Σ_{T ⊇ {i,j}} I(T) / C(|T|, 2)``,
        so the pairs ``i < j`` sum to ``Σ_{|T|>=2} I(T)`` (with ``"moebius"`` this is the
        order-2 Shapley–Taylor index).

    Returns
    -------
    (n, n) float64 array
        Symmetric, zero diagonal.
    """
    n = _n_features(sp)
    values = _set_values(sp, index, max_order=None if aggregate else 2)
    sets = [t for t in values if len(t) == 2 or (aggregate and len(t) > 2)]
    shares = np.array([values[t] / comb(len(t), 2) for t in sets])
    M = (_incidence(sets, n, np.ones(len(sets))).T @ _incidence(sets, n, shares)).toarray()
    np.fill_diagonal(M, 0.0)
    return M


# ---------------------------------------------------------------------- drawing helpers
def _figure_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure | SubFigure, Axes]:
    """A new pyplot-free figure with one axes, or ``ax`` and its figure."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _symmetric_norm(values: np.ndarray) -> Normalize:
    """Linear colour scale over ``[-m, m]``, ``m = max |values|``, so 0 is the midpoint."""
    m = float(np.abs(values).max(initial=0.0)) or 1.0
    return Normalize(-m, m)


def _group_label(group) -> str:
    """``L3`` for an integer layer, the label itself otherwise."""
    return f"L{group}" if isinstance(group, (int, np.integer)) else str(group)


def _group_layout(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order features by group.

    Returns
    -------
    order : (n,) int array
        Feature indices sorted by group (stable: within a group, by index).
    labels : (g,) array
        The sorted distinct groups.
    bounds : (g + 1,) int array
        Group ``j`` occupies positions ``bounds[j]:bounds[j + 1]`` of ``order``.
    """
    labels, gid = np.unique(groups, return_inverse=True)
    order = np.argsort(gid, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(gid, minlength=labels.size))])
    return order, labels, bounds


def _thinned(positions: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Every ``s``-th tick, ``s`` chosen so at most ``_MAX_GROUP_TICKS`` remain."""
    step = max(1, ceil(len(labels) / _MAX_GROUP_TICKS))
    return positions[::step], list(labels)[::step]


def _label_heatmap_axes(ax: Axes, names: list[str], labels: np.ndarray, bounds: np.ndarray) -> None:
    """Group boundaries and ticks per feature (few features), or boundary marks outside the
    image and ticks per group (many: a line over the image would cover a cell's row)."""
    edges = bounds[1:-1] - 0.5
    if len(names) <= _MAX_NAME_TICKS:
        for edge in edges:
            ax.axhline(edge, color="0.55", lw=0.6)
            ax.axvline(edge, color="0.55", lw=0.6)
        positions, ticks = np.arange(len(names)), names
    else:
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_ticks(edges, minor=True)
        ax.tick_params(which="minor", length=4, color="0.55")
        centres = (bounds[:-1] + bounds[1:] - 1) / 2
        positions, ticks = _thinned(centres, [_group_label(g) for g in labels])
    ax.set_xticks(positions, ticks, rotation=90, fontsize=7)
    ax.set_yticks(positions, ticks, fontsize=7)
    ax.tick_params(which="major", length=0)


def _heatmap_size(n: int) -> tuple[float, float]:
    """A pair heatmap's figure size in inches: 8.5 x 7.5, larger where ``n`` cells would get
    fewer than 2 pixels each at :data:`DPI` (the axes take about 3/4 of the height), as
    nearest-neighbour drawing then drops whole rows and columns of cells."""
    side = max(7.5, 2 * n / (0.75 * DPI))
    return side + 1.0, side


def _order_colors(orders: Sequence[int] | np.ndarray) -> dict[int, tuple]:
    """One fixed colour per interaction order (``tab10``, order 1 first)."""
    palette = colormaps["tab10"]
    return {d: palette((d - 1) % 10) for d in sorted(set(orders))}


def _joined(features: tuple[int, ...], names: Sequence[str]) -> str:
    return " × ".join(names[i] for i in features)


def _strongest_cell(M: np.ndarray, names: list[str], order: np.ndarray) -> str:
    """``"strongest: a × b = +0.12"`` for the largest ``|M[i, j]|`` of a reordered matrix."""
    i, j = np.unravel_index(np.argmax(np.abs(M)), M.shape)
    if not M[i, j]:
        return "no pairs"
    return f"strongest: {names[order[i]]} × {names[order[j]]} = {M[i, j]:+.3g}"


# ---------------------------------------------------------------------- figures
def head_interactions(
    sp: Spectrum,
    names: Sequence[str],
    groups,
    *,
    index: str = "banzhaf_interaction",
    aggregate: bool = False,
    diagonal: bool = True,
    annotate: int = 5,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure | SubFigure:
    """Head × head heatmap of pairwise interactions, heads ordered by layer.

    Parameters
    ----------
    sp : Spectrum
        Over ``n`` heads (or any features).
    names : sequence of n str
        Feature names (``heads.names``); axis labels when ``n <= 40``, and the title names
        the strongest pair.
    groups : (n,) array_like
        Layer of each feature (``heads.groups``); drawn as blocks with boundaries, labelled
        ``L0, L1, ...`` when ``n > 40``.
    index, aggregate
        As in :func:`pair_matrix`, whose matrix (rows and columns reordered by layer) is
        drawn off the diagonal; the colour bar and title name the index.
    diagonal : bool
        Draw each feature's own effect on the diagonal: the same index of the single feature
        (with ``"banzhaf_interaction"`` its Banzhaf value, ``"shapley_interaction"`` its
        Shapley value, ``"fourier"`` ``F({i})``), on the same colour scale, so a strong
        single head is as visible as a strong pair.
    annotate : int
        Write the names of the strongest ``annotate`` pairs into their cells when the axes
        carry layer labels only (``n > 40``), so they can be found among many heads.
    title : str, optional
        A first title line, e.g. the model, task and value explained.
    ax : matplotlib Axes, optional

    Returns
    -------
    Figure
    """
    n = _n_features(sp)
    names = _check_names(names, n)
    order, labels, bounds = _group_layout(_check_groups(groups, n))
    M = pair_matrix(sp, index, aggregate=aggregate)
    if diagonal:
        singles = _set_values(sp, index, max_order=1)
        np.fill_diagonal(M, [singles.get((i,), 0.0) for i in range(n)])
    M = M[np.ix_(order, order)]
    fig, ax = _figure_axes(ax, _heatmap_size(n))
    image = ax.imshow(M, cmap=_DIVERGING, norm=_symmetric_norm(M), interpolation="nearest")
    ordered = [names[i] for i in order]
    _label_heatmap_axes(ax, ordered, labels, bounds)
    if n > _MAX_NAME_TICKS and annotate:
        _annotate_pairs(ax, M, ordered, annotate)
    fig.colorbar(image, ax=ax, shrink=0.8, label=_INDEX_LABELS[index])
    pairs = M - np.diag(np.diag(M))
    lines = [] if title is None else [title]
    pooled = ", higher orders shared onto pairs" if aggregate else ""
    lines.append(
        f"Pairwise {_INDEX_LABELS[index]}{pooled}" + (f"; diagonal: {_SINGLE_LABELS[index]}" if diagonal else "")
    )
    lines.append(_strongest_cell(pairs, names, order))
    ax.set_title("\n".join(lines), fontsize=10)
    return fig


def _annotate_pairs(ax: Axes, M: np.ndarray, names: list[str], k: int) -> None:
    """Write ``a × b`` beside the ``k`` strongest off-diagonal cells of ``M`` (upper triangle)."""
    upper = np.triu(np.abs(M), 1)
    for flat in np.argsort(-upper, axis=None)[:k]:
        i, j = np.unravel_index(flat, M.shape)
        if upper[i, j] == 0:
            break
        ax.annotate(
            f"{names[i]} × {names[j]}",
            (j, i),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=6,
            path_effects=[withStroke(linewidth=2, foreground="white")],
        )


def layer_energy(sp_or_energy: Spectrum | EnergySplit, groups=None, *, ax: Axes | None = None) -> Figure | SubFigure:
    """Per-layer stacked bars of linear / within-layer / cross-layer energy (paper Fig. 9).

    Parameters
    ----------
    sp_or_energy : Spectrum or EnergySplit
        A spectrum (then ``groups`` is required) or the result of ``sp.energy(groups)``.
    groups : (n,) array_like, optional
        Layer of each feature.
    ax : matplotlib Axes, optional

    Returns
    -------
    Figure
        One bar per group; bar segments are fractions of the non-constant energy, so all
        segments sum to ``linear + within + cross`` (1 unless the spectrum is constant).
        The legend gives the totals.
    """
    if isinstance(sp_or_energy, EnergySplit):
        if groups is not None:
            raise ValueError("groups is only used with a Spectrum; an EnergySplit has them.")
        energy = sp_or_energy
    elif groups is None:
        raise ValueError("layer_energy(sp, groups) needs groups: the layer of each feature.")
    else:
        energy = sp_or_energy.energy(_check_groups(groups, _n_features(sp_or_energy)))
    table = energy.per_group
    fig, ax = _figure_axes(ax, (max(6.0, 2.0 + 0.22 * len(table)), 4.0))
    x = np.arange(len(table))
    bottom = np.zeros(len(table))
    for kind, label in _ENERGY_LABELS.items():
        heights = table[kind].to_numpy()
        legend = f"{label} ({energy[kind]:.1%})"
        ax.bar(x, heights, bottom=bottom, color=_ENERGY_COLORS[kind], label=legend)
        bottom += heights
    ticks, labels = _thinned(x, [_group_label(g) for g in table.index])
    ax.set_xticks(ticks, labels, rotation=90 if len(table) > 12 else 0)
    ax.set_xlim(-0.6, len(table) - 0.4)
    ax.set_xlabel("layer")
    ax.set_ylabel("fraction of non-constant energy")
    ax.set_title(f"Energy by layer (non-constant energy {energy.total:.3g})", fontsize=10)
    ax.legend(frameon=False)
    return fig


def patch_overlay(
    image,
    sp: Spectrum,
    grid: tuple[int, int],
    *,
    index: str = "shapley",
    ax: Axes | None = None,
    alpha: float = 0.5,
) -> Figure | SubFigure:
    """Per-patch attribution over an image, with the strongest pair joined by a line.

    Parameters
    ----------
    image : (H, W, 3) uint8 array, or float array in [0, 1]
    sp : Spectrum
        Over the ``rows * cols`` patches; feature ``i`` is patch ``(i // cols, i % cols)``.
    grid : (rows, cols)
    index : {"shapley", "banzhaf"}
        Per-patch value drawn; the pair drawn is the strongest of the matching interaction
        index (``shapley_interaction`` / ``banzhaf_interaction``).
    ax : matplotlib Axes, optional
    alpha : float
        Opacity of the heatmap.

    Returns
    -------
    Figure
        Second image of the axes: the ``(rows, cols)`` attribution grid.
    """
    n = _n_features(sp)
    rows, cols = _check_grid(grid, n)
    rgb = _as_rgb(image)
    values = _feature_values(sp, index).reshape(rows, cols)
    height, width = rgb.shape[:2]
    extent = (0, width, height, 0)
    fig, ax = _figure_axes(ax, (6.0, 4.7 * height / width + 0.5))
    ax.imshow(rgb, extent=extent)
    heat = ax.imshow(
        values,
        cmap=_DIVERGING,
        norm=_symmetric_norm(values),
        alpha=alpha,
        extent=extent,
        interpolation="nearest",
    )
    fig.colorbar(heat, ax=ax, shrink=0.8, label=_INDEX_LABELS[index])
    _mark_strongest_pair(ax, sp, _PARTNER[index], (rows, cols), (height, width))
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _mark_strongest_pair(ax: Axes, sp: Spectrum, index: str, grid: tuple[int, int], size: tuple[int, int]) -> None:
    """Join the centres of the pair with the largest ``|index|`` (nothing if there is none)."""
    values = _set_values(sp, index, max_order=2)
    pairs = _strongest(values, 1, min_order=2)
    if not pairs:
        return
    (rows, cols), (height, width) = grid, size
    feats = np.array(pairs[0])
    x = (feats % cols + 0.5) * width / cols
    y = (feats // cols + 0.5) * height / rows
    where = " × ".join(f"#{i} ({i // cols},{i % cols})" for i in feats)
    ax.plot(
        x,
        y,
        color="k",
        lw=2,
        marker="o",
        ms=6,
        path_effects=[withStroke(linewidth=4, foreground="w")],
        label=f"strongest pair {where}: {values[pairs[0]]:+.3g}",
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=8, frameon=False)


def top_interactions(
    sp: Spectrum,
    names: Sequence[str],
    k: int = 10,
    *,
    index: str = "fourier",
    ax: Axes | None = None,
) -> Figure | SubFigure:
    """Horizontal bars of the ``k`` strongest non-constant terms, coloured by order.

    Parameters
    ----------
    sp : Spectrum
    names : sequence of n str
        Bar labels are the names of each term's features joined by ``×``.
    k : int
        Number of terms (fewer if the spectrum has fewer).
    index : {"fourier", "banzhaf_interaction", "shapley_interaction", "moebius"}
    ax : matplotlib Axes, optional

    Returns
    -------
    Figure
        Strongest term on top.
    """
    names = _check_names(names, _n_features(sp))
    values = _set_values(sp, index)
    terms = _strongest(values, k, min_order=1)
    colors = _order_colors([len(t) for t in terms])
    fig, ax = _figure_axes(ax, (7.0, 1.2 + 0.3 * max(len(terms), 1)))
    ax.barh(
        np.arange(len(terms)),
        [values[t] for t in terms],
        color=[colors[len(t)] for t in terms],
        tick_label=[_joined(t, names) for t in terms],
    )
    ax.invert_yaxis()
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel(_INDEX_LABELS[index])
    handles = [Patch(color=c, label=f"order {d}") for d, c in colors.items()]
    ax.legend(handles=handles, frameon=False)
    ax.set_title(f"{len(terms)} strongest terms", fontsize=10)
    return fig


def feature_bars(
    values,
    names: Sequence[str],
    k: int = 20,
    *,
    intervals=None,
    label: str = "Shapley value",
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure | SubFigure:
    """Horizontal bars of the ``k`` features of largest ``|value|``, with their intervals.

    Parameters
    ----------
    values : (n,) array_like
        One value per feature (e.g. Shapley values).
    names : sequence of n str
        Bar labels.
    k : int
        Number of features (all when there are fewer).
    intervals : (n, 2) array_like, optional
        Each feature's ``(low, high)`` interval, drawn as whiskers; a bar whose interval
        holds 0 is drawn pale (the data do not tell its sign).
    label : str
        The x-axis label.
    title : str, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    Figure
        Largest ``|value|`` on top; red raises the output, blue lowers it.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    names = _check_names(names, values.size)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    top = np.argsort(-np.abs(values), kind="stable")[:k]
    colors = np.array([_POSITIVE_RGB if v > 0 else _NEGATIVE_RGB for v in values[top]], dtype=np.float64) / 255
    alpha = np.ones(len(top))
    spans = None
    if intervals is not None:
        bounds = np.asarray(intervals, dtype=np.float64)
        if bounds.shape != (values.size, 2):
            raise ValueError(f"intervals must have shape ({values.size}, 2), got {bounds.shape}.")
        low, high = bounds[top, 0], bounds[top, 1]
        alpha = np.where((low > 0) | (high < 0), 1.0, 0.35)  # pale where the interval holds 0
        spans = low, high
    fig, ax = _figure_axes(ax, (7.0, 1.2 + 0.3 * max(len(top), 1)))
    rgba = np.column_stack([colors.reshape(-1, 3), alpha])
    ax.barh(np.arange(len(top)), values[top], color=rgba, tick_label=[names[i] for i in top])
    if spans is not None:  # each interval as it is, about its midpoint: it need not hold its value
        low, high = spans
        middle, half = (low + high) / 2, (high - low) / 2
        ax.errorbar(middle, np.arange(len(top)), xerr=half, fmt="none", ecolor="k", elinewidth=0.8, capsize=2)
    ax.invert_yaxis()
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel(label)
    pale = "; pale: the interval holds 0" if intervals is not None else ""
    ax.set_title(title or f"{len(top)} largest of {values.size}{pale}", fontsize=10)
    return fig


def spectrum_orders(sp: Spectrum, *, ax: Axes | None = None) -> Figure | SubFigure:
    """Fraction of the non-constant energy ``Σ F(T)²`` held by each order ``|T| >= 1``.

    Parameters
    ----------
    sp : Spectrum
    ax : matplotlib Axes, optional

    Returns
    -------
    Figure
        One bar per order, annotated with its number of terms; the bars sum to 1 (to 0 for
        a constant spectrum).
    """
    _n_features(sp)
    energy = np.bincount(sp.degrees, weights=sp.coefs**2, minlength=2)[1:]
    counts = np.bincount(sp.degrees, minlength=2)[1:]
    orders = np.arange(1, energy.size + 1)
    fig, ax = _figure_axes(ax, (6.0, 4.0))
    colors = list(_order_colors(orders).values())
    bars = ax.bar(orders, energy / (energy.sum() or 1.0), color=colors)
    ax.bar_label(bars, labels=[f"{c} terms" for c in counts], fontsize=8)
    ax.set_xticks(orders)
    ax.set_xlabel("interaction order |T|")
    ax.set_ylabel("fraction of non-constant energy")
    ax.set_title("Energy by interaction order", fontsize=10)
    return fig


# ---------------------------------------------------------------------- HTML
def _word_span(word: str, value: float, scale: float, label: str) -> str:
    """One word with a red (positive) or blue (negative) background, opacity ∝ ``|value|``."""
    r, g, b = _POSITIVE_RGB if value >= 0 else _NEGATIVE_RGB
    opacity = 0.85 * abs(value) / scale
    tooltip = html.escape(f"{word}: {label} = {value:+.4g}", quote=True)
    return (
        f'<span title="{tooltip}" style="background:rgba({r},{g},{b},{opacity:.3f});'
        f'padding:1px 3px;border-radius:3px">{html.escape(word)}</span>'
    )


def _table_row(cells: Sequence[str], tag: str) -> str:
    """One HTML table row; the first cell left-aligned, the others right-aligned."""
    aligns = ["left"] + ["right"] * (len(cells) - 1)
    row = "".join(f'<{tag} style="padding:2px 10px;text-align:{a}">{c}</{tag}>' for c, a in zip(cells, aligns))
    return f"<tr>{row}</tr>"


def _interaction_table(words: list[str], values: SetValues, k: int, label: str) -> str:
    """HTML table of the ``k`` strongest sets of order >= 2 (empty string when none)."""
    sets = _strongest(values, k, min_order=2)
    if not sets:
        return ""
    rows = [_table_row(["words", "order", label], "th")]
    rows += [_table_row([html.escape(_joined(t, words)), str(len(t)), f"{values[t]:+.4g}"], "td") for t in sets]
    style = "border-collapse:collapse;margin-top:8px;font-size:90%"
    return f'<table style="{style}">{"".join(rows)}</table>'


def words_html(words: Sequence[str], sp: Spectrum, *, index: str = "shapley", top_interactions: int = 5) -> str:
    """Words highlighted by their attribution, followed by their strongest interactions.

    Parameters
    ----------
    words : sequence of n str
        Feature ``i`` is ``words[i]``; escaped, so any text is safe.
    sp : Spectrum
    index : {"shapley", "banzhaf"}
        Per-word value; the table uses the matching interaction index.
    top_interactions : int
        Rows of the table of strongest interactions of order >= 2 (0: no table).

    Returns
    -------
    str
        Self-contained HTML (inline styles, ASCII with character references): write it to a
        ``.html`` file (:func:`save`) or show it with ``IPython.display.HTML``. Red raises the
        output, blue lowers it; opacity grows with ``|value|``; hover a word for its value.
    """
    words = _check_names(words, _n_features(sp), what="words")
    values = _feature_values(sp, index)
    label = _INDEX_LABELS[index]
    scale = float(np.abs(values).max(initial=0.0)) or 1.0
    spans = " ".join(_word_span(w, v, scale, label) for w, v in zip(words, values.tolist()))
    table = ""
    if top_interactions > 0:
        partner = _PARTNER[index]
        pair_values = _set_values(sp, partner)
        table = _interaction_table(words, pair_values, top_interactions, _INDEX_LABELS[partner])
    legend = f"{label} (largest |value| {scale:.3g}): red raises the output, blue lowers it; hover a word for its value"
    document = (
        '<div style="font-family:sans-serif;line-height:1.9;max-width:60em">'
        f'<div style="font-size:80%;color:#555">{html.escape(legend)}</div>'
        f"<div>{spans}</div>{table}</div>"
    )
    return document.encode("ascii", "xmlcharrefreplace").decode("ascii")


# ---------------------------------------------------------------------- output
def save(fig_or_html: Figure | str, path, *, dpi: int = DPI) -> Path:
    """Write a figure (PNG, SVG, PDF... by suffix, at ``dpi``) or an HTML string (``.html``).

    Parent folders are created. Returns the path written.
    """
    if not isinstance(fig_or_html, (str, Figure)):
        kind = type(fig_or_html).__name__
        raise TypeError(f"expected a matplotlib Figure or an HTML string, got {kind}.")
    path = Path(path)
    is_html = path.suffix.lower() in (".html", ".htm")
    if isinstance(fig_or_html, str) != is_html:
        raise ValueError(f"HTML strings go to .html files and figures to image files, got {path.name!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(fig_or_html, str):
        path.write_text(fig_or_html, encoding="utf-8")
    else:
        fig_or_html.savefig(path, dpi=dpi)
    return path
