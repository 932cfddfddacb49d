"""A content-addressed cache of teacher embeddings that outlives DVC stage outputs.

Layout: ``<cache_dir>/<namespace>/<shard>.keys.npy`` (uint8 ``[n, 16]`` BLAKE2b digests of
the texts) beside ``<shard>.emb.npy`` (float32 ``[n, dim]``) and ``<shard>.sum.json`` (the
BLAKE2b of both files, the row count and the dimension). The namespace hashes the teacher
fingerprint, pooling, max_length, normalisation and precision, so a key is just the text.

A shard is written embeddings first, checksums next, keys last, each atomically (temp file +
rename): the keys file is what makes a shard visible, so a reader sees whole, checksummed
shards only and a writer killed at any point leaves at most invisible files behind (deleted by
the next cache opened an hour later). Shard names are a timestamp and a random UUID, so any
number of processes (or machines sharing the directory) can write into one namespace at once
without a lock; a text embedded by two of them sits in two shards, and every reader takes the
shard whose name sorts first. Every shard is verified when first read: a wrong checksum, a
truncated or garbled file, a wrong shape or a non-finite value is reported in one warning
naming the file, the shard is moved to ``damaged/`` and its texts are embedded again. So is a
shard without its checksum file (deleted, or written before checksums existed): finite values of
the right shape can still be wrong, and a shard that cannot be verified is never trusted.

``fidelity.json`` keeps the worst bf16-vs-fp32 cosine measured for the namespace, so a run
served entirely from the cache still reports it; its read-compare-write holds an
``fcntl.flock`` on ``fidelity.lock``, so concurrent writers never lose the worse figure.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import time
import uuid
from pathlib import Path

import numpy as np

from cubecore.core.artifacts import atomic_path, write_json

log = logging.getLogger(__name__)

KEY_BYTES = 16
FIDELITY_KEY = "bf16_worst_cosine_to_fp32"
DEBRIS_AGE = 3600  # seconds before an interrupted writer's leftovers are deleted


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


def checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


class DamagedShard(Exception):
    """A shard that fails verification (the message says how)."""


def _load_array(data: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise DamagedShard(f"unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


class Shard:
    """One shard's three files."""

    def __init__(self, keys_file: Path):
        self.name = keys_file.name.removesuffix(".keys.npy")
        self.keys_file = keys_file
        self.emb_file = keys_file.with_name(f"{self.name}.emb.npy")
        self.sum_file = keys_file.with_name(f"{self.name}.sum.json")
        self.sums: dict | None = None
        self.rows = 0

    def files(self) -> list[Path]:
        return [self.emb_file, self.keys_file, self.sum_file]

    def read_keys(self) -> np.ndarray:
        """The keys, checked against the recorded checksums (a shard without them is refused:
        nothing would tell its vectors from damaged ones)."""
        try:
            sums = json.loads(self.sum_file.read_text(encoding="utf-8"))
            self.sums = {"keys": str(sums["keys"]), "emb": str(sums["emb"]),
                         "rows": int(sums["rows"]), "dim": int(sums["dim"])}
        except FileNotFoundError:
            raise DamagedShard(f"its checksum file {self.sum_file.name} is missing, so it cannot be verified") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise DamagedShard(f"unreadable checksum file {self.sum_file.name} ({type(exc).__name__})") from None
        data = self.keys_file.read_bytes()
        if checksum(data) != self.sums["keys"]:
            raise DamagedShard("keys checksum mismatch")
        keys = _load_array(data)
        if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or keys.dtype != np.uint8:
            raise DamagedShard(f"keys have shape {keys.shape} {keys.dtype}, expected [n, {KEY_BYTES}] uint8")
        if len(keys) != self.sums["rows"]:
            raise DamagedShard(f"{len(keys)} keys, checksum file says {self.sums['rows']}")
        self.rows = len(keys)
        return keys

    def embeddings(self) -> np.ndarray:
        """The whole embedding matrix, verified against the checksums ``read_keys`` read."""
        if self.sums is None:
            raise DamagedShard("its keys were never verified")
        try:
            data = self.emb_file.read_bytes()
        except FileNotFoundError:
            raise DamagedShard(f"{self.emb_file.name} is missing") from None
        if checksum(data) != self.sums["emb"]:
            raise DamagedShard("embeddings checksum mismatch")
        matrix = _load_array(data)
        rows, dim = self.rows, self.sums["dim"]
        if matrix.ndim != 2 or matrix.shape != (rows, dim) or matrix.dtype != np.float32:
            raise DamagedShard(f"embeddings have shape {matrix.shape} {matrix.dtype}, expected [{rows}, {dim}] float32")
        if not np.isfinite(matrix).all():
            raise DamagedShard(f"{int((~np.isfinite(matrix)).any(1).sum())} rows hold NaN or infinite values")
        return matrix

    def write_sums(self, emb_bytes: bytes, keys_bytes: bytes, shape: tuple[int, int]) -> None:
        self.sums = {"emb": checksum(emb_bytes), "keys": checksum(keys_bytes), "rows": shape[0], "dim": shape[1]}
        write_json(self.sum_file, self.sums)


