"""The feasible kept-sets of a plan: size, per-group minimums and the KV-group budget.

:func:`make_constraints` checks the user's settings and builds :class:`Constraints`, which the
exact program, the greedy search and the final checks of :mod:`compattr.optimize.ilp` share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sparse

from .._validation import check_int

_SENSES = ("==", "<=", ">=")


@dataclass(frozen=True)
class Constraints:
    """The feasible kept-sets, shared by the ILP, the greedy fallback and the checks.

    ``lo <= #kept <= hi``; every group ``g`` keeps at least ``group_min[g]`` features; at
    most ``kv_max_kept`` KV groups have a kept head (a KV group is removed only when all of
    its query heads are).
    """

    n: int
    lo: int
    hi: int
    group_ids: np.ndarray  # (n,) int codes (all 0 without groups)
    group_min: np.ndarray  # (G,) int
    kv_ids: np.ndarray | None  # (n,) int codes
    kv_max_kept: int | None

    @cached_property
    def _group_onehot(self) -> sparse.csr_array:
        return _onehot(self.group_ids, self.group_min.size)

    @cached_property
    def _kv_onehot(self) -> sparse.csr_array:
        assert self.kv_ids is not None  # read only with KV groups
        return _onehot(self.kv_ids, int(self.kv_ids.max()) + 1)

    def group_counts(self, K: np.ndarray) -> np.ndarray:
        """(m, G) kept features per group for (m, n) kept-sets."""
        return np.asarray(K.astype(np.int64) @ self._group_onehot)

    def kv_kept(self, K: np.ndarray) -> np.ndarray:
        """(m,) number of KV groups with at least one kept head."""
        return (np.asarray(K.astype(np.int64) @ self._kv_onehot) > 0).sum(axis=1)

    def partial_ok(self, K: np.ndarray) -> np.ndarray:
        """(m,) whether removing more features can still reach a feasible set."""
        return (K.sum(axis=1) >= self.lo) & (self.group_counts(K) >= self.group_min).all(axis=1)

    def satisfied(self, K: np.ndarray) -> np.ndarray:
        """(m,) whether each kept-set meets every constraint."""
        ok = self.partial_ok(K) & (K.sum(axis=1) <= self.hi)
        if self.kv_ids is not None:
            ok &= self.kv_kept(K) <= self.kv_max_kept
        return ok


def meets_group_minimum(K: np.ndarray, groups, minimum: int | None) -> np.ndarray:
    """(m,) whether each kept-set of ``K`` (m, n) keeps at least ``minimum`` features of every
    group (all True without a minimum)."""
    if not minimum:
        return np.ones(len(K), bool)
    if groups is None:
        raise ValueError("min_per_group needs groups (a label per feature).")
    groups = np.asarray(groups)
    counts = np.stack([K[:, groups == g].sum(1) for g in np.unique(groups)], 1)
    return np.asarray((counts >= minimum).all(1))


def _onehot(ids: np.ndarray, k: int) -> sparse.csr_array:
    """(n, k) 0/1 matrix with a single 1 per row, at column ``ids[i]``."""
    ones = np.ones(ids.size, np.int64)
    return sparse.csr_array((ones, (np.arange(ids.size), ids)), shape=(ids.size, k))


def make_constraints(n: int, size, sense: str, groups, min_per_group, kv_groups, min_kv_removed) -> Constraints:
    """The :class:`Constraints` of :func:`compattr.optimize.best_subset`'s arguments (see
    there), or ValueError naming the first setting that is not valid."""
    size = check_int(size, "size", 0, n)
    if sense not in _SENSES:
        raise ValueError(f"sense must be one of {_SENSES}, got {sense!r}.")
    lo = 0 if sense == "<=" else size
    hi = n if sense == ">=" else size
    group_ids, group_min = _group_minimums(n, groups, min_per_group)
    if (kv_groups is None) != (min_kv_removed is None):
        raise ValueError("kv_groups and min_kv_removed must be given together.")
    kv_ids = kv_max_kept = None
    if kv_groups is not None:
        kv_ids = _codes(kv_groups, n, "kv_groups")[1]
        n_kv = kv_ids.max() + 1
        kv_max_kept = n_kv - check_int(min_kv_removed, "min_kv_removed", 0, n_kv)
    return Constraints(n, lo, hi, group_ids, group_min, kv_ids, kv_max_kept)


def _group_minimums(n: int, groups, min_per_group) -> tuple[np.ndarray, np.ndarray]:
    if groups is None:
        if min_per_group is not None:
            raise ValueError("min_per_group needs groups (a label per feature).")
        return np.zeros(n, np.int64), np.zeros(1, np.int64)
    labels, ids = _codes(groups, n, "groups")
    if min_per_group is None:
        minimum = np.zeros(labels.size, np.int64)
    elif isinstance(min_per_group, Mapping):
        unknown = set(min_per_group) - set(labels.tolist())
        if unknown:
            raise ValueError(f"min_per_group names unknown groups {sorted(map(str, unknown))}.")
        minimum = np.array([min_per_group.get(g, 0) for g in labels.tolist()])
    else:
        minimum = np.full(labels.size, min_per_group)
    if minimum.dtype.kind not in "iu" or (minimum < 0).any():
        raise ValueError(f"min_per_group must hold non-negative integers, got {min_per_group!r}.")
    return ids, minimum.astype(np.int64)


def _codes(labels, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), a label per feature; got {labels.shape}.")
    return np.unique(labels, return_inverse=True)
