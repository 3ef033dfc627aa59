"""The feasible kept-sets of a plan: size, per-group minimums and the KV-group budget.

:func:`make_constraints` checks the user's settings and builds :class:`Constraints`, which the
exact program, the greedy search and the final checks of :mod:`compattr.optimize.ilp` share.
With feature kinds (heads and MLP blocks of :class:`compattr.features.Components`), a group
of the per-group minimums is a (kind, group) pair, so the heads of a layer and its MLP block
are counted apart; a negative KV-group label puts a feature (an MLP block) in no KV group.
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
    its query heads are; a feature with ``kv_ids == -1`` is in no KV group).
    """

    n: int
    lo: int
    hi: int
    group_ids: np.ndarray  # (n,) int codes (all 0 without groups; (kind, group) pairs with kinds)
    group_min: np.ndarray  # (G,) int
    kv_ids: np.ndarray | None  # (n,) int codes, -1 for a feature in no KV group
    kv_max_kept: int | None

    @cached_property
    def n_kv(self) -> int:
        """Number of KV groups (0 without them)."""
        return 0 if self.kv_ids is None else int(self.kv_ids.max(initial=-1)) + 1

    @cached_property
    def _group_onehot(self) -> sparse.csr_array:
        return _onehot(self.group_ids, self.group_min.size)

    @cached_property
    def _kv_onehot(self) -> sparse.csr_array:
        assert self.kv_ids is not None  # read only with KV groups
        return _onehot(self.kv_ids, self.n_kv)

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


def meets_group_minimum(K: np.ndarray, groups, minimum: int | Mapping | None, kinds=None) -> np.ndarray:
    """(m,) whether each kept-set of ``K`` (m, n) keeps at least ``minimum`` features of every
    group (all True without a minimum): the group rule of :class:`Constraints`, for the
    searches that measure kept-sets on the model. ``minimum`` and ``kinds`` are read as
    :func:`compattr.optimize.best_subset`'s ``min_per_group`` and ``kinds``."""
    if not minimum:
        return np.ones(len(K), bool)
    cons = make_constraints(K.shape[1], 0, ">=", groups, minimum, None, None, kinds)
    return cons.partial_ok(np.asarray(K, bool))


def _onehot(ids: np.ndarray, k: int) -> sparse.csr_array:
    """(n, k) 0/1 matrix with a 1 at column ``ids[i]`` in row ``i``; rows with ``ids[i] < 0``
    are empty."""
    rows = np.flatnonzero(ids >= 0)
    ones = np.ones(rows.size, np.int64)
    return sparse.csr_array((ones, (rows, ids[rows])), shape=(ids.size, k))


def make_constraints(
    n: int, size, sense: str, groups, min_per_group, kv_groups, min_kv_removed, kinds=None
) -> Constraints:
    """The :class:`Constraints` of :func:`compattr.optimize.best_subset`'s arguments (see
    there), or ValueError naming the first setting that is not valid."""
    size = check_int(size, "size", 0, n)
    if sense not in _SENSES:
        raise ValueError(f"sense must be one of {_SENSES}, got {sense!r}.")
    lo = 0 if sense == "<=" else size
    hi = n if sense == ">=" else size
    group_ids, group_min = _group_minimums(n, groups, min_per_group, kinds)
    if (kv_groups is None) != (min_kv_removed is None):
        raise ValueError("kv_groups and min_kv_removed must be given together.")
    kv_ids = kv_max_kept = None
    if kv_groups is not None:
        kv_ids = _kv_codes(kv_groups, n)
        n_kv = int(kv_ids.max(initial=-1)) + 1
        kv_max_kept = n_kv - check_int(min_kv_removed, "min_kv_removed", 0, n_kv)
    return Constraints(n, lo, hi, group_ids, group_min, kv_ids, kv_max_kept)


def _group_minimums(n: int, groups, min_per_group, kinds) -> tuple[np.ndarray, np.ndarray]:
    """(n,) group codes and (G,) minimums; with ``kinds``, a group is a (kind, group) pair."""
    coded_kinds = None if kinds is None else _codes(kinds, n, "kinds")  # checked even if unused
    if groups is None:
        if min_per_group is not None:
            raise ValueError("min_per_group needs groups (a label per feature).")
        return np.zeros(n, np.int64), np.zeros(1, np.int64)
    labels, ids = _codes(groups, n, "groups")
    kind_labels = None
    if coded_kinds is None:
        keys = labels.tolist()
    else:
        kind_labels, kind_ids = coded_kinds
        pairs, ids = np.unique(kind_ids * labels.size + ids, return_inverse=True)
        keys = [(kind_labels[p // labels.size].item(), labels[p % labels.size].item()) for p in pairs]
    if min_per_group is None:
        minimum = np.zeros(len(keys), np.int64)
    elif isinstance(min_per_group, Mapping):
        minimum = np.array(_mapped_minimums(min_per_group, keys, kind_labels))
    else:
        minimum = np.full(len(keys), min_per_group)
    if minimum.dtype.kind not in "iu" or (minimum < 0).any():
        raise ValueError(f"min_per_group must hold non-negative integers, got {min_per_group!r}.")
    return ids, minimum.astype(np.int64)


def _mapped_minimums(min_per_group: Mapping, keys: list, kind_labels) -> list:
    """The minimum of each group (a label, or a (kind, label) pair when ``kind_labels`` is
    given) from a mapping keyed by group, or with kinds by kind or (kind, label) pair."""
    if kind_labels is None:
        unknown = set(min_per_group) - set(keys)
        if unknown:
            raise ValueError(f"min_per_group names unknown groups {sorted(map(str, unknown))}.")
        return [min_per_group.get(g, 0) for g in keys]
    unknown = set(min_per_group) - set(keys) - set(kind_labels.tolist())
    if unknown:
        raise ValueError(
            f"min_per_group names unknown kinds or (kind, group) pairs {sorted(map(str, unknown))}: with "
            f"kinds, its keys are kinds ({', '.join(map(repr, kind_labels.tolist()))}) or (kind, group) "
            "pairs. Pass kinds=None to count every kind of a group together."
        )
    return [min_per_group.get(pair, min_per_group.get(pair[0], 0)) for pair in keys]


def _kv_codes(kv_groups, n: int) -> np.ndarray:
    """(n,) codes 0..K-1 of the KV groups, -1 for a feature whose label is negative."""
    labels = np.asarray(kv_groups)
    if labels.shape != (n,):
        raise ValueError(f"kv_groups must have shape ({n},), a label per feature; got {labels.shape}.")
    inside = ~(labels < 0) if labels.dtype.kind in "if" else np.ones(n, bool)
    ids = np.full(n, -1, np.int64)
    ids[inside] = np.unique(labels[inside], return_inverse=True)[1]
    return ids


def _codes(labels, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), a label per feature; got {labels.shape}.")
    return np.unique(labels, return_inverse=True)
