"""The 3D Cubic Core: a lattice of cells sharing one update rule (a 3-D cellular neural net).

An embedding is placed on the lattice (``placement``), lifted to ``channels`` values per
cell, then ``steps`` times every cell perceives its neighbours and updates its state from
[own state, perception, position] with a small per-cell network. The state is read back to
one value per cell and placed back into an embedding of the teacher's dimension (with
``readout: global``, plus a linear map of the mean cell state to the whole embedding).

Designs aimed at a lattice that matters (a reshaped embedding has nothing local in it, so the
default cube learns an affine map of its input): ``update: bilinear`` also feeds the update
``state * perception`` (a multiplicative interaction of a cell and its neighbours);
``placement: projected`` also gives every cell C rank-one projections of the whole input (which
cells hear which projection is learned; no dense map back); ``placement: rotated`` lays the
embedding in a learned orthonormal basis and reads back with its transpose (the two maps alone
are the identity, so any change is the lattice's).

The state is kept channels-last, ``[B, X, Y, Z, C]``, so every per-cell map is one matmul
over all ``B·X·Y·Z`` cells, and perception reads only the K neighbour taps it uses: each cell's
K neighbour states (zero across a wall, wrapped around on a periodic lattice) are gathered side
by side, ``[B, X, Y, Z, K·C]``, and contracted with the perception weight in one matmul (its
gradient likewise).
"""
from __future__ import annotations

import functools
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from cubecore.core.config import CubeParams
from cubecore.core.errors import CubecoreError


def neighbour_offsets(neighbourhood: int) -> list[tuple[int, int, int]]:
    """The (dx, dy, dz) of the K neighbours (6 faces, or all 26), in 3x3x3-kernel order."""
    return [offset for offset in itertools.product((-1, 0, 1), repeat=3)
            if 0 < sum(map(abs, offset)) <= (1 if neighbourhood == 6 else 3)]


@functools.lru_cache(maxsize=64)
def neighbour_index(sizes: tuple[int, int, int], offsets: tuple[tuple[int, int, int], ...],
                    periodic: bool) -> torch.Tensor:
    """For every (cell, tap), cell-major, the row of the flattened lattice it reads: ``[X·Y·Z·K]``.
    Across a wall that is row ``X·Y·Z`` (a zero row appended); periodic lattices wrap around."""
    size = torch.tensor(sizes)
    cells = torch.stack(torch.meshgrid(*(torch.arange(n) for n in sizes), indexing="ij"), dim=-1)
    read = cells.reshape(-1, 1, 3) + torch.tensor(offsets)  # [cells, K, 3]
    outside = ((read < 0) | (read >= size)).any(-1)
    read = read % size
    rows = (read * torch.tensor([sizes[1] * sizes[2], sizes[2], 1])).sum(-1)
    return (rows if periodic else rows.masked_fill(outside, math.prod(sizes))).reshape(-1)


def neighbour_views(state: torch.Tensor, offsets: list[tuple[int, int, int]], periodic: bool) -> torch.Tensor:
    """``[B, X, Y, Z, C]`` -> every cell's K neighbour states side by side, ``[B, X, Y, Z, K·C]``:
    one ``index_select`` of the lattice's rows (with a zero row for the walls), 2x faster than
    concatenating K shifted slices of a padded lattice."""
    batch, c = state.shape[0], state.shape[-1]
    rows = state.reshape(batch, -1, c)
    if not periodic:
        rows = F.pad(rows, (0, 0, 0, 1))  # the wall: one zero row
    views = rows.index_select(1, neighbour_index(tuple(state.shape[1:4]), tuple(offsets), periodic))
    return views.view(*state.shape[:4], len(offsets) * c)


