"""Support rows: the padded-integer form of sets of features, and their ±1 parities.

A support ``T ⊆ [n]`` is stored as a sorted row of feature indices padded at the end with the
sentinel ``n``, so a batch of supports is a rectangular ``(k, D)`` int array (``D`` the largest
order). This module groups equal rows, converts rows to and from a sparse ``(k, n)`` 0/1
matrix, and evaluates the Walsh parities ``(-1)^{|S ∩ T|}`` of masks on them by XOR of
bit-packed mask columns. It is a leaf: the spectrum, the tree extraction, the indices and the
least squares all build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

# Cells (masks × terms) of one evaluation block: bounds its float32 parities to ~64 MB.
_EVAL_CELLS = 1 << 24

# Rows :func:`take_csr_rows` copies at a time: bounds its int64 index runs to a few MB each.
_TAKE_ROWS = 1 << 16


def group_padded_rows(rows: np.ndarray, sentinel: int) -> tuple[np.ndarray, np.ndarray]:
    """Group identical rows of a padded support matrix.

    Parameters
    ----------
    rows : (t, D) int array
        Each row is a sorted support padded at the end with ``sentinel``.
    sentinel : int
        The padding value (``n``), larger than every feature index.

    Returns
    -------
    unique : (u, D) int array
        The distinct rows, in lexicographic order.
    inverse : (t,) int array
        ``unique[inverse] == rows``.
    """
    t, D = rows.shape
    if D == 0:
        return np.zeros((min(t, 1), 0), rows.dtype), np.zeros(t, np.int64)
    representative, inverse = _group_keys(_row_keys(rows, sentinel))
    return rows[representative], inverse


def group_csr_rows(blocks: Sequence[sp.csr_array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group the identical rows of several sparse ``(k_b, n)`` 0/1 matrices as if they were
    stacked, without stacking them: :func:`group_padded_rows` for supports held as CSR
    (a spectrum's), which never holds all their padded rows at once (one block's at a time,
    and a few int64 keys per row).

    Parameters
    ----------
    blocks : sequence of scipy sparse (k_b, n) 0/1 matrices
        Each in canonical format (sorted indices, no duplicates), as a spectrum's supports are.
    n : int
        The number of features.

    Returns
    -------
    representative : (u,) int64 array
        For each distinct row, in lexicographic order of the sorted supports padded with
        ``n``, the index of one of its copies in the stacked blocks (the blocks' rows one
        after another): :func:`take_csr_rows` gathers them.
    inverse : (Σ k_b,) int64 array
        The distinct row of each stacked row.
    """
    width = max((int(np.diff(b.indptr).max()) for b in blocks if b.shape[0]), default=0)
    total = sum(b.shape[0] for b in blocks)
    if width == 0:  # every row empty: one group, or none
        return np.zeros(min(total, 1), np.int64), np.zeros(total, np.int64)
    per_block = [_row_keys(csr_to_padded(b, n), n, width) for b in blocks]
    keys = [np.concatenate([block[j] for block in per_block]) for j in range(len(per_block[0]))]
    return _group_keys(keys)


