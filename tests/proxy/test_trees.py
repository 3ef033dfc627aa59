"""Exact Fourier extraction from LightGBM ensembles."""

import lightgbm as lgb
import numpy as np
import pytest
from conftest import all_masks, brute_force_fourier

import compattr
from compattr import Spectrum


def staircase_data(n, m, seed):
    X = compattr.sample_masks(n, m, seed)
    rng = np.random.default_rng(seed)
    y = 2.0 * X[:, 0] + X[:, 1] * X[:, 2] - 1.5 * X[:, 3] * X[:, 4] * X[:, 5] + rng.normal(0, 0.1, m)
    return X, y


@pytest.mark.parametrize("max_depth, num_leaves", [(3, 8), (5, 32), (-1, 31), (-1, 64)])
@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_extraction_equals_predict_and_brute_force(max_depth, num_leaves, zero_as_missing):
    n = 10
    X, y = staircase_data(n, 1500, 0)
    model = lgb.LGBMRegressor(
        n_estimators=60,
        max_depth=max_depth,
        num_leaves=num_leaves,
        learning_rate=0.2,
        zero_as_missing=zero_as_missing,
        min_child_samples=5,
        n_jobs=1,
        verbose=-1,
    ).fit(X.astype(float), y)
    sp = Spectrum.from_trees(model, n)
    full = all_masks(n)
    f = model.predict(full.astype(float))
    np.testing.assert_allclose(sp.predict(full), f, atol=1e-9, rtol=0)
    brute = brute_force_fourier(f, full)
    d = sp.to_dict()
    assert max(abs(c - d.get(T, 0.0)) for T, c in brute.items()) < 1e-9
    if max_depth == -1 and num_leaves == 64:
        assert sp.max_order > 5  # unlimited depth really produced deep trees


def test_extraction_on_random_masks_n12_and_booster_api():
    n = 12
    X, y = staircase_data(n, 3000, 1)
    booster = lgb.train(
        {"max_depth": 5, "num_leaves": 32, "verbose": -1, "num_threads": 1, "learning_rate": 0.1},
        lgb.Dataset(X.astype(float), y),
        num_boost_round=200,
    )
    sp = Spectrum.from_trees(booster, n)
    test = compattr.sample_masks(n, 1000, seed=9)
    np.testing.assert_allclose(sp.predict(test), booster.predict(test.astype(float)), atol=1e-9, rtol=0)
    full = all_masks(n)
    brute = brute_force_fourier(booster.predict(full.astype(float)), full)
    d = sp.to_dict()
    assert max(abs(c - d.get(T, 0.0)) for T, c in brute.items()) < 1e-9


def test_num_iteration_and_early_stopping_match_predict():
    n = 8
    X, y = staircase_data(n, 1200, 2)
    booster = lgb.train(
        {"max_depth": 3, "num_leaves": 8, "verbose": -1, "num_threads": 1},
        lgb.Dataset(X[:900].astype(float), y[:900]),
        num_boost_round=400,
        valid_sets=[lgb.Dataset(X[900:].astype(float), y[900:])],
        callbacks=[lgb.early_stopping(5, verbose=False)],
    )
    assert 0 < booster.best_iteration < 400
    full = all_masks(n)
    default = Spectrum.from_trees(booster, n)  # like predict: best iteration
    np.testing.assert_allclose(default.predict(full), booster.predict(full.astype(float)), atol=1e-9)
    first = Spectrum.from_trees(booster, n, num_iteration=7)
    np.testing.assert_allclose(first.predict(full), booster.predict(full.astype(float), num_iteration=7), atol=1e-9)

    # LightGBM model text (as model_to_string returns or a saved file holds) reads the same.
    text = booster.model_to_string()
    assert Spectrum.from_trees(text, n) == Spectrum.from_trees(booster, n, num_iteration=booster.current_iteration())
    assert Spectrum.from_trees(text, n, num_iteration=7) == first


