"""Several kinds of model components as one feature vector: ``heads + mlps``.

:class:`Components` concatenates maskers of the same model (attention heads, MLP blocks, ...):
its features are theirs in order, with their names (``'L3.H5'``, ``'L3.MLP'``) and groups
(the layer), so one spectrum holds head × MLP interactions and the energy split counts them.
``kinds`` says which masker each feature came from, e.g. for per-kind plan constraints.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch

from .base import Inputs
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
        The class name of the masker each feature belongs to (``"AttentionHeads"``, ...).
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
        if len(set(self.names)) != self.n:
            raise ValueError("the parts' feature names overlap; combine different components.")
        self._bounds = np.cumsum([0] + [p.n for p in flat])
        self._examples = ["examples" in inspect.signature(p.masking).parameters for p in flat]

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
