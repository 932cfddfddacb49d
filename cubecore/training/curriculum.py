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

from cubecore.core.config import CurriculumParams
from cubecore.data.rows import MappedRows, blocks


def difficulty(inputs: torch.Tensor | MappedRows, targets: torch.Tensor | MappedRows) -> torch.Tensor:
    """``1 - cos(input, target)`` per row: 0 for the easiest, 2 for the hardest."""
    return torch.cat([1 - F.cosine_similarity(x, y, dim=-1) for x, y in zip(blocks(inputs), blocks(targets))])


def admitted_fraction(params: CurriculumParams, epoch: int, epochs: int) -> float:
    """Share of rows trained in 1-based ``epoch``."""
    if params.schedule == "none":
        return 1.0
    ramp = math.ceil(params.ramp_fraction * epochs)
    return min(1.0, params.start_fraction + (1 - params.start_fraction) * (epoch - 1) / ramp)


def admitted_rows(params: CurriculumParams, epoch: int, epochs: int, rows: int) -> int:
    """How many of ``rows`` are trained in 1-based ``epoch`` (the trainer's LR schedule counts
    its steps from these, so the cosine decay still ends with the last epoch)."""
    return max(1, math.ceil(admitted_fraction(params, epoch, epochs) * rows))


def admit(order: torch.Tensor, hardness: torch.Tensor, count: int) -> torch.Tensor:
    """The rows of ``order`` (kept in that order) among the ``count`` easiest by ``hardness``
    (more when rows tie at the threshold)."""
    if count >= len(hardness):
        return order
    threshold = hardness.kthvalue(count).values
    return order[hardness[order] <= threshold]