def test_text_that_is_no_lightgbm_model_gets_a_clear_error():
    with pytest.raises(ValueError, match="not LightGBM model text"):
        Spectrum.from_trees("version=v4\nnum_class=1", 5)
    with pytest.raises(TypeError, match="lightgbm.Booster"):
        Spectrum.from_trees(42, 5)


def test_categorical_and_random_forest_models():
    n = 7
    X, y = staircase_data(n, 1500, 3)
    full = all_masks(n)
    cat = lgb.train(
        {"verbose": -1, "num_threads": 1, "max_depth": 4, "num_leaves": 16, "min_data_per_group": 5, "cat_smooth": 1},
        lgb.Dataset(X.astype(float), y, categorical_feature=[0, 1, 2]),
        num_boost_round=40,
    )
    np.testing.assert_allclose(Spectrum.from_trees(cat, n).predict(full), cat.predict(full.astype(float)), atol=1e-9)
    rf = lgb.LGBMRegressor(
        boosting_type="rf",
        n_estimators=30,
        bagging_freq=1,
        bagging_fraction=0.7,
        max_depth=4,
        num_leaves=16,
        n_jobs=1,
        verbose=-1,
    ).fit(X.astype(float), y)
    np.testing.assert_allclose(Spectrum.from_trees(rf, n).predict(full), rf.predict(full.astype(float)), atol=1e-9)


def test_classifier_raw_score():
    n = 6
    X, y = staircase_data(n, 1000, 4)
    clf = lgb.LGBMClassifier(n_estimators=30, max_depth=3, num_leaves=8, n_jobs=1, verbose=-1).fit(
        X.astype(float), y > 1
    )
    full = all_masks(n)
    np.testing.assert_allclose(
        Spectrum.from_trees(clf, n).predict(full), clf.predict(full.astype(float), raw_score=True), atol=1e-9
    )


def test_max_order_truncates_and_max_terms_refuses():
    n = 10
    X, y = staircase_data(n, 1500, 5)
    model = lgb.LGBMRegressor(
        n_estimators=30, max_depth=-1, num_leaves=64, min_child_samples=3, n_jobs=1, verbose=-1
    ).fit(X.astype(float), y)
    exact = Spectrum.from_trees(model, n)
    low = Spectrum.from_trees(model, n, max_order=2)
    assert low.max_order <= 2
    assert low == exact.restrict_order(2)
    with pytest.raises(ValueError, match="max_terms"):
        Spectrum.from_trees(model, n, max_terms=100)


def test_single_leaf_trees_extract_to_their_constant():
    """Constant labels give trees without a split (one leaf): their spectrum is the constant."""
    X = compattr.sample_masks(6, 100, seed=0).astype(np.float32)
    booster = lgb.train({"objective": "l2", "verbose": -1, "min_data_in_bin": 1}, lgb.Dataset(X, np.full(100, 2.5)), 5)
    assert booster.dump_model()["tree_info"][0]["num_leaves"] == 1
    sp = Spectrum.from_trees(booster, 6)
    assert sp.to_dict() == {(): 2.5}
    np.testing.assert_allclose(sp.predict(X.astype(bool)), booster.predict(X))


def test_bad_models_get_clear_errors():
    with pytest.raises(TypeError, match="lightgbm"):
        Spectrum.from_trees(object(), 3)
    X, y = staircase_data(8, 500, 6)
    model = lgb.LGBMRegressor(n_estimators=5, n_jobs=1, verbose=-1).fit(X.astype(float), y)
    with pytest.raises(ValueError, match="splits on feature"):
        Spectrum.from_trees(model, 3)
    multi = lgb.LGBMClassifier(n_estimators=3, n_jobs=1, verbose=-1).fit(X.astype(float), (y * 2).astype(int) % 3)
    with pytest.raises(ValueError, match="multi-output"):
        Spectrum.from_trees(multi, 8)


