"""A content-addressed cache of teacher embeddings that outlives DVC stage outputs.

Layout: ``<cache_dir>/<namespace>/<shard>.keys.npy`` (uint8 ``[n, 16]`` BLAKE2b digests of
the texts) beside ``<shard>.emb.npy`` (float32 ``[n, dim]``). The namespace hashes the
teacher fingerprint, pooling, max_length and normalisation, so a key is just the text.
Shards are written atomically, embeddings first and keys last, so a shard is either whole
or invisible; an interrupted extraction keeps every shard it finished.
"""
from __future__ import annotations

import hashlib
import logging
import time
import uuid
from pathlib import Path

import numpy as np

from cubecore.artifacts import atomic_path

log = logging.getLogger(__name__)

KEY_BYTES = 16


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


class EmbeddingCache:
    def __init__(self, root: str | Path, namespace: str):
        self.directory = Path(root) / namespace
        self.directory.mkdir(parents=True, exist_ok=True)
        self._index: dict[bytes, tuple[Path, int]] = {}
        for keys_file in sorted(self.directory.glob("*.keys.npy")):
            emb_file = keys_file.with_name(keys_file.name.replace(".keys.npy", ".emb.npy"))
            if not emb_file.exists():
                continue
            keys = np.load(keys_file, allow_pickle=False)
            for row, key in enumerate(keys):
                self._index[key.tobytes()] = (emb_file, row)

    def __len__(self) -> int:
        return len(self._index)

    def get(self, texts: list[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Cached rows for ``texts``: ``(matrix [n, dim], found mask [n])``."""
        matrix = np.zeros((len(texts), dim), dtype=np.float32)
        found = np.zeros(len(texts), dtype=bool)
        by_file: dict[Path, list[tuple[int, int]]] = {}
        for i, text in enumerate(texts):
            hit = self._index.get(text_key(text))
            if hit is not None:
                by_file.setdefault(hit[0], []).append((i, hit[1]))
        for emb_file, rows in by_file.items():
            stored = np.load(emb_file, mmap_mode="r", allow_pickle=False)
            if stored.shape[1] != dim:
                continue
            targets, sources = map(np.array, zip(*rows))
            matrix[targets] = stored[sources]
            found[targets] = True
        return matrix, found

    def put(self, texts: list[str], matrix: np.ndarray) -> None:
        """Store one shard for ``texts`` (rows of ``matrix``)."""
        if not texts:
            return
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex}"
        emb_file = self.directory / f"{name}.emb.npy"
        keys = np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(-1, KEY_BYTES)
        with atomic_path(emb_file) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)
        with atomic_path(self.directory / f"{name}.keys.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, keys, allow_pickle=False)
        for row, key in enumerate(keys):
            self._index[key.tobytes()] = (emb_file, row)
