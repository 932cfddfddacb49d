"""Pairings: which embeddings go into a model and which should come out, per split.

- ``DIALOGUE``: question embedding -> answer embedding, one row per pair.
- ``AUTOENCODER``: each distinct text -> itself, from an input corrupted with Gaussian noise
  of ``noise`` x the embedding's norm (so the identity map is not a free answer). A text of
  the training split is never a validation or test row (a text may sit in pairs on both sides).

A training mode (``cubecore.training.modes``) picks a pairing and a loss; nothing here knows modes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from cubecore.core.artifacts import Pairs
from cubecore.core.config import TrainParams
from cubecore.core.errors import CubecoreError
from cubecore.data import rows

MIN_ROWS = 2  # per split: a training batch needs two rows, and so does any ranking


@dataclass
class TaskData:
    inputs: torch.Tensor | rows.MappedRows   # [N, dim] (the training split: read per batch)
    targets: torch.Tensor | rows.MappedRows  # [N, dim]
    target_ids: np.ndarray    # text id of each target (retrieval candidates are the distinct ones)

    def __len__(self) -> int:
        return len(self.inputs)


def pair_texts(pairs: Pairs) -> np.ndarray:
    """The distinct text ids of some pairs (questions and answers)."""
    return np.unique(np.concatenate([pairs.question_id, pairs.answer_id]))


@dataclass(frozen=True)
class Pairing:
    name: str
    ids: Callable[[Pairs, np.ndarray], tuple[np.ndarray, np.ndarray]]  # (pairs, excluded ids) -> input, target ids
    noisy: bool      # inputs are corrupted (per batch in training, once per split otherwise)
    disjoint: bool   # a split's rows leave out the texts of the splits before it
    unit: str        # what a row is, for error messages

    def input_noise(self, params: TrainParams) -> float:
        """How much its inputs are corrupted: ``train.autoencoder.noise`` if noisy, else 0."""
        return params.autoencoder.noise if self.noisy else 0.0


DIALOGUE = Pairing("dialogue", lambda pairs, exclude: (pairs.question_id, pairs.answer_id),
                   noisy=False, disjoint=False, unit="pairs")
AUTOENCODER = Pairing("autoencoder", lambda pairs, exclude: (ids := np.setdiff1d(pair_texts(pairs), exclude), ids),
                      noisy=True, disjoint=True, unit="texts not in an earlier split")


def corrupt(x: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` plus Gaussian noise whose expected norm is ``noise`` x the row's norm."""
    if noise == 0:
        return x
    scale = noise * x.norm(dim=-1, keepdim=True) / x.shape[-1] ** 0.5
    return x + scale * torch.randn(x.shape, generator=generator)


def corrupted_once(rows: TaskData, noise: float, seed: int) -> TaskData:
    """``rows`` with inputs corrupted once with ``seed``: what a closed-form fit (ridge) sees
    of a noisy pairing, whose trained models draw fresh noise every batch."""
    return TaskData(corrupt(rows.inputs[:], noise, torch.Generator().manual_seed(seed)), rows.targets, rows.target_ids)


def task_data(pairing: Pairing, embeddings: np.ndarray, pairs: Pairs, noise: float = 0.0,
              seed: int | None = None, exclude: np.ndarray | None = None) -> TaskData:
    """The rows of one split. With ``seed`` they are read into memory, and noisy inputs are
    corrupted once with that seed (fixed validation inputs). Without, they are training rows:
    read from ``embeddings`` per batch (``rows.MappedRows``), corrupted per batch by the trainer.
    Rows leave out the text ids in ``exclude`` where the pairing is ``disjoint``."""
    input_ids, target_ids = pairing.ids(pairs, exclude if exclude is not None else np.zeros(0, np.int64))
    if seed is None:
        return TaskData(rows.MappedRows(embeddings, input_ids), rows.MappedRows(embeddings, target_ids),
                        np.asarray(target_ids))
    inputs = torch.from_numpy(rows.gather(embeddings, input_ids))
    targets = torch.from_numpy(rows.gather(embeddings, target_ids))
    if noise:
        inputs = corrupt(inputs, noise, torch.Generator().manual_seed(seed))
    return TaskData(inputs, targets, np.asarray(target_ids))


def split_tasks(pairing: Pairing, embeddings: np.ndarray, parts: dict[str, Pairs], noise: float,
                seed: int) -> dict[str, TaskData]:
    """One TaskData per split, in the order given (train first). Rows of a ``disjoint``
    pairing leave out every text of the splits before it, so validation and test texts are
    disjoint from training texts. Each split's inputs after the first are corrupted with
    ``seed`` + its position. A split with fewer than ``MIN_ROWS`` rows stops here, before any
    training."""
    tasks, seen = {}, np.zeros(0, np.int64)
    for offset, (name, pairs) in enumerate(parts.items()):
        tasks[name] = task_data(pairing, embeddings, pairs, noise, None if offset == 0 else seed + offset,
                                exclude=seen if pairing.disjoint else None)
        if len(tasks[name]) < MIN_ROWS:
            raise CubecoreError(f"the {name} split has {len(tasks[name])} {pairing.name} rows ({pairing.unit}); "
                                f"at least {MIN_ROWS} are needed: add data (data.*), loosen the filter (filter.*) "
                                f"or change split.val_fraction / split.test_fraction")
        seen = np.union1d(seen, pair_texts(pairs))
    return tasks
