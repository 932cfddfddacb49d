"""Embedding metrics: cosine to the target and retrieval of the target among candidates."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity ``[N]``."""
    return F.cosine_similarity(pred, target, dim=-1)


def retrieval_ranks(pred: torch.Tensor, candidates: torch.Tensor, true_index: torch.Tensor,
                    chunk: int = 2048) -> torch.Tensor:
    """1-based rank of each row's true candidate by cosine with the prediction.

    Only candidates scoring strictly higher count against a row, so ties (duplicate answer
    texts, or texts the teacher maps to the same vector) never push the true answer down.
    Pass distinct candidates: a repeated answer then occupies one slot, not several.
    """
    candidates = F.normalize(candidates.float(), dim=-1)
    ranks = []
    for start in range(0, len(pred), chunk):
        scores = F.normalize(pred[start:start + chunk].float(), dim=-1) @ candidates.T
        true = scores.gather(1, true_index[start:start + chunk, None])
        ranks.append(1 + (scores > true).sum(1))
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)


def retrieval_summary(ranks: torch.Tensor, recall_at: list[int]) -> dict:
    """Recall@k and mean reciprocal rank from ranks."""
    ranks = ranks.float()
    summary = {f"recall@{k}": float((ranks <= k).float().mean()) for k in recall_at}
    summary["mrr"] = float((1 / ranks).mean())
    return summary


def candidate_index(target_ids: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """For rows with these target ids: the first row of each distinct target (the candidate
    set) and each row's position in that set."""
    _, first_rows, position = np.unique(target_ids, return_index=True, return_inverse=True)
    return first_rows, torch.from_numpy(position.astype(np.int64))


def target_ranks(pred: torch.Tensor, targets: torch.Tensor, target_ids: np.ndarray) -> tuple[torch.Tensor, int]:
    """Each row's rank of its own target among the distinct targets of these rows, and the
    number of those candidates."""
    first_rows, position = candidate_index(target_ids)
    return retrieval_ranks(pred, targets[first_rows], position), len(first_rows)
