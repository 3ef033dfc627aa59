"""Input checks shared by every public entry point, with messages a user can act on."""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from pathlib import Path
from typing import cast

import numpy as np


def as_masks(X, n: int | None = None, name: str = "X") -> np.ndarray:
    """Return ``X`` as a C-contiguous ``(m, n)`` boolean array, or raise ``ValueError``.

    Accepts NumPy arrays, torch tensors and nested lists whose entries are 0/1 or booleans;
    ``n`` (the columns) must be at least 1.
    """
    if hasattr(X, "detach"):  # torch tensor, possibly on an accelerator
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (m, n) mask matrix, got shape {X.shape}.")
    if n is not None and X.shape[1] != n:
        raise ValueError(f"{name} has {X.shape[1]} columns but there are n={n} features.")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has no columns: there must be at least one feature to mask.")
    if X.dtype != np.bool_:
        if X.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold booleans or 0/1 numbers, got dtype {X.dtype}.")
        bad = (X != 0) & (X != 1)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"{name} must be binary (1 = feature kept, 0 = masked); {name}[{i}, {j}] = {X[i, j]!r}.")
        X = X.astype(bool)
    return np.ascontiguousarray(X)


def as_outputs(y, m: int | None = None, name: str = "y") -> np.ndarray:
    """Return ``y`` as a finite float64 ``(m,)`` vector of real numbers, or raise ``ValueError``.

    Booleans, integers and floats are accepted; strings, complex numbers and other objects
    are refused (they would otherwise be parsed or truncated into different numbers).
    """
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    real = y.dtype.kind in "biuf" or (y.dtype.kind == "O" and all(isinstance(v, numbers.Real) for v in y.ravel()))
    if not real:
        raise ValueError(
            f"{name} must hold real numbers (model outputs), got dtype {y.dtype}"
            + ("" if y.size == 0 else f", e.g. {y.ravel()[0]!r}")
            + "."
        )
    y = y.astype(np.float64)
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


def output_scale(y: np.ndarray) -> float:
    """The power of two ``s`` with ``max |y| / s`` in ``[0.5, 1)`` (1 for an all-zero ``y``).

    Dividing by ``s`` and multiplying back is exact in floating point, so an estimator can
    fit ``y / s`` (safe from overflow for outputs as large as 1e300, and from float32's
    range inside LightGBM) and scale its result back without changing it.
    """
    top = float(np.max(np.abs(y), initial=0.0))
    return math.ldexp(1.0, math.frexp(top)[1]) if top > 0 else 1.0


def output_offset(y: np.ndarray) -> float:
    """The offset an estimator removes from outputs ``y`` before fitting: their midrange
    where they do not straddle zero, else 0 (outputs that do keep their values exactly).

    Outputs far from zero next to their spread (a log-likelihood near -1e4 that moves by
    1e-3) lose their differences in LightGBM's float32 labels; less the midrange, they keep
    them. Constant outputs keep theirs (an estimator answers them exactly).
    """
    if len(y) == 0:
        return 0.0
    low, high = float(np.min(y)), float(np.max(y))
    if low == high or low <= 0.0 <= high:
        return 0.0
    return low + 0.5 * (high - low)


def check_resamples(resamples, confidence: float) -> int:
    """``resamples`` as an int of at least ``2 / (1 - confidence)`` (40 at 95 %), or
    ``ValueError``: with fewer, a percentile interval's tails are single resamples (one
    resample gave a zero-width "interval" that may exclude the estimate)."""
    fewest = math.ceil(2.0 / (1.0 - confidence) - 1e-9)
    resamples = check_int(resamples, "resamples", 1)
    if resamples < fewest:
        raise ValueError(
            f"resamples must be at least {fewest} for {confidence:.0%} percentile intervals, got {resamples}."
        )
    return resamples


def scale_errors(table, columns: tuple[str, ...], scale: float):
    """Multiply the squared errors in ``columns`` of ``table`` (a pandas DataFrame) by
    ``scale²`` in place: errors of outputs fitted over :func:`output_scale`, back in units of
    y² (inf where that overflows); an empty table is left as it is. Returns ``table``."""
    if len(table):
        with np.errstate(over="ignore"):
            for column in columns:
                table[column] = table[column] * scale * scale
    return table