def chain_tree_text(depth: int) -> str:
    """LightGBM model text of one tree of ``depth`` splits in a chain: node i splits feature i,
    x_i = 0 ends at leaf i, x_i = 1 goes on (the last node's both sides are leaves)."""
    left = [-(i + 1) for i in range(depth)]
    right = [i + 1 for i in range(depth - 1)] + [-(depth + 1)]
    row = lambda values: " ".join(map(str, values))
    return (
        f"tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx={depth - 1}\n"
        f"objective=regression\nfeature_names={row(f'f{i}' for i in range(depth))}\n"
        f"feature_infos={row(['[0:1]'] * depth)}\n\nTree=0\nnum_leaves={depth + 1}\nnum_cat=0\n"
        f"split_feature={row(range(depth))}\nsplit_gain={row([1] * depth)}\n"
        f"threshold={row(['1.0000000180025095e-35'] * depth)}\ndecision_type={row([2] * depth)}\n"
        f"left_child={row(left)}\nright_child={row(right)}\n"
        f"leaf_value={row(0.1 * (i + 1) for i in range(depth + 1))}\n"
        f"leaf_weight={row([1] * (depth + 1))}\nleaf_count={row([1] * (depth + 1))}\n"
        f"internal_value={row([0] * depth)}\ninternal_weight={row([1] * depth)}\n"
        f"internal_count={row([1] * depth)}\nis_linear=0\nshrinkage=1\n\n\nend of trees\n"
    )


def test_a_bounded_order_extracts_deep_trees_without_expanding_every_subset():
    """With max_order, a path of depth p costs the subsets kept (Σ_{j<=max_order} C(p, j)),
    not 2^p: a chain of depth 40 (2^40 subsets at its deepest leaf) extracts at once, and
    max_terms counts the terms kept."""
    small = chain_tree_text(10)
    assert Spectrum.from_trees(small, 10, max_order=2) == Spectrum.from_trees(small, 10).restrict_order(2)
    deep = Spectrum.from_trees(chain_tree_text(40), 40, max_order=2)
    assert deep.max_order == 2
    # leaf i (i < 40) fixes features 0..i; the last leaf the same 40 as leaf 39
    X = compattr.sample_masks(40, 300, seed=0)
    leaf_values = 0.1 * (np.arange(41) + 1)
    # order <= 2 part of the chain, by linearity over its leaves: each leaf's indicator's terms
    expected = np.zeros(len(X))
    s = 1 - 2 * X.astype(float)  # χ_j
    for leaf in range(41):
        fixed = list(range(min(leaf + 1, 40)))
        sides = np.array([1] * (len(fixed) - 1) + [0 if leaf < 40 else 1])
        signs = 1 - 2 * sides  # [x_j = s_j] = (1 + (-1)^s_j χ_j) / 2
        lin = signs * s[:, fixed]
        total = 1 + lin.sum(axis=1) + (lin.sum(axis=1) ** 2 - (lin**2).sum(axis=1)) / 2
        expected += leaf_values[leaf] * 2.0 ** -len(fixed) * total
    np.testing.assert_allclose(deep.predict(X), expected, atol=1e-12)
    with pytest.raises(ValueError, match="lower max_order"):
        Spectrum.from_trees(chain_tree_text(40), 40, max_order=2, max_terms=1000)


def test_subset_tables_kept_for_later_extractions_stay_within_their_bytes(monkeypatch):
    """Every table built was kept for the rest of the process (2 GB after one depth-22 tree)."""
    from compattr.proxy import trees

    monkeypatch.setattr(trees, "_TABLES", {})
    monkeypatch.setattr(trees, "_TABLE_BYTES", 200_000)
    exact = Spectrum.from_trees(chain_tree_text(12), 12)  # a 4,096-row table: 590 kB, not kept
    kept = sum(t.nbytes for pair in trees._TABLES.values() for t in pair)
    assert 0 < kept <= 200_000 and (12, 12) not in trees._TABLES
    assert Spectrum.from_trees(chain_tree_text(12), 12) == exact
    X = compattr.sample_masks(12, 50, seed=0)
    lgb_text = chain_tree_text(12)
    booster = lgb.Booster(model_str=lgb_text)
    np.testing.assert_allclose(exact.predict(X), booster.predict(X.astype(np.float64)), atol=1e-12)
