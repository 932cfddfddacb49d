"""Simple predictors the cube must beat, fitted on the training split only.

- ``identity``: the input itself (for dialogue, the question's own embedding).
- ``mean``: the mean training target, whatever the input.
- ``ridge``: a closed-form linear map ``[x, 1] -> y``; its regulariser is chosen on a
  held-out tenth of the training rows, then refitted on all of them.
- ``linear``: a trained ``D x D`` linear map with bias, started at the identity and trained
  by the same trainer with the cube's loss, budget and early stopping.
- ``mlp``: a residual two-layer MLP with about the cube's parameter count, trained the same way.
- ``blend@a``: ``(1 - a) * ridge(x)/|ridge(x)| + a * x/|x|``, a closed-form, untrained family
  (in autoencoder mode ``x`` is the noisy input); ``a = 0`` points like ridge, ``a = 1`` like
  identity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cubecore.core.config import TrainParams
from cubecore.data.rows import MappedRows, blocks
from cubecore.evaluation.modelcache import cached_fit
from cubecore.model.inference import parameter_count
from cubecore.training.identity import run_key
from cubecore.training.loop import Trainer
from cubecore.training.modes import get_mode
from cubecore.training.pairings import TaskData, corrupted_once
from cubecore.training.runtime import seed_everything


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class MeanTarget(nn.Module):
    def __init__(self, targets: torch.Tensor | MappedRows):
        super().__init__()
        total = sum(block.double().sum(0) for block in blocks(targets))
        self.register_buffer("mean", (total / len(targets)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean.expand(len(x), -1)


class Linear(nn.Module):
    """``x @ weight + bias`` (the fitted ridge map)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


@dataclass
class Moments:
    """Row count, sums and cross products (float64) of inputs ``x`` and targets ``y``: all
    a ridge fit needs, in ``D x D`` memory whatever the number of rows."""

    n: int
    sx: torch.Tensor
    sy: torch.Tensor
    xx: torch.Tensor
    xy: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None = None,
           chunk: int = 1 << 16) -> Moments:
        """The moments of ``x[rows]``, ``y[rows]`` (all rows by default), a chunk at a time."""
        rows = torch.arange(len(x)) if rows is None else rows
        dx, dy = x.shape[1], y.shape[1]
        m = cls(len(rows), torch.zeros(dx, dtype=torch.float64), torch.zeros(dy, dtype=torch.float64),
                torch.zeros(dx, dx, dtype=torch.float64), torch.zeros(dx, dy, dtype=torch.float64))
        for start in range(0, len(rows), chunk):
            xb, yb = x[rows[start:start + chunk]].double(), y[rows[start:start + chunk]].double()
            m.sx += xb.sum(0)
            m.sy += yb.sum(0)
            m.xx += xb.T @ xb
            m.xy += xb.T @ yb
        return m

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.sx + other.sx, self.sy + other.sy, self.xx + other.xx,
                       self.xy + other.xy)

    def solve(self, alpha: float) -> Linear:
        """Least squares with an L2 penalty on the weights (not the bias), in float64."""
        x_mean, y_mean = self.sx / self.n, self.sy / self.n
        gram = self.xx - self.n * torch.outer(x_mean, x_mean) + alpha * torch.eye(len(x_mean), dtype=torch.float64)
        weight = torch.linalg.solve(gram, self.xy - self.n * torch.outer(x_mean, y_mean))
        return Linear(weight.float(), (y_mean - x_mean @ weight).float())


