"""On-disk store of (mask, output) pairs, so an interrupted query run resumes where it stopped.

The ``cache_dir`` of :func:`compattr.explain` and :func:`compattr.query.run_queries` is a
*root* that serves every model, feature set, value function and inputs: the outputs of one
set function go to the subfolder :func:`cache_folder` names after a digest of its
``fingerprint()``, so runs of other models or questions share the root without clashing, and
each resumes from its own subfolder. A root that itself holds a cache's files (its
``manifest.json``: the layout before roots, or a subfolder named directly) is used as that
one cache, as before, and refuses outputs of anything else (:class:`CacheMismatchError`).
Neither a root nor a cache folder may be a symbolic link.

A cache is a folder for one model x set function x value function x inputs, holding two plain
files (the folder and its files must not be symbolic or hard links, so that nothing is ever
written outside it):

``manifest.json``
    Format, version, ``n`` and the fingerprint (a mapping of readable strings). Opening a
    cache with another fingerprint or ``n`` raises :class:`CacheMismatchError` naming the part
    that differs.
``records.bin``
    An append-only log of fixed-size records, one per stored mask: the mask bit-packed
    (``ceil(n / 8)`` bytes), its output (little-endian float64) and the CRC32 of those two
    (little-endian uint32).

Every change happens under an exclusive ``flock`` of ``records.bin``: the manifest is written
once, atomically (a temporary file, fsynced, renamed over), before any record; each append is
checked for its full length and fsynced before the lock is released, and one that fails (a
full disk) is cut back off and raises ``OSError``. So a mask counts as stored only once its
record is durable, and any number of processes (runs with other seeds, the ranks of
``accelerate launch``) may append to one folder at once. A mask already stored is not appended
again: every process reads the first output stored for it.

Reading checks every record's CRC. A partial last record (a process killed while appending) is
dropped with a warning and its masks are recomputed; any other damage (a bad CRC, a mask stored
twice with different outputs, a file that shrank, an unreadable manifest, records without a
manifest, links) raises :class:`CacheCorruptError`. A folder of the older format
(``masks.bin``, ``outputs.bin``, ``done.bin``) is refused with :class:`CacheMismatchError`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import warnings
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import as_masks
from ..features.base import digest

_FORMAT = "compattr.query-cache"
_VERSION = 2
_MANIFEST = "manifest.json"
_MANIFEST_TMP = "manifest.tmp"
_RECORDS = "records.bin"
_OLD_FILES = ("masks.bin", "outputs.bin", "done.bin")
_CRC_BYTES = 4
_DELETE = "Delete the folder to start over (its queries will be recomputed)."


class CacheMismatchError(ValueError):
    """The cache folder was made for another model, feature set, value function or inputs."""


class CacheCorruptError(CacheMismatchError):
    """The cache folder is damaged (or holds links): its outputs cannot be trusted."""


def holds_cache(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` directly holds the files of a query cache (any of them, links
    included: a damaged cache or one of an older format counts, so that it is checked, not
    passed over)."""
    folder = Path(folder)
    return any(os.path.lexists(folder / name) for name in (_MANIFEST, _MANIFEST_TMP, _RECORDS, *_OLD_FILES))


def cache_folder(cache_dir: str | os.PathLike, fingerprint: str | Mapping[str, str]) -> Path:
    """The folder that caches the outputs of a set function with ``fingerprint`` under ``cache_dir``.

    Parameters
    ----------
    cache_dir : str or Path
        A cache root: the folder passed as ``cache_dir`` to :func:`compattr.explain` or
        :func:`compattr.query.run_queries`.
    fingerprint : str or mapping of str to str
        The set function's ``fingerprint()``.

    Returns
    -------
    Path
        ``cache_dir`` itself when it directly holds a cache's files (:func:`holds_cache`: the
        layout before roots; its manifest then decides whether the outputs apply), else
        ``cache_dir / digest(fingerprint)``, 16 hex digits (the folder the word, patch and
        induction-head recipes made by hand before, so their caches are found again).

    Raises
    ------
    CacheCorruptError
        ``cache_dir`` is a symbolic link (nothing is written through a link).
    """
    root = Path(cache_dir)
    if root.is_symlink():
        raise CacheCorruptError(
            f"the query cache folder {root} is a symbolic link; a cache folder must be a plain "
            "folder, so that nothing is written outside it."
        )
    return root if holds_cache(root) else root / digest(fingerprint)


