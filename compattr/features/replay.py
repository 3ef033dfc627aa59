"""Layer replay: run the unmasked leading blocks of a model once, replay their output per mask.

When nothing masked lives in blocks ``0 .. start-1`` (attention heads of later layers only),
those blocks compute the same output for every mask. :class:`LayerReplay` captures it once per
example batch and, while a batch of masks runs, makes those blocks return it (tiled to the
batch) instead of recomputing it: exact, and as much faster as the skipped blocks cost.
:func:`replay_before` builds one for the maskers (``AttentionHeads.layer_replay``...);
:class:`compattr.query.MaskedModel` uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def replay_before(blocks: nn.ModuleList, start: int, config) -> LayerReplay | None:
    """The :class:`LayerReplay` of ``blocks`` up to ``start`` (the first masked layer), or
    None where there is nothing to replay (``start`` 0) or the model's (text) ``config``
    (None: none to read, a TransformerLens model's) says its blocks cannot be replayed: they
    pass each other more than one hidden state (Gemma 3n's AltUp, ``altup_num_inputs``: its
    states carry an extra leading axis), or later blocks read keys and values that the
    skipped ones stored (``num_kv_shared_layers``)."""
    if start == 0 or getattr(config, "altup_num_inputs", None) or getattr(config, "num_kv_shared_layers", 0):
        return None
    return LayerReplay(blocks, start)


class _Captured(Exception):
    """Stops a forward pass once the last replayed block has produced its output."""

    def __init__(self, output: Any):
        self.output = output


class LayerReplay:
    """Run blocks ``0 .. start-1`` once per example batch and replay their output per mask batch.

    Exact when nothing masked lives in those blocks: their output is the same for every mask.
    The replayed output is tiled to the batch of the current forward, whose rows must be the
    captured examples repeated mask after mask (row ``r`` = example ``r % E``), as
    :class:`compattr.query.MaskedModel` lays them out.
    """

    def __init__(self, blocks: nn.ModuleList, start: int):
        self.blocks = blocks
        self.start = start

    def capture(self, run: Callable[[], Any]) -> Any:
        """Run ``run()`` (a forward pass) until block ``start - 1`` and return that block's output."""

        def stop(module, args, output):
            raise _Captured(output)

        handle = self.blocks[self.start - 1].register_forward_hook(stop)
        try:
            run()
        except _Captured as done:
            return done.output
        finally:
            handle.remove()
        raise RuntimeError(f"the forward pass never ran block {self.start - 1}; cannot replay it.")

    @contextmanager
    def replaying(self, captured: Any) -> Iterator[None]:
        """Inside, blocks ``0 .. start-1`` skip their computation and return ``captured`` tiled."""
        n = _first_tensor(captured).shape[0]
        tiled: dict[int, Any] = {}

        def replay(*args, **kwargs):
            batch = _first_tensor((args, kwargs)).shape[0]
            if batch % n:
                raise ValueError(f"cannot replay {n} examples into a batch of {batch} rows.")
            reps = batch // n
            if reps not in tiled:
                tiled[reps] = _tile(captured, reps, n)
            return tiled[reps]

        # Set and restore the instance attribute directly: wrappers such as TransformerLens'
        # bridges forward attribute assignment to the module they wrap.
        blocks = self.blocks[: self.start]
        saved = [block.__dict__.get("forward") for block in blocks]
        try:
            for block in blocks:
                object.__setattr__(block, "forward", replay)
            yield
        finally:
            for block, forward in zip(blocks, saved):
                if forward is None:
                    object.__delattr__(block, "forward")
                else:
                    object.__setattr__(block, "forward", forward)


def _first_tensor(obj: Any) -> torch.Tensor:
    if isinstance(obj, torch.Tensor):
        return obj
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    for item in items:
        try:
            return _first_tensor(item)
        except LookupError:
            continue
    raise LookupError("no tensor found")


def _tile(obj: Any, reps: int, n: int) -> Any:
    """Repeat every tensor of ``obj`` whose first axis has ``n`` rows ``reps`` times along it."""
    if isinstance(obj, torch.Tensor):
        if reps == 1 or obj.ndim == 0 or obj.shape[0] != n:
            return obj
        return obj.repeat(reps, *([1] * (obj.ndim - 1)))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tile(o, reps, n) for o in obj)
    return obj
