"""Pruning plans: which features to keep, saved and applied; and the warning for impossible predictions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import as_masks, check_format
from ..spectrum import Spectrum

_PLAN_FORMAT = "compattr.pruning_plan"
_PLAN_VERSION = 1


class ValueRangeWarning(UserWarning):
    """A predicted value lies outside the range the value function can take (e.g. a positive
    log-probability): the surrogate extrapolates there, so trust measured values instead."""


@dataclass
class PruningPlan:
    """Which features (e.g. attention heads) to keep, with enough context to apply it later.

    Attributes
    ----------
    kept : (n,) bool array
        ``True`` = kept.
    names : list of str, optional
        A name per feature (e.g. ``heads.names``: ``'L3.H5'``).
    groups : (n,) array, optional
        A group label per feature (e.g. ``heads.groups``: the layer).
    value : float, optional
        The predicted value ``f̂(kept)``.
    """

    kept: np.ndarray
    names: list[str] | None = None
    groups: np.ndarray | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        self.kept = _as_kept(self.kept)
        n = self.kept.size
        if self.names is not None:
            self.names = [str(s) for s in self.names]
            if len(self.names) != n:
                raise ValueError(f"names must have {n} entries, got {len(self.names)}.")
        if self.groups is not None:
            self.groups = np.asarray(self.groups)
            if self.groups.shape != (n,):
                raise ValueError(f"groups must have shape ({n},), got {self.groups.shape}.")
        if self.value is not None:
            self.value = float(self.value)

    @classmethod
    def from_spectrum(cls, sp: Spectrum, kept, names=None, groups=None) -> PruningPlan:
        """A plan for ``kept`` with its predicted value ``sp.predict(kept)``."""
        kept = _as_kept(kept, sp.n)
        return cls(kept, names, groups, float(sp.predict(kept[None])[0]))

    @property
    def n(self) -> int:
        return self.kept.size

    @property
    def removed(self) -> np.ndarray:
        """(n,) bool array: ``True`` = removed."""
        return ~self.kept

    def kept_per_group(self) -> pd.DataFrame:
        """Per group: ``kept`` and ``total`` feature counts (needs ``groups``)."""
        if self.groups is None:
            raise ValueError("this plan has no groups; build it with groups=heads.groups.")
        frame = pd.DataFrame({"group": self.groups, "kept": self.kept})
        return frame.groupby("group")["kept"].agg(kept="sum", total="size")

    def to_json(self, path) -> Path:
        """Write the plan to a JSON file; :meth:`from_json` reads it back."""
        payload = {
            "format": _PLAN_FORMAT,
            "version": _PLAN_VERSION,
            "kept": self.kept.tolist(),
            "names": self.names,
            "groups": None if self.groups is None else self.groups.tolist(),
            "value": self.value,
        }
        path = Path(path)
        path.write_text(json.dumps(payload, indent=1))
        return path

    @classmethod
    def from_json(cls, path) -> PruningPlan:
        """Read a plan written by :meth:`to_json`."""
        payload = json.loads(Path(path).read_text())
        check_format(
            payload.get("format"), payload.get("version"), _PLAN_FORMAT, _PLAN_VERSION, path, "compattr pruning plan"
        )
        return cls(payload["kept"], payload["names"], payload["groups"], payload["value"])

    def apply(self, heads):
        """Context manager that runs the model with only the kept features:
        ``with plan.apply(heads): model(...)`` (calls ``heads.masked(plan.kept)``), after
        :meth:`check_features`."""
        self.check_features(heads)
        return heads.masked(self.kept)

    def check_features(self, features) -> None:
        """Raise ValueError unless ``features`` (heads, MLPs, any masker or set function) are
        those this plan covers: as many, with the same names where both have names (heads of
        other layers, as many as the plan's, would be masked without a word)."""
        n = getattr(features, "n", self.n)
        if n != self.n:
            raise ValueError(f"the plan covers {self.n} features but heads has {n}.")
        names = getattr(features, "names", None)
        if self.names is not None and names is not None and [str(x) for x in names] != list(self.names):
            raise ValueError(
                f"the plan covers the features {_listed(self.names)}, not these {_listed(names)}: "
                "build them as for the explanation the plan came from (the same layers)."
            )


def _listed(names) -> str:
    """The first names of a list, for a message: "L1.H0, L1.H1, ... (8)"."""
    names = [str(x) for x in names]
    return ", ".join(names[:3]) + (f", ... ({len(names)})" if len(names) > 3 else "")


def _as_kept(kept, n: int | None = None) -> np.ndarray:
    """``kept`` as an (n,) bool vector, or ValueError."""
    if hasattr(kept, "detach"):
        kept = kept.detach().cpu().numpy()
    kept = np.asarray(kept)
    if kept.ndim != 1:
        raise ValueError(f"kept must be a 1-D (n,) mask, got shape {kept.shape}.")
    return as_masks(kept[None, :], n, name="kept")[0]
