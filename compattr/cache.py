"""On-disk store of (mask, output) pairs, so an interrupted query run resumes where it stopped.

A cache is a folder for one model x feature set x value function x inputs:

``manifest.json``
    Format, version, ``n`` and the fingerprint (a mapping of readable strings). Opening a
    cache with another fingerprint or ``n`` raises :class:`CacheMismatchError` naming the part
    that differs.
``masks.bin``
    One bit-packed mask per row, appended as new masks are registered (row = index).
``outputs.bin``
    One float64 output per row, written at ``8 * row``.
``done.bin``
    One byte per row, set to 1 after the row's output is written: the completion map.

Outputs are written before their completion bytes, so a process killed at any point leaves
only completed rows marked. Rows are appended by one process (:meth:`QueryCache.register`);
any number of processes may then write *disjoint* rows (this is how
:func:`compattr.query.run_queries` splits a run across ``accelerate launch`` processes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np

_FORMAT = "compattr.query-cache"
_VERSION = 1


class CacheMismatchError(ValueError):
    """The cache folder was made for another model, feature set, value function or inputs."""


class QueryCache:
    """Append-by-index arrays of masks and outputs with a completion map.

    Parameters
    ----------
    path : str or Path
        The cache folder; created if missing.
    n : int
        Number of features (mask width).
    fingerprint : mapping of str to str
        What the outputs depend on, e.g. ``{"model": ..., "features": ..., "value": ...}``.
    """

    def __init__(self, path: str | os.PathLike, n: int, fingerprint: Mapping[str, str]):
        self.path = Path(path)
        self.n = int(n)
        self.fingerprint = {str(k): str(v) for k, v in fingerprint.items()}
        self._row_bytes = (self.n + 7) // 8
        manifest = self.path / "manifest.json"
        if manifest.exists():
            self._check(json.loads(manifest.read_text()))
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            tmp = manifest.with_suffix(".tmp")
            tmp.write_text(json.dumps(
                {"format": _FORMAT, "version": _VERSION, "n": self.n, "fingerprint": self.fingerprint},
                indent=1,
            ))
            os.replace(tmp, manifest)
        self._fds = {
            name: os.open(self.path / f"{name}.bin", os.O_RDWR | os.O_CREAT, 0o644)
            for name in ("masks", "outputs", "done")
        }
        self.refresh()

    def _check(self, manifest: dict) -> None:
        if manifest.get("format") != _FORMAT or manifest.get("version") != _VERSION:
            raise CacheMismatchError(f"{self.path} is not a compattr query cache (version {_VERSION}).")
        stored = manifest["fingerprint"]
        for key in sorted(set(stored) | set(self.fingerprint)):
            if stored.get(key) != self.fingerprint.get(key):
                raise CacheMismatchError(
                    f"the query cache at {self.path} was made for another {key}:\n"
                    f"  cached: {stored.get(key)}\n  now:    {self.fingerprint.get(key)}\n"
                    "Its outputs do not apply to this run. Use another cache_dir, or delete "
                    "the folder to start over."
                )
        if manifest["n"] != self.n:
            raise CacheMismatchError(
                f"the query cache at {self.path} holds masks over n={manifest['n']} features, "
                f"this run has n={self.n}. Use another cache_dir, or delete the folder to start over."
            )

    def close(self) -> None:
        """Close the files (also done on garbage collection)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self):
        if getattr(self, "_fds", None):
            self.close()

    def refresh(self) -> None:
        """Re-read the registered masks (after another process registered some)."""
        size = os.fstat(self._fds["masks"]).st_size
        rows = size // self._row_bytes
        if rows * self._row_bytes != size:  # a registration cut short: drop the partial row
            os.ftruncate(self._fds["masks"], rows * self._row_bytes)
        packed = np.fromfile(self.path / "masks.bin", np.uint8, rows * self._row_bytes)
        keys = packed.reshape(rows, self._row_bytes)
        self._index = {row.tobytes(): i for i, row in enumerate(keys)}

    def lookup(self, masks: np.ndarray) -> np.ndarray:
        """Row of each mask ``(m, n)`` in the cache, -1 where it was never registered."""
        return np.array([self._index.get(k.tobytes(), -1) for k in np.packbits(masks, axis=1)], np.int64)

    def register(self, masks: np.ndarray) -> np.ndarray:
        """Rows of ``masks`` ``(m, n)`` bool, appending the unseen ones; one process at a time."""
        packed = np.packbits(masks, axis=1)
        rows = np.empty(len(masks), np.int64)
        new = []
        for i, key in enumerate(packed):
            k = key.tobytes()
            if k not in self._index:
                self._index[k] = len(self._index)
                new.append(key)
            rows[i] = self._index[k]
        if new:
            start = (len(self._index) - len(new)) * self._row_bytes
            os.pwrite(self._fds["masks"], np.stack(new).tobytes(), start)
        return rows

    def done(self, rows: np.ndarray) -> np.ndarray:
        """Whether each row's output is stored, ``(len(rows),)`` bool."""
        flags = np.fromfile(self.path / "done.bin", np.uint8)
        rows = np.asarray(rows, np.int64)
        out = np.zeros(len(rows), bool)
        inside = rows < len(flags)
        out[inside] = flags[rows[inside]] == 1
        return out

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Stored outputs of ``rows`` (all must be done)."""
        rows = np.asarray(rows, np.int64)
        if not self.done(rows).all():
            raise KeyError("some rows have no stored output yet.")
        return np.fromfile(self.path / "outputs.bin", np.float64)[rows]

    def write(self, rows: np.ndarray, outputs: np.ndarray) -> None:
        """Store ``outputs`` of ``rows``: outputs first, then their completion bytes."""
        rows = np.asarray(rows, np.int64)
        outputs = np.asarray(outputs, np.float64)
        order = np.argsort(rows, kind="stable")
        rows, outputs = rows[order], outputs[order]
        runs = np.flatnonzero(np.diff(rows) != 1) + 1
        for r, y in zip(np.split(rows, runs), np.split(outputs, runs)):
            os.pwrite(self._fds["outputs"], y.tobytes(), int(r[0]) * 8)
        for r in np.split(rows, runs):
            os.pwrite(self._fds["done"], b"\x01" * len(r), int(r[0]))
