"""The on-disk formats, in one place, and atomic writes.

A dataset directory written by ``extract`` holds:

- ``texts.jsonl``      one ``{"id": i, "text": ...}`` per distinct text, ``id`` = row in the matrix
- ``embeddings.npy``   float32 ``[n_texts, dim]``, memory-mappable
- ``pairs.tsv``        ``question_id  answer_id  conversation  turn`` (one adjacent turn pair per row)
- ``teacher.json``     the teacher's identity (name, version, weights hash, hidden size, pooling, ...)
- ``rejects.jsonl``    one ``{"file", "line", "reasons", "detail"}`` per source record that gave no
                       pairs (``line``: 1-based, where the record starts in that file); a
                       dataset's rows as ``{"dataset", "split", "row", ...}`` (``row``: 0-based index)

``filter`` and ``split`` write pair tables in the same TSV format.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cubecore.core.errors import CubecoreError

PAIR_COLUMNS = ("question_id", "answer_id", "conversation", "turn")


@dataclass
class Pairs:
    """Adjacent turn pairs as parallel arrays (ids index the texts / embedding rows)."""

    question_id: np.ndarray
    answer_id: np.ndarray
    conversation: list[str]
    turn: np.ndarray

    def __len__(self) -> int:
        return len(self.question_id)

    def take(self, index) -> "Pairs":
        index = np.asarray(index, dtype=np.int64)
        return Pairs(self.question_id[index], self.answer_id[index],
                     [self.conversation[i] for i in index], self.turn[index])

    @classmethod
    def empty(cls) -> "Pairs":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), [], np.zeros(0, np.int64))


def umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path next to ``path``; on success rename it into place, else remove it.

    The file gets the mode a plain ``open`` would give it (0666 minus the umask), not
    mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~umask())
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a temp directory; on success it replaces ``path`` whole, else it is removed.

    The directory gets the mode ``mkdir`` would give it (0777 minus the umask), not 0700.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~umask())
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def save_weights(tensors: dict, path: str | Path, metadata: dict | None = None) -> None:
    """``safetensors.torch.save_file``, but the file gets the mode a plain ``open`` would give it
    (0666 minus the umask): safetensors creates its files 0600."""
    from safetensors.torch import (
        save_file,  # imports torch: only the stages that save weights pay for it
    )

    save_file(tensors, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~umask())


def write_json(path: str | Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, rows) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_texts(path: str | Path, texts: list[str]) -> None:
    write_jsonl(path, ({"id": i, "text": t} for i, t in enumerate(texts)))


def read_texts(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise CubecoreError(f"{path}: not found (run `dvc repro` first)")
    texts = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            try:
                row = json.loads(line)
                if row["id"] != i:
                    raise CubecoreError(f"{path}:{i + 1}: ids must be consecutive from 0")
                texts.append(row["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CubecoreError(f"{path}:{i + 1}: not a text record ({exc})") from None
    return texts


def write_embeddings(path: str | Path, matrix: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)


def read_embeddings(path: str | Path, mmap: bool = True) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise CubecoreError(f"{path}: not found (run `dvc repro` first)")
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_pairs(path: str | Path, pairs: Pairs) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(PAIR_COLUMNS)
        for row in zip(pairs.question_id.tolist(), pairs.answer_id.tolist(),
                       pairs.conversation, pairs.turn.tolist()):
            writer.writerow(row)


def read_pairs(path: str | Path) -> Pairs:
    path = Path(path)
    if not path.exists():
        raise CubecoreError(f"{path}: not found (run `dvc repro` first)")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if tuple(header or ()) != PAIR_COLUMNS:
            raise CubecoreError(f"{path}:1: expected header {' '.join(PAIR_COLUMNS)}")
        rows = list(reader)
    if not rows:
        return Pairs.empty()
    q, a, conv, turn = zip(*rows)
    return Pairs(np.array(q, dtype=np.int64), np.array(a, dtype=np.int64), list(conv),
                 np.array(turn, dtype=np.int64))


@dataclass
class Dataset:
    """Texts, their teacher embeddings and the teacher's identity, as ``extract`` wrote them."""

    texts: list[str]
    embeddings: np.ndarray
    teacher: dict

    @classmethod
    def load(cls, directory: str | Path) -> "Dataset":
        directory = Path(directory)
        return cls(read_texts(directory / "texts.jsonl"),
                   read_embeddings(directory / "embeddings.npy"),
                   read_json(directory / "teacher.json"))