class QueryCache:
    """A folder of (mask, output) records that several processes may append to at once.

    Parameters
    ----------
    path : str or Path
        The cache folder; created if missing.
    n : int
        Number of features (mask width).
    fingerprint : mapping of str to str
        What the outputs depend on, e.g. ``{"model": ..., "features": ..., "value": ...}``.

    Raises
    ------
    CacheMismatchError
        The folder was made for another fingerprint or ``n``, or by an older compattr.
    CacheCorruptError
        The folder is damaged or holds links (see the module docstring).
    """

    def __init__(self, path: str | os.PathLike, n: int, fingerprint: Mapping[str, str]):
        self.path = Path(path)
        self.n = int(n)
        self.fingerprint = {str(k): str(v) for k, v in fingerprint.items()}
        self._dtype = np.dtype([("mask", np.uint8, ((self.n + 7) // 8,)), ("output", "<f8"), ("crc", "<u4")])
        self._outputs: dict[bytes, float] = {}
        self._size = 0  # bytes of records.bin indexed so far, whole records only
        self._dir = self._fd = -1
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._dir = self._open_folder()
            self._refuse_old_format()
            self._fd = self._open(_RECORDS, os.O_RDWR | os.O_CREAT)
            with self._locked():
                self._check(self._manifest())
                self._read_new()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------------- public
    def __len__(self) -> int:
        """Number of distinct masks stored."""
        return len(self._outputs)

    def lookup(self, masks) -> np.ndarray:
        """Stored outputs ``(m,)`` float64 of ``masks`` ``(m, n)`` bool, NaN where none is."""
        keys = np.packbits(as_masks(masks, self.n, name="masks"), axis=1)
        return np.array([self._outputs.get(k.tobytes(), np.nan) for k in keys], np.float64)

    def store(self, masks, outputs) -> np.ndarray:
        """Append the outputs ``(m,)`` of ``masks`` ``(m, n)`` not stored yet; durable on return.

        Returns
        -------
        (m,) float64 array
            The stored output of each mask: the first one any process stored.

        Raises
        ------
        ValueError
            Non-finite outputs, or outputs and masks of different lengths.
        OSError
            The records could not be written in full (e.g. the disk is full); none of them
            counts as stored.
        """
        keys = np.packbits(as_masks(masks, self.n, name="masks"), axis=1)
        outputs = np.asarray(outputs, np.float64)
        if outputs.shape != (len(keys),) or not np.isfinite(outputs).all():
            raise ValueError(f"store needs {len(keys)} finite outputs, got shape {outputs.shape}.")
        with self._locked():
            self._read_new()
            new: dict[bytes, float] = {}
            for key, y in zip(keys, outputs):
                if key.tobytes() not in self._outputs:
                    new.setdefault(key.tobytes(), float(y))
            if new:
                self._append(self._records(new))
                self._read_new()
        return self.lookup(masks)

    def close(self) -> None:
        """Close the files (also done on garbage collection)."""
        for fd in (self._fd, self._dir):
            if fd >= 0:
                os.close(fd)
        self._fd = self._dir = -1

    def __enter__(self) -> QueryCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_dir", -1) >= 0:
            self.close()

    # ----------------------------------------------------------------------- files
    def _open_folder(self) -> int:
        try:
            return os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise CacheCorruptError(
                    f"the query cache folder {self.path} is a symbolic link; a cache folder must be a "
                    "plain folder, so that nothing is written outside it."
                ) from None
            raise

    def _open(self, name: str, flags: int) -> int:
        """Descriptor of the plain file ``name`` in the folder; links and non-files are refused."""
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644, dir_fd=self._dir)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise self._corrupt(f"{name} is a symbolic link; a cache holds plain files only") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise self._corrupt(f"{name} is not a plain file (a hard link, folder or device)")
        return fd

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _write(self, fd: int, data: bytes, offset: int, name: str) -> None:
        """Write ``data`` at ``offset`` of ``fd`` and fsync; on any failure cut the file back
        to ``offset`` and raise (``OSError`` naming the folder for a short or failed write)."""
        try:
            written = os.pwrite(fd, data, offset)
            if written != len(data):
                raise OSError(
                    errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: only {written} of {len(data)} bytes were written"
                )
            os.fsync(fd)
        except OSError as error:
            os.ftruncate(fd, offset)
            raise OSError(
                error.errno,
                f"could not write {self.path / name}: {error.strerror or error}. Nothing "
                "from this write counts as stored; free some space and run again.",
            ) from error
        except BaseException:
            os.ftruncate(fd, offset)
            raise

    # ----------------------------------------------------------------------- manifest
    def _refuse_old_format(self) -> None:
        old = sorted(set(os.listdir(self._dir)) & set(_OLD_FILES))
        if old:
            raise CacheMismatchError(
                f"the query cache at {self.path} is in an older compattr format ({', '.join(old)}, "
                f"without checksums), which this version does not read. {_DELETE}"
            )

    def _manifest(self) -> dict:
        """The folder's manifest, written first when the folder is new; call under the lock."""
        try:
            fd = self._open(_MANIFEST, os.O_RDONLY)
        except FileNotFoundError:
            if os.fstat(self._fd).st_size:
                raise self._corrupt(f"{_RECORDS} holds records but {_MANIFEST} is missing") from None
            return self._write_manifest()
        with os.fdopen(fd, "rb") as file:
            text = file.read()
        try:
            manifest = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise self._corrupt(f"{_MANIFEST} is not valid JSON ({error})") from None
        if not isinstance(manifest, dict):
            raise self._corrupt(f"{_MANIFEST} does not hold a JSON object")
        return manifest

    def _write_manifest(self) -> dict:
        manifest = {"format": _FORMAT, "version": _VERSION, "n": self.n, "fingerprint": self.fingerprint}
        fd = self._open(_MANIFEST_TMP, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            self._write(fd, json.dumps(manifest, indent=1).encode(), 0, _MANIFEST_TMP)
        finally:
            os.close(fd)
        os.replace(_MANIFEST_TMP, _MANIFEST, src_dir_fd=self._dir, dst_dir_fd=self._dir)
        os.fsync(self._dir)
        return manifest

    def _check(self, manifest: dict) -> None:
        if manifest.get("format") != _FORMAT:
            raise CacheMismatchError(
                f"{self.path} is not a compattr query cache (its {_MANIFEST} is another program's)."
            )
        if manifest.get("version") != _VERSION:
            raise CacheMismatchError(
                f"the query cache at {self.path} has format version {manifest.get('version')!r}; this "
                f"compattr reads version {_VERSION} only. {_DELETE}"
            )
        stored, n = manifest.get("fingerprint"), manifest.get("n")
        if not isinstance(stored, dict) or not isinstance(n, int):
            raise self._corrupt(f"{_MANIFEST} lacks its fingerprint or n")
        for key in sorted(set(stored) | set(self.fingerprint)):
            if stored.get(key) != self.fingerprint.get(key):
                raise CacheMismatchError(
                    f"the query cache at {self.path} was made for another {key}:\n"
                    f"  cached: {stored.get(key)}\n  now:    {self.fingerprint.get(key)}\n"
                    "Its outputs do not apply to this run. Use another cache_dir, or delete "
                    "the folder to start over."
                )
        if n != self.n:
            raise CacheMismatchError(
                f"the query cache at {self.path} holds masks over n={n} features, "
                f"this run has n={self.n}. Use another cache_dir, or delete the folder to start over."
            )

    # ----------------------------------------------------------------------- records
    def _records(self, outputs: Mapping[bytes, float]) -> bytes:
        """Records ``(len(outputs),)`` of packed masks and their outputs, checksummed."""
        records = np.zeros(len(outputs), self._dtype)
        records["mask"] = np.frombuffer(b"".join(outputs), np.uint8).reshape(len(outputs), -1)
        records["output"] = list(outputs.values())
        records["crc"] = self._checksums(records.tobytes())
        return records.tobytes()

    def _checksums(self, raw: bytes) -> np.ndarray:
        """CRC32 ``(count,)`` of each record's mask and output bytes (all but its own CRC)."""
        size, view = self._dtype.itemsize, memoryview(raw)
        return np.fromiter(
            (zlib.crc32(view[i : i + size - _CRC_BYTES]) for i in range(0, len(view), size)),
            np.uint32,
            len(view) // size,
        )

    def _append(self, raw: bytes) -> None:
        """Append whole records at the indexed end of the log; call under the lock after
        :meth:`_read_new` (so that the end is the file's end)."""
        self._write(self._fd, raw, self._size, _RECORDS)

    def _read_new(self) -> None:
        """Index the records appended since the last read, by any process; call under the lock."""
        size = os.fstat(self._fd).st_size
        if size < self._size:
            raise self._corrupt(f"{_RECORDS} shrank from {self._size} to {size} bytes while in use")
        whole = size - (size - self._size) % self._dtype.itemsize
        raw = self._read(whole - self._size)
        records = np.frombuffer(raw, self._dtype)
        bad = np.flatnonzero(self._checksums(raw) != records["crc"])
        if bad.size:
            first = self._size // self._dtype.itemsize + int(bad[0])
            raise self._corrupt(f"record {first} of {_RECORDS} fails its checksum ({bad.size} bad in all)")
        for mask, output in zip(records["mask"], records["output"].tolist()):
            if self._outputs.setdefault(mask.tobytes(), output) != output:
                raise self._corrupt(f"{_RECORDS} stores one mask twice with different outputs")
        if whole < size:
            warnings.warn(
                f"dropping a partial record at the end of {self.path / _RECORDS} (a process was "
                "killed while storing it); its mask will be queried again.",
                stacklevel=3,
            )
            os.ftruncate(self._fd, whole)
        self._size = whole

    def _read(self, count: int) -> bytes:
        """``count`` bytes of the log from the indexed end on."""
        parts, done = [], 0
        while done < count:
            part = os.pread(self._fd, count - done, self._size + done)
            if not part:
                raise self._corrupt(f"{_RECORDS} ended while being read")
            parts.append(part)
            done += len(part)
        return b"".join(parts)

    def _corrupt(self, what: str) -> CacheCorruptError:
        return CacheCorruptError(f"the query cache at {self.path} is damaged: {what}. {_DELETE}")
