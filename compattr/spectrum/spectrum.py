"""Sparse Boolean Fourier spectra: the object every compattr result is read from.

A spectrum over ``n`` features is a set of supports ``T ⊆ [n]`` with coefficients ``F(T)``;
it represents ``f(S) = Σ_T F(T) (-1)^{|S ∩ T|}`` where ``S`` is the set of kept features
(mask bit 1). Supports are stored as a sparse ``(k, n)`` 0/1 matrix; evaluation on a batch of
masks XORs bit-packed mask columns (see :func:`compattr.spectrum.supports.parity_matrix`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._validation import as_masks, check_format, is_int, is_real, output_scale
from .supports import (
    csr_to_padded,
    group_csr_rows,
    group_padded_rows,
    pad_supports,
    padded_to_csr,
    parity_blocks,
    parity_matrix,
    take_csr_rows,
)

_FORMAT = "compattr.spectrum"
_VERSION = 1
_WHAT = "compattr spectrum file"


@dataclass(frozen=True)
class EnergySplit:
    """How the non-constant Fourier energy ``Σ_{T≠∅} F(T)²`` divides between feature groups.

    Attributes
    ----------
    linear, within, cross : float
        Fractions of the non-constant energy in order-1 terms, in order ≥ 2 terms whose
        features share one group, and in order ≥ 2 terms spanning several groups.
    total : float
        The non-constant energy itself (``‖f - F(∅)‖² / 2^n``).
    per_group : pandas.DataFrame
        One row per group, columns ``linear``, ``within``, ``cross``: fractions of the total.
        A cross-group term is shared among its groups in proportion to how many of its
        features each holds, so the table sums to ``linear + within + cross``.
    """

    linear: float
    within: float
    cross: float
    total: float
    per_group: pd.DataFrame

    def __getitem__(self, key: str):
        return getattr(self, key)


class Spectrum:
    """A sparse Boolean Fourier spectrum over ``n`` features.

    Parameters
    ----------
    n : int
        Number of features.
    supports : sequence of iterables of int, (k, n) bool array, or scipy sparse (k, n) 0/1 matrix
        The sets ``T``, as lists of feature indices or as indicator rows (True = in ``T``, as
        a mask); repeated sets are merged by adding their coefficients. A (k, n) array of
        0s and 1s that is not bool (``supports.toarray()``, ``masks.astype(int)``) is
        refused: read as indices, each row would be the set {0, 1}.
    coefs : (k,) array_like of float
        The coefficients ``F(T)``.

    Notes
    -----
    Terms are kept in order of decreasing ``|F(T)|`` (ties by support), so ``top(k)`` is a
    prefix. Exact zeros are dropped.
    """

    def __init__(self, n: int, supports, coefs) -> None:
        if not is_int(n) or n < 1:
            raise ValueError(f"a spectrum needs a whole number n >= 1 of features, got {n!r}.")
        n = int(n)
        if hasattr(coefs, "detach"):  # a torch tensor, possibly on an accelerator
            coefs = coefs.detach().cpu().numpy()
        coefs = _real_coefficients(coefs)
        if hasattr(supports, "detach"):  # torch bool rows are indicator rows, as NumPy's are
            supports = supports.detach().cpu().numpy()
        if isinstance(supports, np.ndarray) and supports.ndim == 2:
            if supports.dtype == np.bool_:
                supports = sp.csr_array(supports)  # indicator rows, as masks are: not lists of indices
            else:
                _check_not_indicators(supports, n)
        if sp.issparse(supports):
            rows = csr_to_padded(_indicator_rows(supports, n), n)
        else:
            rows = pad_supports(list(supports), n)
        if rows.shape[0] != coefs.size:
            raise ValueError(f"{rows.shape[0]} supports but {coefs.size} coefficients.")
        if not np.isfinite(coefs).all():
            raise ValueError("spectrum coefficients must be finite (no NaN or inf).")
        unique, inverse = group_padded_rows(rows, n)
        summed = np.bincount(inverse, weights=coefs, minlength=unique.shape[0])
        _check_finite(summed, "the sum of a repeated support's coefficients")
        self._set_terms(n, unique, summed.astype(np.float64, copy=False))  # int64 when there is no term

    @classmethod
    def _from_grouped(cls, n: int, rows: np.ndarray, coefs: np.ndarray) -> Spectrum:
        """A spectrum from distinct padded support ``rows`` and their ``coefs``: no
        regrouping. Terms of equal ``|F(T)|`` keep the order of ``rows`` (lexicographic when
        they come from :func:`group_padded_rows`)."""
        coefs = np.asarray(coefs, dtype=np.float64)
        if not np.isfinite(coefs).all():
            raise ValueError("spectrum coefficients must be finite (no NaN or inf).")
        spectrum = cls.__new__(cls)
        spectrum._set_terms(int(n), rows, coefs)
        return spectrum

    def _set_terms(self, n: int, unique: np.ndarray, summed: np.ndarray) -> None:
        kept = _ranked_nonzero(summed)
        self._assign(n, padded_to_csr(unique[kept], n), summed[kept])

    def _assign(self, n: int, supports: sp.csr_array, coefs: np.ndarray) -> None:
        """Hold distinct, nonzero terms ranked by decreasing ``|F(T)|``; the coefficients
        become read-only."""
        self.n = n
        self.supports: sp.csr_array = supports
        self.coefs: np.ndarray = coefs
        self.coefs.setflags(write=False)

    # ------------------------------------------------------------------ basic views
    def __len__(self) -> int:
        return self.coefs.size

    def __repr__(self) -> str:
        return f"Spectrum(n={self.n}, terms={len(self)}, max_order={self.max_order})"

    @property
    def degrees(self) -> np.ndarray:
        """(k,) int: ``|T|`` of each term."""
        return np.diff(self.supports.indptr)

    @property
    def max_order(self) -> int:
        """Largest ``|T|`` in the spectrum (0 for an empty or constant spectrum)."""
        return int(self.degrees.max()) if len(self) else 0

    @property
    def constant(self) -> float:
        """``F(∅)``: the mean of ``f`` over all ``2^n`` masks."""
        empty = np.flatnonzero(self.degrees == 0)
        return float(self.coefs[empty[0]]) if empty.size else 0.0

    def support_tuples(self, rows=None) -> list[tuple[int, ...]]:
        """The supports as sorted tuples of feature indices, in term order.

        Parameters
        ----------
        rows : array_like of int or bool, optional
            Only these terms: positions in term order (negative ones from the end), or a
            boolean selection of one entry per term (``spectrum.degrees == 2``).
        """
        ip, ix = self.supports.indptr, self.supports.indices.tolist()
        return [tuple(ix[ip[r] : ip[r + 1]]) for r in self._positions(rows)]

    def _positions(self, rows) -> list[int]:
        """The term positions ``rows`` selects (all terms where None): ints, negative ones from
        the end, or a boolean selection of one entry per term; TypeError for anything else."""
        if rows is None:
            return list(range(len(self)))
        picked = np.asarray(rows)
        if picked.size == 0:
            return []
        if picked.dtype != bool and not np.issubdtype(picked.dtype, np.integer):
            raise TypeError(f"rows must be term positions (ints) or a boolean selection, got dtype {picked.dtype}.")
        return np.arange(len(self))[picked].tolist()

    def to_dict(self) -> dict[tuple[int, ...], float]:
        """``{sorted feature tuple: coefficient}``."""
        return dict(zip(self.support_tuples(), self.coefs.tolist()))

    @classmethod
    def mean(cls, spectra: Sequence[Spectrum]) -> Spectrum:
        """The mean of spectra over the same ``n`` features: the spectrum of the mean of
        their functions (of averaged tree ensembles, for example). The mean of one spectrum
        is that spectrum (spectra are not changed in place), without regrouping its terms."""
        return cls._combined(spectra, "mean")

    @classmethod
    def sum(cls, spectra: Sequence[Spectrum]) -> Spectrum:
        """The sum of spectra over the same ``n`` features: the spectrum of the sum of their
        functions (a prior and a correction to it, for example). The sum of one spectrum is
        that spectrum, without regrouping its terms."""
        return cls._combined(spectra, "sum")

    @classmethod
    def _combined(cls, spectra: Sequence[Spectrum], how: str) -> Spectrum:
        """:meth:`mean` or :meth:`sum` (``how``) of ``spectra``: their terms grouped as CSR
        (:func:`~compattr.spectrum.supports.group_csr_rows`), so their supports are never
        stacked whole nor padded at once; the terms as the constructor orders them."""
        if not spectra:
            raise ValueError(f"the {how} needs at least one spectrum.")
        n = spectra[0].n
        if any(s.n != n for s in spectra):
            raise ValueError(f"spectra over different feature counts: {sorted({s.n for s in spectra})}.")
        if len(spectra) == 1:
            return spectra[0]
        blocks = [s.supports for s in spectra]
        representative, inverse = group_csr_rows(blocks, n)
        coefs = np.concatenate([s.coefs for s in spectra])
        if how == "mean":
            coefs = coefs / len(spectra)
        summed = np.bincount(inverse, weights=coefs, minlength=len(representative))
        _check_finite(summed, f"a term of the spectra's {how}")
        kept = _ranked_nonzero(summed)
        spectrum = cls.__new__(cls)
        spectrum._assign(n, take_csr_rows(blocks, representative[kept]), summed[kept])
        return spectrum

    @classmethod
    def from_dict(cls, coefficients: Mapping[Iterable[int], float], n: int) -> Spectrum:
        """Build a spectrum from ``{feature tuple: coefficient}`` (``()`` is the constant)."""
        return cls(n, list(coefficients.keys()), list(coefficients.values()))

    # ------------------------------------------------------------------ evaluation
    def parity_matrix(self, X, dtype=np.float64) -> np.ndarray:
        """The ±1 Walsh features ``χ_T(S) = (-1)^{|S ∩ T|}`` of every mask and term.

        Parameters
        ----------
        X : (m, n) bool array
            Masks, ``True`` = kept.
        dtype : numpy dtype
            Of the result (float32 is exact too).

        Returns
        -------
        (m, k) array
        """
        return parity_matrix(as_masks(X, self.n), csr_to_padded(self.supports, self.n), dtype)

    def predict(self, X) -> np.ndarray:
        """Evaluate the spectrum on masks.

        Parameters
        ----------
        X : (m, n) bool array
            Masks, ``True`` = kept.

        Returns
        -------
        (m,) float64 array
        """
        X = as_masks(X, self.n)
        out = np.zeros(X.shape[0])
        for lo, hi, parity in parity_blocks(X, csr_to_padded(self.supports, self.n), np.float64):
            out += parity @ self.coefs[lo:hi]
        return out

    __call__ = predict

    # ------------------------------------------------------------------ selection
    def top(self, k: int) -> Spectrum:
        """The ``k`` terms of largest ``|F(T)|`` (the constant competes like any term)."""
        if not is_int(k) or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k!r}.")
        if k > len(self):
            raise ValueError(f"k={k} is larger than the spectrum, which has {len(self)} terms.")
        return self._subset(np.arange(k))

    def top_energy(self, fraction: float = 0.95) -> Spectrum:
        """The fewest largest terms holding ``fraction`` of the non-constant energy.

        The constant term is always kept. This is the rule of the public shapiq code.
        """
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}.")
        nonconst = self.degrees > 0
        energy = np.where(nonconst, (self.coefs / output_scale(self.coefs)) ** 2, 0.0)  # no overflow
        total = energy.sum()
        if total == 0.0:
            return self._subset(np.flatnonzero(~nonconst))
        if fraction == 1.0:  # every term: a cumulative share rounds below 1 among tiny terms
            return self
        cum = np.cumsum(energy) / total
        last = int(np.searchsorted(cum, fraction - 1e-12)) + 1
        idx = np.union1d(np.arange(min(last, len(self))), np.flatnonzero(~nonconst))
        return self._subset(idx)

    def restrict_order(self, max_order: int) -> Spectrum:
        """The terms with ``|T| <= max_order``."""
        return self._subset(np.flatnonzero(self.degrees <= max_order))

    def with_coefs(self, coefs) -> Spectrum:
        """Same supports, new coefficients (e.g. after a least-squares refit): ``coefs`` (k,)
        in the order of ``supports``. The supports are already distinct, so they are only
        re-ranked (terms of equal ``|F(T)|`` by support), not regrouped."""
        coefs = _real_coefficients(coefs)
        if coefs.size != len(self):
            raise ValueError(f"{len(self)} supports but {coefs.size} coefficients.")
        rows = csr_to_padded(self.supports, self.n)
        # equal |F(T)| ranked by support, as the constructor does (no column: the constant alone)
        by_support = np.lexsort(rows.T[::-1]) if rows.shape[1] else np.arange(len(rows))
        return Spectrum._from_grouped(self.n, rows[by_support], coefs[by_support])

    def scaled(self, factor: float) -> Spectrum:
        """Every coefficient times ``factor``: the spectrum of ``factor · f``. Scaling keeps
        the terms' order by ``|F(T)|``, so the terms are neither regrouped nor re-ranked (the
        same spectrum as ``with_coefs(coefs * factor)``, without its sort); coefficients that
        become exactly 0 are dropped.

        Raises
        ------
        ValueError
            If ``factor`` is not finite, or a coefficient overflows.
        """
        factor = float(factor)
        if not np.isfinite(factor):
            raise ValueError(f"factor must be finite, got {factor}.")
        with np.errstate(over="ignore"):  # refused below, with the factor named
            coefs = self.coefs * factor
        if not np.isfinite(coefs).all():
            raise ValueError(f"scaling by {factor:g} overflows a coefficient.")
        kept = np.flatnonzero(coefs != 0.0)
        spectrum = Spectrum.__new__(Spectrum)
        spectrum._assign(self.n, self.supports[kept], coefs[kept])
        return spectrum

    def odd_part(self) -> Spectrum:
        """The terms of odd order: the spectrum of ``(f(S) - f(Sᶜ)) / 2``, since
        ``χ_T(Sᶜ) = (-1)^{|T|} χ_T(S)``; the Shapley values read only these terms."""
        return self._subset(np.flatnonzero(self.degrees % 2 == 1))

    def _subset(self, idx: np.ndarray) -> Spectrum:
        """The terms at increasing positions ``idx``: distinct, nonzero and in order already,
        so nothing is regrouped or re-ranked."""
        spectrum = Spectrum.__new__(Spectrum)
        spectrum._assign(self.n, self.supports[idx], self.coefs[idx])
        return spectrum

    # ------------------------------------------------------------------ summaries
    def energy(self, groups) -> EnergySplit:
        """Split the non-constant energy into linear / within-group / cross-group parts.

        Parameters
        ----------
        groups : (n,) array_like
            A label per feature (for attention heads: the layer).
        """
        groups = np.asarray(groups)
        if groups.shape != (self.n,):
            raise ValueError(f"groups must have shape ({self.n},), got {groups.shape}.")
        labels, gid = np.unique(groups, return_inverse=True)
        G = sp.csr_array((np.ones(self.n), (np.arange(self.n), gid)), shape=(self.n, labels.size))
        counts = (self.supports.astype(np.float64) @ G).toarray()  # (k, groups)
        deg = self.degrees
        scale = output_scale(self.coefs)  # squares of |F| above 1e154 would overflow
        e = (self.coefs / scale) ** 2
        scaled_total = float(e[deg > 0].sum())  # in units of scale²
        with np.errstate(over="ignore"):  # an energy beyond float range is inf
            total = float(scaled_total * np.square(np.float64(scale)))
        n_groups = (counts > 0).sum(axis=1)
        kinds = {
            "linear": deg == 1,
            "within": (deg >= 2) & (n_groups == 1),
            "cross": (deg >= 2) & (n_groups >= 2),
        }
        denom = scaled_total or 1.0  # the fractions, in the scaled units
        share = counts / np.maximum(deg, 1)[:, None]  # fraction of each term per group
        per_group = pd.DataFrame(
            {kind: (e * sel) @ share / denom for kind, sel in kinds.items()},
            index=pd.Index(labels, name="group"),
        )
        fractions = {kind: float(e[sel].sum() / denom) for kind, sel in kinds.items()}
        return EnergySplit(total=total, per_group=per_group, **fractions)

    def to_frame(self, k: int | None = 20, names: Sequence[str] | None = None) -> pd.DataFrame:
        """The ``k`` strongest terms as a table (all terms when ``k`` is None).

        Columns: ``features`` (tuple of indices), ``names`` (joined feature names),
        ``order`` and ``coef``.
        """
        sub = self if k is None else self.top(min(k, len(self)))
        tuples = sub.support_tuples()
        return pd.DataFrame(
            {
                "features": tuples,
                "names": term_names(tuples, names, self.n),
                "order": sub.degrees,
                "coef": sub.coefs,
            }
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        """Write to ``.json`` (readable) or ``.npz`` (compact); both round-trip exactly."""
        path = Path(path)
        if path.suffix == ".json":
            payload = {
                "format": _FORMAT,
                "version": _VERSION,
                "n": self.n,
                "supports": [list(t) for t in self.support_tuples()],
                "coefs": self.coefs.tolist(),  # repr of float64 round-trips exactly
            }
            path.write_text(json.dumps(payload))
        elif path.suffix == ".npz":
            np.savez_compressed(
                path,
                format=_FORMAT,
                version=_VERSION,
                n=self.n,
                indptr=self.supports.indptr,
                indices=self.supports.indices,
                coefs=self.coefs,
            )
        else:
            raise ValueError(f"unknown spectrum file type {path.suffix!r}: use .json or .npz.")
        return path

    @classmethod
    def load(cls, path) -> Spectrum:
        """Read a spectrum written by :meth:`save`."""
        path = Path(path)
        if path.suffix == ".json":
            payload = json.loads(path.read_text())
            check_format(payload.get("format"), payload.get("version"), _FORMAT, _VERSION, path, _WHAT)
            return cls(payload["n"], payload["supports"], payload["coefs"])
        if path.suffix == ".npz":
            with np.load(path) as z:
                fmt = str(z["format"]) if "format" in z else None
                check_format(fmt, z.get("version"), _FORMAT, _VERSION, path, _WHAT)
                n = int(z["n"])
                S = sp.csr_array(
                    (np.ones(z["indices"].size, np.int8), z["indices"], z["indptr"]),
                    shape=(z["indptr"].size - 1, n),
                )
                return cls(n, S, z["coefs"])
        raise ValueError(f"unknown spectrum file type {path.suffix!r}: use .json or .npz.")

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Spectrum)
            and self.n == other.n
            and len(self) == len(other)
            and self.to_dict() == other.to_dict()
        )

    __hash__ = None  # type: ignore[assignment]  # unhashable: equality is by value

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_trees(
        cls,
        model,
        n: int,
        num_iteration: int | None = None,
        max_order: int | None = None,
        max_terms: int = 50_000_000,
    ) -> Spectrum:
        """The exact Fourier spectrum of a fitted LightGBM model on binary inputs.

        Parameters
        ----------
        model : lightgbm.Booster, fitted lightgbm.LGBMModel, or str
            A single-output model trained on 0/1 features (any objective: the spectrum is
            that of the score before the objective's link function; for a random forest,
            ``boosting="rf"``, the mean of its trees, where LightGBM's ``raw_score=True`` sums
            them), or its LightGBM model text (``Booster.model_to_string()``, or a saved model
            file's contents).
        n : int
            Number of features (the model's feature count must not exceed it).
        num_iteration : int, optional
            Use the first ``num_iteration`` trees; default: as ``booster.predict`` does (the
            best iteration when early stopping set one, else all trees; all trees of model
            text).
        max_order : int, optional
            Drop terms of order above this. Exact when None (the default).
        max_terms : int
            Refuse, with a clear error, an extraction that would expand to more raw terms
            (deep trees expand to ``2^depth`` terms per leaf); lower the depth or set
            ``max_order``.
        """
        # Imported here: the extraction belongs to the proxy package, which imports this module.
        from ..proxy.trees import extract_padded_terms

        rows, values = extract_padded_terms(model, n, num_iteration, max_order, max_terms)
        return cls._from_grouped(n, rows, values)


def _real_coefficients(coefs) -> np.ndarray:
    """``coefs`` as a flat float64 array: real numbers in one dimension (or a scalar) only;
    complex numbers (whose imaginary part NumPy would drop), strings and 2-D arrays refused."""
    array = np.asarray(coefs)
    if array.dtype.kind not in "biuf" and not (array.dtype == object and all(is_real(c) for c in array.reshape(-1))):
        raise ValueError(f"coefficients must be real numbers, got an array of {array.dtype}.")
    if array.ndim > 1:
        raise ValueError(f"coefficients must be one per support, a 1-D array; got shape {array.shape}.")
    return array.astype(np.float64).reshape(-1)


def term_names(terms: Sequence[tuple[int, ...]], names: Sequence | None, n: int) -> list[str]:
    """Each term (a tuple of feature indices) as its features' names joined by " × " ("∅"
    for the empty set), or as ``str(term)`` without ``names``. ``names`` is read by position
    (a pandas Series by its values, not its index labels) and must have ``n`` entries."""
    if names is None:
        return [str(t) for t in terms]
    names = [str(name) for name in names]
    if len(names) != n:
        raise ValueError(f"names must have {n} entries, got {len(names)}.")
    return [" × ".join(names[i] for i in t) or "∅" for t in terms]


def _check_not_indicators(supports: np.ndarray, n: int) -> None:
    """ValueError where a non-bool 2-D array of supports has ``n`` columns of 0s and 1s:
    indicator rows given in another dtype, which :class:`Spectrum` would read as indices."""
    if supports.shape[1] == n and supports.size and np.isin(supports, (0, 1)).all():
        raise ValueError(
            f"supports is a {supports.shape} array of 0s and 1s ({supports.dtype}): pass indicator rows "
            "as bool (supports.astype(bool)) or the sets as lists of feature indices."
        )


def _indicator_rows(supports, n: int) -> sp.csr_array:
    """A sparse ``(k, n)`` support matrix as a CSR of 1s at each support's features: its
    stored zeros dropped, any other stored value refused (the caller's matrix unchanged)."""
    S = sp.csr_array(supports)
    if S.shape[1] != n:
        raise ValueError(f"supports have {S.shape[1]} columns, expected n={n}.")
    if ((S.data != 0) & (S.data != 1)).any():
        raise ValueError("a sparse support matrix must hold 0/1 (1 = the feature is in the support).")
    if S.has_canonical_format and S.data.all():  # a spectrum's own: read as it is
        return S
    S = S.copy()
    S.eliminate_zeros()
    S.sum_duplicates()  # a feature stored twice is in the support once
    S.data[:] = 1
    return S


def _check_finite(coefs: np.ndarray, what: str) -> None:
    """ValueError when ``coefs`` (sums of finite coefficients) overflowed."""
    if not np.isfinite(coefs).all():
        raise ValueError(f"{what} is beyond float range (a sum of coefficients overflowed).")


def _ranked_nonzero(coefs: np.ndarray) -> np.ndarray:
    """The positions of the nonzero ``coefs`` by decreasing magnitude (ties in their order)."""
    kept = np.flatnonzero(coefs != 0.0)
    return kept[np.argsort(-np.abs(coefs[kept]), kind="stable")]
