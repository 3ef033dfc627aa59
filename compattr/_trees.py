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
        elif line.strip():
            key, _, value = line.partition("=")  # bare flags such as average_output map to ""
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


def _forest_arrays(trees: list[dict], n: int, scale: float):
    """Concatenate all trees into global node arrays (children by input value, features).

    Returns ``feature, child0, child1`` over internal nodes (children encoded as global
    node ids, leaves as ``-(global leaf id) - 1``), ``roots`` (one id per tree, same
    encoding) and ``leaf_value`` over all leaves (scaled by ``scale``).
    """
    features, child0s, child1s, roots, leaves = [], [], [], [], []
    node_offset = leaf_offset = 0
    for tree in trees:
        leaf_value = _arr(tree, "leaf_value", np.float64)
        if tree.get("is_linear", "0") != "0":
            raise ValueError("linear trees (linear_tree=True) have no finite Boolean spectrum.")
        if int(tree.get("num_leaves", 1)) == 1:
            roots.append(-leaf_offset - 1)
        else:
            feature = _arr(tree, "split_feature", np.int64)
            if feature.max() >= n:
                raise ValueError(f"the model splits on feature {feature.max()} but n={n}.")
            child0, child1 = _children_by_value(tree)
            shift = lambda c: np.where(c >= 0, c + node_offset, c - leaf_offset)  # noqa: E731
            features.append(feature)
            child0s.append(shift(child0))
            child1s.append(shift(child1))
            roots.append(node_offset)
            node_offset += feature.size
        leaves.append(leaf_value * scale)
        leaf_offset += leaf_value.size
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(features), cat(child0s), cat(child1s), np.array(roots), cat(leaves)


def _leaf_paths(trees: list[dict], n: int, scale: float):
    """Paths of every reachable leaf of every tree, walked level by level for all at once.

    Returns
    -------
    feats, sides : (L, depth) int arrays
        The features fixed on each leaf's path and the value (0/1) they are fixed to;
        unused slots hold feature ``n`` (repeated splits on a feature keep one slot).
    values : (L,) float array
        Leaf values.
    """
    feature, child0, child1, node, leaf_value = _forest_arrays(trees, n, scale)
    feats = np.zeros((node.size, 0), np.int64)
    sides = np.zeros((node.size, 0), np.int64)
    done_f, done_s, done_v = [], [], []
    while node.size:
        at_leaf = node < 0
        done_f.append(feats[at_leaf])
        done_s.append(sides[at_leaf])
        done_v.append(leaf_value[~node[at_leaf]])
        node, feats, sides = node[~at_leaf], feats[~at_leaf], sides[~at_leaf]
        j = feature[node]
        branches = []
        for side, child in ((0, child0[node]), (1, child1[node])):
            seen = feats == j[:, None]
            conflict = (seen & (sides != side)).any(axis=1)
            repeat = seen.any(axis=1)
            keep = ~conflict
            new_f = np.where(repeat, n, j)[keep]
            branches.append(
                (child[keep], np.column_stack([feats[keep], new_f]), np.column_stack([sides[keep], np.full(keep.sum(), side)]))
            )
        same = child0[node] == child1[node]  # both values lead to one child: no constraint
        if same.any():
            raise ValueError("degenerate split (both input values take the same branch) in the model.")
        node = np.concatenate([b[0] for b in branches])
        feats = np.vstack([b[1] for b in branches])
        sides = np.vstack([b[2] for b in branches])
    depth = max((f.shape[1] for f in done_f), default=0)
    pad = lambda a, v: np.hstack([a, np.full((a.shape[0], depth - a.shape[1]), v)])  # noqa: E731
    return (
        np.vstack([pad(f, n) for f in done_f]),
        np.vstack([pad(s, 0) for s in done_s]),
        np.concatenate(done_v),
    )


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
    feats, sides, values = _leaf_paths(trees, n, scale)
    order = np.argsort(feats, axis=1, kind="stable")  # real features first, sorted
    feats = np.take_along_axis(feats, order, axis=1)
    sides = np.take_along_axis(sides, order, axis=1)
    lengths = (feats < n).sum(axis=1)
    n_terms = int(np.sum(2.0**lengths))
    if max_order is None and n_terms > max_terms:
        raise ValueError(
            f"exact extraction would expand {n_terms:,} raw terms (> max_terms={max_terms:,}); "
            "the trees are too deep. Limit the depth or pass max_order to drop high orders."
        )
    longest = int(lengths.max()) if lengths.size else 0
    D = longest if max_order is None else min(longest, max_order)
    all_rows, all_values = [], []
    for p in np.unique(lengths):
        at = lengths == p
        f, s_, v = feats[at, :p], sides[at, :p], values[at]
        subsets = _subset_table(int(p), max_order)  # (s, p)
        signs = np.where(s_ == 1, -1.0, 1.0)  # (L, p)
        coef = v[:, None] * 2.0**-p * np.prod(np.where(subsets[None], signs[:, None, :], 1.0), axis=2)
        rows = np.sort(np.where(subsets[None], f[:, None, :], n), axis=2).reshape(-1, p)
        rows = np.hstack([rows[:, :D], np.full((rows.shape[0], max(0, D - p)), n, np.int64)])
        all_rows.append(rows)
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
