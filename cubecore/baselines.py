"""Simple predictors the cube must beat, fitted on the training split only.

- ``identity``: the input itself (for dialogue, the question's own embedding).
- ``mean``: the mean training target, whatever the input.
- ``ridge``: a closed-form linear map ``[x, 1] -> y``; its regulariser is chosen on a
  held-out tenth of the training rows, then refitted on all of them.
- ``mlp``: a residual two-layer MLP with about the cube's parameter count, trained by the
  same trainer with the same loss, budget and early stopping.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cubecore.config import TrainParams
from cubecore.modes import get_mode
from cubecore.tasks import TaskData
from cubecore.trainer import Trainer, seed_everything


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class MeanTarget(nn.Module):
    def __init__(self, targets: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", targets.mean(0))

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


def ridge_solve(x: torch.Tensor, y: torch.Tensor, alpha: float) -> Linear:
    """Least squares with an L2 penalty on the weights (not the bias), in float64."""
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc + alpha * torch.eye(x.shape[1], dtype=torch.float64)
    weight = torch.linalg.solve(gram, xc.T @ yc)
    return Linear(weight.float(), (y_mean - x_mean @ weight).float())


def fit_ridge(train: TaskData, alphas: list[float], seed: int) -> tuple[Linear, float]:
    """Pick alpha by cosine on a held-out tenth of train, refit on all of train."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    held = order[: max(1, len(train) // 10)]
    fit = order[max(1, len(train) // 10):]

    def held_cosine(alpha: float) -> float:
        model = ridge_solve(train.inputs[fit], train.targets[fit], alpha)
        return float(F.cosine_similarity(model(train.inputs[held]), train.targets[held]).mean())

    best = max(alphas, key=held_cosine)
    return ridge_solve(train.inputs, train.targets, best), best


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


def fit_mlp(train: TaskData, val: TaskData, params: TrainParams, seed: int,
            parameters: int, key: str, progress: bool = False) -> ResidualMLP:
    """The equal-size MLP, trained like the cube (same loss, epochs, early stopping) in the
    ``train.mode``'s baseline mode."""
    dim = train.inputs.shape[1]
    seed_everything(seed)
    model = ResidualMLP(dim, ResidualMLP.hidden_for(dim, parameters))
    Trainer(model, params, seed, key, get_mode(params.mode).baseline).fit(train, val, progress=progress)
    return model


def fit_baselines(train: TaskData, val: TaskData, params: TrainParams, alphas: list[float],
                  seed: int, cube_parameters: int, key: str) -> tuple[dict[str, nn.Module], dict]:
    """Every baseline fitted on ``train`` (the MLP early-stops on ``val``, as the cube does)."""
    ridge, alpha = fit_ridge(train, alphas, seed)
    mlp = fit_mlp(train, val, params, seed, cube_parameters, key)
    models = {"identity": Identity(), "mean": MeanTarget(train.targets), "ridge": ridge, "mlp": mlp}
    info = {"ridge_alpha": alpha, "mlp_parameters": sum(p.numel() for p in mlp.parameters()),
            "mlp_hidden": mlp.up.out_features}
    return models, info