class EmbeddingCache:
    def __init__(self, root: str | Path, namespace: str):
        self.directory = Path(root) / namespace
        self.directory.mkdir(parents=True, exist_ok=True)
        self._index: dict[bytes, tuple[Shard, int]] = {}
        self._seen: set[str] = set()
        self._sweep()
        self.refresh()

    def __len__(self) -> int:
        return len(self._index)

    def _sweep(self) -> None:
        """Delete what killed writers left behind: temp files, and shard files whose keys never
        came, once older than ``DEBRIS_AGE`` (a live writer needs milliseconds between them)."""
        old = time.time() - DEBRIS_AGE
        removed = 0
        for path in self.directory.iterdir():
            name = path.name
            temp = name.startswith(".") and name.endswith(".tmp")
            keyless = name.endswith((".emb.npy", ".sum.json")) and \
                not (self.directory / f"{name.split('.')[0]}.keys.npy").exists()
            try:
                if (temp or keyless) and path.stat().st_mtime < old:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass  # another process swept it first
        if removed:
            log.info("embedding cache: removed %d files left by interrupted writers in %s", removed, self.directory)

    def refresh(self) -> None:
        """Index the shards written since this instance last looked (by other processes too)."""
        for keys_file in sorted(self.directory.glob("*.keys.npy")):
            shard = Shard(keys_file)
            if shard.name in self._seen:
                continue
            self._seen.add(shard.name)
            try:
                keys = shard.read_keys()
            except (DamagedShard, OSError) as exc:
                self._drop(shard, exc)
                continue
            self._add(shard, keys)

    def _add(self, shard: Shard, keys: np.ndarray) -> None:
        """Index ``keys``; a key already held by a shard whose name sorts first stays there, so
        every reader picks the same copy of a text embedded twice, whatever order it saw them in."""
        for row, key in enumerate(keys):
            held = self._index.setdefault(key.tobytes(), (shard, row))
            if held[0].name > shard.name:
                self._index[key.tobytes()] = (shard, row)

    def _drop(self, shard: Shard, reason: Exception) -> None:
        """Forget a damaged shard and move its files to ``damaged/`` (one warning)."""
        aside = self.directory / "damaged"
        aside.mkdir(exist_ok=True)
        for path in shard.files():
            try:
                os.replace(path, aside / path.name)
            except FileNotFoundError:
                pass  # absent, or another process moved it first
        self._index = {key: hit for key, hit in self._index.items() if hit[0] is not shard}
        log.warning("embedding cache: damaged shard %s (%s): moved to %s/, its texts are embedded again",
                    shard.emb_file, reason, aside)

    def holds(self, texts: list[str]) -> np.ndarray:
        """Which of ``texts`` the index has (shards are verified only when read, by ``get``)."""
        return np.array([text_key(text) in self._index for text in texts], dtype=bool)

    def get(self, texts: list[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Cached rows for ``texts``: ``(matrix [n, dim], found mask [n])``."""
        matrix = np.zeros((len(texts), dim), dtype=np.float32)
        found = np.zeros(len(texts), dtype=bool)
        by_shard: dict[Shard, list[tuple[int, int]]] = {}
        for i, text in enumerate(texts):
            hit = self._index.get(text_key(text))
            if hit is not None:
                by_shard.setdefault(hit[0], []).append((i, hit[1]))
        for shard, rows in by_shard.items():
            try:
                stored = shard.embeddings()
            except (DamagedShard, OSError) as exc:
                self._drop(shard, exc)
                continue
            if stored.shape[1] != dim:
                continue
            targets, sources = map(np.array, zip(*rows))
            matrix[targets] = stored[sources]
            found[targets] = True
        return matrix, found

    def put(self, texts: list[str], matrix: np.ndarray) -> None:
        """Store one shard for ``texts`` (rows of ``matrix``)."""
        if texts:
            shard, keys = write_shard(self.directory, texts, matrix)
            self._seen.add(shard.name)
            self._add(shard, keys)

    # --- the bf16 fidelity measured for this namespace ---------------------------------------
    @property
    def fidelity_file(self) -> Path:
        return self.directory / "fidelity.json"

    def fidelity(self) -> float | None:
        """The worst bf16-vs-fp32 cosine recorded for this namespace (None if never measured)."""
        try:
            value = json.loads(self.fidelity_file.read_text(encoding="utf-8"))[FIDELITY_KEY]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None

    def record_fidelity(self, worst_cosine: float) -> float:
        """Keep the worse of ``worst_cosine`` and what was recorded; return it."""
        with open(self.directory / "fidelity.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
            recorded = self.fidelity()
            worst = worst_cosine if recorded is None else min(recorded, worst_cosine)
            if worst != recorded:
                write_json(self.fidelity_file, {FIDELITY_KEY: worst})
        return worst


def write_shard(directory: Path, texts: list[str], matrix: np.ndarray) -> tuple[Shard, np.ndarray]:
    """Write one new shard into ``directory`` (embeddings, checksums, then the keys that make it
    visible); return it with its keys. Safe beside any number of concurrent writers."""
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex}"
    shard = Shard(directory / f"{name}.keys.npy")
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    keys = np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(-1, KEY_BYTES)
    emb_bytes, keys_bytes = _npy_bytes(matrix), _npy_bytes(keys)
    with atomic_path(shard.emb_file) as tmp:
        tmp.write_bytes(emb_bytes)
    shard.write_sums(emb_bytes, keys_bytes, matrix.shape)
    with atomic_path(shard.keys_file) as tmp:
        tmp.write_bytes(keys_bytes)
    shard.rows = len(keys)
    return shard, keys


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
