"""Interaction values in shapiq's format, for shapiq's plots and tools.

:func:`shapiq_values` reads one of shapiq's indices off a spectrum (exactly, by
:mod:`compattr.indices`); :func:`write_shapiq_json` writes them as the JSON file that
``shapiq.InteractionValues.from_json_file`` loads, without importing shapiq;
:func:`to_shapiq` builds the ``InteractionValues`` object itself when shapiq is installed.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..spectrum import Spectrum, indices

#: shapiq's index names and how compattr computes each up to ``max_order``.
SHAPIQ_INDICES: dict[str, Callable[[Spectrum, int], dict[tuple[int, ...], float]]] = {
    "k-SII": lambda sp, order: indices.k_sii(sp, order),
    "STII": lambda sp, order: indices.shapley_taylor(sp, order),
    "FSII": lambda sp, order: indices.faith_shapley(sp, order),
    "FBII": lambda sp, order: indices.faith_banzhaf(sp, order),
    "SII": lambda sp, order: indices.shapley_interaction(sp, max_order=order),
    "BII": lambda sp, order: indices.banzhaf_interaction(sp, max_order=order),
    "Moebius": lambda sp, order: indices.moebius(sp, max_order=order),
}


def shapiq_values(sp: Spectrum, index: str = "k-SII", max_order: int = 2) -> dict[tuple[int, ...], float]:
    """``{sorted feature tuple: value}`` of shapiq's ``index`` up to ``max_order``, the empty
    set included (each of these indices defines it, as shapiq's ``min_order`` 0), also where
    its value is 0.

    Parameters
    ----------
    sp : Spectrum
    index : str
        A key of :data:`SHAPIQ_INDICES` (shapiq's spelling: ``"k-SII"``, ``"STII"``, ...).
    max_order : int
        Largest interaction order.
    """
    if index not in SHAPIQ_INDICES:
        raise ValueError(f"unknown shapiq index {index!r}; choose one of {', '.join(SHAPIQ_INDICES)}.")
    if not isinstance(max_order, (int, np.integer)) or not 1 <= max_order <= sp.n:
        raise ValueError(f"max_order must be an integer in [1, {sp.n}], got {max_order!r}.")
    values = SHAPIQ_INDICES[index](sp, int(max_order))
    values.setdefault((), 0.0)  # every one of these indices defines it; a value of 0 was dropped
    return {tuple(int(i) for i in t): float(v) for t, v in sorted(values.items(), key=lambda tv: (len(tv[0]), tv[0]))}


def _metadata(sp: Spectrum, index: str, max_order: int, values: dict, budget: int | None) -> dict[str, Any]:
    """The ``metadata`` block of shapiq's InteractionValues JSON: ``baseline_value`` is
    ``f(∅)``, but for FBII its own empty-set value (the intercept of the faithful fit), as
    shapiq's FBII values hold it (its force and waterfall plots start there)."""
    baseline = values[()] if index == "FBII" else float(sp.predict(np.zeros((1, sp.n), bool))[0])
    return {
        "n_players": sp.n,
        "index": index,
        "max_order": int(max_order),
        "min_order": 0,
        "estimated": True,
        "estimation_budget": budget,
        "baseline_value": baseline,
    }


def write_shapiq_json(
    sp: Spectrum,
    path: str | os.PathLike,
    index: str = "k-SII",
    max_order: int = 2,
    *,
    budget: int | None = None,
    description: str | None = None,
) -> Path:
    """Write ``index`` up to ``max_order`` as a shapiq ``InteractionValues`` JSON file.

    ``shapiq.InteractionValues.from_json_file(path)`` loads it; shapiq is not needed to write
    it. ``baseline_value`` is the value with every feature masked, ``f(∅)`` (for FBII its
    empty-set value, as shapiq's); ``budget`` (the model calls spent) goes to
    ``estimation_budget``.

    Returns
    -------
    Path
        ``path``, which must end in ``.json`` (shapiq refuses other names).
    """
    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"shapiq reads InteractionValues only from a .json file, got {path.name}.")
    values = shapiq_values(sp, index, max_order)
    payload = {
        "object_name": "InteractionValues",
        "data_type": "interaction_values",
        "version": "compattr",
        "created_from": "compattr",
        "description": description,
        "parameters": {},
        "timestamp": datetime.datetime.now(tz=datetime.timezone.utc).isoformat(),
        "metadata": _metadata(sp, index, max_order, values, budget),
        "data": {",".join(map(str, t)) if t else "Empty": v for t, v in values.items()},
    }
    path.write_text(json.dumps(payload, indent=1))
    return path


def to_shapiq(sp: Spectrum, index: str = "k-SII", max_order: int = 2, *, budget: int | None = None) -> Any:
    """``index`` up to ``max_order`` as a ``shapiq.InteractionValues`` (needs shapiq).

    Raises
    ------
    ImportError
        shapiq is not installed (it pins versions of its own: install it in a separate
        environment and use :func:`write_shapiq_json` there instead).
    """
    try:
        from shapiq import InteractionValues
    except ImportError:
        raise ImportError(
            "to_shapiq needs shapiq (pip install shapiq); without it, write_shapiq_json writes "
            "the file InteractionValues.from_json_file loads."
        ) from None
    values = shapiq_values(sp, index, max_order)
    meta = _metadata(sp, index, max_order, values, budget)
    return InteractionValues(
        values=np.array(list(values.values())),
        index=index,
        max_order=meta["max_order"],
        min_order=meta["min_order"],
        n_players=sp.n,
        interaction_lookup={t: i for i, t in enumerate(values)},
        estimated=True,
        estimation_budget=budget,
        baseline_value=meta["baseline_value"],
    )
