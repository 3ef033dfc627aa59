"""Run a set function on a mask matrix: in timed chunks, with a progress bar, cached, resumable.

:func:`run_queries` evaluates any :class:`~compattr.features.base.SetFunction` (a
:class:`~compattr.query.MaskedModel`, or your own) on every distinct mask once, optionally
through a :class:`~compattr.query.cache.QueryCache` under a cache root: each set function's
outputs go to the subfolder named by its fingerprint, every chunk's outputs are stored as soon
as they are computed, and a killed run resumes where it stopped without re-querying. Launched
with ``accelerate launch`` (or any launcher that sets ``WORLD_SIZE``), the processes split the
masks, share the cache and all return the gathered outputs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._validation import as_masks, as_outputs
from ..features.base import SetFunction, n_examples
from .cache import QueryCache, cache_folder


class _Processes:
    """This process's place among those started by ``accelerate launch`` (or alone)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0
        if self.world > 1:
            from accelerate import PartialState

            # An existing state (e.g. the user's Accelerator) is reused; on a machine without
            # CUDA, processes talk over gloo (accelerate needs cpu=True for that).
            state = PartialState(cpu=not torch.cuda.is_available())
            self.rank, self.world = state.process_index, state.num_processes

    def gather(self, obj: Any) -> list:
        """``obj`` of every process, in rank order (a collective: every process must call it)."""
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])


class _ChunkSizer:
    """Masks per ``evaluate`` call of :func:`run_queries`: calls of about ``target`` seconds.

    The first call gets one mask; each later one as many as the last call's rate evaluates in
    ``target`` seconds, but at most twice the last call's masks, so that outputs are stored
    and the progress bar moves every few seconds even for slow models, while fast feature
    sets soon get ``maximum`` masks per call.
    """

    target = 2.0
    clock = staticmethod(time.perf_counter)

    def __init__(self, maximum: int):
        self.maximum = maximum
        self._next = 1

    def size(self, least: int = 1) -> int:
        """Masks for the next call: at least ``least``, at most ``maximum``."""
        return min(self.maximum, max(least, self._next))

    def timed(self, evaluate: Callable[[np.ndarray], Any], masks: np.ndarray) -> Any:
        """``evaluate(masks)``, timed to size the next call."""
        start = self.clock()
        outputs = evaluate(masks)
        seconds = self.clock() - start
        fit = len(masks) * self.target / seconds if seconds > 0 else float("inf")
        self._next = max(1, int(min(fit, 2 * len(masks))))
        return outputs


def _on_accelerator(features: SetFunction) -> bool:
    """Whether ``features`` says it runs off the CPU (a ``device`` attribute, as a MaskedModel has)."""
    device = getattr(features, "device", None)
    return device is not None and torch.device(device).type != "cpu"