def sum_padded_terms(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], sentinel: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum the coefficients of identical supports over chunks of terms, taking one chunk at a
    time: of each chunk's padded rows only a few int64 keys per row are kept, and the distinct
    rows are decoded from their keys (:func:`group_padded_rows` of the chunks' rows stacked,
    without ever stacking them: a generator of chunks holds one at a time).

    Parameters
    ----------
    chunks : iterable of ((t_c, D_c) int array, (t_c,) float array)
        Sorted supports padded with ``sentinel`` (D_c at most ``width``) and their coefficients.
    sentinel : int
        The padding value (``n``), larger than every feature index.
    width : int
        The width of the rows returned.

    Returns
    -------
    rows : (u, width) int array
        The distinct supports, padded with ``sentinel``, in lexicographic order (int32 where
        ``sentinel`` fits it).
    coefs : (u,) float64 array
        Each one's summed coefficient.
    """
    keys_per_chunk, coefs_per_chunk = [], []
    for rows, coefs in chunks:
        keys_per_chunk.append(_row_keys(rows, sentinel, width) if width else [np.zeros(len(rows), np.int64)])
        coefs_per_chunk.append(np.asarray(coefs, np.float64))
    dtype = np.int32 if sentinel < np.iinfo(np.int32).max else np.int64
    if not keys_per_chunk or not sum(len(c) for c in coefs_per_chunk):
        return np.zeros((0, width), dtype), np.zeros(0)
    keys = [np.concatenate([chunk[j] for chunk in keys_per_chunk]) for j in range(len(keys_per_chunk[0]))]
    del keys_per_chunk
    representative, inverse = _group_keys(keys)
    summed = np.bincount(inverse, weights=np.concatenate(coefs_per_chunk), minlength=len(representative))
    return _rows_from_keys([key[representative] for key in keys], sentinel, width, dtype), summed


def take_csr_rows(blocks: Sequence[sp.csr_array], rows: np.ndarray) -> sp.csr_array:
    """The rows ``rows`` (indices into the blocks stacked, as :func:`group_csr_rows` gives
    them) of sparse 0/1 matrices with the same number of columns, in that order, as one CSR
    0/1 matrix (int8 ones); only those rows' indices are copied, once."""
    rows = np.asarray(rows, np.int64)
    offsets = np.cumsum([0] + [b.shape[0] for b in blocks])
    block_of = np.searchsorted(offsets, rows, side="right") - 1
    degrees = np.empty(len(rows), np.int64)
    for b, block in enumerate(blocks):
        at = block_of == b
        degrees[at] = np.diff(block.indptr)[rows[at] - offsets[b]]
    indptr = np.r_[0, np.cumsum(degrees)]
    n = blocks[0].shape[1]
    index = _csr_index_dtype(int(indptr[-1]), n)
    indices = np.empty(int(indptr[-1]), index)
    for b, block in enumerate(blocks):
        taken = np.flatnonzero(block_of == b)
        for start in range(0, len(taken), _TAKE_ROWS):
            at = taken[start : start + _TAKE_ROWS]
            lengths = degrees[at]
            # each taken row's run of indices: from its place in the block to its place in the result
            within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            source = np.repeat(block.indptr[rows[at] - offsets[b]], lengths) + within
            indices[np.repeat(indptr[at], lengths) + within] = block.indices[source]
    data = np.ones(len(indices), np.int8)
    return sp.csr_array((data, indices, indptr.astype(index)), shape=(len(rows), n))


def _csr_index_dtype(nnz: int, n: int) -> type[np.int32] | type[np.int64]:
    """The index dtype of a CSR matrix with ``nnz`` entries and ``n`` columns: 32-bit where
    they fit (scipy keeps them then, half the memory of 64-bit ones), else 64-bit."""
    return np.int32 if nnz < np.iinfo(np.int32).max and n < np.iinfo(np.int32).max else np.int64


