"""Rows of a (memory-mapped) embedding matrix, read in bounded chunks.

``artifacts.read_embeddings`` maps ``embeddings.npy``; every page a process touches through
the map stays in its resident set until it is unmapped or released. Reading rows here, a
chunk at a time, releases the map's pages after each chunk (``madvise(MADV_DONTNEED)``: the
file's pages stay in the page cache, they just stop counting for this process), so a stage
holds the rows it asked for, not the whole corpus matrix.
"""
from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

CHUNK = 1 << 13  # rows per read: 12 MB of float32 at dim 384; scattered rows map up to 64 KB of file each


def release(matrix: np.ndarray) -> None:
    """Drop the pages of ``matrix``'s memory map from this process's resident set (no-op for
    an in-memory array)."""
    mapped = getattr(matrix, "_mmap", None)
    if mapped is not None and hasattr(mapped, "madvise"):
        mapped.madvise(mmap.MADV_DONTNEED)


def chunks(matrix: np.ndarray, ids: np.ndarray, chunk: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, rows)`` for consecutive chunks of ``ids``: ``matrix[ids[start:start + len(rows)]]``
    as float32, the map's pages released after each chunk is used."""
    for start in range(0, len(ids), chunk):
        yield start, np.asarray(matrix[ids[start:start + chunk]], dtype=np.float32)
        release(matrix)


def gather(matrix: np.ndarray, ids: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """``matrix[ids]`` as a new float32 array, read chunk by chunk."""
    out = np.empty((len(ids), matrix.shape[1]), dtype=np.float32)
    for start, rows in chunks(matrix, ids, chunk):
        out[start:start + len(rows)] = rows
    return out
