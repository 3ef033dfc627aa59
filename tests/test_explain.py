"""End to end on a tiny random-weight Llama: explain its heads, plan, apply, measure."""

import dataclasses
import itertools
import json
import warnings

import numpy as np
import pytest
import torch
from conftest import random_spectrum

import compattr
from compattr import Explanation, explain
from compattr._testing import tiny_llama
from compattr.explain import PAIRED_SHAPLEY_BELOW
from compattr.features import AttentionHeads
from compattr.query import Query
from compattr.values import LogLikelihood

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setting():
    model = tiny_llama(layers=3, heads=4, kv_heads=2, seed=1)
    heads = AttentionHeads(model)
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(6, 64, (3, 10), generator=g)
    value = LogLikelihood(answers=[[7, 9], [11, 13], [17, 19]])
    return model, heads, value, inputs


@pytest.fixture(scope="module")
def explanation(setting, tmp_path_factory):
    model, heads, value, inputs = setting
    cache = tmp_path_factory.mktemp("cache")
    return explain(model, heads, value, inputs, budget=300, test_masks=200, seed=0, cache_dir=cache, progress=False)


def test_explanation_holds_everything(explanation, setting, tmp_path):
    _, heads, _, _ = setting
    ex = explanation
    assert ex.n == heads.n == 12
    assert ex.names == heads.names and np.array_equal(ex.groups, heads.groups)
    assert ex.masks.shape == (300, 12) and ex.test_masks.shape == (200, 12)
    assert np.array_equal(ex.masks, compattr.sample_masks(12, 300, seed=0))
    fit_rows = {r.tobytes() for r in ex.masks}
    assert not any(r.tobytes() in fit_rows for r in ex.test_masks)  # held out: never fitted on
    assert len({r.tobytes() for r in ex.test_masks}) == 200
    assert ex.faithfulness > 0.5
    assert ex.lasso_faithfulness is not None
    e = ex.energy()
    assert e.linear + e.within + e.cross == pytest.approx(1.0)
    assert set(ex.hierarchy()) == {"dsr", "scr", "shr"}
    shapley = ex.index("shapley")
    assert list(shapley.index) == heads.names
    table = ex.interactions(5)
    assert len(table) == 5 and all("L" in s for s in table["names"] if s != "∅")
    for index in ("shapley_taylor", "faith_shapley", "faith_banzhaf", "k_sii"):  # indices of an order
        ranked = ex.interactions(4, index=index, order=2)
        assert len(ranked) == 4 and ranked["order"].max() <= 2
        assert ranked.equals(ex.index(index, 2).head(4))
    with pytest.raises(ValueError, match="per-feature index"):
        ex.interactions(4, index="shapley")
    assert "faithfulness" in ex.summary()
    assert ex.fit_info["tilt"] in compattr.proxy.proxyspex.TILTS
    assert ("ranked with tilt" in ex.summary()) == (ex.fit_info["tilt"] != 1.0)
    assert ex.fit_info["ranking"] in compattr.proxy.proxyspex.RANKINGS
    assert ("re-ranked by the refit" in ex.summary()) == (ex.fit_info["ranking"] in ("refit", "closure"))
    assert ("with every subset" in ex.summary()) == (ex.fit_info["ranking"] == "closure")
    assert ex.fit_info["repeats"] in (1, compattr.proxy.proxyspex.REPEATS)
    assert ("fits (these choices: the first's)" in ex.summary()) == (ex.fit_info["repeats"] > 1)
    refitted = compattr.ProxySPEX(seed=0).fit(ex.masks, ex.outputs)
    assert ex.fit_info["cv_r2"] == refitted.cv_r2_
    fitted = (refitted.grown_, refitted.regrown_, refitted.regrow_rounds_, refitted.guide_rounds_)
    info = ex.fit_info
    assert (info["grown"], info["regrown"], info["regrow_rounds"], info["guide_rounds"]) == fitted
    assert info["extend_rounds"] == refitted.extend_rounds_
    proxy_line = next(line for line in ex.summary().splitlines() if line.startswith("proxy:"))
    assert (", grown one order" in proxy_line) == ex.fit_info["grown"]
    assert ("the average's terms grown" in proxy_line) == ex.fit_info["regrown"]
    assert ("extended where the residual pointed" in proxy_line) == (ex.fit_info["extend_rounds"] > 0)
    title = ex.plot_heads("tiny llama").axes[0].get_title()
    assert title.startswith(f"tiny llama · value: {type(setting[2]).__name__}")
    assert f"held-out R² {ex.faithfulness:.2f}" in title
    payload = json.loads(ex.save_shapiq(tmp_path / "k_sii.json").read_text())
    assert payload["metadata"]["estimation_budget"] == 300 and payload["metadata"]["n_players"] == 12
    assert payload["description"].startswith("compattr explanation of ")


def test_outputs_are_the_model_queried_directly(explanation, setting):
    model, heads, value, inputs = setting
    direct = Query(model, heads, value, inputs).evaluate(explanation.masks[:5])
    np.testing.assert_allclose(explanation.outputs[:5], direct, rtol=1e-6, atol=1e-6)


def test_plan_apply_measures_what_direct_masking_gives(explanation, setting):
    model, heads, value, inputs = setting
    plan = explanation.plan(keep=6)
    assert plan.kept.sum() == 6
    best = max(
        explanation.spectrum.predict(np.array([k]))[0]
        for k in (np.isin(np.arange(12), c) for c in __import__("itertools").combinations(range(12), 6))
    )
    assert plan.value == pytest.approx(best)  # the ILP is exact
    prepared, targets = value.prepare(model, inputs, 64)
    with torch.inference_mode(), plan.apply(heads):
        applied = value.reduce(value.score(model, prepared, targets)[None]).item()
    direct = Query(model, heads, value, inputs).evaluate(plan.kept[None])[0]
    assert applied == pytest.approx(direct, rel=1e-5, abs=1e-6)


def test_save_load_round_trip(explanation, tmp_path):
    explanation.save(tmp_path / "ex")
    back = Explanation.load(tmp_path / "ex")
    assert back.spectrum == explanation.spectrum and back.lasso == explanation.lasso
    for name in ("masks", "outputs", "test_masks", "test_outputs", "groups"):
        assert np.array_equal(getattr(back, name), getattr(explanation, name))
    assert back.names == explanation.names
    assert back.faithfulness == explanation.faithfulness


