"""Rows of a (memory-mapped) embedding matrix, read in bounded chunks.

``artifacts.read_embeddings`` maps ``embeddings.npy``; every page a process touches through
the map stays in its resident set until it is unmapped or released. Reading rows here, a
chunk at a time, releases the map's pages after each chunk (``madvise(MADV_DONTNEED)``: the
file's pages stay in the page cache, they just stop counting for this process), so a stage
holds the rows it asked for, not the whole corpus matrix.

``MappedRows`` goes further for the largest split (train): it holds only row ids and reads
rows when indexed (a training batch, a chunk of a pass), so its memory does not grow with
the corpus. ``blocks`` walks either kind of rows (a tensor, or mapped rows) chunk by chunk.
"""
from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import numpy as np
import torch

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


class MappedRows:
    """``matrix[ids]`` as float32 rows, read from ``matrix`` only when indexed: ``rows[index]``
    (an index tensor or array, or a slice) returns a new tensor; ``rows[:]`` all of them.
    Memory is the ids, whatever the number of rows. A few rows (a training batch) of a
    memory-mapped file are read with one ``pread`` each, which maps nothing into the process;
    more go through ``gather``."""

    def __init__(self, matrix: np.ndarray, ids: np.ndarray):
        self.matrix, self.ids = matrix, np.asarray(ids)
        filename = getattr(matrix, "filename", None)
        self.file = open(filename, "rb", buffering=0) if filename and matrix.flags.c_contiguous else None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ids), self.matrix.shape[1]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            index = index.numpy()
        ids = self.ids[index]
        if len(ids) >= CHUNK:
            return torch.from_numpy(gather(self.matrix, ids))
        if self.file is None:
            return torch.from_numpy(np.asarray(self.matrix[ids], dtype=np.float32))
        out = np.empty((len(ids), self.matrix.shape[1]), dtype=self.matrix.dtype)
        row_bytes, fd = out.strides[0], self.file.fileno()
        for i, row in enumerate(ids.tolist()):
            os.preadv(fd, [out[i]], self.matrix.offset + row * row_bytes)
        return torch.from_numpy(out.astype(np.float32, copy=False))


def blocks(rows: torch.Tensor | MappedRows, chunk: int = CHUNK) -> Iterator[torch.Tensor]:
    """Consecutive chunks of ``rows`` (a tensor or ``MappedRows``) as tensors."""
    for start in range(0, len(rows), chunk):
        yield rows[start:start + chunk]
