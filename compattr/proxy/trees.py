"""Exact Fourier extraction from LightGBM ensembles (paper Alg. 1, vectorised).

Each reachable leaf with value ``v`` whose path fixes features ``P`` to values ``s_j``
contributes ``v · Π_{j∈P} [x_j = s_j]`` and ``[x_j = s] = (1 + (-1)^s χ_j) / 2``, so it
expands to ``v 2^{-|P|} Σ_{T⊆P} (-1)^{#{j∈T: s_j=1}} χ_T``. All leaves of all trees are
expanded at once per path length; leaves whose paths fix the same features are summed
before their subsets are expanded, and equal supports are then summed by one grouping.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pandas as pd

from ..spectrum.supports import group_padded_rows, sum_padded_terms

# LightGBM's decision_type bit layout (include/LightGBM/tree.h).
_CATEGORICAL = 1
_DEFAULT_LEFT = 2
_MISSING_ZERO = 1
_ZERO_THRESHOLD = 1e-35


class TreesTooDeep(ValueError):
    """An exact extraction that would expand to more raw terms than allowed: trees this deep
    expand to ``2^depth`` terms per leaf."""


def _model_text(model, num_iteration: int | None) -> tuple[str, int | None]:
    """The LightGBM model text of ``model`` and how many of its trees to read (None: all).

    ``model`` is a Booster, a fitted sklearn-API model, or model text itself (as
    ``Booster.model_to_string()`` returns it or a saved model file holds it).
    """
    if isinstance(model, str):
        if not model.lstrip().startswith("tree"):
            raise ValueError("the string given is not LightGBM model text (it must start with 'tree').")
        return model, (int(num_iteration) if num_iteration and num_iteration > 0 else None)
    booster = getattr(model, "booster_", model)
    if not hasattr(booster, "model_to_string"):
        raise TypeError(
            f"expected a lightgbm.Booster, a fitted LightGBM sklearn model or LightGBM model text, got {type(model)!r}."
        )
    return booster.model_to_string(num_iteration=_iteration(booster, num_iteration)), None


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


def _field(trees: list[dict], key: str, dtype, few_values: bool = False) -> np.ndarray:
    """One field of every tree, concatenated (trees without it contribute nothing).

    ``few_values``: the field takes few distinct values (split thresholds on 0/1 inputs),
    so each distinct token is converted once.
    """
    tokens = " ".join(t.get(key, "") for t in trees).split()
    if few_values:
        codes, distinct = pd.factorize(np.asarray(tokens, dtype=object))
        return distinct.astype(dtype)[codes]
    return np.array(tokens, dtype=dtype)


def _goes_left(trees: list[dict], split_trees: list[int], threshold, dtype) -> np.ndarray:
    """(nodes, 2) bool: whether ``x_j = 0`` and ``x_j = 1`` go to the left child, for the
    internal nodes of all trees (``split_trees``: the trees that have any, in order)."""
    goes_left = np.zeros((threshold.size, 2), bool)
    numeric = (dtype & _CATEGORICAL) == 0
    zero_missing = ((dtype >> 2) & 3) == _MISSING_ZERO
    default_left = (dtype & _DEFAULT_LEFT) != 0
    for value in (0, 1):
        by_threshold = value <= threshold
        if value == 0:  # "zero as missing" sends 0 to the default branch
            by_threshold = np.where(zero_missing, default_left, by_threshold)
        goes_left[:, value] = numeric & by_threshold
    if numeric.all():
        return goes_left
    first = np.cumsum([0] + [int(trees[t]["num_leaves"]) - 1 for t in split_trees])
    for i, t in enumerate(split_trees):  # categorical splits: bitsets per tree
        nodes = first[i] + np.flatnonzero(~numeric[first[i] : first[i + 1]])
        if not nodes.size:
            continue
        bounds = _arr(trees[t], "cat_boundaries", np.int64)
        bits = _arr(trees[t], "cat_threshold", np.uint64)
        for node in nodes:
            idx = int(threshold[node])
            words = bits[bounds[idx] : bounds[idx + 1]]
            for value in (0, 1):
                goes_left[node, value] = words.size > 0 and bool((int(words[0]) >> value) & 1)
    return goes_left


def _forest_arrays(trees: list[dict], n: int, scale: float):
    """Concatenate all trees into global node arrays (children by input value, features).

    Returns ``feature, child0, child1`` over internal nodes (children encoded as global
    node ids, leaves as ``-(global leaf id) - 1``), ``roots`` (one id per tree, same
    encoding) and ``leaf_value`` over all leaves (scaled by ``scale``).
    """
    if any(t.get("is_linear", "0") != "0" for t in trees):
        raise ValueError("linear trees (linear_tree=True) have no finite Boolean spectrum.")
    leaves = np.array([int(t.get("num_leaves", 1)) for t in trees], np.int64)
    split_trees = [i for i, count in enumerate(leaves) if count > 1]
    splitting = [trees[i] for i in split_trees]
    feature = _field(splitting, "split_feature", np.int64)
    if feature.size and feature.max() >= n:
        raise ValueError(f"the model splits on feature {feature.max()} but n={n}.")
    threshold = _field(splitting, "threshold", np.float64, few_values=True)
    goes_left = _goes_left(trees, split_trees, threshold, _field(splitting, "decision_type", np.int64))
    node_offset = np.cumsum(leaves - 1) - (leaves - 1)  # first global node id of each tree
    leaf_offset = np.cumsum(leaves) - leaves
    tree_of_node = np.repeat(np.arange(leaves.size), leaves - 1)
    global_id = lambda c: np.where(c >= 0, c + node_offset[tree_of_node], c - leaf_offset[tree_of_node])
    left = global_id(_field(splitting, "left_child", np.int64))
    right = global_id(_field(splitting, "right_child", np.int64))
    child0 = np.where(goes_left[:, 0], left, right)
    child1 = np.where(goes_left[:, 1], left, right)
    roots = np.where(leaves > 1, node_offset, -leaf_offset - 1)
    return feature, child0, child1, roots, _field(trees, "leaf_value", np.float64) * scale


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
                (
                    child[keep],
                    np.column_stack([feats[keep], new_f]),
                    np.column_stack([sides[keep], np.full(keep.sum(), side)]),
                )
            )
        same = child0[node] == child1[node]  # both values lead to one child: no constraint
        if same.any():
            raise ValueError("degenerate split (both input values take the same branch) in the model.")
        node = np.concatenate([b[0] for b in branches])
        feats = np.vstack([b[1] for b in branches])
        sides = np.vstack([b[2] for b in branches])
    depth = max((f.shape[1] for f in done_f), default=0)
    pad = lambda a, v: np.hstack([a, np.full((a.shape[0], depth - a.shape[1]), v)])
    return (
        np.vstack([pad(f, n) for f in done_f]),
        np.vstack([pad(s, 0) for s in done_s]),
        np.concatenate(done_v),
    )


#: The subset tables kept for later extractions, oldest first, and the bytes they may hold in
#: all: a deep path's table (``2^p`` rows of ``p`` columns, 240 MB at p = 20, gigabytes from
#: p = 22) is not kept for the rest of the process, and the oldest go first.
_TABLES: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
_TABLE_BYTES = 256 * 2**20


def _subset_tables(p: int, max_order: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The subsets of ``range(p)`` (of size <= max_order when given), ordered by size; only
    the subsets kept are ever built, so a bounded order costs ``Σ_{j<=max_order} C(p, j)``
    rows however deep the path. Kept for later calls within :data:`_TABLE_BYTES`.

    Returns
    -------
    members : (s, p) float32 array
        1 where the position belongs to the subset.
    gather : (s, p) int array
        Each subset's positions in increasing order, padded with ``p``.
    """
    key = (p, _largest_subset(p, max_order))
    if key in _TABLES:
        return _TABLES[key]
    tables = _built_subset_tables(*key)
    size = sum(table.nbytes for table in tables)
    if size <= _TABLE_BYTES:
        while _TABLES and size + sum(t.nbytes for pair in _TABLES.values() for t in pair) > _TABLE_BYTES:
            del _TABLES[next(iter(_TABLES))]
        _TABLES[key] = tables
    return tables