def _least_chunk(features: SetFunction) -> int:
    """Masks for two forward passes of a :class:`MaskedModel` on an accelerator at its current
    batch size, so that every call measures a full batch and ``batch_size="auto"`` can grow;
    1 for other set functions."""
    rows, inputs = getattr(features, "batch_size", None), getattr(features, "inputs", None)
    if not _on_accelerator(features) or not isinstance(rows, (int, np.integer)) or inputs is None:
        return 1
    return 2 * max(1, rows // min(n_examples(inputs), rows))


def _open_cache(cache_dir: str | os.PathLike, features: SetFunction) -> QueryCache:
    """The cache of ``features``'s outputs under the root ``cache_dir`` (see :func:`cache_folder`)."""
    fingerprint = getattr(features, "fingerprint", None)
    if fingerprint is None:
        raise TypeError(
            f"cache_dir needs a feature set with a fingerprint() method; {type(features).__name__} has none."
        )
    fp = fingerprint()
    return QueryCache(cache_folder(cache_dir, fp), features.n, {"features": fp} if isinstance(fp, str) else fp)


def run_queries(
    features: SetFunction,
    masks,
    *,
    cache_dir: str | os.PathLike | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Evaluate ``features`` on every row of ``masks``, each distinct mask once.

    Parameters
    ----------
    features : SetFunction
        E.g. a :class:`MaskedModel`, or any object with ``n`` and ``evaluate(masks)``.
    masks : (m, n) bool array
        True = feature kept.
    cache_dir : path, optional
        A cache root, shared by any number of models, set functions, values and inputs:
        the outputs go to ``cache_dir / digest(features.fingerprint())``
        (:func:`~compattr.query.cache.cache_folder`), a
        :class:`~compattr.query.cache.QueryCache`. Outputs found there are not recomputed;
        new ones are stored (durably) after each ``evaluate`` call. A ``cache_dir`` that
        itself holds a cache (its ``manifest.json``) is used as that cache, as before roots,
        and refuses a set function with another fingerprint. Needs
        ``features.fingerprint()``. Several runs (other seeds, other processes) may share one
        root at once; under ``accelerate launch`` it must be on a filesystem that every
        process sees.
    chunk_size : int, optional
        Most masks per ``features.evaluate`` call; default 128, or 1,024 for a set function
        on an accelerator (a :class:`MaskedModel` there grows its batches up to what one call
        holds). Calls start at one mask and grow while they take well under two seconds, so
        that outputs are stored and the progress bar moves every few seconds; a
        :class:`MaskedModel` on an accelerator always gets two forward passes' worth.
    progress : bool
        Show a tqdm progress bar (of the first process's share of the masks).

    Returns
    -------
    (m,) float64 array
        Output of each mask; identical on every process. Under ``accelerate launch``, end
        the script with ``accelerate.PartialState().destroy_process_group()``.

    Raises
    ------
    ValueError
        Masks of the wrong width, or non-finite outputs (nothing non-finite is cached).
    compattr.query.CacheMismatchError
        ``cache_dir`` itself holds a cache made for another model, set function, value
        function or inputs, or (:class:`~compattr.query.CacheCorruptError`) the cache is
        damaged or a symbolic link.
    TypeError
        ``cache_dir`` is given but ``features`` has no ``fingerprint()``.
    OSError
        Outputs could not be stored (e.g. a full disk); those are not marked as stored.
    """
    X = as_masks(masks, features.n, name="masks")
    if chunk_size is None:
        chunk_size = 1024 if _on_accelerator(features) else 128
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    procs = _Processes()
    _, first, inverse = np.unique(np.packbits(X, axis=1), axis=0, return_index=True, return_inverse=True)
    share = np.arange(procs.rank, len(first), procs.world)  # this process's distinct masks
    mine = X[first[share]]
    opened = nullcontext() if cache_dir is None else _open_cache(cache_dir, features)
    with opened as cache:
        values = np.full(len(mine), np.nan) if cache is None else cache.lookup(mine)
        bar = tqdm(
            total=len(mine),
            initial=int(np.isfinite(values).sum()),
            unit="mask",
            desc="queries" if procs.world == 1 else f"queries (process 1 of {procs.world})",
            disable=not progress or procs.rank != 0,
        )
        with bar:
            _evaluate_missing(features, mine, values, cache, chunk_size, bar)
    out = np.empty(len(first))
    for part, part_values in procs.gather((share, values)):
        out[part] = part_values
    return out[inverse.reshape(-1)]


def _evaluate_missing(
    features: SetFunction, masks: np.ndarray, values: np.ndarray, cache: QueryCache | None, chunk_size: int, bar: tqdm
) -> None:
    """Fill the NaN entries of ``values`` ``(m,)`` with the outputs of their ``masks``
    ``(m, n)``, evaluated in timed chunks of at most ``chunk_size``; each chunk is stored in
    ``cache`` (whose stored outputs are taken) before the next one starts."""
    pending = np.flatnonzero(np.isnan(values))
    sizer = _ChunkSizer(chunk_size)
    done = 0
    while done < len(pending):
        chunk = pending[done : done + sizer.size(_least_chunk(features))]
        y = as_outputs(sizer.timed(features.evaluate, masks[chunk]), len(chunk), name="outputs of the feature set")
        values[chunk] = y if cache is None else cache.store(masks[chunk], y)
        done += len(chunk)
        bar.update(len(chunk))
