"""``bidirectional``: two cubes in internal dialogue, a forward cube (question -> answer) and
a backward cube (answer -> question), trained together.

On a batch of pairs ``(q, a)`` with ``f`` the forward and ``b`` the backward cube, the loss is

    train.loss(f(q), a) + train.loss(b(a), q)
      + train.bidirectional.cycle * (cosine_loss(b(f(q)), q) + cosine_loss(f(b(a)), a))

(the cycle terms ask Q->A->Q ~ Q and A->Q->A ~ A). The model's output is the forward cube's,
so validation, early stopping and the baselines judge question -> answer; evaluation also
scores the backward cube on the reversed pairs (view ``backward``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cubecore.core.config import CubeParams, TrainParams
from cubecore.model.cube import CubicCore
from cubecore.training.losses import combined_loss, cosine_loss
from cubecore.training.modes import dialogue
from cubecore.training.modes.base import Loss, Mode, View
from cubecore.training.pairings import DIALOGUE, Pairing

REVERSED = Pairing("reversed_dialogue", lambda pairs, exclude: (pairs.answer_id, pairs.question_id),
                   noisy=False, disjoint=False, unit="pairs")


class TwoCubes(nn.Module):
    """A forward and a backward cube of the same shape; calling it runs the forward cube."""

    def __init__(self, cube: CubeParams, dim: int):
        super().__init__()
        self.forward_cube = CubicCore(cube, dim)
        self.backward_cube = CubicCore(cube, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_cube(x)


@dataclass(frozen=True)
class Bidirectional(Mode):
    def build(self, cube: CubeParams, dim: int) -> nn.Module:
        return TwoCubes(cube, dim)

    def warm_start(self, model: TwoCubes, cube_weights: dict[str, torch.Tensor]) -> None:
        """Both cubes start from the pretrained cube."""
        model.forward_cube.load_state_dict(cube_weights)
        model.backward_cube.load_state_dict(cube_weights)

    @property
    def baseline(self) -> Mode:
        return dialogue.MODE  # the MLP learns the forward direction, with both cubes' budget

    def batch_loss(self, model: TwoCubes, x: torch.Tensor, y: torch.Tensor, params: TrainParams,
                   generator: torch.Generator, step: int, objective: Loss | None = None) -> tuple[torch.Tensor, dict]:
        """The forward term uses the trainer's objective (its queue holds answers); the
        backward term, in-batch negatives."""
        answer, question = model.forward_cube(x), model.backward_cube(y)
        forward, _ = (objective or (lambda p, t: combined_loss(p, t, params.loss)))(answer, y)
        backward, _ = combined_loss(question, x, params.loss)
        cycle = cosine_loss(model.backward_cube(answer), x) + cosine_loss(model.forward_cube(question), y)
        total = forward + backward + params.bidirectional.cycle * cycle
        return total, {"forward": float(forward.detach()), "backward": float(backward.detach()),
                       "cycle": float(cycle.detach())}


MODE = Bidirectional("bidirectional", DIALOGUE,
                     views=(View("backward", REVERSED, lambda model: model.backward_cube),))
