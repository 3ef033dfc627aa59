"""End to end on a tiny random-weight Llama: explain its heads, plan, apply, measure."""

import warnings

import numpy as np
import pytest
import torch

import compattr
from compattr import Explanation, explain
from compattr._testing import tiny_llama
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


def test_explanation_holds_everything(explanation, setting):
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
    assert "faithfulness" in ex.summary()


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
