"""Command-line spellings shared by the ``compattr`` command and the recipes: layer ranges
(``20-29``, ``0,5,10-12``), kept sizes (``30``, ``0.3``, ``30%``) and held-out mask counts."""

from __future__ import annotations

import argparse
from decimal import Decimal

from ..spectrum.metrics import MIN_INTERVAL_MASKS


def held_out_count(text: str) -> int:
    """``--test-masks``: a whole number of held-out masks, at least
    :data:`~compattr.spectrum.metrics.MIN_INTERVAL_MASKS` (the fewest an R² interval is
    given over), checked before any model query."""
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < MIN_INTERVAL_MASKS:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of held-out masks of at least {MIN_INTERVAL_MASKS} (the fewest an R² "
            f"interval is given over), got {text!r}"
        )
    return count


def keep_value(text: str) -> int | float:
    """``--keep`` as Python sees ``keep``: ``"30"`` -> 30 (a count), ``"0.3"`` -> 0.3 and
    ``"30%"`` -> 0.3 (fractions). Whether it fits ``n`` is :func:`plan_size`'s rule."""
    try:
        if text.strip().endswith("%"):
            return float(Decimal(text.strip()[:-1]) / 100)  # 1.4% is 0.014, not 1.4 / 100 in binary
        return int(text) if text.strip().lstrip("+-").isdigit() else float(text)
    except (ValueError, ArithmeticError):  # decimal's InvalidOperation is an ArithmeticError
        raise argparse.ArgumentTypeError(
            f"expected a count of heads (30), a fraction (0.3) or a percentage (30%), got {text!r}"
        ) from None


def parse_layers(text: str) -> list[int]:
    """``"20-29"``, ``"0,5,10-12"`` -> sorted distinct layer indices (an argparse type;
    :func:`format_layers` writes them back)."""
    layers: set[int] = set()
    try:
        for part in text.split(","):
            first, dash, last = part.strip().partition("-")
            lo, hi = int(first), int(last if dash else first)  # "20-" is no range: int("") fails
            if lo > hi:
                raise ValueError
            layers.update(range(lo, hi + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layers like 20-29 or 0,5,10-12, got {text!r}") from None
    return sorted(layers)


def format_layers(layers: list[int]) -> str:
    """Sorted layer indices as :func:`parse_layers` reads them: ``"20-29"`` for a range,
    else ``"0,5,10"``."""
    return (
        f"{layers[0]}-{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else ",".join(map(str, layers))
    )