def plan_size(keep, n: int, name: str = "keep") -> int:
    """The number of features a plan keeps, from ``keep``; the one rule for every entry point.

    Parameters
    ----------
    keep : int or float
        An **int** ``1 <= keep <= n`` is a count of features; a **float** in ``(0, 1]`` is a
        fraction of ``n`` (rounded to the nearest count, halves up; ``1.0`` = all). Anything else is
        refused: a float above 1 (``1.5``), zero or a negative number, a count above ``n``,
        a fraction that rounds to no feature kept, a bool or a non-number.
    n : int
        Number of features.
    name : str
        How ``keep`` is called in the error message (``"--keep"`` on the command line).

    Returns
    -------
    int
        The count, in ``[1, n]``.
    """
    rule = (
        f"{name} must be a whole number of features 1..{n} (an int) or a fraction in (0, 1] "
        f"of them (a float; 1.0 keeps all)"
    )
    if isinstance(keep, (bool, np.bool_)) or not isinstance(keep, (numbers.Integral, numbers.Real)):
        raise ValueError(f"{rule}, got {keep!r}.")
    if isinstance(keep, numbers.Integral):
        if not 1 <= int(keep) <= n:
            raise ValueError(f"{rule}, got {keep}.")
        return int(keep)
    fraction = cast(float, keep)  # a real number: compared and multiplied as given
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{rule}, got {keep!r}.")
    # halves up, whatever n (round() takes them to even), on the decimal as written: 0.29 is
    # 0.28999... in binary, and 0.29 x 50 = 14.5 would round down
    size = math.floor(Fraction(str(fraction)) * n + Fraction(1, 2))
    if size < 1:
        raise ValueError(f"{rule}, got {keep!r}: {keep!r} x {n} rounds to no feature kept.")
    return size


def as_value_range(value_range) -> tuple[float, float] | None:
    """``value_range`` as ``(low, high)`` floats (either may be infinite), or None."""
    if value_range is None:
        return None
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"a value range must be a (low, high) pair of numbers, got {value_range!r}.") from None
    if math.isnan(low) or math.isnan(high) or low > high:
        raise ValueError(f"a value range needs low <= high, got {value_range!r}.")
    return low, high


def range_note(values, labels, value_range) -> str | None:
    """A note naming each of ``values`` outside ``value_range``, or None if all lie inside.

    Parameters
    ----------
    values : (k,) array_like of float
        Predicted values.
    labels : sequence of k str
        What each value is (``"ProxySPEX plan"``, a method name).
    value_range : (low, high) or None
        The range the value function can take; None: nothing to check.
    """
    value_range = as_value_range(value_range)
    if value_range is None:
        return None
    low, high = value_range
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    outside = [f"{label} {v:+.4g}" for label, v in zip(labels, values.tolist()) if not low <= v <= high]
    if not outside:
        return None
    bounds = f"[{low:g}, {high:g}]".replace("-inf", "-∞").replace("inf", "∞")
    return (
        f"predicted value outside the value function's range {bounds}: {', '.join(outside)}. "
        "The surrogate extrapolates there; trust measured values, not this prediction."
    )


def check_format(payload_format, payload_version, expected: str, version: int, path, what: str) -> int:
    """Check a saved file's ``format`` and ``version`` fields; return the version.

    Raises ``ValueError`` when ``path`` is not a ``what`` (another format), has no valid
    version, or was written by a newer compattr (a version above ``version``).
    """
    if payload_format != expected:
        raise ValueError(f"{Path(path)} is not a {what} (format={payload_format!r}).")
    try:
        found = int(payload_version)
    except (TypeError, ValueError):
        raise ValueError(f"{Path(path)} has no valid {what} version ({payload_version!r}).") from None
    if found > version:
        raise ValueError(
            f"{Path(path)} was written by a newer compattr ({what} version {found}; this one "
            f"reads up to {version}). Upgrade compattr to read it."
        )
    return found


