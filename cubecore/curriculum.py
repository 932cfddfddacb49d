"""Curriculum: training rows from easy to hard, by the teacher's cosine between a row's input
and target (a question and its answer: a high cosine is an easy pair).

``train.curriculum.schedule``:

- ``none``: every row in every epoch.
- ``linear``: epoch 1 trains on the easiest ``start_fraction`` of the rows; the admitted share
  grows linearly to all rows at epoch ``1 + ceil(ramp_fraction * train.epochs)``. Rows tied in
  difficulty are admitted together (an autoencoder's clean rows are all equally easy).
  Batches keep their seeded shuffled order; only the rows not yet admitted are left out.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cubecore.config import CurriculumParams


def difficulty(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - cos(input, target)`` per row: 0 for the easiest, 2 for the hardest."""
    return 1 - F.cosine_similarity(inputs, targets, dim=-1)


def admitted_fraction(params: CurriculumParams, epoch: int, epochs: int) -> float:
    """Share of rows trained in 1-based ``epoch``."""
    if params.schedule == "none":
        return 1.0
    ramp = math.ceil(params.ramp_fraction * epochs)
    return min(1.0, params.start_fraction + (1 - params.start_fraction) * (epoch - 1) / ramp)


def admit(order: torch.Tensor, hardness: torch.Tensor, fraction: float) -> torch.Tensor:
    """The rows of ``order`` (kept in that order) among the easiest ``fraction`` by ``hardness``."""
    if fraction >= 1:
        return order
    count = max(1, math.ceil(fraction * len(hardness)))
    threshold = hardness.kthvalue(count).values
    return order[hardness[order] <= threshold]
