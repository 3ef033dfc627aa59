"""Input checks shared by every public entry point, with messages a user can act on."""

from __future__ import annotations

import numpy as np


def as_masks(X, n: int | None = None, name: str = "X") -> np.ndarray:
    """Return ``X`` as a C-contiguous ``(m, n)`` boolean array, or raise ``ValueError``.

    Accepts NumPy arrays, torch tensors and nested lists whose entries are 0/1 or booleans.
    """
    if hasattr(X, "detach"):  # torch tensor, possibly on an accelerator
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (m, n) mask matrix, got shape {X.shape}.")
    if n is not None and X.shape[1] != n:
        raise ValueError(f"{name} has {X.shape[1]} columns but there are n={n} features.")
    if X.dtype != np.bool_:
        if X.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold booleans or 0/1 numbers, got dtype {X.dtype}.")
        bad = (X != 0) & (X != 1)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(
                f"{name} must be binary (1 = feature kept, 0 = masked); "
                f"{name}[{i}, {j}] = {X[i, j]!r}."
            )
        X = X.astype(bool)
    return np.ascontiguousarray(X)


def as_outputs(y, m: int | None = None, name: str = "y") -> np.ndarray:
    """Return ``y`` as a finite float64 ``(m,)`` vector, or raise ``ValueError``."""
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of model outputs, got shape {y.shape}.")
    if m is not None and y.shape[0] != m:
        raise ValueError(f"{name} has {y.shape[0]} values but there are {m} masks.")
    finite = np.isfinite(y)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{name} holds {bad.size} non-finite value(s) (NaN or inf), first at index {bad[0]}: "
            f"{y[bad[0]]!r}. Check the value function for masks that break the model "
            "(e.g. every token masked) or use a log-probability instead of a probability."
        )
    return y
