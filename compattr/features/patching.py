"""Activation patching's one shared step: the recorded corrupted activations of each batch row."""

from __future__ import annotations

import torch


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