def _toy_explanation(seed: int, lasso: bool = True, **fields) -> Explanation:
    """An explanation of random numbers over 6 features, built without fitting."""
    rng = np.random.default_rng(seed)
    masks, test_masks = rng.random((40, 6)) < 0.5, rng.random((20, 6)) < 0.5
    return Explanation(
        spectrum=random_spectrum(6, 8, 3, seed),
        names=[f"x{i}" for i in range(6)],
        groups=np.arange(6) // 3,
        masks=masks,
        outputs=rng.normal(size=40),
        test_masks=test_masks,
        test_outputs=rng.normal(size=20),
        lasso=random_spectrum(6, 6, 1, seed + 1) if lasso else None,
        fit_info={"k": seed},
        **fields,
    )


def _same(a: Explanation, b: Explanation) -> bool:
    return (
        a.spectrum == b.spectrum
        and a.lasso == b.lasso
        and a.fit_info == b.fit_info
        and all(
            np.array_equal(getattr(a, f), getattr(b, f)) for f in ("masks", "outputs", "test_masks", "test_outputs")
        )
    )


def test_save_over_an_older_run_keeps_none_of_its_files(tmp_path):
    with_lasso, without = _toy_explanation(1), _toy_explanation(2, lasso=False)
    with_lasso.save(tmp_path / "ex")
    (tmp_path / "ex" / "notes.txt").write_text("mine")  # not the explanation's: left alone
    without.save(tmp_path / "ex")
    back = Explanation.load(tmp_path / "ex")
    assert back.lasso is None and _same(back, without)
    assert not (tmp_path / "ex" / "lasso.json").exists() and (tmp_path / "ex" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex"]  # no staging folder left behind


def test_an_interrupted_save_never_loads_as_a_mix_of_two_runs(tmp_path, monkeypatch):
    first, second = _toy_explanation(1), _toy_explanation(2)
    first.save(tmp_path / "ex")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for a kill while the queries are written

    with monkeypatch.context() as m:
        m.setattr(np, "savez_compressed", killed)
        with pytest.raises(KeyboardInterrupt):
            second.save(tmp_path / "ex")
    assert _same(Explanation.load(tmp_path / "ex"), first)  # the first run, whole

    import os

    replace, moved = os.replace, []

    def killed_after_one_file(src, dst):
        if moved:
            raise KeyboardInterrupt
        moved.append(dst)
        replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", killed_after_one_file)
        with pytest.raises(KeyboardInterrupt):
            second.save(tmp_path / "ex")
    assert moved  # one file of the second run is in place, the rest are the first's
    with pytest.raises(ValueError, match="mixes files of two saves"):
        Explanation.load(tmp_path / "ex")
    second.save(tmp_path / "ex")
    assert _same(Explanation.load(tmp_path / "ex"), second)


def test_files_of_older_compattr_still_load(tmp_path):
    import json

    ex = _toy_explanation(3)
    ex.save(tmp_path / "ex")
    meta_path = tmp_path / "ex" / "explanation.json"
    meta = json.loads(meta_path.read_text())
    del meta["files"], meta["value_range"]
    meta_path.write_text(json.dumps(meta | {"version": 1}))
    assert _same(Explanation.load(tmp_path / "ex"), ex)


@pytest.mark.parametrize("version, message", [(99, "newer compattr"), (None, "no valid"), ("x", "no valid")])
def test_every_saved_format_is_checked_alike(tmp_path, version, message):
    """Explanations, spectra and pruning plans share one format and version check."""
    import json

    ex = _toy_explanation(4)
    ex.save(tmp_path / "ex")
    cases = [  # (file, what its loader reads)
        (tmp_path / "ex" / "explanation.json", lambda: Explanation.load(tmp_path / "ex")),
        (ex.spectrum.save(tmp_path / "sp.json"), lambda: compattr.Spectrum.load(tmp_path / "sp.json")),
        (
            compattr.PruningPlan(np.ones(6, bool)).to_json(tmp_path / "plan.json"),
            lambda: compattr.PruningPlan.from_json(tmp_path / "plan.json"),
        ),
    ]
    for path, load in cases:
        payload = json.loads(path.read_text())
        path.write_text(json.dumps(payload | {"version": version}))
        with pytest.raises(ValueError, match=message):
            load()
        path.write_text(json.dumps(payload | {"format": "other"}))
        with pytest.raises(ValueError, match=r"is not a compattr .*format='other'"):
            load()


def test_keep_is_a_count_or_a_fraction_and_nothing_else(explanation):
    """One rule for Explanation.plan, compattr prune --keep and the recipes."""
    n = explanation.n  # 12
    assert explanation.plan(keep=1.0).kept.all()  # 1.0: every feature
    assert explanation.plan(keep=1).kept.sum() == 1  # 1: one feature
    assert explanation.plan(keep=np.int64(3)).kept.sum() == 3
    assert explanation.plan(keep=0.5).kept.sum() == 6
    for bad in (1.5, 0.01, -0.3, 0, 0.0, n + 1, 12.0, True, "3", None):
        with pytest.raises(
            ValueError, match=rf"keep must be a whole number of features 1..{n} .* or a fraction in \(0, 1\]"
        ):
            explanation.plan(keep=bad)


def test_plans_predicted_outside_the_value_range_warn():
    from compattr.optimize import ValueRangeWarning

    ex = _toy_explanation(5, value_range=(-np.inf, 0.0))
    with pytest.warns(ValueRangeWarning, match=r"outside the value function's range \[-∞, 0\]: the plan \+"):
        best = ex.plan(keep=3)  # maximises f̂: the random spectrum predicts something positive
    assert best.value > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _toy_explanation(5).plan(keep=3)  # no range known: no warning
        _toy_explanation(5, value_range=(-np.inf, np.inf)).plan(keep=3)
    with pytest.raises(ValueError, match="low <= high"):
        _toy_explanation(5, value_range=(1.0, 0.0))


def test_constant_held_out_outputs_leave_r2_undefined_but_the_summary_prints():
    ex = _toy_explanation(6)
    ex.test_outputs = np.full(len(ex.test_masks), 0.25)
    assert "faithfulness R² (held out): undefined: the held-out outputs are all equal" in ex.summary()
    assert "R²=undefined" in repr(ex)
    with pytest.raises(ValueError, match="constant"):
        _ = ex.faithfulness


class _Counting:
    """A feature set over ``n`` features evaluating ``fn`` and counting its queries."""

    def __init__(self, n: int, fn, output_range=None):
        self.n, self.names, self.groups, self.fn, self.queried = n, [f"x{i}" for i in range(n)], np.zeros(n, int), fn, 0
        if output_range is not None:
            self.output_range = output_range

    def evaluate(self, masks):
        self.queried += len(masks)
        return self.fn(masks)


@pytest.mark.parametrize(
    "n, kwargs, message",
    [
        (4, dict(budget=60, test_masks=5), r"only \d of the 2\^4 = 16 masks .* at least 2 are needed"),
        (8, dict(budget=60, test_masks=1), "test_masks at least 2"),
        (8, dict(budget=20, test_masks=50), "budget must be at least 50"),
        (8, dict(budget=100.9, test_masks=50), "budget must be an integer"),  # not 100 silently
    ],
)
def test_too_few_masks_are_refused_before_any_query(n, kwargs, message):
    features = _Counting(n, lambda X: X.sum(axis=1) + 0.5 * X[:, 0] * X[:, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an error, not a warning ("holding out 1 instead of 5") first
        with pytest.raises(ValueError, match=message):
            explain(features=features, progress=False, **kwargs)
    assert features.queried == 0


def test_value_range_is_declared_by_the_value_and_saved(tmp_path):
    truth = compattr.synthetic.complete_hierarchy(8, n_sets=2, order=2, seed=0)
    features = _Counting(8, lambda X: truth.predict(X), output_range=(-np.inf, 100.0))
    ex = explain(features=features, budget=80, test_masks=30, progress=False)
    assert ex.value_range == (-np.inf, 100.0)
    ex.save(tmp_path / "ex")
    assert Explanation.load(tmp_path / "ex").value_range == (-np.inf, 100.0)
    assert explain(features=features, budget=80, test_masks=30, progress=False, value_range=(0, 1)).value_range == (
        0.0,
        1.0,
    )


def test_jackknife_uncertainty_refits_the_estimator_explain_fitted_even_after_a_save(tmp_path, capsys):
    """``uncertainty(method="jackknife")`` refits a ProxySPEX with the parameters and seed the
    explanation was fitted with (kept by a save), around the explanation's own spectrum."""
    from compattr.spectrum import jackknife

    truth = compattr.synthetic.complete_hierarchy(10, n_sets=2, order=2, seed=1)
    weights = np.random.default_rng(5).normal(size=10)
    features = _Counting(10, lambda X: truth.predict(X) + 0.3 * np.sin(X @ weights * 7.0))
    settings = dict(seed=3, repeats=1, max_order=1)  # not the defaults: refits must keep them
    ex = explain(features=features, budget=150, test_masks=20, seed=3, estimator=compattr.ProxySPEX(**settings))
    ex.save(tmp_path / "ex")
    back = Explanation.load(tmp_path / "ex")
    queried = features.queried
    capsys.readouterr()
    refits = back.uncertainty(seed=2, method="jackknife", folds=3)
    assert features.queried == queried  # no model call
    assert "jackknife fits" in capsys.readouterr().err  # a progress bar over the fits
    expected = jackknife(compattr.ProxySPEX(**settings).fit(ex.masks, ex.outputs), ex.masks, ex.outputs, 3, seed=2)
    assert len(refits.spectra) == 3 and refits.spectrum is back.spectrum
    for got, want in zip(refits.spectra, expected.spectra):
        assert got.to_dict() == want.to_dict() and got.degrees.max() <= 1
    np.testing.assert_allclose(refits.stderr(), expected.stderr(), rtol=1e-12)
    assert np.any(refits.stderr() > 0)
    mine = back.uncertainty(
        method="jackknife", folds=3, estimator=compattr.ProxySPEX(seed=3, repeats=1), progress=False
    )
    assert "jackknife" not in capsys.readouterr().err
    assert any(s.degrees.max() > 1 for s in mine.spectra)  # the estimator given is the one refitted
    terms = [t for d in range(4) for t in itertools.combinations(range(10), d)]  # 176 terms, 150 masks
    wide = dataclasses.replace(
        back,
        spectrum=compattr.Spectrum.from_dict(dict.fromkeys(terms, 0.1), 10),
        fit_info={**back.fit_info, "ridge": None},
    )
    with pytest.raises(ValueError, match="more masks than terms"):
        wide.uncertainty(method="bootstrap")
    auto = wide.uncertainty(seed=2, folds=3)  # the bootstrap cannot refit it: the jackknife
    assert isinstance(auto, compattr.spectrum.SpectrumJackknife) and auto.spectrum is wide.spectrum
    for got, want in zip(auto.spectra, expected.spectra):
        assert got.to_dict() == want.to_dict()
    nothing = dataclasses.replace(back, fit_info={**back.fit_info, "cv_r2": 0.0})  # a fit that explains nothing
    assert isinstance(nothing.uncertainty(folds=3), compattr.spectrum.SpectrumJackknife)
    assert isinstance(nothing.uncertainty(5, method="bootstrap"), compattr.spectrum.SpectrumBootstrap)
    del back.fit_info["params"]  # an explanation saved before they were kept
    with pytest.raises(ValueError, match="estimator="):
        back.uncertainty(method="jackknife")

    class Mine(compattr.ProxySPEX):  # another class: its parameters are not kept, it is named
        pass

    other = explain(features=features, budget=150, test_masks=20, seed=3, estimator=Mine(**settings))
    assert other.fit_info["estimator"] == "Mine" and other.fit_info["params"] is None
    with pytest.raises(ValueError, match="estimator="):
        other.uncertainty(method="jackknife")
    assert len(other.uncertainty(method="jackknife", folds=2, estimator=Mine(**settings), progress=False).spectra) == 2
    with pytest.raises(ValueError, match="method"):
        back.uncertainty(method="jacknife")


def test_from_fit_makes_of_a_users_fit_what_explain_makes_of_its_own():
    """``Explanation.from_fit``: the explanation of a ProxySPEX fitted on the caller's masks is
    the one ``explain`` makes of the same fit (spectrum, queries, ``fit_info`` but the value's
    description), and its jackknife refits that estimator's parameters; bad input is refused."""
    truth = compattr.synthetic.complete_hierarchy(10, n_sets=2, order=3, seed=4)
    features = _Counting(10, truth.predict)
    settings = dict(seed=5, repeats=1, max_order=2)
    ex = explain(features=features, budget=150, test_masks=20, seed=5, estimator=compattr.ProxySPEX(**settings))
    est = compattr.ProxySPEX(**settings).fit(ex.masks, ex.outputs)
    mine = Explanation.from_fit(est, ex.masks, ex.outputs, ex.test_masks, ex.test_outputs)
    assert mine.spectrum.to_dict() == ex.spectrum.to_dict() and mine.faithfulness == ex.faithfulness
    assert mine.fit_info["spectrum_cv_r2"] == est.spectrum_cv_r2_ and mine.fit_info["cv_r2"] == est.cv_r2_
    assert mine.names == [str(i) for i in range(10)] and not mine.groups.any()
    timings = ("timings",)  # CPU seconds differ from fit to fit
    same = {k: v for k, v in ex.fit_info.items() if k not in ("value", *timings)}
    assert {k: v for k, v in mine.fit_info.items() if k not in timings} == same
    refits = mine.uncertainty(seed=2, method="jackknife", folds=3, progress=False)
    assert all(s.degrees.max() <= 2 for s in refits.spectra)  # the estimator's own max_order
    queries = (ex.masks, ex.outputs, ex.test_masks, ex.test_outputs)
    named = Explanation.from_fit(est, *queries, names="abcdefghij", groups=np.arange(10) // 5)
    assert named.names == list("abcdefghij") and len(named.energy().per_group) == 2
    with pytest.raises(ValueError, match="not fitted"):
        Explanation.from_fit(compattr.ProxySPEX(), ex.masks, ex.outputs, ex.test_masks, ex.test_outputs)
    # the paired mode's spectrum is the outputs' odd part alone: no model of them
    pairs = compattr.paired_masks(10, 120, seed=1)
    paired = compattr.PairedShapley(random_state=0).fit(pairs, truth.predict(pairs))
    with pytest.raises(TypeError, match="no predict"):
        Explanation.from_fit(paired, pairs, truth.predict(pairs), ex.test_masks, ex.test_outputs)
    bad = [
        (ex.masks[:, :9], ex.outputs, ex.test_masks, ex.test_outputs, {}),  # masks of another n
        (ex.masks, ex.outputs[:-1], ex.test_masks, ex.test_outputs, {}),  # an output missing
        (ex.masks, ex.outputs, ex.test_masks[:1], ex.test_outputs[:1], {}),  # one held-out mask
        (ex.masks, ex.outputs, ex.test_masks, ex.test_outputs, {"names": list("abc")}),
        (ex.masks, ex.outputs, ex.test_masks, ex.test_outputs, {"groups": np.zeros(9, int)}),
    ]
    for masks, outputs, test_masks, test_outputs, kwargs in bad:
        with pytest.raises(ValueError):
            Explanation.from_fit(est, masks, outputs, test_masks, test_outputs, **kwargs)
    # "held-out" masks that were fitted on (sample_masks with the fit's seed repeats its masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Explanation.from_fit(est, *queries)  # explain's own are held out
    with pytest.warns(UserWarning, match="20 of the 20 test masks are among the fitting masks"):
        Explanation.from_fit(est, ex.masks, ex.outputs, ex.masks[:20], ex.outputs[:20])
    fresh = compattr.held_out_masks(ex.masks, 20, seed=1)
    assert not ({r.tobytes() for r in fresh} & {r.tobytes() for r in ex.masks})


def test_alpha_is_refused_where_budget_would_ignore_it_and_checked_where_used():
    features = _Counting(6, lambda X: X.sum(axis=1).astype(float))
    for bad in (-5.0, 0.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
            explain(features=features, alpha=bad, test_masks=5)
        with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
            compattr.explain_shapley(features=features, alpha=bad)
    with pytest.raises(ValueError, match="not both: budget=60 would ignore alpha=8"):
        explain(features=features, budget=60, alpha=8, test_masks=5)
    with pytest.raises(ValueError, match="not both"):
        compattr.explain_shapley(features=features, budget=60, alpha=8)
    assert features.queried == 0
    assert len(explain(features=features, alpha=8, test_masks=5, progress=False).masks) == compattr.budget(6, 8)


def test_uncertainty_bootstraps_by_default_only_a_spectrum_that_is_the_refit_of_its_terms():
    """ "auto" takes the bootstrap where its resamples vary the explanation's own estimate (the
    spectrum is its terms' refit at the fit's ridge, and the fit explains something), else the
    jackknife; an explicit bootstrap of another estimate warns."""
    from compattr.proxy.leastsquares import least_squares
    from compattr.spectrum import RefitMismatchWarning, refit_gap

    truth = compattr.synthetic.complete_hierarchy(8, n_sets=2, order=2, seed=0)
    X = compattr.sample_masks(8, 400, seed=0)
    y = truth.predict(X) + np.random.default_rng(1).normal(0, 0.3, len(X))
    refit = least_squares(truth, X, y, ridge=0.2)
    info = {"ridge": 0.2, "cv_r2": 0.9, "estimator": "ProxySPEX", "params": compattr.ProxySPEX(seed=0).get_params()}
    ex = Explanation(refit, [str(i) for i in range(8)], np.zeros(8, int), X, y, X[:20], y[:20], fit_info=info)
    # the engine's refit keeps a 1e-9 guard on the constant, the gap's centres the outputs
    assert refit_gap(refit, X, y, 0.2) < 1e-9 and refit_gap(refit, X, y, 0.5) > 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(ex.uncertainty(resamples=5), compattr.spectrum.SpectrumBootstrap)
    halved = refit.with_coefs(refit.coefs * np.where(refit.degrees > 0, 0.5, 1.0))  # as an average might be
    assert refit_gap(halved, X, y, 0.2) == pytest.approx(1.0)
    for other in (
        dataclasses.replace(ex, fit_info={**info, "ridge": 0.5}),  # refitted at another ridge
        dataclasses.replace(ex, spectrum=halved),
        dataclasses.replace(ex, fit_info={**info, "cv_r2": 0.0}),  # explains nothing
    ):
        assert isinstance(other.uncertainty(folds=2, progress=False), compattr.spectrum.SpectrumJackknife)
    with pytest.warns(RefitMismatchWarning, match="jackknife"):
        dataclasses.replace(ex, spectrum=halved).uncertainty(5, method="bootstrap")
    # no strength the spectrum is the refit at (an average of repeats): the first fit's, not 0
    averaged = dataclasses.replace(ex, fit_info={**info, "spectrum_ridge": None})
    expected = compattr.spectrum.bootstrap(refit, X, y, 5, 0, ridge=0.2).stderr()
    np.testing.assert_allclose(averaged.uncertainty(5, method="bootstrap").stderr(), expected)
    for bad in (1, 0, 2.5):  # refused up front, whichever method "auto" would pick
        for which in (ex, dataclasses.replace(ex, spectrum=halved)):
            with pytest.raises(ValueError, match="folds"):
                which.uncertainty(folds=bad)


def test_a_spectrum_a_later_stage_refitted_is_bootstrapped_at_that_stages_ridge():
    """Stage 8 (or 5-7) refitted the final terms at another ridge strength than the first
    fit's ``ridge``: the bootstrap refitted them at the stale one (an interval that missed
    the coefficient itself) and "auto" fell to the jackknife. ``fit_info["spectrum_ridge"]``
    is the final strength; the summary says it."""
    from compattr.spectrum import refit_gap

    n = 12
    for seed in range(4):  # the first of these fits where a later stage chose another ridge
        truth = compattr.synthetic.complete_hierarchy(n, n_sets=6, order=3, seed=seed)
        X = compattr.sample_masks(n, int(np.ceil(3 * n * np.log2(n))), seed=seed)
        y = compattr.synthetic.add_noise(truth.predict(X), truth, 8, seed=seed)
        est = compattr.ProxySPEX(seed=0, repeats=1).fit(X, y)
        if est.spectrum_ridge_ != est.ridge_:
            break
    assert est.spectrum_ridge_ != est.ridge_  # the case this test needs
    X_test = compattr.held_out_masks(X, 50, seed=99)
    ex = Explanation.from_fit(est, X, y, X_test, truth.predict(X_test))
    assert ex.fit_info["spectrum_ridge"] == est.spectrum_ridge_
    assert f"final terms refitted at ridge {est.spectrum_ridge_:g}" in ex.summary()
    assert refit_gap(ex.spectrum, X, y, est.spectrum_ridge_) < 1e-8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(ex.uncertainty(resamples=5), compattr.spectrum.SpectrumBootstrap)


def test_built_in_values_declare_their_range():
    from compattr.values import LogLikelihood, MultipleChoice

    options, answers = [[[1], [2]], [[3], [4]]], [0, 1]
    assert MultipleChoice(options, answers, metric="accuracy").output_range == (0.0, 1.0)
    assert MultipleChoice(options, answers).output_range == (-np.inf, 0.0)
    assert LogLikelihood().output_range == (-np.inf, 0.0)


def test_outputs_near_1e300_are_explained():
    """ProxySPEX and the LASSO fit y / 2^e and scale back: no overflow, same fit."""
    truth = compattr.synthetic.complete_hierarchy(8, n_sets=2, order=2, seed=0)
    small = explain(features=_Counting(8, truth.predict), budget=80, test_masks=30, progress=False)
    huge = explain(
        features=_Counting(8, lambda X: truth.predict(X) * 2.0**996), budget=80, test_masks=30, progress=False
    )
    np.testing.assert_array_equal(huge.spectrum.coefs, small.spectrum.coefs * 2.0**996)
    np.testing.assert_array_equal(huge.lasso.coefs, small.lasso.coefs * 2.0**996)
    assert huge.fit_info["best_params"] == small.fit_info["best_params"]
    assert huge.faithfulness == pytest.approx(small.faithfulness, abs=1e-12)  # no overflow in R²


def test_resumed_explain_makes_no_model_call(setting, tmp_path):
    model, heads, value, inputs = setting
    first = explain(model, heads, value, inputs, budget=120, test_masks=50, cache_dir=tmp_path, progress=False)
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        second = explain(model, heads, value, inputs, budget=120, test_masks=50, cache_dir=tmp_path, progress=False)
    finally:
        handle.remove()
    assert np.array_equal(first.outputs, second.outputs)
    assert first.spectrum == second.spectrum
    model_calls_for_prepare = len(calls)
    assert model_calls_for_prepare == 0


def test_feature_sets_without_a_model():
    truth = compattr.synthetic.complete_hierarchy(10, n_sets=2, order=3, seed=0)

    class Synthetic:
        n, names, groups = 10, [f"x{i}" for i in range(10)], np.zeros(10, int)

        def evaluate(self, masks):
            return truth.predict(masks)

    with pytest.warns(UserWarning, match="holding out"):  # 2^10 masks: < 1,000 unused ones
        ex = explain(features=Synthetic(), budget=300, progress=False)
    assert ex.faithfulness > 0.95


def test_bad_input():
    with pytest.raises(ValueError, match="features"):
        explain()
    model = tiny_llama(layers=1)
    with pytest.raises(ValueError, match="value="):
        explain(model, AttentionHeads(model))
    with pytest.raises(FileNotFoundError):
        Explanation.load("/nonexistent/folder")


# --------------------------------------------------------------------------- the signature
def _forward_calls(*models):
    """A list that grows by one per forward pass of any of ``models``, and the hook handles."""
    calls: list[int] = []
    return calls, [m.register_forward_hook(lambda *a: calls.append(1)) for m in models]


def test_the_model_is_read_from_the_heads_and_every_spelling_is_one_run(setting, tmp_path):
    """``explain(features=heads, value=, inputs=)`` needs no model; it is the same run as the
    positional and the mixed spellings: same outputs, the same cache folder under the root."""
    model, heads, value, inputs = setting
    options = dict(budget=120, test_masks=50, seed=3, progress=False)
    keyword = explain(features=heads, value=value, inputs=inputs, cache_dir=tmp_path, **options)
    calls, handles = _forward_calls(model)
    try:
        positional = explain(model, heads, value, inputs, cache_dir=tmp_path, **options)
        mixed = compattr.explain(model, features=heads, value=value, inputs=inputs, cache_dir=tmp_path, **options)
    finally:
        for h in handles:
            h.remove()
    assert calls == []  # both read the keyword run's cache: one folder for one model x heads x value x inputs
    assert len(list(tmp_path.iterdir())) == 1
    for ex in (positional, mixed):
        np.testing.assert_array_equal(ex.outputs, keyword.outputs)
        assert ex.spectrum == keyword.spectrum and ex.names == heads.names
    direct = Query(model, heads, value, inputs).evaluate(keyword.masks[:4])
    np.testing.assert_allclose(keyword.outputs[:4], direct, rtol=1e-6, atol=1e-6)


def test_the_summary_gives_no_interval_on_fewer_than_ten_held_out_masks():
    """On 2-9 held-out masks a bootstrap interval of the R² is meaningless (on 2, every
    resample that varies has the whole sample's R²): the summary gives the R²s alone."""
    features = _Counting(8, lambda X: X.sum(axis=1) + 0.5 * X[:, 0] * X[:, 1])
    ex = explain(features=features, budget=100, test_masks=6, baseline=True, progress=False)
    text = ex.summary()
    assert f"ProxySPEX {ex.faithfulness:.3f} | LASSO {ex.lasso_faithfulness:.3f}" in text
    assert "no intervals: 6 held-out masks, fewer than 10" in text and "[" not in text.splitlines()[1]
    with pytest.raises(ValueError, match="at least 10 held-out masks"):
        ex.faithfulness_interval()


def test_an_estimator_that_models_no_outputs_is_refused_before_any_query():
    """PairedShapley's spectrum is the outputs' odd part, with no predict(): explain refused
    it only after every model call (from_fit's check)."""
    features = _Counting(8, lambda X: X.sum(axis=1) + 0.5 * X[:, 0] * X[:, 1])
    with pytest.raises(TypeError, match="no predict"):
        explain(features=features, budget=100, estimator=compattr.PairedShapley(), progress=False)
    assert features.queried == 0


def test_a_model_other_than_the_features_model_is_refused_before_any_query(setting):
    model, heads, value, inputs = setting
    other = tiny_llama(layers=3, heads=4, kv_heads=2, seed=2)
    calls, handles = _forward_calls(model, other)
    try:
        with pytest.raises(ValueError, match="built for another model than the one given to explain"):
            explain(other, heads, value, inputs, budget=120, test_masks=50, progress=False)
        with pytest.raises(ValueError, match="built for another model"):
            explain(other, features=compattr.MaskedModel(model, heads, value, inputs), progress=False)
    finally:
        for h in handles:
            h.remove()
    assert calls == []


def test_features_passed_first_are_refused_with_a_hint(setting):
    """The first positional argument is always the model: a feature set there is a TypeError
    that says how to pass it, not a silent reinterpretation of the arguments."""
    model, heads, value, inputs = setting
    with pytest.raises(TypeError, match=r"first argument is the model, got features \(AttentionHeads\).*features="):
        explain(heads, value, inputs)
    with pytest.raises(TypeError, match=r"first argument is the model, got features \(MaskedModel\)"):
        explain(compattr.MaskedModel(model, heads, value, inputs))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        explain("HuggingFaceTB/SmolLM2-135M-Instruct", heads, value, inputs)
    with pytest.raises(TypeError, match="set function .* or a masker"):
        explain(features=[1, 2, 3])


def test_a_masker_without_a_model_of_its_own_needs_one():
    """Words carry no model: ``model`` is required, and with it the words' own inputs are used."""
    from compattr._testing import tiny_bert, word_tokenizer
    from compattr.values import ClassLogit

    words = compattr.Words(word_tokenizer(), "w1 w2 w3 w4 w5 w6 w7 w8")
    with pytest.raises(ValueError, match="Words masks a model but does not carry one: pass the model"):
        explain(features=words, value=ClassLogit())
    model = tiny_bert(seed=1)
    ex = explain(model, words, ClassLogit(), budget=60, test_masks=20, progress=False)
    assert ex.n == 8 and ex.names == words.names
    direct = Query(model, words, ClassLogit()).evaluate(ex.masks[:3])
    np.testing.assert_allclose(ex.outputs[:3], direct, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("given", [dict(value=LogLikelihood()), dict(inputs=torch.zeros(2, 3)), dict(batch_size=8)])
def test_arguments_a_set_function_would_ignore_are_refused(setting, given):
    model, heads, value, inputs = setting
    query = compattr.MaskedModel(model, heads, value, inputs)
    name = next(iter(given))
    with pytest.raises(ValueError, match=f"MaskedModel evaluates masks itself .* so {name}= would be ignored"):
        explain(features=query, progress=False, **given)
    explain(model, features=query, budget=60, test_masks=10, progress=False)  # its own model: fine
    synthetic = _Counting(8, lambda X: X.sum(axis=1))  # runs no model
    with pytest.raises(ValueError, match="_Counting evaluates masks itself .* so model=.* would be ignored"):
        explain(model, features=synthetic, progress=False, **given)
    assert synthetic.queried == 0


@pytest.mark.parametrize("n, m, count", [(4, 10, 100), (10, 300, 200), (40, 500, 300)])
def test_held_out_masks_are_fresh_and_distinct(n, m, count):
    from compattr.explain import held_out_masks

    X = compattr.sample_masks(n, m, seed=3)
    fit = {r.tobytes() for r in X}
    distinct_unused = 2**n - len(fit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        H = held_out_masks(X, count, seed=3)
    assert bool(caught) == (distinct_unused < count)
    assert len(H) == min(count, distinct_unused)
    assert len({r.tobytes() for r in H}) == len(H)
    assert not any(r.tobytes() in fit for r in H)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(H, held_out_masks(X, count, seed=3))  # reproducible
    with pytest.raises(ValueError, match=f"only {distinct_unused} of the 2\\^{n}"):
        held_out_masks(X, count, seed=3, minimum=distinct_unused + 1)


# ---------------------------------------------------------------------- kinds (heads + MLPs)
_KINDS = np.array(["AttentionHeads", "AttentionHeads", "MLPBlocks"] * 2)  # groups: layer 0, layer 1


def _mlp_rich_explanation(**fields) -> Explanation:
    """A toy over 2 layers of (head, head, MLP) whose MLP blocks are worth 5 and heads cost 1:
    ``f = Σ w_i x_i`` (x_i = 1: kept) from ``χ_i = 1 - 2 x_i``."""
    weights = [-1, -1, 5, -1, -1, 5]
    spectrum = compattr.Spectrum.from_dict({(i,): -w / 2 for i, w in enumerate(weights)}, n=6)
    return dataclasses.replace(_toy_explanation(9), spectrum=spectrum, **fields)


def test_kinds_are_saved_and_loaded_and_old_saves_load_without(tmp_path):
    ex = _toy_explanation(4, kinds=list(_KINDS))
    assert isinstance(ex.kinds, np.ndarray)
    ex.save(tmp_path / "ex")
    back = Explanation.load(tmp_path / "ex")
    assert _same(back, ex) and back.kinds.tolist() == _KINDS.tolist()
    meta_path = tmp_path / "ex" / "explanation.json"
    meta = json.loads(meta_path.read_text())
    assert meta["version"] == 2 and meta["kinds"] == _KINDS.tolist()
    del meta["kinds"]  # as compattr wrote it before kinds: same version, no such key
    meta_path.write_text(json.dumps(meta))
    old = Explanation.load(tmp_path / "ex")
    assert old.kinds is None and _same(old, ex)
    del meta["files"], meta["value_range"]  # and a version 1 save
    meta_path.write_text(json.dumps(meta | {"version": 1}))
    assert Explanation.load(tmp_path / "ex").kinds is None
    _toy_explanation(4).save(tmp_path / "plain")
    assert Explanation.load(tmp_path / "plain").kinds is None
    with pytest.raises(ValueError, match=r"kinds must have shape \(6,\)"):
        _toy_explanation(4, kinds=_KINDS[:4])


def test_plan_applies_minimums_per_kind_by_default():
    ex = _mlp_rich_explanation(kinds=_KINDS)
    # "a head in every layer": the MLP blocks no longer stand in for their layer's heads
    heads = ex.plan(keep=2, min_per_group={"AttentionHeads": 1}).kept
    assert heads[[0, 1]].sum() == 1 and heads[[3, 4]].sum() == 1 and not heads[[2, 5]].any()
    # counting every kind of a layer alike, as without kinds: the MLP blocks suffice
    assert np.flatnonzero(ex.plan(keep=2, min_per_group=1, kinds=None).kept).tolist() == [2, 5]
    assert np.flatnonzero(_mlp_rich_explanation().plan(keep=2, min_per_group=1).kept).tolist() == [2, 5]
    # an int applies to every (kind, layer): a head and the MLP of both layers
    every = ex.plan(keep=4, min_per_group=1).kept
    assert every[[2, 5]].all() and every[[0, 1]].sum() == 1 and every[[3, 4]].sum() == 1
    with pytest.raises(ValueError, match="constraints"):
        ex.plan(keep=3, min_per_group=1)
    with pytest.raises(ValueError, match="kinds=None"):
        ex.plan(keep=2, min_per_group={0: 1})  # a layer key: say which kind


def test_explain_reads_the_kinds_of_the_features():
    from compattr.features import MLPBlocks
    from compattr.values import ClassLogit

    model = tiny_llama(layers=2, heads=2, kv_heads=1)
    features = AttentionHeads(model, rescale=False) + MLPBlocks(model)
    inputs = torch.randint(6, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    ex = explain(features=features, value=ClassLogit(), inputs=inputs, budget=60, test_masks=10, progress=False)
    assert ex.kinds.tolist() == ["AttentionHeads"] * 4 + ["MLPBlocks"] * 2

    class Labelled:  # a set function that says its kinds
        n, names, groups = 8, [f"x{i}" for i in range(8)], np.arange(8) // 2
        kinds = np.array(["even", "odd"] * 4)

        def evaluate(self, masks):
            return masks @ np.arange(8.0) + masks[:, 0] * masks[:, 3]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few masks of 8 features are left to hold out
        assert (
            explain(features=Labelled(), budget=60, test_masks=4, progress=False).kinds.tolist() == ["even", "odd"] * 4
        )


def test_an_explanation_of_one_kind_has_no_kinds(explanation):
    assert explanation.kinds is None


def test_summary_says_when_the_spectrum_averages_several_fits():
    proxy = {"best_params": {"max_depth": 5, "learning_rate": 0.1, "n_estimators": 40}, "k": 8, "refit": True}
    ex = _toy_explanation(3)
    for repeats, said in ((None, False), (1, False), (3, True)):
        ex.fit_info = proxy | {"repeats": repeats}
        assert ("the spectrum averages 3 fits" in ex.summary()) == said


def test_summary_says_when_the_terms_were_grown_or_the_average_regrown():
    proxy = {"best_params": {"max_depth": 5, "learning_rate": 0.1, "n_estimators": 40}, "k": 8, "refit": True}
    ex = _toy_explanation(3)
    for grown, regrown in ((None, None), (False, False), (True, False), (False, True), (True, True)):
        ex.fit_info = proxy | {"repeats": 3, "grown": grown, "regrown": regrown}
        line = next(line for line in ex.summary().splitlines() if line.startswith("proxy:"))
        assert (", grown one order" in line.split(";")[0]) == bool(grown)
        assert ("the average's terms grown one order and chosen again" in line) == bool(regrown)
    # the regrow's rounds: one order per round (explanations saved before it say nothing)
    for rounds, said in ((None, "one order"), (1, "one order"), (2, "2 orders")):
        ex.fit_info = proxy | {"repeats": 3, "grown": False, "regrown": True, "regrow_rounds": rounds}
        assert f"the average's terms grown {said} and chosen again" in ex.summary()
    # the guided rounds after it (explanations saved before stage 7 say nothing)
    for rounds, said in ((None, None), (0, None), (1, "(1 round)"), (2, "(2 rounds)")):
        ex.fit_info = proxy | {"repeats": 3, "regrown": True, "regrow_rounds": 1, "guide_rounds": rounds}
        line = next(line for line in ex.summary().splitlines() if line.startswith("proxy:"))
        assert ("guided trees' terms" in line) == (said is not None)
        assert said is None or line.endswith(f"then with guided trees' terms {said}")


def test_summary_says_a_tilted_ranking():
    """The default explanation ranks by |F(T)| alone (tilt 1), so the summary's tilt note is
    checked here on the choices a tilt="cv" fit can record."""
    proxy = {"best_params": {"max_depth": 5, "learning_rate": 0.1, "n_estimators": 40}, "k": 8, "refit": True}
    ex = _toy_explanation(3)
    for tilt, said in ((None, False), (1.0, False), (1.2, True)):
        ex.fit_info = proxy | {"tilt": tilt}
        assert ("ranked with tilt 1.2" in ex.summary()) == said


def test_summary_points_to_the_paired_mode_where_the_spectrum_holds_out_little_but_explains_something():
    """The pointer follows the held-out R² of the spectrum (whatever the first fit's CV R²),
    except where that CV says the fit explains nothing, or the held-out outputs are equal."""
    base = _toy_explanation(3)
    predicted = base.spectrum.predict(base.test_masks)
    noise = np.random.default_rng(0).normal(size=len(predicted))
    nothing, seen = compattr.proxy.EXPLAINS_ABOVE, set()
    for scale in (0.05, 0.3, 0.6, 1.0, 3.0):
        ex = dataclasses.replace(base, test_outputs=predicted + scale * np.std(predicted) * noise)
        low = ex.faithfulness < PAIRED_SHAPLEY_BELOW
        seen.add(low)
        for cv_r2 in (None, 0.2, 0.95):
            ex.fit_info = {"cv_r2": cv_r2}
            assert ("compattr.explain_shapley" in ex.summary()) == low
        ex.fit_info = {"cv_r2": nothing - 0.001}  # explains nothing: the other note instead
        assert "compattr.explain_shapley" not in ex.summary()
    assert seen == {True, False}  # both sides of the bound
    constant = dataclasses.replace(base, test_outputs=np.ones(len(predicted)))
    assert "compattr.explain_shapley" not in constant.summary()


def test_faithfulness_interval_against_lasso_and_the_summary_that_prints_it():
    """The explanation's intervals are those of :func:`compattr.metrics.faithfulness_interval`
    on its held-out masks; the summary prints the R², LASSO's and the difference with them."""
    ex = _toy_explanation(4)
    own = ex.faithfulness_interval(seed=3)
    assert own == compattr.metrics.faithfulness_interval(ex.spectrum, ex.test_masks, ex.test_outputs, seed=3)
    assert own[0] == pytest.approx(ex.faithfulness) and own[1] <= own[0] <= own[2]
    gap = ex.faithfulness_interval(against_lasso=True, confidence=0.8)
    assert gap == compattr.metrics.faithfulness_interval(
        ex.spectrum, ex.test_masks, ex.test_outputs, baseline=ex.lasso, confidence=0.8
    )
    assert gap[0] == pytest.approx(ex.faithfulness - ex.lasso_faithfulness)
    line = ex.summary().splitlines()[1]
    r2, gap = ex.faithfulness_interval(), ex.faithfulness_interval(against_lasso=True)
    assert line == (
        f"faithfulness R² (held out): ProxySPEX {r2[0]:.3f} [{r2[1]:.3f}, {r2[2]:.3f}] | "
        f"LASSO {ex.lasso_faithfulness:.3f}; difference {gap[0]:+.3f} [{gap[1]:+.3f}, {gap[2]:+.3f}]"
    )
    assert "95 % bootstrap intervals over the 20 held-out masks" in ex.summary()
    without = _toy_explanation(4, lasso=False)
    assert "LASSO" not in without.summary().splitlines()[1]
    with pytest.raises(ValueError, match="no LASSO baseline"):
        without.faithfulness_interval(against_lasso=True)


def test_summary_says_when_the_fit_explains_nothing():
    ex = _toy_explanation(3)
    nothing = compattr.proxy.EXPLAINS_ABOVE
    for cv_r2, said in ((None, False), (-0.002, True), (nothing - 0.001, True), (nothing, False), (0.3, False)):
        ex.fit_info = {"cv_r2": cv_r2}
        assert ("the terms below are noise" in ex.summary()) == said


class _SmallEffects:
    """Effects of a few 1e-5 on a large offset: what a log-probability difference can be."""

    def __init__(self):
        self.n, self.names, self.groups = 8, [f"L{i // 4}.H{i % 4}" for i in range(8)], np.arange(8) // 4

    def evaluate(self, masks):
        K = np.asarray(masks, float)
        return -2.0 + 3e-5 * K[:, 0] - 2e-5 * K[:, 5] + 1.5e-5 * K[:, 2] * K[:, 3]


def test_summaries_print_small_effects_with_their_digits():
    """Terms and Shapley values of 3e-5 printed as +0.0000 (and their intervals as
    [+0.0000, +0.0000] beside a mark saying they exclude 0)."""
    text = explain(features=_SmallEffects(), budget=120, test_masks=40, progress=False).summary()
    terms = text.split("strongest terms")[1].splitlines()[1:]
    assert terms and "L0.H0" in terms[0]
    assert float(terms[0].split()[0]) == pytest.approx(-1.5e-5, rel=0.05)  # F({0}) = -3e-5 / 2
    shapley_text = compattr.explain_shapley(features=_SmallEffects(), budget=120, progress=False).summary()
    row = next(line for line in shapley_text.splitlines() if line.endswith("L0.H0"))
    value, low, high = (float(x) for x in row.replace("[", " ").replace("]", " ").replace(",", " ").split()[:3])
    assert value == pytest.approx(3e-5, rel=0.05) and low < value < high and low > 0


def test_interactions_refuse_a_negative_k(explanation):
    """``head(-1)`` returned every row but the last."""
    with pytest.raises(ValueError, match="k must be an integer >= 0"):
        explanation.interactions(-1, index="banzhaf_interaction")
