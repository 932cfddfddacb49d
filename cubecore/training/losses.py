"""Losses between predicted and target embeddings, combined by the weights in ``train.loss``.

``Objective`` is the training loss with its state: the (optionally learned) InfoNCE
temperature and a queue of recent training targets that serve as extra negatives, so the
number of negatives (batch + ``queue_size``) does not depend on the optimiser batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cubecore.core.config import LossParams
from cubecore.training.distillation import similarity_distillation_loss

TEMPERATURE_RANGE = (0.01, 1.0)  # a learned temperature is clamped to this range
SAME = 1 - 1e-6                  # cosine above which two targets count as the same text


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def info_nce_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float | torch.Tensor,
                  negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Each prediction must pick its own target among the batch's targets and ``negatives``.

    A candidate equal to the row's own target (a repeated answer like "I'm fine" elsewhere in
    the batch, or the same text in the queue) is not a negative: it is masked out. Texts are
    compared by their vectors, so one text id, which always has one vector, is always masked.
    """
    target = F.normalize(target, dim=-1)
    candidates = target if negatives is None else torch.cat([target, F.normalize(negatives, dim=-1)])
    logits = F.normalize(pred, dim=-1) @ candidates.T / temperature
    same = target @ candidates.T > SAME
    same[:, : len(target)].fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(pred), device=pred.device))


def combined_loss(pred: torch.Tensor, target: torch.Tensor, weights: LossParams,
                  temperature: float | torch.Tensor | None = None,
                  negatives: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the enabled losses, and each term's value for logging."""
    terms = {}
    if weights.cosine:
        terms["cosine"] = (weights.cosine, cosine_loss(pred, target))
    if weights.mse:
        terms["mse"] = (weights.mse, mse_loss(pred, target))
    if weights.infonce:
        tau = weights.temperature if temperature is None else temperature
        terms["infonce"] = (weights.infonce, info_nce_loss(pred, target, tau, negatives))
    if weights.distill:
        terms["distill"] = (weights.distill, similarity_distillation_loss(pred, target, weights.distill_temperature))
    total = sum(w * value for w, value in terms.values())
    return total, {name: float(value.detach()) for name, (_, value) in terms.items()}


class Objective(nn.Module):
    """The training loss: ``combined_loss`` with a temperature parameter and a target queue.

    - ``log_temperature`` starts at ``log(train.loss.temperature)``; it is trained only with
      ``learn_temperature`` and is clamped to ``TEMPERATURE_RANGE`` when used.
    - The queue holds the last ``queue_size`` training targets (normalised, no gradient);
      they are InfoNCE negatives for the next batches. Targets are teacher embeddings, fixed
      during training, so queued negatives are never stale.
    """

    def __init__(self, weights: LossParams):
        super().__init__()
        self.weights = weights
        self.log_temperature = nn.Parameter(torch.tensor(math.log(weights.temperature)),
                                            requires_grad=weights.learn_temperature)
        self.queue = torch.zeros(0)

    def temperature(self) -> torch.Tensor:
        low, high = TEMPERATURE_RANGE
        return self.log_temperature.clamp(math.log(low), math.log(high)).exp()

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                negatives: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """The loss of one training batch, with the queue as negatives unless others are given."""
        if negatives is None and len(self.queue):
            negatives = self.queue
        return combined_loss(pred, target, self.weights, self.temperature(), negatives)

    @property
    def keeps_queue(self) -> bool:
        """Whether training targets are queued (``queue_size`` > 0 and InfoNCE on)."""
        return bool(self.weights.queue_size and self.weights.infonce)

    @torch.no_grad()
    def enqueue(self, target: torch.Tensor) -> None:
        """Add a batch's targets to the queue, dropping the oldest beyond ``queue_size``."""
        if self.keeps_queue:
            self.queue = torch.cat([self.queue.reshape(-1, target.shape[1]),
                                    F.normalize(target.detach().float(), dim=-1)])[-self.weights.queue_size:]

    @torch.no_grad()
    def batched(self, pred: torch.Tensor, target: torch.Tensor, batch_size: int) -> float:
        """The loss over many rows, computed as in training: batches of ``batch_size`` rows,
        each with (up to) ``queue_size`` other rows as extra negatives — the rows just before
        the batch, wrapping around — so train and validation losses see as many negatives."""
        n, total = len(pred), 0.0
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            extra = min(self.weights.queue_size, n - (stop - start)) if self.weights.infonce else 0
            others = torch.arange(start - extra, start) % n
            loss, _ = combined_loss(pred[start:stop], target[start:stop], self.weights, self.temperature(),
                                    target[others] if extra else None)
            total += float(loss) * (stop - start)
        return total / n

    def get_extra_state(self) -> dict:
        return {"queue": self.queue}

    def set_extra_state(self, state: dict) -> None:
        self.queue = state["queue"]
