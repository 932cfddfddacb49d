"""Losses between predicted and target embeddings, combined by the weights in ``train.loss``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cubecore.config import LossParams
from cubecore.distillation import similarity_distillation_loss


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def info_nce_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Each prediction must pick its own target among the batch's targets (in-batch negatives).

    Other rows holding the same target (a repeated answer like "I'm fine") are not negatives.
    """
    target = F.normalize(target, dim=-1)
    logits = F.normalize(pred, dim=-1) @ target.T / temperature
    same = (target @ target.T > 1 - 1e-6) & ~torch.eye(len(target), dtype=torch.bool, device=target.device)
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(pred), device=pred.device))


def combined_loss(pred: torch.Tensor, target: torch.Tensor, weights: LossParams) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the enabled losses, and each term's value for logging."""
    terms = {}
    if weights.cosine:
        terms["cosine"] = (weights.cosine, cosine_loss(pred, target))
    if weights.mse:
        terms["mse"] = (weights.mse, mse_loss(pred, target))
    if weights.infonce:
        terms["infonce"] = (weights.infonce, info_nce_loss(pred, target, weights.temperature))
    if weights.distill:
        terms["distill"] = (weights.distill, similarity_distillation_loss(pred, target, weights.distill_temperature))
    total = sum(w * value for w, value in terms.values())
    return total, {name: float(value.detach()) for name, (_, value) in terms.items()}
