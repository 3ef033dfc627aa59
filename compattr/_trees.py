"""Exact Fourier extraction from LightGBM ensembles (paper Alg. 1, vectorised).

Each reachable leaf with value ``v`` whose path fixes features ``P`` to values ``s_j``
contributes ``v · Π_{j∈P} [x_j = s_j]`` and ``[x_j = s] = (1 + (-1)^s χ_j) / 2``, so it
expands to ``v 2^{-|P|} Σ_{T⊆P} (-1)^{#{j∈T: s_j=1}} χ_T``. All leaves of all trees are
expanded at once per path length and summed with one sort.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from .spectrum import group_padded_rows

# LightGBM's decision_type bit layout (include/LightGBM/tree.h).
_CATEGORICAL = 1
_DEFAULT_LEFT = 2
_MISSING_ZERO = 1
_ZERO_THRESHOLD = 1e-35


def _booster(model):
    booster = getattr(model, "booster_", model)
    if not hasattr(booster, "model_to_string"):
        raise TypeError(
            f"expected a lightgbm.Booster or a fitted LightGBM sklearn model, got {type(model)!r}."
        )
    return booster


def _parse_model(text: str) -> tuple[dict, list[dict]]:
    """Split LightGBM's text model into its header and a list of per-tree field dicts."""
    header: dict[str, str] = {}
    trees: list[dict] = []
    current = header
    for line in text.splitlines():
        if line.startswith("Tree="):
            current = {}
            trees.append(current)
        elif line.startswith("end of trees"):
            break
        elif "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
    return header, trees


def _arr(tree: dict, key: str, dtype) -> np.ndarray:
    value = tree.get(key, "")
    return np.array(value.split(), dtype=dtype) if value else np.zeros(0, dtype)


def _children_by_value(tree: dict) -> tuple[np.ndarray, np.ndarray]:
    """For each internal node, the child that ``x_j = 0`` and ``x_j = 1`` go to."""
    threshold = _arr(tree, "threshold", np.float64)
    dtype = _arr(tree, "decision_type", np.int64)
    left = _arr(tree, "left_child", np.int64)
    right = _arr(tree, "right_child", np.int64)
    goes_left = np.empty((left.size, 2), bool)
    numeric = (dtype & _CATEGORICAL) == 0
    missing = (dtype >> 2) & 3
    default_left = (dtype & _DEFAULT_LEFT) != 0
    for value in (0, 1):
        by_threshold = value <= threshold
        if value == 0:  # "zero as missing" sends 0 to the default branch
            zero_missing = missing == _MISSING_ZERO
            by_threshold = np.where(zero_missing, default_left, by_threshold)
        goes_left[:, value] = np.where(numeric, by_threshold, False)
    categorical = np.flatnonzero(~numeric)
    if categorical.size:
        bounds = _arr(tree, "cat_boundaries", np.int64)
        bits = _arr(tree, "cat_threshold", np.uint64)
        for node in categorical:
            idx = int(threshold[node])
            words = bits[bounds[idx] : bounds[idx + 1]]
            for value in (0, 1):
                goes_left[node, value] = words.size > 0 and bool((int(words[0]) >> value) & 1)
    child0 = np.where(goes_left[:, 0], left, right)
    child1 = np.where(goes_left[:, 1], left, right)
    return child0, child1


def _leaf_paths(tree: dict, n: int):
    """Yield ``(features, sides, value)`` for every reachable leaf of one tree."""
    leaf_value = _arr(tree, "leaf_value", np.float64)
    if int(tree.get("num_leaves", 1)) == 1:
        yield (), (), float(leaf_value[0])
        return
    if tree.get("is_linear", "0") != "0":
        raise ValueError("linear trees (linear_tree=True) have no finite Boolean spectrum.")
    feature = _arr(tree, "split_feature", np.int64)
    if feature.size and feature.max() >= n:
        raise ValueError(f"the model splits on feature {feature.max()} but n={n}.")
    child0, child1 = _children_by_value(tree)
    stack = [(0, {})]
    while stack:
        node, fixed = stack.pop()
        if node < 0:
            yield tuple(fixed), tuple(fixed.values()), float(leaf_value[~node])
            continue
        j = int(feature[node])
        if child0[node] == child1[node]:  # both values go the same way: no constraint
            stack.append((int(child0[node]), fixed))
            continue
        for side, child in ((0, child0[node]), (1, child1[node])):
            if fixed.get(j, side) != side:
                continue  # contradicts an earlier split on j: unreachable
            stack.append((int(child), {**fixed, j: side}))


