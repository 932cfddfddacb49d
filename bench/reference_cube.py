"""The cube's original formulation, kept as the reference for the fast kernel in cubecore/model/cube.py.

It computes the same function from the same parameters the way the first version did:
channels-first ``[B, C, X, Y, Z]``, perception as a dense 3x3x3 convolution whose kernel is
zero outside the K used taps, and the per-cell update as 1x1x1 convolutions. The tests check
the fast path against it (values and gradients); bench/train.py times it as "before".
Later options are written the same way: ``update: bilinear`` adds the product of state and
perception to the update's input, ``placement: projected`` adds each cell's share of the
global projections to the lifted state (``rotated`` needs nothing here: it is all in the
placement's ``place`` and ``read``, which the reference shares).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cubecore.model.cube import CellRule, CubicCore, ProjectedPlacement


def _pointwise(field: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A ``[out, in]`` linear map applied as a 1x1x1 convolution to ``[B, in, X, Y, Z]``."""
    return F.conv3d(field, weight[..., None, None, None], bias)


def reference_perceive(rule: CellRule, state: torch.Tensor) -> torch.Tensor:
    """``[B, C, X, Y, Z]`` -> perception ``[B, C, X, Y, Z]``, by a dense 27-tap convolution."""
    taps = rule.perceive_weight.new_zeros(len(rule.offsets), 27)  # one-hot rows: tap k -> its place in the 3x3x3 kernel
    for k, (dx, dy, dz) in enumerate(rule.offsets):
        taps[k, (dx + 1) * 9 + (dy + 1) * 3 + dz + 1] = 1.0
    c = rule.channels
    kernel = (rule.perceive_weight @ taps).view(c, c, 3, 3, 3)
    padded = F.pad(state, (1,) * 6, mode="circular" if rule.periodic else "constant")
    return F.conv3d(padded, kernel, rule.perceive_bias)


def reference_step(rule: CellRule, state: torch.Tensor, position: torch.Tensor | None) -> torch.Tensor:
    """One step of the cell rule on ``[B, C, X, Y, Z]``; ``position`` is ``[1, P, X, Y, Z]``."""
    perception = reference_perceive(rule, state)
    features = [state, perception] + ([state * perception] if rule.bilinear else [])
    if position is not None:
        features.append(position.expand(state.shape[0], -1, -1, -1, -1))
    hidden = F.gelu(_pointwise(torch.cat(features, dim=1), rule.update_in.weight, rule.update_in.bias))
    delta = _pointwise(hidden, rule.update_out.weight, rule.update_out.bias)
    if rule.gated:
        candidate, gate = delta.chunk(2, dim=1)
        return state + torch.sigmoid(gate) * (torch.tanh(candidate) - state)
    return state + delta


def reference_forward(model: CubicCore, x: torch.Tensor) -> torch.Tensor:
    """``model``'s function of ``x`` ``[B, dim]``, computed the original way."""
    field = model.placement.place(x * model.scale).unsqueeze(1)  # [B, 1, X, Y, Z]
    state = _pointwise(field, model.lift.weight, model.lift.bias)
    if isinstance(model.placement, ProjectedPlacement):  # [B, C] global features times [C, X, Y, Z] weights
        z = (x * model.scale) @ model.placement.project.weight.T
        state = state + z[:, :, None, None, None] * model.placement.cell_weight.permute(3, 0, 1, 2).unsqueeze(0)
    state = state.contiguous(memory_format=torch.channels_last_3d)  # what made the old convs ~2x faster
    position = None if model.position is None else model.position.permute(3, 0, 1, 2).unsqueeze(0)
    for _ in range(model.params.steps):
        state = reference_step(model.rule, state, position)
    read = _pointwise(state, model.read_out.weight, model.read_out.bias)  # [B, 1, X, Y, Z]
    return model.placement.read(read.squeeze(1) / model.scale)


class ReferenceCube(torch.nn.Module):
    """``model`` run through the reference formulation (shares its parameters)."""

    def __init__(self, model: CubicCore):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reference_forward(self.model, x)
