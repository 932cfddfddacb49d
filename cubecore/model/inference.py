"""What any model of the project (the cube, a baseline, a mode's pair of cubes) is asked for
outside training: its predictions in batches, and its size."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """``model(inputs)`` in eval mode, ``batch_size`` rows at a time (its train/eval mode restored)."""
    was_training = model.training
    model.eval()
    first = model(inputs[:batch_size])
    out = torch.empty((len(inputs), *first.shape[1:]), dtype=first.dtype)  # filled in place: no list
    out[:len(first)] = first                                                # of batches to concatenate
    for i in range(batch_size, len(inputs), batch_size):
        out[i:i + batch_size] = model(inputs[i:i + batch_size])
    model.train(was_training)
    return out


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
