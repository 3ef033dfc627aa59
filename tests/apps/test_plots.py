import matplotlib

matplotlib.use("Agg")

import html

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

import compattr
from compattr import Spectrum, indices, plots


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    """Plots must not leave figures in pyplot's global state (or need closing)."""
    plt.close("all")
    yield
    leaked = plt.get_fignums()
    plt.close("all")
    assert not leaked


def render(fig: Figure, tmp_path, name: str = "plot.png") -> np.ndarray:
    """Save as PNG, check the file is a real image of the figure's size, return its pixels."""
    path = plots.save(fig, tmp_path / name)
    assert path.stat().st_size > 5_000
    pixels = mpimg.imread(path)
    width, height = fig.get_size_inches() * plots.DPI
    assert np.allclose(pixels.shape[:2], (height, width), atol=1)  # savefig truncates
    assert pixels[..., :3].std() > 0.01  # not a blank canvas
    return pixels


@pytest.fixture
def small():
    """n = 4: a constant, a linear term, two pairs and a triple."""
    return Spectrum.from_dict({(): 1.0, (0,): 0.5, (0, 1): 0.3, (1, 2): -0.2, (0, 1, 2): 0.6}, n=4)


def heads_spectrum(layers: int, heads: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = layers * heads
    sets = [(i,) for i in range(n)]
    sets += [tuple(rng.choice(n, size=d, replace=False)) for d in (2, 2, 3) for _ in range(n // 3)]
    names = [f"L{l}.H{h}" for l in range(layers) for h in range(heads)]
    groups = np.repeat(np.arange(layers), heads)
    return Spectrum(n, sets, rng.normal(size=len(sets))), names, groups


# ---------------------------------------------------------------------- pair_matrix
def test_pair_matrix_holds_the_pair_coefficients(small):
    M = plots.pair_matrix(small, "fourier")
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = 0.3
    expected[1, 2] = expected[2, 1] = -0.2
    np.testing.assert_array_equal(M, expected)
    banzhaf = plots.pair_matrix(small, "banzhaf_interaction")
    np.testing.assert_allclose(banzhaf, 4 * expected)  # I^B(T) = (-2)^2 F(T)


def test_pair_matrix_aggregate_shares_higher_orders_among_pairs(small):
    M = plots.pair_matrix(small, "fourier", aggregate=True)
    third = 0.6 / 3  # the triple (0, 1, 2) has three pairs
    assert M[0, 1] == pytest.approx(0.3 + third)
    assert M[1, 2] == pytest.approx(-0.2 + third)
    assert M[0, 2] == pytest.approx(third)
    np.testing.assert_array_equal(M, M.T)
    assert np.triu(M, 1).sum() == pytest.approx(0.3 - 0.2 + 0.6)


def test_pair_matrix_moebius_aggregate_is_shapley_taylor_of_order_two():
    sp, _, _ = heads_spectrum(3, 3, seed=1)
    M = plots.pair_matrix(sp, "moebius", aggregate=True)
    pairs = {t: v for t, v in indices.shapley_taylor(sp, 2).items() if len(t) == 2}
    expected = np.zeros((sp.n, sp.n))
    for (i, j), v in pairs.items():
        expected[i, j] = expected[j, i] = v
    np.testing.assert_allclose(M, expected, atol=1e-12)


def test_pair_matrix_shapley_interaction_matches_indices():
    sp, _, _ = heads_spectrum(2, 4, seed=2)
    M = plots.pair_matrix(sp, "shapley_interaction")
    for (i, j), v in ((t, v) for t, v in indices.shapley_interaction(sp).items() if len(t) == 2):
        assert M[i, j] == M[j, i] == pytest.approx(v)
    assert np.all(np.diag(M) == 0)


def test_unknown_index_is_a_clear_error(small):
    with pytest.raises(ValueError, match="unknown index 'shap'"):
        plots.pair_matrix(small, "shap")
    with pytest.raises(ValueError, match="unknown index"):
        plots.words_html(list("abcd"), small, index="moebius")


# ---------------------------------------------------------------------- head_interactions
def test_head_heatmap_draws_the_pair_matrix_in_layer_order(tmp_path):
    sp, names, _ = heads_spectrum(3, 4)
    groups = np.array([2, 0, 1, 0, 2, 1, 0, 1, 2, 2, 0, 1])  # heads not stored layer by layer
    fig = plots.head_interactions(sp, names, groups)
    render(fig, tmp_path)
    order = np.argsort(groups, kind="stable")
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    pairs = plots.pair_matrix(sp)[np.ix_(order, order)]
    np.testing.assert_array_equal(drawn - np.diag(np.diag(drawn)), pairs)
    # the diagonal: each head's own Banzhaf value (a strong single head is visible)
    np.testing.assert_allclose(np.diag(drawn), compattr.indices.banzhaf(sp)[order])
    assert np.abs(np.diag(drawn)).max() > 0
    assert "diagonal: Banzhaf value" in fig.axes[0].get_title()
    plain = plots.head_interactions(sp, names, groups, diagonal=False, title="tiny model, task x")
    np.testing.assert_array_equal(np.asarray(plain.axes[0].images[0].get_array()), pairs)
    assert plain.axes[0].get_title().startswith("tiny model, task x\nPairwise Banzhaf interaction")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [names[i] for i in order]
    norm = ax.images[0].norm
    assert norm.vmin == -norm.vmax  # diverging scale centred at 0


def test_head_heatmap_labels_layers_for_many_heads(tmp_path):
    sp, names, groups = heads_spectrum(30, 9)
    fig = plots.head_interactions(sp, names, groups, index="fourier", aggregate=True)
    render(fig, tmp_path)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"L{l}" for l in range(30)]
    # layer boundaries marked outside the image on both axes (a line over it hides cells)
    assert not ax.lines
    np.testing.assert_array_equal(ax.get_xticks(minor=True), np.arange(1, 30) * 9 - 0.5)
    np.testing.assert_array_equal(ax.get_yticks(minor=True), np.arange(1, 30) * 9 - 0.5)
    assert ax.images[0].get_array().shape == (270, 270)
    # with layer labels only, the strongest pairs are named in their cells
    M = plots.pair_matrix(sp, "fourier", aggregate=True)
    i, j = np.unravel_index(np.argmax(np.abs(np.triu(M, 1))), M.shape)
    notes = [t.get_text() for t in ax.texts]
    assert len(notes) == 5 and f"{names[i]} × {names[j]}" in notes


def test_head_heatmap_rejects_bad_names_and_groups():
    sp, names, groups = heads_spectrum(2, 3)
    with pytest.raises(ValueError, match="names must hold one entry per feature"):
        plots.head_interactions(sp, names[:-1], groups)
    with pytest.raises(ValueError, match="groups must have shape"):
        plots.head_interactions(sp, names, groups[:-1])


def test_plots_draw_into_a_given_axes(tmp_path):
    sp, names, groups = heads_spectrum(2, 3)
    fig = Figure(figsize=(12, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    assert plots.head_interactions(sp, names, groups, ax=left) is fig
    assert plots.top_interactions(sp, names, 5, ax=right) is fig
    render(fig, tmp_path)


# ---------------------------------------------------------------------- layer_energy
def test_layer_energy_bars_sum_to_the_split(tmp_path):
    sp, _, groups = heads_spectrum(5, 4)
    energy = sp.energy(groups)
    fig = plots.layer_energy(sp, groups)
    render(fig, tmp_path)
    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    assert len(heights) == 3 * 5
    assert sum(heights) == pytest.approx(energy.linear + energy.within + energy.cross)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == f"linear ({energy.linear:.1%})"
    same = plots.layer_energy(energy)
    assert [b.get_height() for b in same.axes[0].patches] == heights


def test_layer_energy_needs_groups_exactly_with_a_spectrum():
    sp, _, groups = heads_spectrum(2, 2)
    with pytest.raises(ValueError, match="needs groups"):
        plots.layer_energy(sp)
    with pytest.raises(ValueError, match="only used with a Spectrum"):
        plots.layer_energy(sp.energy(groups), groups)


# ---------------------------------------------------------------------- words_html
def test_words_html_escapes_and_contains_every_word(tmp_path):
    words = ["<script>alert(1)</script>", "café", 'say "hi"', "&"]
    sp = Spectrum.from_dict({(0,): 1.0, (1,): -0.5, (1, 3): 0.4, (0, 2): 0.1}, n=4)
    page = plots.words_html(words, sp)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    for word in words:
        text = html.escape(word).encode("ascii", "xmlcharrefreplace").decode()
        assert text in page
    assert page.isascii()
    assert "rgba(31,119,180" in page and "rgba(214,39,40" in page  # φ_0 = -2 blue, φ_1 = 1 red
    assert "caf&#233; &#215; &amp;" in page  # strongest pair (1, 3) in the table
    path = plots.save(page, tmp_path / "words.html")
    assert path.read_text() == page


def test_words_html_table_lists_the_strongest_interactions():
    sp = Spectrum.from_dict({(0,): 1.0, (0, 1): 0.5, (1, 2): -2.0, (0, 1, 2): 0.05}, n=3)
    page = plots.words_html(["a", "b", "c"], sp, index="banzhaf", top_interactions=1)
    assert page.count("<tr>") == 2  # header + one row
    assert "b &#215; c" in page and f"{4 * -2.0:+.4g}" in page  # I^B = (-2)^2 F
    assert "<table" not in plots.words_html(["a", "b", "c"], sp, top_interactions=0)


def test_words_html_rejects_wrong_length(small):
    with pytest.raises(ValueError, match=r"words must hold one entry per feature \(n=4\), got 3"):
        plots.words_html(["a", "b", "c"], small)


# ---------------------------------------------------------------------- patch_overlay
def test_patch_overlay_puts_attribution_on_the_right_patch(tmp_path):
    grid = (3, 4)
    sp = Spectrum.from_dict({(7,): -1.0, (0,): 0.2, (2, 9): 0.3}, n=12)  # φ_7 = 2, φ_0 = -0.4
    image = np.random.default_rng(0).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    fig = plots.patch_overlay(image, sp, grid, alpha=0.6)
    render(fig, tmp_path)
    ax = fig.axes[0]
    heat = np.asarray(ax.images[1].get_array())
    assert heat.shape == grid
    assert np.unravel_index(np.argmax(heat), grid) == (1, 3)
    assert heat[1, 3] == pytest.approx(2.0)
    assert ax.images[1].get_alpha() == 0.6
    (line,) = ax.lines  # strongest pair (2, 9): patches (0, 2) and (2, 1), cells of 20 × 20 px
    np.testing.assert_allclose(line.get_xdata(), [50, 30])
    np.testing.assert_allclose(line.get_ydata(), [10, 50])


def test_patch_overlay_without_pairs_draws_no_line(tmp_path):
    sp = Spectrum.from_dict({(0,): 1.0, (3,): -1.0}, n=4)
    fig = plots.patch_overlay(np.full((32, 32, 3), 0.5), sp, (2, 2), index="banzhaf")
    render(fig, tmp_path)
    assert not fig.axes[0].lines


@pytest.mark.parametrize(
    ("image", "grid", "message"),
    [
        (np.zeros((8, 8)), (2, 2), r"shape \(H, W, 3\)"),
        (np.zeros((8, 8, 4)), (2, 2), r"shape \(H, W, 3\)"),
        (np.full((8, 8, 3), 2.0), (2, 2), r"in \[0, 1\]"),
        (np.zeros((8, 8, 3)), (2, 3), "rows \\* cols = n = 4"),
        (np.zeros((8, 8, 3)), 4, "grid must be"),
    ],
)
def test_patch_overlay_rejects_bad_input(image, grid, message):
    sp = Spectrum.from_dict({(0,): 1.0}, n=4)
    with pytest.raises(ValueError, match=message):
        plots.patch_overlay(image, sp, grid)


# ---------------------------------------------------------------------- top_interactions, orders
def test_top_interactions_bars_are_the_strongest_terms_coloured_by_order(tmp_path):
    sp = Spectrum.from_dict({(): 9.0, (0,): 1.0, (1, 2): -3.0, (0, 1, 2): 2.0, (2,): 0.5}, n=3)
    fig = plots.top_interactions(sp, ["a", "b", "c"], k=3)
    render(fig, tmp_path)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b × c", "a × b × c", "a"]
    assert [bar.get_width() for bar in ax.patches] == [-3.0, 2.0, 1.0]
    colors = [bar.get_facecolor() for bar in ax.patches]
    assert len(set(colors)) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["order 1", "order 2", "order 3"]
    with pytest.raises(ValueError, match="names must hold"):
        plots.top_interactions(sp, ["a", "b"])


def test_feature_bars_are_the_largest_values_pale_where_the_interval_holds_zero(tmp_path):
    values = np.array([0.5, -2.0, 0.1, 1.0])
    # d's interval excludes its value (a percentile bootstrap's can): drawn as it is, not from 1.0
    intervals = np.array([[0.2, 0.8], [-3.0, 0.4], [-0.1, 0.3], [1.2, 1.5]])
    fig = plots.feature_bars(values, ["a", "b", "c", "d"], k=3, intervals=intervals)
    render(fig, tmp_path)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "d", "a"]
    assert [bar.get_width() for bar in ax.patches] == [-2.0, 1.0, 0.5]
    alphas = [bar.get_facecolor()[3] for bar in ax.patches]
    assert alphas[0] < 1.0 and alphas[1] == alphas[2] == 1.0  # b's interval holds 0
    red, blue = ax.patches[1].get_facecolor(), ax.patches[0].get_facecolor()
    assert red[0] > red[2] and blue[2] > blue[0]  # red raises, blue lowers
    (whiskers,) = [c for c in ax.collections if len(c.get_segments()) == 3]
    ends = sorted(tuple(sorted((seg[0][0], seg[1][0]))) for seg in whiskers.get_segments())
    np.testing.assert_allclose(ends, [(-3.0, 0.4), (0.2, 0.8), (1.2, 1.5)])
    assert len(plots.feature_bars(values, list("abcd")).axes[0].patches) == 4  # k above n: all
    with pytest.raises(ValueError, match=r"intervals must have shape \(4, 2\)"):
        plots.feature_bars(values, list("abcd"), intervals=intervals[:3])
    with pytest.raises(ValueError, match="k must be at least 1"):
        plots.feature_bars(values, list("abcd"), k=0)
    with pytest.raises(ValueError, match="names must hold"):
        plots.feature_bars(values, ["a"])


def test_spectrum_orders_bars_are_energy_fractions(tmp_path):
    sp = Spectrum.from_dict({(): 5.0, (0,): 1.0, (1,): 1.0, (0, 1): 2.0, (0, 1, 2): 1.0}, n=3)
    fig = plots.spectrum_orders(sp)
    render(fig, tmp_path)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    np.testing.assert_allclose(heights, [2 / 7, 4 / 7, 1 / 7])


# ---------------------------------------------------------------------- save
def test_save_checks_what_goes_where(tmp_path, small):
    fig = plots.spectrum_orders(small)
    with pytest.raises(ValueError, match="HTML strings go to .html"):
        plots.save(fig, tmp_path / "x.html")
    with pytest.raises(ValueError, match="HTML strings go to .html"):
        plots.save("<p>hi</p>", tmp_path / "x.png")
    with pytest.raises(TypeError, match="matplotlib Figure or an HTML string"):
        plots.save(42, tmp_path / "x.png")
    assert plots.save(fig, tmp_path / "deeper" / "x.svg").read_text().lstrip().startswith("<?xml")


def test_every_pair_of_a_large_heatmap_reaches_the_image():
    """At 1,024 heads the cells were under 1 pixel and the layer boundaries were drawn over
    them: 46 of 600 strongest pair cells, most of them a layer's first or last head, had no
    coloured pixel. The figure now grows to 2 pixels a cell, boundaries marked outside."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    layers, per_layer = 24, 32
    n = layers * per_layer
    rng = np.random.default_rng(0)
    pairs = set()
    while len(pairs) < 150:
        a, b = sorted(rng.choice(n, 2, replace=False).tolist())
        pairs.add((a, b))
    sp = Spectrum.from_dict({(): 1.0, **{p: -0.5 for p in pairs}}, n)
    names = [f"L{l}.H{h}" for l in range(layers) for h in range(per_layer)]
    fig = plots.head_interactions(sp, names, np.repeat(np.arange(layers), per_layer), annotate=0)
    fig.set_dpi(plots.DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    coloured = np.abs(image[..., 0] - image[..., 2]) > 50
    ax = fig.axes[0]
    assert not ax.lines  # no boundary drawn over the cells
    for a, b in pairs:
        for row, column in ((a, b), (b, a)):
            x, y = ax.transData.transform((column, row))
            r, c = int(round(image.shape[0] - y)), int(round(x))
            assert coloured[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2].any(), (row, column)
