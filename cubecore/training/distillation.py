"""Knowledge distillation of the teacher's similarity structure (Hinton et al., 2015, on
similarities instead of class logits).

Within a batch, row ``i``'s *student* distribution is ``softmax_j(cos(pred_i, target_j) / T)``
and its *teacher* distribution is ``softmax_j(cos(target_i, target_j) / T)``: how the teacher
itself spreads answer ``i``'s similarity over the batch's answers. The loss is
``T**2 * mean_i KL(teacher_i || student_i)``.

- It is 0 exactly when every row's similarity profile matches the teacher's (e.g. pred == target).
- Larger ``T`` flattens both distributions toward uniform, so the KL itself shrinks like
  ``1 / T**2``; the ``T**2`` factor keeps the gradient scale independent of ``T`` (Hinton's
  scaling). As ``T -> inf`` the loss tends to ``0.5 * mean_i Var_j(s_ij - t_ij)``, half the
  variance of the cosine differences (the logit-matching limit).
- Small ``T`` sharpens both toward their arg-max: the student is pushed to rank answers the
  way the teacher does, much like InfoNCE.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_distillation_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T**2 * mean_i KL(softmax(cos(t_i, t_.) / T) || softmax(cos(p_i, t_.) / T))``."""
    target = F.normalize(target, dim=-1)
    student = F.normalize(pred, dim=-1) @ target.T / temperature        # [B, B]
    teacher = (target @ target.T / temperature).detach()                # [B, B]
    kl = F.kl_div(F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1),
                  log_target=True, reduction="batchmean")
    return temperature ** 2 * kl
