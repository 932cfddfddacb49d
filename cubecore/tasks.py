"""Training modes as data pairings: what goes into the cube and what should come out.

- ``dialogue``: question embedding -> answer embedding, one row per pair.
- ``autoencoder``: each distinct text -> itself, from an input corrupted with Gaussian noise
  of ``noise`` x the embedding's norm (so the identity map is not a free answer).

A new mode is a new pairing here plus a loss, not a new trainer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cubecore.artifacts import Pairs


@dataclass
class TaskData:
    inputs: torch.Tensor      # [N, dim]
    targets: torch.Tensor     # [N, dim]
    target_ids: np.ndarray    # text id of each target (retrieval candidates are the distinct ones)

    def __len__(self) -> int:
        return len(self.inputs)


def corrupt(x: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` plus Gaussian noise whose expected norm is ``noise`` x the row's norm."""
    if noise == 0:
        return x
    scale = noise * x.norm(dim=-1, keepdim=True) / x.shape[-1] ** 0.5
    return x + scale * torch.randn(x.shape, generator=generator)


def task_data(mode: str, embeddings: np.ndarray, pairs: Pairs, noise: float = 0.0,
              seed: int | None = None) -> TaskData:
    """The rows of one split for ``mode``; with ``seed``, autoencoder inputs are corrupted
    once with that seed (fixed validation inputs), otherwise the trainer corrupts per batch."""
    if mode == "dialogue":
        input_ids, target_ids = pairs.question_id, pairs.answer_id
    else:
        input_ids = target_ids = np.unique(np.concatenate([pairs.question_id, pairs.answer_id]))
    inputs = torch.from_numpy(np.asarray(embeddings[input_ids], dtype=np.float32))
    targets = torch.from_numpy(np.asarray(embeddings[target_ids], dtype=np.float32))
    if mode == "autoencoder" and seed is not None:
        inputs = corrupt(inputs, noise, torch.Generator().manual_seed(seed))
    return TaskData(inputs, targets, np.asarray(target_ids))


def train_noise(mode: str, noise: float) -> float:
    """Noise the trainer adds to each training batch."""
    return noise if mode == "autoencoder" else 0.0