def _largest_subset(p: int, max_order: int | None) -> int:
    """The largest subset of a path of ``p`` features kept: ``p``, or ``max_order`` below it."""
    return p if max_order is None else min(p, max_order)


def _subset_count(p: int, top: int) -> int:
    """The number of subsets of ``range(p)`` of size at most ``top``."""
    return sum(comb(p, j) for j in range(top + 1))


def _built_subset_tables(p: int, top: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_subset_tables` of the subsets of size at most ``top``, built (read-only): every
    subset by binary counting (vectorised) where ``top`` is ``p``, else size by size."""
    if top >= p:
        member = (np.arange(2**p)[:, None] >> np.arange(p)) & 1 == 1
        order = np.argsort(member.sum(axis=1), kind="stable")  # by size, as the bounded tables
        member = member[order]
        # A stable sort of "not a member" puts the members first, in order; the rest become p.
        gather = np.argsort(~member, axis=1, kind="stable")
        gather[~np.take_along_axis(member, gather, axis=1)] = p
        members = member.astype(np.float32)
    else:
        gather = np.full((_subset_count(p, top), p), p, dtype=np.int64)
        row = 0
        for size in range(top + 1):
            chosen = np.array(list(combinations(range(p), size)), dtype=np.int64).reshape(comb(p, size), size)
            gather[row : row + len(chosen), :size] = chosen
            row += len(chosen)
        members = np.zeros((len(gather), p + 1), np.float32)  # column p: the padding, dropped
        np.put_along_axis(members, gather, 1.0, axis=1)
        members = np.ascontiguousarray(members[:, :p])
    for table in (members, gather):
        table.setflags(write=False)
    return members, gather


def extract_padded_terms(model, n: int, num_iteration, max_order, max_terms):
    """Raw Fourier terms of a LightGBM ensemble, grouped and summed.

    Returns
    -------
    rows : (u, D) int32 array
        Sorted supports padded with ``n``.
    values : (u,) float64 array
        Their coefficients.
    """
    text, limit = _model_text(model, num_iteration)
    header, trees = _parse_model(text)
    if int(header.get("num_tree_per_iteration", "1")) != 1:
        raise ValueError(
            "multi-output (e.g. multiclass) boosters have one spectrum per output; "
            "fit one model per class score instead."
        )
    trees = trees[:limit]
    scale = 1.0 / len(trees) if "average_output" in header and trees else 1.0
    feats, sides, values = _leaf_paths(trees, n, scale)
    order = np.argsort(feats, axis=1, kind="stable")  # real features first, sorted
    feats = np.take_along_axis(feats, order, axis=1).astype(np.int32)  # n < 2^31: half the memory
    sides = np.take_along_axis(sides, order, axis=1)
    lengths = (feats < n).sum(axis=1)
    path_lengths, leaves = np.unique(lengths, return_counts=True)
    kept = (_subset_count(int(p), _largest_subset(int(p), max_order)) for p in path_lengths)
    n_terms = sum(int(c) * k for c, k in zip(leaves, kept))
    if n_terms > max_terms:
        remedy = (
            "Limit the depth or pass max_order to drop high orders."
            if max_order is None
            else "Limit the depth or lower max_order."
        )
        raise TreesTooDeep(
            f"exact extraction would expand {n_terms:,} raw terms (> max_terms={max_terms:,}); "
            f"the trees are too deep. {remedy}"
        )
    if not lengths.size:
        return np.zeros((0, 0), np.int32), np.zeros(0)
    longest = int(lengths.max())
    D = longest if max_order is None else min(longest, max_order)
    # one path length at a time: only its terms' keys outlive it (a few int64 per term)
    return sum_padded_terms(
        (_expanded(feats, sides, values, lengths == p, int(p), n, max_order, D) for p in path_lengths), n, D
    )


def _expanded(feats, sides, values, at, p: int, n: int, max_order, D: int) -> tuple[np.ndarray, np.ndarray]:
    """The raw terms of the leaves ``at``, whose paths fix ``p`` features: every subset of
    each path as a sorted support padded with ``n`` (at most ``D`` columns, subsets above
    ``max_order`` dropped), and its coefficient."""
    members, gather = _subset_tables(p, max_order)  # (s, p) each
    # (-1)^(number of the subset's features fixed to 1), from exact small-integer counts
    ones = (sides[at, :p].astype(np.float32) @ members.T).astype(np.int8)  # (L, s), <= p
    coef = (values[at] * 2.0**-p)[:, None] * (1 - 2 * (ones & 1))
    # Leaves whose paths fix the same features (siblings, and repeats across trees)
    # expand to the same supports: sum their coefficients before expanding the supports.
    paths, path_of = group_padded_rows(feats[at, :p], n)
    order = np.argsort(path_of, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(path_of[order]) != 0])
    coef = np.add.reduceat(coef[order], starts, axis=0)  # (paths, s)
    f = np.hstack([paths, np.full((paths.shape[0], 1), n, paths.dtype)])  # column p: the padding
    # sorted supports (the path features are sorted); p = 0: a single-leaf tree's constant
    rows = f[:, gather].reshape(paths.shape[0] * gather.shape[0], p)
    return rows[:, :D], coef.reshape(-1)


def _iteration(booster, num_iteration: int | None) -> int:
    """Resolve ``num_iteration`` the way ``Booster.predict`` does; -1 means all trees."""
    if num_iteration is None:
        best = getattr(booster, "best_iteration", 0) or 0
        return best if best > 0 else -1
    if num_iteration <= 0:
        return -1
    return int(num_iteration)