def check_bool(value, name: str) -> bool:
    """``value`` if it is a bool (a NumPy one too), else ``TypeError``: a string such as
    ``"min"`` or ``"False"`` would read as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def is_int(value) -> bool:
    """Whether ``value`` is an integer (a NumPy one too), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def finite_or_none(value) -> float | None:
    """``value`` as a float, or None when it is None or NaN (kept JSON-safe in a ``fit_info``)."""
    return None if value is None or np.isnan(value) else float(value)


def is_real(value) -> bool:
    """Whether ``value`` is a real number (a NumPy one too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(value, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (no upper bound when ``high`` is None), or
    ValueError; bools and floats are refused, NumPy integers accepted."""
    if not is_int(value) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}.")
    return int(value)


def check_positive(value, name: str) -> float:
    """``value`` as a finite float above 0, or ValueError (bools refused)."""
    if not is_real(value) or not 0 < float(value) < float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def check_auto_or_int(value, name: str, low: int) -> None:
    """ValueError unless ``value`` is "auto" or an integer of at least ``low`` (as
    :func:`check_int` takes one: no bool, no float)."""
    if isinstance(value, str) and value == "auto":
        return
    try:
        check_int(value, name, low)
    except ValueError:
        raise ValueError(f'{name} must be "auto" or an integer >= {low}, got {value!r}.') from None


def feature_names(names, n: int) -> list[str]:
    """``names`` as ``n`` strings, or ``"0"``, ..., ``"n-1"`` where there are none (None)."""
    return [str(i) for i in range(n)] if names is None else [str(name) for name in names]


def check_seed_and_estimator(seed, estimator) -> None:
    """Before any model query: ValueError for a ``seed`` that is not an integer >= 0, or for
    a parameter of ``estimator`` out of its range (its ``check_params()``, where it has one)."""
    check_int(seed, "seed", 0)
    check = getattr(estimator, "check_params", None)
    if callable(check):
        check()


def names_and_groups(names, groups, n: int) -> tuple[list[str], np.ndarray | None]:
    """``names`` as ``n`` strings (:func:`feature_names`) and ``groups`` as an array of ``n``
    labels (None stays None); ValueError where either holds another number of entries."""
    names = feature_names(names, n)
    groups = None if groups is None else np.asarray(groups)
    if len(names) != n or (groups is not None and groups.shape != (n,)):
        shape = None if groups is None else groups.shape
        raise ValueError(f"names and groups need one entry per feature ({n}), got {len(names)} and {shape}.")
    return names, groups


def check_spectrum(sp) -> None:
    """Raise TypeError unless ``sp`` is a :class:`compattr.Spectrum`."""
    # Imported here: the spectrum module imports this one.
    from .spectrum.spectrum import Spectrum

    if not isinstance(sp, Spectrum):
        raise TypeError(f"expected a compattr.Spectrum, got {type(sp).__name__}.")


def as_labels(labels) -> np.ndarray:
    """``labels`` as a 1-D int64 array of class indices (whole numbers >= 0), or ValueError."""
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D sequence of class indices, got shape {labels.shape}.")
    if labels.size and (labels.dtype.kind not in "iuf" or labels.dtype == np.bool_):
        raise ValueError(f"labels must be class indices (whole numbers >= 0), got dtype {labels.dtype}.")
    bad = np.flatnonzero((labels < 0) | (labels != np.round(labels))) if labels.size else np.zeros(0, np.int64)
    if len(bad):
        raise ValueError(
            f"labels must be class indices (whole numbers >= 0); label {labels[bad[0]]!r} of example {bad[0]} is not."
        )
    return labels.astype(np.int64)


def check_labels(labels: np.ndarray, classes: int) -> None:
    """Raise ValueError naming the first of ``labels`` that is not one of ``classes`` classes."""
    bad = np.flatnonzero(labels >= classes)
    if bad.size:
        raise ValueError(
            f"label {int(labels[bad[0]])} of example {bad[0]} is not a class: the model's logits "
            f"have {classes} classes (for a language model, its vocabulary), so labels must lie "
            f"in 0..{classes - 1}."
        )


def jsonable(obj):
    """``obj`` with NumPy scalars and arrays turned into Python numbers and lists (mapping
    keys into strings, tuples into lists), for ``json.dumps``: estimator settings such as a
    ridge grid given as an array."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    return obj