def _group_keys(keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Group rows by their :func:`_row_keys` ``keys`` (each (t,) int64): the index of one row
    of each group, groups in lexicographic order, and each row's group (t,)."""
    t = len(keys[0])
    # Hash the keys (pandas.factorize, linear time); only the u distinct rows are then sorted.
    codes, groups = pd.factorize(keys[0])
    for key in keys[1:]:
        sub, values = pd.factorize(key)
        codes, groups = pd.factorize(codes * len(values) + sub)  # < t² < 2^63
    count = len(groups)
    representative = np.empty(count, np.int64)
    representative[codes] = np.arange(t)  # any row of a group stands for it: they are equal
    firsts = [key[representative] for key in keys]
    # The rows are distinct: any sort of one key is their order; lexsort ranks several keys.
    order = np.argsort(firsts[0]) if len(keys) == 1 else np.lexsort(firsts[::-1])
    rank = np.empty(count, np.int64)
    rank[order] = np.arange(count)
    return representative[order], rank[codes]


def widen_padded(rows: np.ndarray, width: int, sentinel: int) -> np.ndarray:
    """Padded supports ``rows`` (k, D), D <= ``width``, padded with ``sentinel`` to
    ``(k, width)`` int64."""
    out = np.full((len(rows), width), sentinel, dtype=np.int64)
    out[:, : rows.shape[1]] = rows
    return out


def find_rows(table: np.ndarray, queries: np.ndarray, sentinel: int) -> np.ndarray:
    """Where each padded support of ``queries`` is in ``table``.

    Parameters
    ----------
    table : (t, D1) int array
        Distinct sorted supports padded with ``sentinel``.
    queries : (q, D2) int array
        Sorted supports padded with ``sentinel`` (any width: both are padded to the wider).
    sentinel : int

    Returns
    -------
    (q,) int64 array
        The row of ``table`` equal to each query, or -1 where none is.
    """
    width = max(table.shape[1], queries.shape[1])
    both = np.vstack([widen_padded(table, width, sentinel), widen_padded(queries, width, sentinel)])
    unique, inverse = group_padded_rows(both, sentinel)
    row_of = np.full(len(unique), -1, np.int64)
    row_of[inverse[: len(table)]] = np.arange(len(table))
    return row_of[inverse[len(table) :]]


def row_finder(table: np.ndarray, sentinel: int) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`find_rows` on a fixed ``table`` (t, D) of distinct sorted supports padded with
    ``sentinel``: a function of the queries (q, D') returning the row of ``table`` equal to
    each, or -1. Where a row fits one int64 key (D at most 62 / log2(sentinel + 1)
    features: 9 at n = 100), the table's keys are sorted once and each call is a binary
    search; otherwise each call is :func:`find_rows`."""
    width = table.shape[1]
    keys = _row_keys(table, sentinel)  # none for a table of width 0
    if len(keys) != 1 or not len(table):
        return lambda queries: find_rows(table, queries, sentinel)
    order = np.argsort(keys[0])
    ranked = keys[0][order]

    def find(queries: np.ndarray) -> np.ndarray:
        longer = np.any(queries[:, width:] != sentinel, axis=1)  # more features than any row
        key = _row_keys(widen_padded(queries[:, :width], width, sentinel), sentinel)[0]
        at = np.minimum(np.searchsorted(ranked, key), len(ranked) - 1)
        return np.where((ranked[at] == key) & ~longer, order[at], -1)

    return find


def _row_keys(rows: np.ndarray, sentinel: int, width: int | None = None) -> list[np.ndarray]:
    """The padded rows (t, D) as a few int64 keys whose lexicographic order is theirs; with
    ``width`` (at least D), those of the rows padded with ``sentinel`` to that width."""
    t, D = rows.shape
    width = D if width is None else width
    base = sentinel + 1
    per_key = _columns_per_key(sentinel)
    keys = []
    for start in range(0, width, per_key):
        key = np.zeros(t, np.int64)
        for d in range(start, min(width, start + per_key)):
            key = key * base + (rows[:, d] if d < D else sentinel)
        keys.append(key)
    return keys


def _columns_per_key(sentinel: int) -> int:
    """How many padded columns one int64 key of :func:`_row_keys` holds (below 2^62)."""
    return max(1, int(62 // np.log2(sentinel + 1)))


def _rows_from_keys(keys: list[np.ndarray], sentinel: int, width: int, dtype) -> np.ndarray:
    """The padded rows (t, width), in ``dtype``, whose :func:`_row_keys` are ``keys``."""
    base = sentinel + 1
    per_key = _columns_per_key(sentinel)
    rows = np.empty((len(keys[0]), width), dtype)
    for j, key in enumerate(keys):
        key = key.copy()
        for d in reversed(range(j * per_key, min(width, (j + 1) * per_key))):
            key, rows[:, d] = np.divmod(key, base)
    return rows


def parity_blocks(X: np.ndarray, rows: np.ndarray, dtype=np.float32):
    """Yield ``(lo, hi, parity)``: the ±1 Walsh features ``(m, hi - lo)``, in ``dtype``, of
    the supports ``rows[lo:hi]`` on masks ``X``.

    Each feature's column of ``X`` is packed into bits, 64 masks per word; a support's
    parity ``|S ∩ T| mod 2`` is the XOR of its features' words, so a term costs
    ``|T|·m/64`` word operations instead of a dense ``m × n`` product. Blocks of terms
    bound the memory.

    Parameters
    ----------
    X : (m, n) bool array
    rows : (k, D) int array
        Supports padded with ``n`` (see :func:`group_padded_rows`).
    dtype : numpy dtype
        Of the features (float32 or float64 are exact): the dtype they are multiplied in, as
        NumPy multiplies mixed dtypes without BLAS, several times slower.
    """
    m, n = X.shape
    words = -(-m // 64)
    packed = np.zeros((n + 1, 8 * words), np.uint8)  # row n is the padding: parity 0
    packed[:n, : -(-m // 8)] = np.packbits(np.ascontiguousarray(X.T), axis=1)
    packed = packed.view(np.uint64)
    step = max(1, _EVAL_CELLS * 4 // (np.dtype(dtype).itemsize * max(m, 1)))  # ~64 MB a block
    for lo in range(0, rows.shape[0], step):
        block = rows[lo : lo + step]
        odd = np.zeros((block.shape[0], words), np.uint64)
        for d in range(block.shape[1]):
            odd ^= packed[block[:, d]]
        bits = np.unpackbits(odd.view(np.uint8), axis=1, count=m).view(np.int8)  # (b, m)
        # Walsh value 1 - 2·bit in int8 (SIMD-wide, exact), then one cast.
        yield lo, lo + block.shape[0], (1 - 2 * bits).astype(dtype).T  # (m, b)


def parity_matrix(X: np.ndarray, rows: np.ndarray, dtype=np.float64) -> np.ndarray:
    """The ±1 Walsh features ``χ_T(S) = (-1)^{|S ∩ T|}`` of masks and padded supports.

    Parameters
    ----------
    X : (m, n) bool array
        Masks, ``True`` = kept.
    rows : (k, D) int array
        Supports, each padded with ``n``, in the column order wanted.
    dtype : numpy dtype
        Of the result (float32 is exact too).

    Returns
    -------
    (m, k) array
        Column-major (the transpose of a C-ordered ``(k, m)`` array): each term's column is
        written contiguously.
    """
    out = np.empty((rows.shape[0], X.shape[0]), dtype=dtype)
    for lo, hi, parity in parity_blocks(X, rows, dtype):
        out[lo:hi] = parity.T
    return out.T


def padded_to_csr(rows: np.ndarray, n: int) -> sp.csr_array:
    """Turn sorted, sentinel-padded support rows into a ``(k, n)`` CSR 0/1 matrix."""
    present = rows < n
    indptr = np.r_[0, np.cumsum(present.sum(axis=1))]
    index = _csr_index_dtype(int(indptr[-1]), n)
    data = np.ones(int(indptr[-1]), np.int8)
    return sp.csr_array((data, rows[present].astype(index), indptr.astype(index)), shape=(rows.shape[0], n))


def pad_supports(supports: Sequence[Iterable[int]], n: int) -> np.ndarray:
    """Sort each support (an iterable of feature indices), check its features, and pad to a
    rectangular array. Booleans, non-integral numbers and a feature listed twice are
    refused: a row of indicators such as ``[True, False, True]`` or ``[1, 0, 1, 0]`` would
    otherwise read as the features ``{0, 1}``."""
    sets = []
    for support in supports:
        features = [_feature_index(i) for i in support]
        distinct = sorted(set(features))
        if len(distinct) != len(features):
            raise ValueError(
                f"support {tuple(features)} lists a feature twice: a set lists each feature once "
                "(indicator rows of 0s and 1s go in as a bool array)."
            )
        sets.append(distinct)
    D = max((len(s) for s in sets), default=0)
    rows = np.full((len(sets), D), n, dtype=np.int64)
    for r, s in enumerate(sets):
        if s and (s[0] < 0 or s[-1] >= n):
            raise ValueError(f"support {tuple(s)} names a feature outside 0..{n - 1}.")
        rows[r, : len(s)] = s
    return rows


def _feature_index(value) -> int:
    """``value`` as a feature index: an integer (a NumPy one, or a float with an integral
    value, too), never a bool."""
    if hasattr(value, "detach"):  # a 0-d torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, (bool, np.bool_)) or getattr(value, "dtype", None) == np.bool_:
        raise ValueError(
            "a support lists feature indices, got a bool: give indicator rows as a (k, n) bool "
            "NumPy array or a sparse matrix, not as lists."
        )
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"a support lists feature indices, got {value!r}.") from None
    if index != value:
        raise ValueError(f"a support lists integer feature indices, got {value!r}.")
    return index


def csr_to_padded(S: sp.csr_array, n: int) -> np.ndarray:
    """The rows of a ``(k, n)`` sparse 0/1 matrix as sorted supports padded with ``n``."""
    if not S.has_canonical_format:  # duplicates summed and indices sorted: a spectrum's are
        S = S.copy()
        S.sum_duplicates()
    deg = np.diff(S.indptr)
    D = int(deg.max()) if deg.size else 0
    rows = np.full((S.shape[0], D), n, dtype=S.indices.dtype if n < np.iinfo(S.indices.dtype).max else np.int64)
    # a row's first deg slots, in row-major order, are the CSR's indices in order
    rows[np.arange(D) < deg[:, None]] = S.indices
    return rows
