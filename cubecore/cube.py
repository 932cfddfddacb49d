"""The 3D Cubic Core: a lattice of cells sharing one update rule (a 3-D cellular neural net).

An embedding is placed on the lattice (``placement``), lifted to ``channels`` values per
cell, then ``steps`` times every cell perceives its neighbours (one masked 3-D convolution)
and updates its state from [own state, perception, position] with a small per-cell network
(1x1x1 convolutions). The state is read back to one value per cell and placed back into an
embedding of the teacher's dimension. Everything is vectorised over batch and cells.
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from cubecore.config import CubeParams
from cubecore.errors import CubecoreError


def neighbour_taps(neighbourhood: int) -> torch.Tensor:
    """One-hot ``[K, 27]`` rows selecting the K neighbours of the centre in a 3x3x3 kernel."""
    taps = []
    for index, offset in enumerate(itertools.product((-1, 0, 1), repeat=3)):
        distance = sum(abs(o) for o in offset)
        if distance == 0:
            continue  # the cell's own state enters the update separately
        if neighbourhood == 26 or distance == 1:
            taps.append(index)
    return F.one_hot(torch.tensor(taps), 27).float()


class ReshapePlacement(nn.Module):
    """The embedding's dims laid on the lattice in order; needs volume == dim.

    Reading back adds a learned per-dimension bias (what every answer shares).
    """

    def __init__(self, lattice: tuple[int, int, int], dim: int):
        super().__init__()
        volume = math.prod(lattice)
        if volume != dim:
            raise CubecoreError(f"cube.lattice: {list(lattice)} holds {volume} cells but the teacher's "
                                f"dimension is {dim}; use a lattice of volume {dim} or cube.placement: learned")
        self.lattice = lattice
        self.bias = nn.Parameter(torch.zeros(dim))

    def place(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], 1, *self.lattice)

    def read(self, field: torch.Tensor) -> torch.Tensor:
        return field.flatten(1) + self.bias


class LearnedPlacement(nn.Module):
    """Linear maps from the embedding onto a lattice of any size, and back."""

    def __init__(self, lattice: tuple[int, int, int], dim: int):
        super().__init__()
        self.lattice = lattice
        volume = math.prod(lattice)
        self.into = nn.Linear(dim, volume)
        self.out_of = nn.Linear(volume, dim)

    def place(self, x: torch.Tensor) -> torch.Tensor:
        return self.into(x).view(x.shape[0], 1, *self.lattice)

    def read(self, field: torch.Tensor) -> torch.Tensor:
        return self.out_of(field.flatten(1))


class CellRule(nn.Module):
    """One step of the shared cell rule: perceive the neighbours, update the own state."""

    def __init__(self, params: CubeParams):
        super().__init__()
        c, h, p = params.channels, params.hidden, params.position_channels
        self.gated = params.update == "gated"
        self.periodic = params.boundary == "periodic"
        self.register_buffer("taps", neighbour_taps(params.neighbourhood), persistent=False)
        k = self.taps.shape[0]
        self.perceive_weight = nn.Parameter(torch.randn(c, c, k) / math.sqrt(c * k))
        self.perceive_bias = nn.Parameter(torch.zeros(c))
        self.update_in = nn.Conv3d(2 * c + p, h, 1)
        self.update_out = nn.Conv3d(h, 2 * c if self.gated else c, 1)
        nn.init.normal_(self.update_out.weight, std=0.1 / math.sqrt(h))  # start close to identity

    def perceive(self, state: torch.Tensor) -> torch.Tensor:
        kernel = (self.perceive_weight @ self.taps).view(*self.perceive_weight.shape[:2], 3, 3, 3)
        padded = F.pad(state, (1,) * 6, mode="circular" if self.periodic else "constant")
        return F.conv3d(padded, kernel, self.perceive_bias)

    def forward(self, state: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        features = [state, self.perceive(state)]
        if position is not None:
            features.append(position.expand(state.shape[0], -1, -1, -1, -1))
        delta = self.update_out(F.gelu(self.update_in(torch.cat(features, dim=1))))
        if self.gated:
            candidate, gate = delta.chunk(2, dim=1)
            return state + torch.sigmoid(gate) * (torch.tanh(candidate) - state)
        return state + delta


class CubicCore(nn.Module):
    """Embedding ``[B, dim]`` -> lattice -> ``steps`` x shared rule -> embedding ``[B, dim]``."""

    def __init__(self, params: CubeParams, dim: int):
        super().__init__()
        self.params = params
        self.dim = dim
        lattice = tuple(params.lattice)
        placement = ReshapePlacement if params.placement == "reshape" else LearnedPlacement
        self.placement = placement(lattice, dim)
        self.scale = math.sqrt(dim)  # unit-norm embeddings -> about unit values per cell
        self.lift = nn.Conv3d(1, params.channels, 1)
        p = params.position_channels
        self.position = nn.Parameter(0.1 * torch.randn(1, p, *lattice)) if p else None
        self.rule = CellRule(params)
        self.read_out = nn.Conv3d(params.channels, 1, 1)
        with torch.no_grad():  # channel 0 carries the embedding in and out: start near identity
            self.lift.weight[0].fill_(1.0)
            self.lift.bias[0] = 0.0
            self.read_out.weight.zero_()
            self.read_out.weight[0, 0] = 1.0
            self.read_out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.lift(self.placement.place(x * self.scale))
        state = state.contiguous(memory_format=torch.channels_last_3d)  # ~2x faster convs on CPU
        for _ in range(self.params.steps):
            state = self.rule(state, self.position)
        return self.placement.read(self.read_out(state) / self.scale)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 of one forward pass (training costs about 3x this)."""
        p = self.params
        volume = math.prod(p.lattice)
        c, h, k = p.channels, p.hidden, self.rule.taps.shape[0]
        c_out = 2 * c if p.update == "gated" else c
        step = volume * (c * c * k + (2 * c + p.position_channels) * h + h * c_out)
        placement = 2 * self.dim * volume if p.placement == "learned" else 0
        return 2 * (volume * 2 * c + p.steps * step + placement)
