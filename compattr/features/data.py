"""Training examples as features (data attribution).

``f(S)`` is the margin (true-class logit minus the highest other logit, see
:func:`compattr.values.margin`) on a target example of a model trained on the kept subset ``S``
of the training set. Two sources:

* a ``retrain(keep) -> margin`` callable, run once per mask (affordable for small models
  such as logistic regression on sklearn digits; docs/results.md has its time);
* precomputed ``(masks, margins)`` arrays, like the datamodels CIFAR-10 release, through
  :meth:`TrainingSubsets.from_arrays`; only those masks can be evaluated, so fit the proxy on
  ``features.masks`` directly.

:class:`TrainingSubsets` is a plain :class:`~compattr.features.base.SetFunction` (it needs no
model, value or inputs), and a complete example of implementing that protocol.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from .._validation import as_masks, as_outputs
from .base import digest, names_from


class TrainingSubsets:
    """``n`` training examples; ``evaluate`` returns the target margin after training on each subset.

    Parameters
    ----------
    n : int
        Number of training examples.
    retrain : callable ``(keep: (n,) bool array) -> float``, optional
        Trains on ``keep`` and returns the margin. Give ``retrain`` or use :meth:`from_arrays`.
    names, groups : optional
        Labels per example (default ``'x{i}'``) and group labels, e.g. the class of each
        example (default all 0).
    key : str, optional
        Identifies the retraining procedure in the query cache; default the module and
        qualified name of ``retrain`` with a digest of its code and default arguments, when
        it is a plain function whose defaults are plain data (numbers, strings, arrays; the
        data it reads from its module is not part of it). A lambda, a closure, a function
        with another default (a model, say), a partial, a method or a callable object has no
        default (its name does not tell two of them apart): name the procedure and its data
        here to cache its outputs. Change it whenever the procedure or its data change.
    """

    def __init__(
        self,
        n: int,
        retrain: Callable[[np.ndarray], float] | None = None,
        *,
        names: Sequence[str] | None = None,
        groups: Sequence | None = None,
        key: str | None = None,
    ):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}.")
        self.n = int(n)
        self.names = names_from(names, self.n, lambda i: f"x{i}")
        self.groups = np.zeros(self.n, np.int64) if groups is None else np.asarray(groups)
        if self.groups.shape != (self.n,):
            raise ValueError(f"got {self.groups.shape} group labels for {self.n} examples.")
        self.retrain = retrain
        self.key = key if key is not None else _plain_function_name(retrain)
        self.masks: np.ndarray | None = None
        self.margins: np.ndarray | None = None
        self._table: dict[bytes, float] = {}

    @classmethod
    def from_arrays(
        cls,
        masks,
        margins,
        target: int | None = None,
        *,
        names: Sequence[str] | None = None,
        groups: Sequence | None = None,
    ) -> TrainingSubsets:
        """Precomputed margins of models trained on ``masks``.

        Parameters
        ----------
        masks : (m, n) bool array
            Training subsets, True = example kept.
        margins : (m,) or (m, T) float array
            Margin of each trained model (on ``T`` target examples).
        target : int, optional
            Column of ``margins`` to explain when it is 2-D.

        Masks repeated in the table get the mean of their margins; ``features.masks`` and
        ``features.margins`` hold each distinct mask once, in the order of its first row.
        """
        X = as_masks(masks, name="masks")
        Y = np.asarray(margins, np.float64)
        if Y.ndim == 2:
            if target is None:
                raise ValueError(f"margins has {Y.shape[1]} target columns; pass target=<column>.")
            Y = Y[:, target]
        y = as_outputs(Y, len(X), name="margins")
        features = cls(X.shape[1], names=names, groups=groups, key=f"table#{digest(X, y)}")
        keys = np.packbits(X, axis=1)
        unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        means = np.bincount(inverse, weights=y) / np.bincount(inverse)
        features._table = {k.tobytes(): v for k, v in zip(unique, means)}
        order = np.argsort(first)  # the table's order (np.unique sorts: a row split would be biased)
        features.masks, features.margins = X[first[order]], means[order]
        return features

    def __repr__(self) -> str:
        source = f"{len(self._table)} precomputed" if self.retrain is None else "retrain"
        return f"TrainingSubsets(n={self.n}, {source}, key={self.key!r})"

    def fingerprint(self) -> str:
        """Identifies the retraining procedure (``key``) or the precomputed table.

        Raises
        ------
        ValueError
            When ``retrain`` has no ``key`` (see the class's parameters): outputs of two
            such procedures would share a cache.
        """
        if self.key is None:
            raise ValueError(
                f"retrain={self.retrain!r} is not a plain function, so its name does not tell it apart "
                "from another of the same code (a closure per target, say); pass key='...' naming the "
                "procedure and its data to cache its outputs."
            )
        return repr(self)

    def evaluate(self, masks) -> np.ndarray:
        """Margin ``(m,)`` after training on each subset ``(m, n)``."""
        X = as_masks(masks, self.n)
        if self.retrain is not None:
            return np.array([float(self.retrain(keep)) for keep in X])
        if not self._table:
            raise ValueError("TrainingSubsets needs retrain= or precomputed arrays (from_arrays).")
        missing = [i for i, k in enumerate(np.packbits(X, axis=1)) if k.tobytes() not in self._table]
        if missing:
            raise ValueError(
                f"{len(missing)} mask(s) (first: row {missing[0]}) were not precomputed; only "
                "the masks in features.masks can be evaluated."
            )
        return np.array([self._table[k.tobytes()] for k in np.packbits(X, axis=1)])


def _plain_function_name(retrain: Callable | None) -> str | None:
    """The module and qualified name of a plain function with a digest of its code and
    default arguments; None for a lambda, a closure, a function with a default that is not
    plain data (numbers, strings, arrays, tensors and sequences or mappings of them), a
    partial, a method or a callable object, whose names do not tell two of them apart. Two
    modules' ``retrain`` functions are two procedures, and so are two scripts' (both
    ``__main__.retrain``), a function whose body was edited, and one function per target
    that binds its target as a default (``def retrain(keep, target=target)``)."""
    if not (inspect.isfunction(retrain) and retrain.__closure__ is None and retrain.__name__ != "<lambda>"):
        return None
    defaults = (retrain.__defaults__ or (), retrain.__kwdefaults__ or {})
    if not _plain_data(defaults):
        return None
    return f"{retrain.__module__}.{retrain.__qualname__}#{digest(_code_digest(retrain.__code__), defaults)}"


def _plain_data(value) -> bool:
    """Whether :func:`~compattr.features.base.digest` tells ``value`` apart from other values
    by its contents (not by a ``repr`` that may hide them)."""
    if isinstance(value, np.ndarray) and value.dtype == object:  # objects: judged one by one
        return _plain_data(value.tolist())
    if value is None or isinstance(
        value, (bool, int, float, complex, str, bytes, np.ndarray, np.generic, torch.Tensor)
    ):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_plain_data(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain_data(v) for k, v in value.items())
    return False


def _code_digest(code) -> str:
    """A digest of a code object's instructions, constants (nested code included) and names,
    the same in every process."""
    parts = [code.co_code, repr(code.co_names).encode()]
    parts += [_code_digest(c).encode() if inspect.iscode(c) else _constant_text(c).encode() for c in code.co_consts]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def _constant_text(value) -> str:
    """``repr`` of a code constant, with the members of a frozenset (``x in {"a", "b"}``
    compiles to one) in sorted order: their order follows string hashing, which differs from
    one process to the next."""
    if isinstance(value, frozenset):
        return "frozenset({" + ", ".join(sorted(_constant_text(v) for v in value)) + "})"
    if isinstance(value, tuple):
        return "(" + "".join(_constant_text(v) + ", " for v in value) + ")"
    return repr(value)
