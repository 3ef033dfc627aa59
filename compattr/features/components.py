"""Several kinds of model components as one feature vector (``heads + mlps``), and coarser
features made of finer ones (key/value groups, whole attention layers).

:class:`Components` concatenates maskers of the same model (attention heads, MLP blocks, ...):
its features are theirs in order, with their names (``'L3.H5'``, ``'L3.MLP'``) and groups
(the layer), so one spectrum holds head × MLP interactions and the energy split counts them.
``kinds`` says which masker each feature came from, e.g. for per-kind plan constraints, and
``kv_groups`` the key/value group of each head (-1 for an MLP block), for KV-cache plans.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch

from .base import Inputs, digest, masks_by_example
from .replay import LayerReplay


class Components:
    """Maskers of one model evaluated together, their features concatenated.

    Parameters
    ----------
    *parts : maskers
        E.g. :class:`~compattr.features.AttentionHeads` and
        :class:`~compattr.features.MLPBlocks` of the same model; ``a + b`` builds this too.

    Attributes
    ----------
    n, names, groups
        Concatenated over ``parts``.
    kinds : (n,) array of str
        The class name of the masker each feature belongs to (``"AttentionHeads"``, ...):
        ``best_subset(..., kinds=...)`` and :meth:`compattr.Explanation.plan` apply per-group
        minimums per kind with it.
    kv_groups : (n,) int64 array or None
        The key/value group of each feature, for ``best_subset(..., kv_groups=...)``: a
        part's own ``kv_groups`` (those of :class:`~compattr.features.AttentionHeads`),
        shifted so that ids of different parts never coincide, and -1 ("in no KV group") for
        the features of parts without them (:class:`~compattr.features.MLPBlocks`). None
        when no part has KV groups.
    model : torch.nn.Module
        The model the parts mask.
    """

    inputs = None

    def __init__(self, *parts: Any):
        flat: list[Any] = []
        for part in parts:
            flat += list(part.parts) if isinstance(part, Components) else [part]
        if len(flat) < 2:
            raise ValueError("Components joins at least two maskers.")
        models = {id(getattr(p, "model", None)) for p in flat}
        if len(models) != 1 or getattr(flat[0], "model", None) is None:
            raise ValueError("every part must mask the same model (each must carry it as .model).")
        self.parts: list[Any] = flat
        self.model = flat[0].model
        self.n = sum(p.n for p in flat)
        self.names = [name for p in flat for name in p.names]
        self.groups = np.concatenate([np.asarray(p.groups) for p in flat])
        self.kinds = np.concatenate([[type(p).__name__] * p.n for p in flat])
        self.kv_groups = _joined_kv_groups(flat)
        if len(set(self.names)) != self.n:
            raise ValueError("the parts' feature names overlap; combine different components.")
        self._bounds = np.cumsum([0] + [p.n for p in flat])
        self._examples = [masks_by_example(p) for p in flat]

    def __add__(self, other: Any) -> Components:
        return Components(self, other)

    def __repr__(self) -> str:
        return "Components(" + ", ".join(map(repr, self.parts)) + ")"

    def fingerprint(self) -> str:
        """The parts' fingerprints, in order."""
        return " + ".join(p.fingerprint() for p in self.parts)

    @contextmanager
    def masked(self, masks, examples=None) -> Iterator[Components]:
        """Mask every part with its columns of ``masks`` ((n,) or (B, n), True = kept)."""
        M = masks if isinstance(masks, torch.Tensor) else torch.as_tensor(np.asarray(masks))
        if M.shape[-1] != self.n:
            raise ValueError(f"masks must have n={self.n} columns, got shape {tuple(M.shape)}.")
        with ExitStack() as stack:
            for part, lo, hi, takes in zip(self.parts, self._bounds[:-1], self._bounds[1:], self._examples):
                extra = {"examples": examples} if takes and examples is not None else {}
                stack.enter_context(part.masked(M[..., lo:hi], **extra))
            yield self

    @contextmanager
    def masking(self, masks: torch.Tensor, inputs: Inputs, examples: torch.Tensor | None = None) -> Iterator[Inputs]:
        """:class:`~compattr.features.base.Masker` protocol: ``masked(masks, examples)``."""
        with self.masked(masks, examples):
            yield inputs

    def layer_replay(self) -> LayerReplay | None:
        """The replay of the part whose first masked layer comes first (None if one has none)."""
        replays: list[LayerReplay | None] = [getattr(p, "layer_replay", lambda: None)() for p in self.parts]
        found = [r for r in replays if r is not None]
        if len(found) < len(replays):
            return None
        return min(found, key=lambda r: r.start)