def _subset_table(p: int, max_order: int | None) -> np.ndarray:
    """All subsets of ``range(p)`` (optionally of size <= max_order) as a (s, p) bool table."""
    sizes = range(p + 1) if max_order is None else range(min(p, max_order) + 1)
    table = [np.isin(np.arange(p), c) for r in sizes for c in combinations(range(p), r)]
    return np.array(table, dtype=bool).reshape(-1, p)


def extract_padded_terms(model, n: int, num_iteration, max_order, max_terms):
    """Raw Fourier terms of a LightGBM ensemble, grouped and summed.

    Returns
    -------
    rows : (u, D) int64 array
        Sorted supports padded with ``n``.
    values : (u,) float64 array
        Their coefficients.
    """
    booster = _booster(model)
    header, trees = _parse_model(booster.model_to_string(num_iteration=_iteration(booster, num_iteration)))
    if int(header.get("num_tree_per_iteration", "1")) != 1:
        raise ValueError(
            "multi-output (e.g. multiclass) boosters have one spectrum per output; "
            "fit one model per class score instead."
        )
    scale = 1.0 / len(trees) if "average_output" in header and trees else 1.0
    by_length: dict[int, tuple[list, list, list]] = {}
    for tree in trees:
        for feats, sides, value in _leaf_paths(tree, n):
            order = np.argsort(feats)
            bucket = by_length.setdefault(len(feats), ([], [], []))
            bucket[0].append(np.asarray(feats, np.int64)[order])
            bucket[1].append(np.asarray(sides, np.int64)[order])
            bucket[2].append(value * scale)
    n_terms = sum(len(v) * 2**p for p, (_, _, v) in by_length.items())
    if max_order is None and n_terms > max_terms:
        raise ValueError(
            f"exact extraction would expand {n_terms:,} raw terms (> max_terms={max_terms:,}); "
            "the trees are too deep. Limit the depth or pass max_order to drop high orders."
        )
    D = max(by_length, default=0) if max_order is None else min(max(by_length, default=0), max_order)
    all_rows, all_values = [], []
    for p, (feats, sides, values) in by_length.items():
        feats, sides, values = np.array(feats).reshape(-1, p), np.array(sides).reshape(-1, p), np.array(values)
        subsets = _subset_table(p, max_order)  # (s, p)
        signs = np.where(sides == 1, -1.0, 1.0)  # (L, p)
        coef = values[:, None] * 2.0**-p * np.prod(
            np.where(subsets[None, :, :], signs[:, None, :], 1.0), axis=2
        )  # (L, s)
        rows = np.sort(np.where(subsets[None, :, :], feats[:, None, :], n), axis=2)
        rows = rows.reshape(-1, p)[:, :D]
        pad = np.full((rows.shape[0], D - rows.shape[1]), n, np.int64)
        all_rows.append(np.hstack([rows, pad]))
        all_values.append(coef.reshape(-1))
    if not all_rows:
        return np.zeros((0, 0), np.int64), np.zeros(0)
    unique, inverse = group_padded_rows(np.vstack(all_rows), n)
    values = np.bincount(inverse, weights=np.concatenate(all_values), minlength=unique.shape[0])
    return unique, values


def _iteration(booster, num_iteration: int | None) -> int:
    """Resolve ``num_iteration`` the way ``Booster.predict`` does; -1 means all trees."""
    if num_iteration is None:
        best = getattr(booster, "best_iteration", 0) or 0
        return best if best > 0 else -1
    if num_iteration <= 0:
        return -1
    return int(num_iteration)
