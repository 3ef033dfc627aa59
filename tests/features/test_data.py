"""Training subsets: retraining callables and precomputed (mask, margin) tables."""

import numpy as np
import pytest
from conftest import printed_under_hash_seeds

from compattr.features import TrainingSubsets, check_feature_set
from compattr.query import run_queries

POINTS, LABELS = np.random.default_rng(0).normal(size=(12, 2)), np.arange(12) % 2


def nearest_centroid_margin(keep, X=POINTS, labels=LABELS):
    """A tiny 'model': class centroids of the kept examples; margin on the point (1, 1)."""
    point, target = np.array([1.0, 1.0]), 1
    scores = []
    for c in (0, 1):
        rows = keep & (labels == c)
        scores.append(-np.linalg.norm(point - X[rows].mean(0)) if rows.any() else -10.0)
    return scores[target] - scores[1 - target]


def test_retraining_feature_set_conforms_and_caches(tmp_path):
    data = TrainingSubsets(12, nearest_centroid_margin, groups=np.arange(12) % 2)
    check_feature_set(data)
    X = np.random.default_rng(1).random((20, 12)) < 0.5
    y = run_queries(data, X, cache_dir=tmp_path, progress=False)
    assert np.allclose(y, [nearest_centroid_margin(x) for x in X])
    assert data.names[:2] == ["x0", "x1"]
    assert data.fingerprint().startswith(f"TrainingSubsets(n=12, retrain, key='{__name__}.nearest_centroid_margin#")


def test_two_modules_functions_of_one_name_are_cached_apart(tmp_path):
    """Two labs' ``retrain`` functions shared the key 'retrain': the second read the first's outputs."""
    procedures = []
    for module, margin in (("digits_lab", 2.0), ("cifar_lab", -100.0)):
        namespace = {"__name__": module}
        exec(f"def retrain(keep):\n    return {margin}", namespace)
        procedures.append(TrainingSubsets(3, namespace["retrain"]))
    X = np.array([[1, 0, 1], [0, 1, 1]], bool)
    outputs = [run_queries(data, X, cache_dir=tmp_path, progress=False) for data in procedures]
    np.testing.assert_array_equal(outputs[1], [-100.0, -100.0])
    assert procedures[0].key.startswith("digits_lab.retrain#")


def test_two_scripts_an_edited_body_and_per_target_defaults_are_keyed_apart(tmp_path):
    """Two scripts' ``retrain`` (both ``__main__.retrain``), or one whose body was edited,
    shared a key; so did one function per target binding its target as a default argument."""
    procedures = []
    for margin in (2.0, -100.0):
        namespace = {"__name__": "__main__"}
        exec(f"def retrain(keep):\n    return {margin} * keep.sum()", namespace)
        procedures.append(TrainingSubsets(3, namespace["retrain"]))
    X = np.array([[1, 0, 1], [0, 1, 1]], bool)
    outputs = [run_queries(data, X, cache_dir=tmp_path, progress=False) for data in procedures]
    np.testing.assert_array_equal(outputs[1], [-200.0, -200.0])
    per_target = []
    for target in (0, 1):

        def retrain(keep, target=target):
            return float(keep[target])

        per_target.append(run_queries(TrainingSubsets(3, retrain), X, cache_dir=tmp_path, progress=False))
    np.testing.assert_array_equal(per_target, [[1.0, 0.0], [0.0, 1.0]])

    def with_a_model(keep, model=print):  # a default that is not plain data: no key
        return 0.0

    with pytest.raises(ValueError, match="pass key="):
        run_queries(TrainingSubsets(3, with_a_model), X, cache_dir=tmp_path, progress=False)


def test_the_default_key_is_the_same_in_every_process(tmp_path):
    """A set literal in ``retrain`` compiles to a frozenset, whose repr follows string hashing:
    the key changed with PYTHONHASHSEED, so a cache never hit in a new process."""
    script = tmp_path / "lab.py"
    script.write_text(
        "def retrain(keep, kind='linear', known={'linear', 'logistic'}):  # a set default: keyed too\n"
        "    return 1.0 if kind in {'linear', 'logistic', 'tree', 'forest'} else float(keep.sum())\n"
        "from compattr.features import TrainingSubsets\n"
        "print(TrainingSubsets(3, retrain).key)\n"
    )
    keys = printed_under_hash_seeds(str(script))
    assert len(keys) == 1 and "#" in keys.pop()


def test_a_closure_without_a_key_is_not_cached_under_its_name(tmp_path):
    """One closure per target has one name: cached under it, the second target would get
    the first's outputs."""

    def margin_of(target):
        return lambda keep: nearest_centroid_margin(keep) * (1 if target == 0 else -1)

    X = np.random.default_rng(4).random((5, 12)) < 0.5
    first, second = TrainingSubsets(12, margin_of(0)), TrainingSubsets(12, margin_of(1))
    with pytest.raises(ValueError, match="pass key="):
        run_queries(second, X, cache_dir=tmp_path, progress=False)
    assert np.allclose(run_queries(second, X, progress=False), -first.evaluate(X))  # no cache: fine
    keyed = [TrainingSubsets(12, margin_of(t), key=f"target {t}") for t in (0, 1)]
    y0, y1 = (run_queries(data, X, cache_dir=tmp_path, progress=False) for data in keyed)
    assert np.allclose(y1, -y0) and not np.allclose(y1, y0)


def test_precomputed_tables_average_repeats_and_refuse_unknown_masks():
    X = np.random.default_rng(2).random((30, 20)) < 0.5
    margins = np.random.default_rng(3).normal(size=(30, 4))
    X[5], margins[5, 2] = X[0], margins[0, 2] + 2.0
    data = TrainingSubsets.from_arrays(X, margins, target=2)
    y = data.evaluate(X)
    assert np.isclose(y[0], margins[0, 2] + 1.0) and np.isclose(y[5], y[0])
    others = np.setdiff1d(np.arange(30), [0, 5])
    assert np.allclose(y[others], margins[others, 2])
    assert len(data.masks) == 29 and np.allclose(data.evaluate(data.masks), data.margins)
    # in the table's order (np.unique's sorted order biased any row split)
    np.testing.assert_array_equal(data.masks, np.delete(X, 5, axis=0))
    np.testing.assert_allclose(data.margins, np.delete(y, 5))
    check_feature_set(data, masks=data.masks[:6])
    unseen = ~X[:1]
    with pytest.raises(ValueError, match="were not precomputed"):
        data.evaluate(np.vstack([X[:2], unseen]))
    with pytest.raises(ValueError, match="pass target=<column>"):
        TrainingSubsets.from_arrays(X, margins)
    with pytest.raises(ValueError, match="non-finite"):
        TrainingSubsets.from_arrays(X, np.where(np.eye(30, 1, dtype=bool)[:, 0], np.nan, 0.0))
    assert (
        TrainingSubsets.from_arrays(X, margins[:, 0]).fingerprint()
        != TrainingSubsets.from_arrays(X, margins[:, 1]).fingerprint()
    )
