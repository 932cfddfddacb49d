"""What the trained cube computes: how much of it an affine map of its input explains, and
what its lattice adds.

Fitted on the training rows (never on the split they are scored on), to the cube's own outputs:

- the **trivial** class ``alpha * x + c`` (one scale for every dim, one offset vector), and
- the **general** affine map ``W x + c`` (centred normal equations with a tiny ridge, in float64:
  the teacher's unit vectors share a large common component, so an unregularised solver is
  ill-conditioned and gives a different R² on identical calls).

Scored on each evaluated split: R² of each fit against the cube's outputs (1 - residual /
total sum of squares about the split's mean output), their mean cosine to the cube's outputs,
and each fit's own cosine and MRR as a predictor of the targets, beside the cube's. The
**lattice off** is the trained model run with 0 propagation steps (the lifted input read
straight out); ``step_share`` is each step's share of the change the steps make. An affine
cube has trivial R² near 1 and its lattice-off scores near its own.
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cubecore.evaluation.baselines import Linear, Moments
from cubecore.evaluation.scoring import target_ranks
from cubecore.model.cube import CubicCore
from cubecore.model.inference import predict
from cubecore.training.pairings import TaskData

FIT_ROWS = 20_000  # training rows the fits see (a seeded sample beyond that): 384-d fits converge long before
RIDGE = 1e-6  # the general fit's ridge, relative to the mean variance of the inputs


class TrivialAffine(nn.Module):
    """``alpha * x + offset``."""

    def __init__(self, alpha: float, offset: torch.Tensor):
        super().__init__()
        self.alpha = alpha
        self.register_buffer("offset", offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x + self.offset


def fit_trivial(x: torch.Tensor, y: torch.Tensor) -> TrivialAffine:
    """Least squares ``y ≈ alpha * x + c`` over all rows and dims (closed form, float64)."""
    x, y = x.double(), y.double()
    xc, yc = x - x.mean(0), y - y.mean(0)
    alpha = float((xc * yc).sum() / (xc * xc).sum())
    return TrivialAffine(alpha, (y.mean(0) - alpha * x.mean(0)).float())


def fit_general(x: torch.Tensor, y: torch.Tensor) -> Linear:
    """Least squares ``y ≈ x W + c`` with a ridge of ``RIDGE`` times the inputs' mean variance."""
    moments = Moments.of(x, y)
    variance = float((torch.diagonal(moments.xx) / moments.n - (moments.sx / moments.n) ** 2).mean())
    return moments.solve(RIDGE * variance * moments.n)


def r_squared(fit: torch.Tensor, out: torch.Tensor) -> float:
    """Share of the variance of ``out`` (about its mean over these rows) that ``fit`` reproduces."""
    out, fit = out.double(), fit.double()
    residual = (out - fit).square().sum()
    total = (out - out.mean(0)).square().sum()
    return float(1 - residual / total) if total > 0 else float("nan")


@contextlib.contextmanager
def lattice_steps(model: nn.Module, steps: int):
    """Every cube inside ``model`` runs ``steps`` propagation steps for the duration."""
    cubes = [m for m in model.modules() if isinstance(m, CubicCore)]
    saved = [cube.params for cube in cubes]
    for cube in cubes:
        cube.params = dataclasses.replace(cube.params, steps=steps)
    try:
        yield
    finally:
        for cube, params in zip(cubes, saved):
            cube.params = params


def trained_steps(model: nn.Module) -> int:
    return max((m.params.steps for m in model.modules() if isinstance(m, CubicCore)), default=0)


def as_predictor(pred: torch.Tensor, rows: TaskData) -> dict:
    """Mean cosine to the targets and MRR among the split's distinct targets."""
    ranks = target_ranks(pred, rows.targets, rows.target_ids)[0].double()
    return {"cosine": round(float(F.cosine_similarity(pred, rows.targets).mean()), 4),
            "mrr": round(float((1 / ranks).mean()), 4)}


def step_shares(model: nn.Module, x: torch.Tensor) -> list[float]:
    """Each propagation step's share of the total change of the output, ``[steps]``."""
    steps = trained_steps(model)
    outputs = []
    for k in range(steps + 1):
        with lattice_steps(model, k):
            outputs.append(predict(model, x))
    changes = np.array([float((b - a).norm(dim=1).mean()) for a, b in zip(outputs, outputs[1:])])
    return [round(float(c), 4) for c in changes / changes.sum()] if changes.sum() > 0 else [0.0] * steps


def anatomy(model: nn.Module, fit_rows: TaskData, scored: dict[str, TaskData], seed: int,
            r2_limit: float) -> tuple[dict, dict]:
    """The anatomy section of ``eval.json`` (fits on ``fit_rows``, scores per split of ``scored``)
    and, for the plot, the report split's cube outputs beside its fits' (the last of ``scored``)."""
    rows = torch.randperm(len(fit_rows), generator=torch.Generator().manual_seed(seed))[:FIT_ROWS].sort().values
    x = fit_rows.inputs[rows]
    out = predict(model, x)
    fits = {"trivial": fit_trivial(x, out), "general": fit_general(x, out)}
    mean_target = fit_rows.targets[rows].double().mean(0).float()
    report = {"fitted_on": "train", "fit_rows": len(rows), "affine_r2_limit": r2_limit,
              "alpha": round(fits["trivial"].alpha, 4),
              "offset_cosine_to_mean_answer": round(float(F.cosine_similarity(
                  fits["trivial"].offset, mean_target, dim=0)), 4),
              "steps": trained_steps(model)}
    plot = {}
    for split, split_rows in scored.items():
        cube_out = predict(model, split_rows.inputs)
        entry = {"cube": as_predictor(cube_out, split_rows)}
        for name, fit in fits.items():
            fitted = predict(fit, split_rows.inputs)
            entry[name] = {"r2": round(r_squared(fitted, cube_out), 4),
                           "cosine_to_cube": round(float(F.cosine_similarity(fitted, cube_out).mean()), 4),
                           **as_predictor(fitted, split_rows)}
            plot[name] = fitted
        with lattice_steps(model, 0):
            entry["lattice_off"] = as_predictor(predict(model, split_rows.inputs), split_rows)
        entry["step_share"] = step_shares(model, split_rows.inputs)
        report[split] = entry
        plot.update(cube=cube_out, split=split, report=entry)
    return report, plot