def fit_ridge(train: TaskData, alphas: list[float], seed: int) -> tuple[Linear, float]:
    """Pick alpha by cosine on a held-out tenth of train, refit on all of train (from the
    moments of the two parts: two passes over the rows, whatever the number of alphas)."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    held = order[: max(1, len(train) // 10)]
    fit = Moments.of(train.inputs, train.targets, order[max(1, len(train) // 10):])
    held_inputs, held_targets = train.inputs[held], train.targets[held]

    def held_cosine(alpha: float) -> float:
        return float(F.cosine_similarity(fit.solve(alpha)(held_inputs), held_targets).mean())

    best = max(alphas, key=held_cosine)
    return (fit + Moments.of(train.inputs, train.targets, held)).solve(best), best


class Blend(nn.Module):
    """Unit-normalised ridge prediction and input, mixed with weight ``a`` on the input."""

    def __init__(self, ridge: Linear, a: float):
        super().__init__()
        self.ridge, self.a = ridge, a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - self.a) * F.normalize(self.ridge(x), dim=-1) + self.a * F.normalize(x, dim=-1)


def blend_family(ridge: Linear, steps: int) -> dict[str, Blend]:
    """The blends at a = 0, 1/steps, ..., 1, named ``blend@<a>``."""
    return {f"blend@{k / steps:g}": Blend(ridge, k / steps) for k in range(steps + 1)}


class Shift(nn.Module):
    """The trivial class ``x + b * (mean training target)``: the input moved toward what every
    answer shares. The cube must beat its own trivial class to claim anything."""

    def __init__(self, mean: torch.Tensor, b: float):
        super().__init__()
        self.b = b
        self.register_buffer("mean", mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b * self.mean


SHIFT_GRID = [k / 10 for k in range(41)]  # b = 0, 0.1, ..., 4 (the default cube sits near 1.5)


def shift_family(mean: MeanTarget) -> dict[str, Shift]:
    """The shifts at every ``b`` of ``SHIFT_GRID``, named ``shift@<b>``."""
    return {f"shift@{b:g}": Shift(mean.mean, b) for b in SHIFT_GRID}


class LinearMap(nn.Module):
    """``x @ W + b`` with ``W`` starting at the identity and ``b`` at zero."""

    def __init__(self, dim: int):
        super().__init__()
        self.map = nn.Linear(dim, dim)
        with torch.no_grad():
            self.map.weight.copy_(torch.eye(dim))
            self.map.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x)


class ResidualMLP(nn.Module):
    """``x + W2 gelu(W1 x)`` with hidden width chosen to match a parameter budget."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        nn.init.zeros_(self.down.weight)  # start as the identity, like the cube's small update
        nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(x)))

    @staticmethod
    def hidden_for(dim: int, parameters: int) -> int:
        """Hidden width whose parameter count (2*dim*h + h + dim) is closest to ``parameters``."""
        return max(1, round((parameters - dim) / (2 * dim + 1)))


def fit_trained(model: nn.Module, train: TaskData, val: TaskData, params: TrainParams,
                seed: int, name: str) -> dict:
    """Train ``model`` like the cube (same loss, epochs, early stopping on ``val``) in
    ``train.mode``'s baseline mode, or load it from the baseline cache when this exact
    training already ran (``cubecore.evaluation.modelcache``)."""
    mode = get_mode(params.mode).baseline
    key = run_key(name, model, params, seed, train, val)
    return cached_fit(model, name, key, params.checkpoint_dir,
                      lambda: Trainer(model, params, seed, key, name=name, mode=mode).fit(train, val, progress=False))


def fit_baselines(train: TaskData, val: TaskData, params: TrainParams, alphas: list[float],
                  seed: int, cube_parameters: int, noise: float = 0.0) -> tuple[dict[str, nn.Module], dict]:
    """Every baseline fitted on ``train`` (the trained ones early-stop on ``val``, as the cube does).
    ``noise`` > 0 (a noisy pairing: the trainer corrupts each batch) fits the ridge on inputs
    corrupted once, so it is a denoiser like the trained models."""
    dim = train.inputs.shape[1]
    ridge, alpha = fit_ridge(corrupted_once(train, noise, seed) if noise else train, alphas, seed)
    seed_everything(seed)
    mlp = ResidualMLP(dim, ResidualMLP.hidden_for(dim, cube_parameters))
    fit_trained(mlp, train, val, params, seed, "mlp")
    linear = LinearMap(dim)
    linear_run = fit_trained(linear, train, val, params, seed, "linear")
    models = {"identity": Identity(), "mean": MeanTarget(train.targets), "ridge": ridge, "linear": linear,
              "mlp": mlp}
    info = {"ridge_alpha": alpha, "mlp_parameters": parameter_count(mlp),
            "mlp_hidden": mlp.up.out_features, "linear_parameters": dim * dim + dim,
            "linear_best_epoch": linear_run["best_epoch"]}
    return models, info
