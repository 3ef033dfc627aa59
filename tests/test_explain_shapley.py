"""explain_shapley: Shapley values per model call, against brute force and a tiny Llama's heads."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from conftest import all_masks, brute_force_shapley

import compattr
from compattr import PairedShapley, ProxySPEX, ShapleyExplanation, explain_shapley
from compattr._testing import tiny_llama
from compattr.features import AttentionHeads
from compattr.query import Query
from compattr.query.masks import FEW_PAIRS_KERNEL_POWER
from compattr.values import LogLikelihood

torch.set_num_threads(1)


class Counting:
    """A set function from a spectrum that counts the masks it evaluates."""

    def __init__(self, spectrum: compattr.Spectrum, noise: float = 0.0, groups=None):
        self.spectrum, self.noise, self.n = spectrum, noise, spectrum.n
        self.names = [f"x{i}" for i in range(self.n)]
        self.groups = groups
        self.calls = 0

    def evaluate(self, masks):
        masks = np.asarray(masks)
        self.calls += len(masks)
        # noise drawn from each mask's bits: the same mask always gives the same output
        seeds = np.packbits(masks, axis=1) @ (256 ** np.arange(-(-self.n // 8)))
        jitter = np.array([np.random.default_rng(int(s)).normal() for s in seeds])
        return self.spectrum.predict(masks) + self.noise * jitter

    def fingerprint(self):
        return {"function": f"spectrum of {len(self.spectrum)} terms", "noise": str(self.noise)}


def sparse_function(n: int, seed: int) -> compattr.Spectrum:
    """Every singleton and random terms of orders 2 to 5."""
    rng = np.random.default_rng(seed)
    supports = [(i,) for i in range(n)] + [tuple(rng.choice(n, size=d, replace=False)) for d in (2, 3, 3, 4, 5)]
    return compattr.Spectrum(n, [(), *supports], rng.normal(size=len(supports) + 1))


def test_values_match_brute_force_and_the_estimator_on_the_same_pairs():
    n = 9
    f = sparse_function(n, seed=1)
    features = Counting(f)
    sv = explain_shapley(features=features, budget=1001, seed=3, intervals=False, progress=False)
    assert isinstance(sv, ShapleyExplanation) and sv.intervals is None
    # 1,001 asked: 500 complementary pairs, drawn as paired_masks draws them, each queried
    assert np.array_equal(sv.masks, compattr.paired_masks(n, 1000, seed=3))
    assert features.calls == len(np.unique(sv.masks, axis=0))
    np.testing.assert_allclose(sv.outputs, f.predict(sv.masks), rtol=1e-12)  # queried in chunks
    truth = brute_force_shapley(f.predict(all_masks(n)), n)
    assert np.sum((sv.values - truth) ** 2) / np.sum(truth**2) < 1e-3
    refit = PairedShapley(random_state=3).fit(sv.masks, sv.outputs)
    np.testing.assert_array_equal(sv.values, refit.shapley_)
    # efficiency: the values sum to f(all) - f(none), both queried
    full_minus_empty = f.predict(np.ones((1, n), bool))[0] - f.predict(np.zeros((1, n), bool))[0]
    assert sv.full_minus_empty == pytest.approx(full_minus_empty)
    assert sv.values.sum() == pytest.approx(full_minus_empty)
    assert sv.names == features.names and sv.groups is None
    assert sv.value == "Counting"
    with pytest.raises(ValueError, match="no groups"):
        sv.by_group()


def test_intervals_belong_to_their_features():
    n = 12
    features = Counting(sparse_function(n, seed=4), noise=1.0, groups=np.arange(n) // 4)
    sv = explain_shapley(features=features, budget=300, seed=0, folds=4, confidence=0.9, progress=False)
    assert sv.intervals["features"].tolist() == [(i,) for i in range(n)]  # feature order
    np.testing.assert_array_equal(sv.intervals["value"], sv.values)
    direct = sv.estimator.uncertainty(sv.masks, sv.outputs, folds=4, confidence=0.9, names=sv.names)
    direct = direct.set_index(direct["features"].map(lambda t: t[0])).sort_index()
    frame = sv.to_frame()
    assert list(frame.columns) == ["feature", "name", "group", "shapley", "stderr", "ci_low", "ci_high", "nonzero"]
    assert np.all(np.diff(np.abs(frame["shapley"])) <= 0)  # largest |φ| first
    for row in frame.itertuples():
        assert row.name == f"x{row.feature}" and row.group == row.feature // 4
        assert row.shapley == sv.values[row.feature]
        assert row.stderr == pytest.approx(direct.loc[row.feature, "stderr"])
        assert row.ci_low == pytest.approx(direct.loc[row.feature, "ci_low"])
        assert row.nonzero == direct.loc[row.feature, "nonzero"]
        assert row.ci_low <= row.shapley <= row.ci_high
    assert frame["stderr"].nunique() > 1  # the noise makes the intervals differ
    assert frame["nonzero"].dtype == bool and frame["stderr"].dtype == np.float64
    assert len(sv.to_frame(3)) == 3
    groups = sv.by_group()
    assert list(groups.index) == [0, 1, 2] and groups.index.name == "group"
    assert list(groups.columns) == ["shapley", "stderr", "ci_low", "ci_high", "nonzero"]
    assert groups.loc[1, "shapley"] == pytest.approx(sv.values[4:8].sum())
    # each group's interval from the same jackknife fits: the spread of the refits' sums
    refits = sv.estimator.jackknife(sv.masks, sv.outputs, folds=4)
    sums = np.array([compattr.indices.shapley(refit)[4:8].sum() for refit in refits.spectra])
    stderr = np.sqrt(3 / 4 * np.sum((sums - sv.values[4:8].sum()) ** 2))
    assert groups.loc[1, "stderr"] == pytest.approx(stderr)
    half = groups.loc[1, "ci_high"] - groups.loc[1, "shapley"]
    assert half == pytest.approx(stderr * scipy.stats.t.ppf(0.95, 3))  # 90 %: Student-t, 3 degrees of freedom
    assert groups["nonzero"].tolist() == ((groups["ci_low"] > 0) | (groups["ci_high"] < 0)).tolist()
    text = sv.summary(4)
    assert "90% jackknife intervals" in text and f"{int(frame['nonzero'].sum())} of {n}" in text
    assert repr(sv) == f"ShapleyExplanation(n={n}, queries=300, {int(frame['nonzero'].sum())} nonzero)"


def test_cache_serves_a_second_run(tmp_path):
    f = sparse_function(10, seed=2)
    first = explain_shapley(features=Counting(f), budget=200, cache_dir=tmp_path, intervals=False, progress=False)
    again = Counting(f)
    second = explain_shapley(features=again, budget=200, cache_dir=tmp_path, intervals=False, progress=False)
    assert again.calls == 0
    np.testing.assert_array_equal(first.values, second.values)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"budget": 48, "intervals": False},
            ValueError,
            r"48 masks \(24 complementary pairs\) leaves 48 masks; .* at least 50",
        ),
        ({"budget": 60}, ValueError, "leaves 48 masks after the jackknife leaves out 1/5 of the pairs"),
        ({"budget": 100, "folds": 60}, ValueError, "folds=60 groups of pairs need at least as many pairs, got 50"),
        ({"folds": 1}, ValueError, "folds"),
        ({"confidence": 1.0}, ValueError, "confidence"),
        ({"estimator": ProxySPEX()}, TypeError, "PairedShapley, got ProxySPEX"),
        ({"value": LogLikelihood(answers=[[1]])}, ValueError, "value= would be ignored"),
        ({"estimator": PairedShapley(ridges=[-1.0])}, ValueError, "ridges"),
        ({"estimator": PairedShapley(support=0)}, ValueError, "support"),
        ({"seed": None}, ValueError, "seed"),
        ({"seed": -1}, ValueError, "seed"),
        ({"intervals": False, "folds": 7}, ValueError, "folds and confidence set the intervals"),
        ({"intervals": False, "confidence": 0.5}, ValueError, "folds and confidence set the intervals"),
        ({"confidence": "high"}, ValueError, "confidence"),
    ],
)
def test_bad_arguments_are_refused_before_any_query(kwargs, error, message):
    features = Counting(sparse_function(10, seed=0))
    with pytest.raises(error, match=message):
        explain_shapley(features=features, progress=False, **kwargs)
    assert features.calls == 0


@pytest.mark.parametrize("groups", [np.zeros(11, int), np.zeros(9, int), np.zeros((10, 1), int)])
def test_groups_not_one_per_feature_are_refused_before_any_query(groups):
    """A set function whose groups hold another number of labels failed after every query
    (longer) or gave an explanation whose tables raised (shorter)."""
    features = Counting(sparse_function(10, seed=0), groups=groups)
    with pytest.raises(ValueError, match="one entry per feature"):
        explain_shapley(features=features, progress=False)
    assert features.calls == 0
    with pytest.raises(ValueError, match="one entry per feature"):
        compattr.explain(features=features, progress=False)
    assert features.calls == 0


def test_explain_checks_the_estimator_and_seed_before_any_query():
    features = Counting(sparse_function(10, seed=0))
    for kwargs, message in (({"estimator": ProxySPEX(k=-1)}, "k must be"), ({"seed": None}, "seed")):
        with pytest.raises(ValueError, match=message):
            compattr.explain(features=features, progress=False, **kwargs)
    assert features.calls == 0


def test_budget_without_intervals_needs_only_the_fit():
    features = Counting(sparse_function(10, seed=0))
    sv = explain_shapley(features=features, budget=60, intervals=False, progress=False)  # 48 < 60: no jackknife
    assert len(sv.masks) == 60


def test_messages_name_explain_shapley():
    features = Counting(sparse_function(10, seed=0))
    with pytest.raises(TypeError, match="explain_shapley's first argument is the model"):
        explain_shapley(features, progress=False)
    with pytest.raises(ValueError, match="explain_shapley needs features="):
        explain_shapley(progress=False)


def test_one_feature_is_refused():
    features = Counting(compattr.Spectrum(1, [(0,)], [1.0]))
    with pytest.raises(ValueError, match="at least 2 features"):
        explain_shapley(features=features, progress=False)
    assert features.calls == 0


def test_heads_of_a_tiny_llama():
    model = tiny_llama(layers=2, heads=4, kv_heads=2, seed=3)
    heads = AttentionHeads(model)
    inputs = torch.randint(6, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    value = LogLikelihood(answers=[[7, 9], [11, 13]])
    sv = explain_shapley(model, heads, value, inputs, budget=160, folds=3, seed=1, progress=False)
    assert sv.names == heads.names and np.array_equal(sv.groups, heads.groups)
    ends = Query(model, heads, value, inputs).evaluate(np.array([[True] * heads.n, [False] * heads.n]))
    assert sv.values.sum() == pytest.approx(ends[0] - ends[1], rel=1e-6)
    np.testing.assert_allclose(sv.outputs[:2], ends, rtol=1e-6)
    layers = sv.by_group()
    assert list(layers.index) == sorted(set(heads.groups))
    assert layers["shapley"].sum() == pytest.approx(sv.values.sum())
    assert (layers["ci_low"] <= layers["shapley"]).all() and (layers["shapley"] <= layers["ci_high"]).all()
    assert sv.value == "LogLikelihood"
    assert "LogLikelihood" in sv.summary() and sv.to_frame(1)["name"][0] in sv.summary()
    fig = sv.plot(5)
    assert len(fig.axes[0].patches) == 5
    assert "LogLikelihood" in fig.axes[0].get_xlabel()


def test_min_masks_is_the_proxys_in_whole_pairs():
    assert PairedShapley().min_masks == ProxySPEX().min_masks == 50
    assert PairedShapley(cv=7).min_masks == 70
    f = sparse_function(9, seed=1)
    X = compattr.paired_masks(9, 48, seed=0)
    with pytest.raises(ValueError, match="at least 50 masks"):
        PairedShapley().fit(X, f.predict(X))
    X = compattr.paired_masks(9, 50, seed=0)
    assert PairedShapley().fit(X, f.predict(X)).shapley_.shape == (9,)


def test_to_frame_without_intervals():
    sv = explain_shapley(features=Counting(sparse_function(10, seed=5)), budget=120, intervals=False, progress=False)
    frame = sv.to_frame()
    assert list(frame.columns) == ["feature", "name", "shapley"]
    assert isinstance(frame, pd.DataFrame) and sorted(frame["feature"]) == list(range(10))
    assert "intervals" not in sv.summary()


def test_save_and_load_round_trip(tmp_path):
    n = 12
    features = Counting(sparse_function(n, seed=4), noise=1.0, groups=np.arange(n) // 4)
    sv = explain_shapley(features=features, budget=300, seed=0, folds=4, progress=False)
    path = sv.save(tmp_path / "sv.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["sv.npz"]  # no staging file left behind
    back = ShapleyExplanation.load(path)
    assert back.estimator is None and json.dumps(back.fit_info) == json.dumps(sv.fit_info)  # NaN, tuples as lists
    np.testing.assert_array_equal(back.values, sv.values)
    np.testing.assert_array_equal(back.masks, sv.masks)
    np.testing.assert_array_equal(back.outputs, sv.outputs)
    np.testing.assert_array_equal(back.groups, sv.groups)
    pd.testing.assert_frame_equal(back.by_group(), sv.by_group())
    pd.testing.assert_frame_equal(back.to_frame(), sv.to_frame())
    assert back.summary() == sv.summary() and back.names == sv.names and back.confidence == sv.confidence
    refit = PairedShapley(**back.fit_info["params"]).fit(back.masks, back.outputs)  # as the docstring says
    np.testing.assert_array_equal(refit.shapley_, sv.values)
    assert sv.fit_info["kernel_power"] == sv.estimator.kernel_power_ == FEW_PAIRS_KERNEL_POWER  # 150 pairs
    assert f"(150 complementary pairs, sizes drawn with kernel power {FEW_PAIRS_KERNEL_POWER:g})" in sv.summary()
    # an explanation saved before the power was recorded still reports
    older = dataclasses.replace(back, fit_info={k: v for k, v in back.fit_info.items() if k != "kernel_power"})
    assert "(150 complementary pairs)" in older.summary()
    # the proxy's CV R² of its first top-k, and of its final terms where recorded
    proxy = sv.estimator.proxy_
    assert sv.fit_info["proxy_spectrum_cv_r2"] == proxy.spectrum_cv_r2_ >= proxy.cv_r2_
    assert f"CV R² on these masks {proxy.cv_r2_:.3f} (of its final terms {proxy.spectrum_cv_r2_:.3f})" in sv.summary()
    older = dataclasses.replace(back, fit_info={k: v for k, v in back.fit_info.items() if k != "proxy_spectrum_cv_r2"})
    assert f"CV R² on these masks {proxy.cv_r2_:.3f}" in older.summary() and "final terms" not in older.summary()
    # string group labels: the group table's index was saved as objects, which load refused
    named = explain_shapley(
        features=Counting(sparse_function(n, seed=4), groups=np.array(list("aabbccddeeff"))),
        budget=120,
        folds=3,
        progress=False,
    )
    named_back = ShapleyExplanation.load(named.save(tmp_path / "named.npz"))
    pd.testing.assert_frame_equal(named_back.by_group(), named.by_group())
    np.testing.assert_array_equal(named_back.groups, named.groups)
    # labels held as objects (a pandas string column): np.savez pickled them, and load refused
    column = pd.Series(list("aabbccddeeff"), dtype=object).to_numpy()
    objects = explain_shapley(
        features=Counting(sparse_function(n, seed=4), groups=column), budget=120, folds=3, progress=False
    )
    objects_back = ShapleyExplanation.load(objects.save(tmp_path / "objects.npz"))
    pd.testing.assert_frame_equal(objects_back.by_group(), objects.by_group())
    assert objects_back.groups.tolist() == list("aabbccddeeff")
    bare = explain_shapley(features=Counting(sparse_function(10, seed=5)), budget=120, intervals=False, progress=False)
    again = ShapleyExplanation.load(bare.save(tmp_path / "bare.npz"))
    assert again.intervals is None and again.groups is None and again.group_intervals is None
    assert bare.confidence is None and again.confidence is None  # no intervals: no coverage to record
    np.testing.assert_array_equal(again.values, bare.values)


def test_an_estimator_set_with_numpy_values_saves(tmp_path):
    """Settings given as NumPy arrays and numbers (a ridge grid) crashed save after every query."""
    estimator = PairedShapley(ridges=np.array([0.01, 0.1, 1.0, np.inf]), random_state=np.int64(0))
    sv = explain_shapley(
        features=Counting(sparse_function(10, seed=5)), budget=120, estimator=estimator, intervals=False, progress=False
    )
    back = ShapleyExplanation.load(sv.save(tmp_path / "sv.npz"))
    assert back.fit_info["params"]["ridges"] == [0.01, 0.1, 1.0, np.inf]
    np.testing.assert_array_equal(back.values, sv.values)


def test_load_refuses_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", values=np.zeros(3))
    with pytest.raises(ValueError, match="is not a compattr Shapley explanation"):
        ShapleyExplanation.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="fitted estimator, or the fit_info"):
        ShapleyExplanation(values=np.zeros(2), names=["a", "b"], masks=np.zeros((2, 2), bool), outputs=np.zeros(2))


def test_intervals_from_the_estimator_are_put_in_feature_order():
    """PairedShapley.uncertainty lists features by decreasing |value|: given as intervals,
    its rows were read in feature order, so each feature showed another's interval."""
    n = 10
    truth = compattr.synthetic.complete_hierarchy(n, n_sets=3, order=3, seed=2)
    X = compattr.paired_masks(n, 160, seed=0)
    y = truth.predict(X)
    est = PairedShapley().fit(X, y)
    table = est.uncertainty(X, y, folds=5)
    assert [f[0] for f in table["features"]] != list(range(n))  # not in feature order
    sv = ShapleyExplanation(
        values=est.shapley_, names=[f"x{i}" for i in range(n)], masks=X, outputs=y, estimator=est, intervals=table
    )
    own = table.set_index("features").loc[[(i,) for i in range(n)]]
    np.testing.assert_array_equal(sv.intervals["ci_low"], own["ci_low"])
    frame = sv.to_frame()
    assert ((frame["ci_low"] <= frame["shapley"]) & (frame["shapley"] <= frame["ci_high"])).all()
    with pytest.raises(ValueError, match="one row per feature"):
        ShapleyExplanation(
            values=est.shapley_, names=sv.names, masks=X, outputs=y, estimator=est, intervals=table.head(3)
        )


def test_every_pair_queried_is_said_exact_and_is():
    """At n = 5 a budget of 400 queries every one of the 16 complementary pairs (with repeats):
    the values are exact, and the summary says why."""
    truth = compattr.synthetic.peak(5, n_sets=2, order=3, seed=1)
    sv = explain_shapley(features=Counting(truth), budget=400, progress=False)
    assert sv.fit_info["prior"] == "exact"
    np.testing.assert_allclose(sv.values, compattr.indices.shapley(truth), atol=1e-12)
    assert "every complementary pair was queried: the values are exact" in sv.summary()
