"""Writing results: markdown tables, and an explanation or plans as the files the CLI and recipes leave.

One writer of each kind, shared by ``compattr explain`` / ``prune`` / ``shapley`` and the
recipes: :func:`markdown_table` (a table or a list of row dicts), :func:`interval_text` (an
estimate with its interval), :func:`write_explanation`
(the saved explanation plus its summary, tables and figures), :func:`write_shapley` (Shapley
values with their intervals) and :func:`write_plans`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import plots


def markdown_table(
    table: pd.DataFrame | Sequence[Mapping], columns: Sequence[str] | None = None, digits: int = 3
) -> str:
    """``table`` as a GitHub markdown table, floats rounded to ``digits``, missing values blank.

    Parameters
    ----------
    table : pandas.DataFrame or sequence of mappings
        The rows. Row dicts keep each cell's own type, so a column of ints with a missing
        value still prints its ints as ints; no row dicts at all give ``""``.
    columns : sequence of str, optional
        For row dicts: the columns, in order (default: the first row's keys).
    digits : int
        Decimals of float cells.
    """
    if not isinstance(table, pd.DataFrame):
        rows = list(table)
        if not rows:
            return ""
        table = pd.DataFrame(rows, columns=list(columns or rows[0].keys()), dtype=object)

    def cell(v) -> str:
        if v is None or (np.ndim(v) == 0 and pd.isna(v)):  # NaN, and pandas' NA of nullable columns
            return ""
        return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v)

    cells = [list(map(str, table.columns))] + [[cell(v) for v in row] for row in table.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def interval_text(value: Sequence[float], signed: bool = False) -> str:
    """An ``(estimate, low, high)`` triple as text: "0.258 [0.140, 0.361]", or with
    ``signed`` (a difference) "+0.012 [-0.050, +0.071]"."""
    style = "+.3f" if signed else ".3f"
    estimate, low, high = value
    return f"{estimate:{style}} [{low:{style}}, {high:{style}}]"


def signed_format(values) -> str:
    """A format spec for a column of signed ``values``: 4 decimals, or as many more as show
    the largest magnitude with 3 significant digits (effects of 3e-5 print as +0.0000300,
    not +0.0000)."""
    largest = float(np.max(np.abs(np.asarray(values, dtype=float)), initial=0.0))
    decimals = 4 if not np.isfinite(largest) or largest == 0 else max(4, 2 - math.floor(math.log10(largest)))
    return f"+.{decimals}f"


def write_explanation(ex, folder: Path, summary: str, settings: dict, *, progress: bool = True) -> None:
    """``ex.save(folder)`` plus summary.txt, interactions.csv (the 50 strongest terms with
    their standard errors, 95 % intervals and ``nonzero``: ``ex.uncertainty()``, no model
    call; ``progress``: its progress bar), settings.json, the plots (heads, energy, circuit)
    and the circuit as an interactive page (circuit.html).

    These files of an earlier run in ``folder`` are deleted first: an interruption leaves
    some of this run's files, never an earlier run's beside them."""
    _clear(folder, _EXPLANATION_FILES)
    ex.save(folder)
    (folder / "summary.txt").write_text(summary + "\n")
    (folder / "settings.json").write_text(json.dumps(settings, indent=1))
    ex.uncertainty(progress=progress).to_frame(50, names=ex.names).to_csv(folder / "interactions.csv", index=False)
    plots.save(ex.plot_heads(), folder / "heads.png")
    plots.save(ex.plot_energy(), folder / "energy.png")
    plots.save(ex.plot_circuit(), folder / "circuit.png")
    plots.save(ex.circuit_html(), folder / "circuit.html")


def write_shapley(sv, folder: Path, summary: str, settings: dict) -> None:
    """A :class:`~compattr.ShapleyExplanation` to ``folder``: summary.txt, shapley.csv (every
    feature by decreasing ``|φ|``, with its interval when there is one), groups.csv (the
    values summed per group, with their intervals, when the features have groups),
    shapley.png (the 20 largest), shapley.npz (everything, the queried pairs included:
    ``ShapleyExplanation.load``) and settings.json.

    These files of an earlier run in ``folder`` are deleted first (groups.csv too where this
    run has no groups), as in :func:`write_explanation`."""
    folder.mkdir(parents=True, exist_ok=True)
    _clear(folder, _SHAPLEY_FILES)
    (folder / "summary.txt").write_text(summary + "\n")
    (folder / "settings.json").write_text(json.dumps(settings, indent=1))
    sv.to_frame().to_csv(folder / "shapley.csv", index=False)
    if sv.groups is not None:
        sv.by_group().to_csv(folder / "groups.csv")
    plots.save(sv.plot(20), folder / "shapley.png")
    sv.save(folder / "shapley.npz")


#: The files :func:`write_explanation` writes beside the explanation's own (``Explanation.save``).
_EXPLANATION_FILES = (
    "summary.txt",
    "settings.json",
    "interactions.csv",
    "heads.png",
    "energy.png",
    "circuit.png",
    "circuit.html",
)

#: The files :func:`write_shapley` writes.
_SHAPLEY_FILES = ("summary.txt", "settings.json", "shapley.csv", "groups.csv", "shapley.png", "shapley.npz")


def _clear(folder: Path, names: Sequence[str]) -> None:
    """Delete the files ``names`` in ``folder`` where they exist."""
    for name in names:
        (folder / name).unlink(missing_ok=True)


def write_plans(plans: dict, folder: Path) -> None:
    """Each plan to ``folder/<name>.json`` (``"Best-of-N"`` -> ``best_of_n.json``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, plan in plans.items():
        plan.to_json(folder / f"{name.lower().replace('-', '_')}.json")
