"""Recording a model's activations at hook sites, and patching them back in per batch row.

:func:`record_activations` runs one unmasked forward pass and keeps, per site, what ``read``
makes of its activation (the activation itself, for patching; its token mean, for mean
ablation, so no layer's full activation is held); :func:`token_mean` is that mean;
:func:`patched_rows` picks each batch row's recorded activation when patching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .base import Inputs, call_model, evaluation_mode, input_device, map_inputs, with_positions


def record_activations(
    model: nn.Module, sites: Sequence[nn.Module], inputs: Inputs, read: Callable[[torch.Tensor], Any], *, pre: bool
) -> list[Any]:
    """``read(activation)`` of every site in one unmasked forward pass of ``model`` on ``inputs``.

    Parameters
    ----------
    model : torch.nn.Module
    sites : sequence of modules
        Where to read.
    inputs : tensor or mapping of tensors
    read : callable
        Applied to each site's detached activation as it is produced.
    pre : bool
        Read each site's input (a forward pre-hook) instead of its output (the first element
        of a tuple output).

    Returns
    -------
    list
        One result per site, in order.
    """
    recorded: list[Any] = [None] * len(sites)

    def keep(pos: int, x: Any) -> None:
        recorded[pos] = read((x[0] if isinstance(x, tuple) else x).detach())

    if pre:
        handles = [s.register_forward_pre_hook(lambda m, a, pos=pos: keep(pos, a[0])) for pos, s in enumerate(sites)]
    else:
        handles = [s.register_forward_hook(lambda m, a, out, pos=pos: keep(pos, out)) for pos, s in enumerate(sites)]
    try:
        with torch.no_grad(), evaluation_mode(model):  # not inference_mode: the results may meet autograd later
            device = input_device(model)  # reference and corrupted inputs come from the tokenizer, on the CPU
            inputs = map_inputs(lambda t: t.to(device), inputs)
            call_model(model, with_positions(model, inputs))  # positions as the masked runs have them
    finally:
        for handle in handles:
            handle.remove()
    return recorded


def token_mean(x: torch.Tensor, weights: torch.Tensor | None, tail: int) -> torch.Tensor:
    """Mean of ``x`` ``[E, T, *rest]`` over its attended tokens (``weights`` ``(E, T)``, e.g.
    the attention mask), or without ``weights`` over every axis but the last ``tail``;
    float32 (float64 for float64 activations).

    Raises
    ------
    ValueError
        ``weights`` does not match ``x``'s first two axes (averaging every row would take the
        padding in)."""
    x = x if x.dtype == torch.float64 else x.float()
    if weights is None:
        return x.flatten(0, -tail - 1).mean(0)
    if tuple(weights.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"the reference's attention mask {tuple(weights.shape)} does not match the activation "
            f"{tuple(x.shape)} ([examples, tokens, ...]): its mean would take the padding in."
        )
    w = weights.to(x.device, x.dtype).view(*weights.shape, *([1] * (x.ndim - 2)))
    return (x * w).sum((0, 1)) / w.sum()


def patched_rows(recorded: torch.Tensor, rows: torch.Tensor | None, like: torch.Tensor, what: str) -> torch.Tensor:
    """``recorded[rows]`` (the corrupted run's activations of each batch row's example), checked
    against the activation ``like`` it replaces and cast to its device and dtype.

    Parameters
    ----------
    recorded : (E, ...) tensor
        Activations of the ``E`` corrupted examples.
    rows : (B,) long tensor or None
        The example of each batch row; None: row ``b`` is example ``b``.
    like : (B, ...) tensor
        The clean activation of the batch.
    what : str
        What is patched, for the error messages (``"head outputs"``).
    """
    rows = torch.arange(like.shape[0]) if rows is None else rows
    if len(rows) != like.shape[0] or (len(rows) and not 0 <= int(rows.min()) <= int(rows.max()) < len(recorded)):
        raise ValueError(
            f"patching a batch of {like.shape[0]} rows needs each row's example among the "
            f"{len(recorded)} corrupted ones: pass examples= to masked() (default: row b is example b)."
        )
    alt = recorded[rows.to(recorded.device)]
    if alt.shape != like.shape:
        raise ValueError(
            f"the corrupted {what} have shape {tuple(alt.shape[1:])} per row but the model runs "
            f"{tuple(like.shape[1:])}: patching needs the inputs' token positions as given "
            "(a value that appends answers or options to the inputs cannot be patched)."
        )
    return alt.to(device=like.device, dtype=like.dtype)
