"""Rows of a (memory-mapped) embedding matrix, read without mapping them into the process.

``artifacts.read_embeddings`` maps ``embeddings.npy``. A page touched through that map counts
in the process's resident set, and how much one touch brings in depends on the machine: the
kernel maps the pages around a fault (64 KB by default), a whole large folio on newer kernels,
and on tmpfs the file's pages are shared memory. Scattered rows then map up to the whole file.
So rows are never read through the map: they are copied the rows of a mapped ``.npy`` file with
``pread`` (one call per run of consecutive rows) into a new array (``gather``), and the process holds the
rows it asked for, on any kernel and file system. The file's pages stay in the page cache,
which belongs to no process.

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

from cubecore.core.errors import CubecoreError

CHUNK = 1 << 13  # rows per read: 12 MB of float32 at dim 384


def release(matrix: np.ndarray) -> None:
    """Drop the pages of ``matrix``'s memory map from this process's resident set (no-op for
    an in-memory array): what reading through the map needs, which ``bench/memory.py`` compares
    with ``gather``."""
    mapped = getattr(matrix, "_mmap", None)
    if mapped is not None and hasattr(mapped, "madvise"):
        mapped.madvise(mmap.MADV_DONTNEED)


def mapped_file(matrix: np.ndarray) -> str | None:
    """The file ``matrix`` maps whole (as ``np.load(mmap_mode=...)`` returns it), else None (an
    in-memory array, or a view of a map, whose offset in the file is not ``matrix.offset``)."""
    if isinstance(matrix.base, mmap.mmap) and matrix.flags.c_contiguous:
        return getattr(matrix, "filename", None)
    return None


def gather(matrix: np.ndarray, ids: np.ndarray, fd: int | None = None) -> np.ndarray:
    """``matrix[ids]`` as a new float32 array. Rows of a mapped file are read with ``pread``
    from ``fd`` (or the file, opened for this call); nothing is mapped into the process."""
    ids = np.asarray(ids)
    filename = mapped_file(matrix)
    if filename is None:
        return np.asarray(matrix[ids], dtype=np.float32)
    if fd is None:
        with open(filename, "rb", buffering=0) as file:
            return gather(matrix, ids, file.fileno())
    out = np.empty((len(ids), matrix.shape[1]), dtype=matrix.dtype)
    row_bytes = out.strides[0]
    starts = np.flatnonzero(np.diff(ids, prepend=-2) != 1).tolist()  # runs of consecutive rows
    for begin, end in zip(starts, starts[1:] + [len(ids)]):
        if os.preadv(fd, [out[begin:end]], matrix.offset + int(ids[begin]) * row_bytes) < (end - begin) * row_bytes:
            raise CubecoreError(f"{filename}: ends before row {int(ids[end - 1])}, which its header promises: "
                                f"the file was truncated (re-run `dvc repro extract`)")
    return out.astype(np.float32, copy=False)


def chunks(matrix: np.ndarray, ids: np.ndarray, chunk: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, rows)`` for consecutive chunks of ``ids``: ``matrix[ids[start:start + len(rows)]]``
    as float32 (``gather``)."""
    mapped = MappedRows(matrix, ids)
    for start in range(0, len(ids), chunk):
        yield start, mapped[start:start + chunk].numpy()


class MappedRows:
    """``matrix[ids]`` as float32 rows, read from ``matrix`` only when indexed: ``rows[index]``
    (an index tensor or array, or a slice) returns a new tensor; ``rows[:]`` all of them.
    Memory is the ids, whatever the number of rows; reads go through ``gather``."""

    def __init__(self, matrix: np.ndarray, ids: np.ndarray):
        self.matrix, self.ids = matrix, np.asarray(ids)
        filename = mapped_file(matrix)
        self.file = open(filename, "rb", buffering=0) if filename else None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ids), self.matrix.shape[1]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            index = index.numpy()
        return torch.from_numpy(gather(self.matrix, self.ids[index], self.file.fileno() if self.file else None))


def blocks(rows: torch.Tensor | MappedRows, chunk: int = CHUNK) -> Iterator[torch.Tensor]:
    """Consecutive chunks of ``rows`` (a tensor or ``MappedRows``) as tensors."""
    for start in range(0, len(rows), chunk):
        yield rows[start:start + chunk]