class Grouped:
    """Features that keep or mask whole groups of another masker's features together.

    One feature per distinct label: e.g. the query heads that share a key/value head
    (:func:`kv_groups`), all heads of a layer (:func:`attention_layers`), or the words of a
    phrase (a masker of inputs, such as :class:`~compattr.features.Words`, whose inputs
    these features take).

    Parameters
    ----------
    masker : masker
        The finer features, e.g. :class:`~compattr.features.AttentionHeads`.
    labels : (masker.n,) array_like
        The group of each of its features; features are the sorted distinct labels.
    names : sequence of str, optional
        A name per group (default ``str(label)``).
    groups : (n,) array_like, optional
        A group per new feature for the energy split (default: the first member's group).

    Attributes
    ----------
    n, names, groups
        One per group of the masker's features.
    labels : (n,) array
        The sorted distinct labels, one per feature.
    kv_groups : (n,) int64 array or None
        The key/value group of each feature when the masker has ``kv_groups`` and every
        group's members lie in one KV group (-1: a group with none, e.g. only MLP blocks):
        the KV group's id for :func:`kv_groups` (each feature is one KV group), the layer's
        for :func:`attention_layers` of multi-query heads. None when the masker has no KV
        groups or a group spans several (:func:`attention_layers` of grouped-query heads:
        masking the feature removes several KV groups, which ``kv_groups`` cannot say).
    replacement_id, fixed_prefix : int
        The masker's, where it has them (text features): the token masked units become, which
        :class:`~compattr.query.MaskedModel` checks against the model's pad token, and the
        tokens before the first unit, whose key/value cache it reuses.
    """

    def __init__(self, masker: Any, labels, names=None, groups=None):
        labels = np.asarray(labels)
        if labels.shape != (masker.n,):
            raise ValueError(f"labels must have one entry per feature of the masker ({masker.n}), got {labels.shape}.")
        self.masker, self.inputs = masker, getattr(masker, "inputs", None)
        if hasattr(masker, "model"):  # a masker of a model's parts (not of its inputs)
            self.model = masker.model
        self.labels, self._index = np.unique(labels, return_inverse=True)
        self.n = len(self.labels)
        first = np.array([np.flatnonzero(self._index == g)[0] for g in range(self.n)])
        self.names = [str(x) for x in (self.labels if names is None else names)]
        if len(self.names) != self.n:
            raise ValueError(f"names must have one entry per group ({self.n}), got {len(self.names)}.")
        if len(set(self.names)) != self.n:
            raise ValueError(f"names must be distinct, got {self.names}.")
        self.groups = np.asarray(masker.groups)[first] if groups is None else np.asarray(groups)
        if self.groups.shape != (self.n,):
            raise ValueError(f"groups must have one entry per group of features ({self.n}), got {self.groups.shape}.")
        self.kv_groups = _coarse_kv_groups(getattr(masker, "kv_groups", None), self._index, self.n)
        self._examples = masks_by_example(masker)
        for name in ("replacement_id", "fixed_prefix"):  # text features': what MaskedModel checks and reuses
            if hasattr(masker, name):
                setattr(self, name, getattr(masker, name))

    def __add__(self, other: Any) -> Components:
        return Components(self, other)

    def __repr__(self) -> str:
        return f"Grouped({self.masker!r}, {self.n} groups)"

    def fingerprint(self) -> str:
        """The masker's fingerprint and the grouping."""
        return f"{self.masker.fingerprint()} grouped={digest(self._index)}"

    def expand(self, masks) -> torch.Tensor:
        """Group masks ``(B, n)`` (or ``(n,)``) to the masker's feature masks ``(B, masker.n)``."""
        M = masks if isinstance(masks, torch.Tensor) else torch.as_tensor(np.asarray(masks))
        if M.shape[-1] != self.n:
            raise ValueError(f"masks must have n={self.n} columns, got shape {tuple(M.shape)}.")
        return M[..., torch.as_tensor(self._index, device=M.device)]

    @contextmanager
    def masked(self, masks, examples=None) -> Iterator[Grouped]:
        """Mask the masker's features of every masked group."""
        extra = {"examples": examples} if self._examples and examples is not None else {}
        with self.masker.masked(self.expand(masks), **extra):
            yield self

    @contextmanager
    def masking(self, masks: torch.Tensor, inputs: Inputs, examples: torch.Tensor | None = None) -> Iterator[Inputs]:
        """:class:`~compattr.features.base.Masker` protocol: ``masked(masks, examples)`` for a
        masker of a model's parts, the masker's own ``masking`` of the expanded masks for a
        masker of inputs (words, patches)."""
        if not hasattr(self.masker, "masked"):
            extra = {"examples": examples} if self._examples and examples is not None else {}
            with self.masker.masking(self.expand(masks), inputs, **extra) as masked_inputs:
                yield masked_inputs
            return
        with self.masked(masks, examples):
            yield inputs

    def layer_replay(self) -> LayerReplay | None:
        """The masker's layer replay."""
        replay = getattr(self.masker, "layer_replay", None)
        return None if replay is None else replay()


def _joined_kv_groups(parts: list[Any]) -> np.ndarray | None:
    """The parts' KV groups as one (n,) array, ids shifted to be distinct across parts, -1
    for features of parts without KV groups; None when no part has any."""
    found = [getattr(p, "kv_groups", None) for p in parts]
    if all(kv is None for kv in found):
        return None
    joined, offset = [], 0
    for part, kv in zip(parts, found):
        kv = np.full(part.n, -1, np.int64) if kv is None else np.asarray(kv, np.int64)
        joined.append(np.where(kv >= 0, kv + offset, -1))
        offset += int(kv.max(initial=-1)) + 1
    return np.concatenate(joined)


def _coarse_kv_groups(fine, index: np.ndarray, n: int) -> np.ndarray | None:
    """The KV group of each of ``n`` groups (``index``: the group of each fine feature) when
    each group's members lie in at most one KV group (-1 for none), else None."""
    if fine is None:
        return None
    fine = np.asarray(fine, np.int64)
    coarse = np.full(n, -1, np.int64)
    for g in range(n):
        ids = np.unique(fine[(index == g) & (fine >= 0)])
        if ids.size > 1:
            return None
        coarse[g] = ids[0] if ids.size else -1
    return coarse


def kv_groups(heads: Any) -> Grouped:
    """One feature per key/value head of grouped-query attention: the query heads that read
    it, kept or masked together (``'L3.KV1'``); masking one removes its keys and values."""
    names = [f"L{layer}.KV{g}" for layer in heads.layers for g in range(heads.n_kv_heads)]
    return Grouped(heads, heads.kv_groups, names)


def attention_layers(heads: Any) -> Grouped:
    """One feature per attention layer: all its heads kept or masked together (``'L3.attn'``)."""
    return Grouped(heads, heads.groups, [f"L{layer}.attn" for layer in heads.layers])