class NeighbourContraction(torch.autograd.Function):
    """``out[x] = bias + sum_k W_k state[x + o_k]`` over the K taps, as one matmul each way.

    ``weight`` is ``[C_out, K·C_in]`` (tap-major). The gradient for the state is the same
    contraction with the reversed offsets, ``sum_k W_k^T grad[x - o_k]``: one more set of
    shifted views and one matmul, instead of autograd's per-tap scatter of a ``[.., K, C]`` grad.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, state, weight, bias, offsets, periodic):
        if torch.is_autocast_enabled("cpu"):  # cast once, before the K-fold copy, not after
            state = state.to(torch.get_autocast_dtype("cpu"))
        views = neighbour_views(state, offsets, periodic)  # [B, X, Y, Z, K·C_in]
        ctx.save_for_backward(views, weight)
        ctx.offsets, ctx.periodic = offsets, periodic
        return F.linear(views, weight, bias)  # [B, X, Y, Z, C_out]

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")  # backward under the forward's autocast state
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        views, weight = ctx.saved_tensors
        c_out, k = grad.shape[-1], len(ctx.offsets)
        flat_grad = grad.reshape(-1, c_out)  # [N, C_out]
        grad_weight = flat_grad.T @ views.reshape(flat_grad.shape[0], -1)
        reversed_views = neighbour_views(grad, [(-dx, -dy, -dz) for dx, dy, dz in ctx.offsets], ctx.periodic)
        weight_t = weight.view(c_out, k, -1).transpose(0, 1).reshape(k * c_out, -1)  # [K·C_out, C_in]
        grad_state = reversed_views @ weight_t  # [B, X, Y, Z, C_in]
        return grad_state, grad_weight, flat_grad.sum(0), None, None


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
        return x.view(x.shape[0], *self.lattice)  # [B, dim] -> [B, X, Y, Z]

    def read(self, field: torch.Tensor) -> torch.Tensor:
        return field.flatten(1) + self.bias  # [B, X, Y, Z] -> [B, dim]


class ProjectedPlacement(ReshapePlacement):
    """``reshape``, and every cell's C channels also receive C rank-one projections of the whole
    input: channel c of cell i gets ``weight[i, c] * (u_c · x)``. Which cells hear which global
    feature is learned (``weight`` starts small, at ~1 % of a cell's value); the read-out stays
    local (no dense map back), so the lattice has to carry what a cell needs to its cell."""

    def __init__(self, lattice: tuple[int, int, int], dim: int, channels: int):
        super().__init__(lattice, dim)
        self.project = nn.Linear(dim, channels, bias=False)  # the C global features, ~unit scale
        self.cell_weight = nn.Parameter(0.01 * torch.randn(*lattice, channels))  # [X, Y, Z, C]

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` (scaled) -> what each cell's channels receive of it, ``[B, X, Y, Z, C]``."""
        return self.project(x)[:, None, None, None, :] * self.cell_weight


class RotatedPlacement(ReshapePlacement):
    """The embedding in a learned orthonormal basis ``R`` laid on the lattice, read back with
    ``R^T``: the maps alone are the identity, so whatever the cube changes, the lattice does.
    ``R`` starts as the identity (the ``reshape`` placement) and stays orthogonal (Cayley map)."""

    def __init__(self, lattice: tuple[int, int, int], dim: int):
        super().__init__(lattice, dim)
        self.rotation = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.rotation.weight.copy_(torch.eye(dim))
        parametrizations.orthogonal(self.rotation, orthogonal_map="cayley")

    def place(self, x: torch.Tensor) -> torch.Tensor:
        return super().place(self.rotation(x))

    def read(self, field: torch.Tensor) -> torch.Tensor:
        return field.flatten(1) @ self.rotation.weight + self.bias  # R^T applied to each row


class LearnedPlacement(nn.Module):
    """Linear maps from the embedding onto a lattice of any size, and back (``small_out``: the map
    back starts 10x smaller than usual, for a cube that adds its output to its input)."""

    def __init__(self, lattice: tuple[int, int, int], dim: int, small_out: bool = False):
        super().__init__()
        self.lattice = lattice
        volume = math.prod(lattice)
        self.into = nn.Linear(dim, volume)
        self.out_of = nn.Linear(volume, dim)
        if small_out:  # near the identity, yet every parameter gets a gradient from the first step
            with torch.no_grad():
                self.out_of.weight.mul_(0.1)
                self.out_of.bias.zero_()

    def place(self, x: torch.Tensor) -> torch.Tensor:
        return self.into(x).view(x.shape[0], *self.lattice)  # [B, dim] -> [B, X, Y, Z]

    def read(self, field: torch.Tensor) -> torch.Tensor:
        return self.out_of(field.flatten(1))  # [B, X, Y, Z] -> [B, dim]


GATE_SHUT = -5.0  # a gated update starts with sigmoid(-5) = 0.7 % of the way to its candidate per step


class CellRule(nn.Module):
    """One step of the shared cell rule: perceive the neighbours, update the own state."""

    def __init__(self, params: CubeParams):
        super().__init__()
        c, h, p = params.channels, params.hidden, params.position_channels
        self.channels = c
        self.gated = params.update == "gated"
        self.bilinear = params.update == "bilinear"
        self.features = (3 if self.bilinear else 2) * c  # [state, perception(, state * perception)]
        self.periodic = params.boundary == "periodic"
        self.offsets = neighbour_offsets(params.neighbourhood)
        k = len(self.offsets)
        self.perceive_weight = nn.Parameter(torch.randn(c, c, k) / math.sqrt(c * k))  # [out, in, tap]
        self.perceive_bias = nn.Parameter(torch.zeros(c))
        self.update_in = nn.Linear(self.features + p, h)  # input: [state, perception(, product), position]
        self.update_out = nn.Linear(h, 2 * c if self.gated else c)
        # start close to the identity: every step moves a cell's state by ~1 % (a bias would add
        # the same shift every step whatever the input, so it starts at zero; a gate starts shut)
        nn.init.normal_(self.update_out.weight, std=0.01 / math.sqrt(h))
        nn.init.zeros_(self.update_out.bias)
        if self.gated:
            nn.init.constant_(self.update_out.bias[c:], GATE_SHUT)

    def perceive(self, state: torch.Tensor) -> torch.Tensor:
        """``[B, X, Y, Z, C]`` -> what each cell perceives of its K neighbours, ``[B, X, Y, Z, C]``."""
        weight = self.perceive_weight.transpose(1, 2).flatten(1)  # [C, K·C], tap-major like the views
        return NeighbourContraction.apply(state, weight, self.perceive_bias, self.offsets, self.periodic)

    def cell_bias(self, position: torch.Tensor | None) -> torch.Tensor:
        """The update's input bias plus its position term, ``[X, Y, Z, H]`` (or ``[H]``): once per batch."""
        if position is None:
            return self.update_in.bias
        return F.linear(position, self.update_in.weight[:, self.features:], self.update_in.bias)

    def forward(self, state: torch.Tensor, cell_bias: torch.Tensor) -> torch.Tensor:
        """``[B, X, Y, Z, C]`` -> the next state, ``[B, X, Y, Z, C]``."""
        perception = self.perceive(state)
        features = [state, perception, state * perception] if self.bilinear else [state, perception]
        features = torch.cat(features, dim=-1)  # [B, X, Y, Z, 2C or 3C]
        hidden = F.gelu(F.linear(features, self.update_in.weight[:, :self.features]) + cell_bias)
        delta = self.update_out(hidden)  # [B, X, Y, Z, C] (residual) or [B, X, Y, Z, 2C] (gated)
        if self.gated:
            candidate, gate = delta.chunk(2, dim=-1)
            return state + torch.sigmoid(gate) * (torch.tanh(candidate) - state)
        return state + delta


class CubicCore(nn.Module):
    """Embedding ``[B, dim]`` -> lattice -> ``steps`` x shared rule -> embedding ``[B, dim]``."""

    def __init__(self, params: CubeParams, dim: int):
        super().__init__()
        self.params = params
        self.dim = dim
        lattice = tuple(params.lattice)
        self.skip = params.placement == "learned_skip"  # output = input + the lattice's correction
        if params.placement == "reshape":
            self.placement = ReshapePlacement(lattice, dim)
        elif params.placement == "projected":
            self.placement = ProjectedPlacement(lattice, dim, params.channels)
        elif params.placement == "rotated":
            self.placement = RotatedPlacement(lattice, dim)
        else:
            self.placement = LearnedPlacement(lattice, dim, small_out=self.skip)
        self.scale = math.sqrt(dim)  # unit-norm embeddings -> about unit values per cell
        self.lift = nn.Linear(1, params.channels)
        p = params.position_channels
        # [X, Y, Z, P], drawn channels-first as in earlier versions so seeded models stay the same
        self.position = nn.Parameter(0.1 * torch.randn(p, *lattice).permute(1, 2, 3, 0).contiguous()) if p else None
        self.rule = CellRule(params)
        self.read_out = nn.Linear(params.channels, 1)
        # global read-out: the whole lattice's mean state -> every dim; starts at zero (no change)
        self.pool_out = nn.Linear(params.channels, dim, bias=False) if params.readout == "global" else None
        if self.pool_out is not None:
            nn.init.zeros_(self.pool_out.weight)
        with torch.no_grad():  # channel 0 carries the embedding in and out: start near identity
            self.lift.weight[0].fill_(1.0)
            self.lift.bias[0] = 0.0
            self.read_out.weight.zero_()
            self.read_out.weight[0, 0] = 1.0
            self.read_out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        field = self.placement.place(x * self.scale)  # [B, X, Y, Z]
        state = self.lift(field.unsqueeze(-1))  # [B, X, Y, Z, C]
        if isinstance(self.placement, ProjectedPlacement):
            state = state + self.placement.context(x * self.scale)
        cell_bias = self.rule.cell_bias(self.position)  # [X, Y, Z, H]
        for _ in range(self.params.steps):
            state = self.rule(state, cell_bias)
        out = self.placement.read(self.read_out(state).squeeze(-1) / self.scale)
        if self.pool_out is not None:
            out = out + self.pool_out(state.mean(dim=(1, 2, 3))) / self.scale
        return x + out if self.skip else out

    def flops_per_sample(self) -> int:
        """FLOPs (2 x multiply-adds) of the matmuls one sample's forward pass runs.

        Perception contracts only the K neighbour taps; the position term of the update is
        computed once per batch, not per sample, and is left out; element-wise work (padding,
        GELU, residual) is not counted. Training costs about 3x this.
        """
        p = self.params
        volume = math.prod(p.lattice)
        c, h, k = p.channels, p.hidden, len(self.rule.offsets)
        c_out = 2 * c if p.update == "gated" else c
        step = volume * (k * c * c + self.rule.features * h + h * c_out)
        placement = {"reshape": 0, "projected": self.dim * c, "rotated": 2 * self.dim * self.dim}.get(
            p.placement, 2 * self.dim * volume)
        pooled = c * self.dim if p.readout == "global" else 0
        return 2 * (volume * 2 * c + p.steps * step + placement + pooled)
