"""``dual``: the dialogue and autoencoder objectives trained together on one cube.

Each training batch is a batch of dialogue pairs ``(q, a)``. Its two terms:

- ``dialogue``: ``train.loss`` of ``cube(q)`` against ``a``;
- ``autoencoder``: ``train.loss`` of ``cube(corrupt([q; a]))`` against ``[q; a]`` (the batch's
  own texts, noise ``train.autoencoder.noise``), so no text outside the training split is seen.

``train.dual.balancing`` combines them, with ``w_d``, ``w_a`` = ``dialogue_weight``,
``autoencoder_weight``:

- ``fixed``: ``w_d * L_d + w_a * L_a``;
- ``alternate``: steps ``[0, switch_every)`` train the dialogue term only, the next
  ``switch_every`` steps the autoencoder term only, and so on (``w_d * L_d`` or ``w_a * L_a``);
- ``adaptive``: ``w_d * r_d * L_d + w_a * r_a * L_a`` with ``r_k = 2 L_k / (L_d + L_a)`` taken
  from the batch's current losses (no gradient through ``r``): the objective that lags gets
  the larger share, and equal losses give ``fixed``.

Validation, early stopping and the baselines use the dialogue rows; evaluation also scores
the cube as a denoising autoencoder on the autoencoder rows (view ``reconstruction``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cubecore.core.config import DualParams, TrainParams
from cubecore.training.modes.base import Loss, Mode, View, pairing_loss
from cubecore.training.pairings import AUTOENCODER, DIALOGUE


def active_terms(d: DualParams, step: int) -> tuple[str, ...]:
    """The terms trained at optimiser step ``step``."""
    if d.balancing == "alternate":
        return ("dialogue",) if (step // d.switch_every) % 2 == 0 else ("autoencoder",)
    return ("dialogue", "autoencoder")


def dual_weights(d: DualParams, losses: dict[str, float]) -> dict[str, float]:
    """The weight of each term in ``losses`` (its current value, used by ``adaptive``)."""
    base = {"dialogue": d.dialogue_weight, "autoencoder": d.autoencoder_weight}
    total = sum(losses.values())
    if d.balancing != "adaptive" or total <= 0:
        return {name: base[name] for name in losses}
    return {name: base[name] * len(losses) * value / total for name, value in losses.items()}


@dataclass(frozen=True)
class Dual(Mode):
    def batch_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: TrainParams,
                   generator: torch.Generator, step: int, objective: Loss | None = None) -> tuple[torch.Tensor, dict]:
        texts = torch.cat([x, y])  # the queue (if any) holds answers: the autoencoder term uses in-batch negatives
        objectives = {"dialogue": lambda: pairing_loss(model, DIALOGUE, x, y, params, generator, objective)[0],
                      "autoencoder": lambda: pairing_loss(model, AUTOENCODER, texts, texts, params, generator)[0]}
        terms = {name: objectives[name]() for name in active_terms(params.dual, step)}
        weights = dual_weights(params.dual, {name: float(value.detach()) for name, value in terms.items()})
        total = sum(weights[name] * value for name, value in terms.items())
        return total, {name: float(value.detach()) for name, value in terms.items()} | {
            f"{name}_weight": weight for name, weight in weights.items()}


MODE = Dual("dual", DIALOGUE, views=(View("reconstruction", AUTOENCODER),))
