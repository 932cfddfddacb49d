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

import torch
import torch.nn.functional as F
from torch import nn

from cubecore.config import TrainParams
from cubecore.modelcache import cached_fit
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


class Blend(nn.Module):
    """Unit-normalised ridge prediction and input, mixed with weight ``a`` on the input."""

    def __init__(self, ridge: Linear, a: float):
        super().__init__()
        self.ridge, self.a = ridge, a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - self.a) * F.normalize(self.ridge(x), dim=-1) + self.a * F.normalize(x, dim=-1)


def blend_family(ridge: Linear, weights: list[float]) -> dict[str, Blend]:
    """One blend per weight, named ``blend@<a>``."""
    return {f"blend@{a:g}": Blend(ridge, a) for a in weights}


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
                seed: int, key: str, name: str) -> dict:
    """Train ``model`` like the cube (same loss, epochs, early stopping on ``val``) in
    ``train.mode``'s baseline mode, or load it from the baseline cache when this exact
    training already ran (``cubecore.modelcache``)."""
    mode = get_mode(params.mode).baseline
    return cached_fit(model, name, params, seed, train, val,
                      lambda: Trainer(model, params, seed, key, name=name, mode=mode).fit(train, val, progress=False))


def fit_baselines(train: TaskData, val: TaskData, params: TrainParams, alphas: list[float],
                  seed: int, cube_parameters: int, key: str) -> tuple[dict[str, nn.Module], dict]:
    """Every baseline fitted on ``train`` (the trained ones early-stop on ``val``, as the cube does)."""
    dim = train.inputs.shape[1]
    ridge, alpha = fit_ridge(train, alphas, seed)
    seed_everything(seed)
    mlp = ResidualMLP(dim, ResidualMLP.hidden_for(dim, cube_parameters))
    fit_trained(mlp, train, val, params, seed, f"mlp-{key}", "mlp")
    linear = LinearMap(dim)
    linear_run = fit_trained(linear, train, val, params, seed, f"linear-{key}", "linear")
    models = {"identity": Identity(), "mean": MeanTarget(train.targets), "ridge": ridge, "linear": linear,
              "mlp": mlp}
    info = {"ridge_alpha": alpha, "mlp_parameters": sum(p.numel() for p in mlp.parameters()),
            "mlp_hidden": mlp.up.out_features, "linear_parameters": dim * dim + dim,
            "linear_best_epoch": linear_run["best_epoch"]}
    return models, info
