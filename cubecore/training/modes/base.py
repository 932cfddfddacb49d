"""What every training mode defines, and the defaults most modes keep.

A mode is one object: the pairing it trains, validates and is compared with the baselines
on (``pairing``), the model it trains (``build``), its loss on one training batch
(``batch_loss``), how it starts from a pretrained cube (``warm_start``), the further views
the model is scored on (``views``) and the mode the MLP baseline trains in (``baseline``).
The trainer and the evaluation consult it; neither tests a mode's name. A new mode is one
module in this package plus its name in ``MODES`` and in the ``Literal`` of
``config.TrainParams.mode`` (a test checks the two agree).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from cubecore.core.config import CubeParams, TrainParams
from cubecore.model.cube import CubicCore
from cubecore.training.losses import combined_loss
from cubecore.training.pairings import Pairing, corrupt

# the loss of predictions against targets: the trainer passes its ``Objective`` (queue of
# negatives, learnable temperature); without one, ``train.loss`` on in-batch negatives
Loss = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict]]


def pairing_loss(model: nn.Module, pairing: Pairing, x: torch.Tensor, y: torch.Tensor, params: TrainParams,
                 generator: torch.Generator, objective: Loss | None = None) -> tuple[torch.Tensor, dict]:
    """The loss of ``model`` on one batch of ``pairing`` (noisy pairings corrupt ``x`` first)."""
    x = corrupt(x, pairing.input_noise(params), generator)
    if objective is None:
        return combined_loss(model(x), y, params.loss)
    return objective(model(x), y)


@dataclass(frozen=True)
class View:
    """A further way the trained model is scored: ``pairing``'s rows through ``module(model)``."""
    name: str
    pairing: Pairing
    module: Callable[[nn.Module], nn.Module] = lambda model: model


@dataclass(frozen=True)
class Mode:
    name: str
    pairing: Pairing
    views: tuple[View, ...] = ()

    def build(self, cube: CubeParams, dim: int) -> nn.Module:
        return CubicCore(cube, dim)

    @property
    def baseline(self) -> "Mode":
        return self

    def warm_start(self, model: nn.Module, cube_weights: dict[str, torch.Tensor]) -> None:
        """Load one trained cube's weights (the ``pretrain`` stage's) into ``model``."""
        model.load_state_dict(cube_weights)

    def batch_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: TrainParams,
                   generator: torch.Generator, step: int, objective: Loss | None = None) -> tuple[torch.Tensor, dict]:
        """The loss of one training batch of ``pairing`` rows at optimiser step ``step``."""
        return pairing_loss(model, self.pairing, x, y, params, generator, objective)
