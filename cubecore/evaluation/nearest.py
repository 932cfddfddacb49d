"""Nearest rows of a large (memory-mapped) matrix by cosine, in bounded memory.

The candidates are read a block at a time (``cubecore.data.rows``), normalised, and scored against
the queries a chunk at a time; a running top-k per query is all that is kept. Memory is one
block of candidates plus ``SCORES_BUDGET`` scores, whatever the number of candidates.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cubecore.data import rows
from cubecore.evaluation.scoring import SCORES_BUDGET


def nearest(queries: torch.Tensor, matrix: np.ndarray, ids: np.ndarray, k: int = 1,
            block: int = rows.CHUNK, budget: int = SCORES_BUDGET) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine scores ``[N, k]`` and positions in ``ids`` of the ``k`` rows of ``matrix[ids]``
    nearest each query (``k`` capped at ``len(ids)``), best first."""
    k = min(k, len(ids))
    queries = F.normalize(queries.float(), dim=-1)
    best = torch.full((len(queries), k), -torch.inf)
    where = torch.zeros((len(queries), k), dtype=torch.long)
    for start, candidates in rows.chunks(matrix, ids, block):
        candidates = F.normalize(torch.from_numpy(candidates), dim=-1)
        step = max(1, budget // len(candidates))
        for q in range(0, len(queries), step):
            scores = queries[q:q + step] @ candidates.T
            top, index = scores.topk(min(k, len(candidates)), dim=1)
            merged, pick = torch.cat([best[q:q + step], top], 1).topk(k, dim=1)
            where[q:q + step] = torch.cat([where[q:q + step], index + start], 1).gather(1, pick)
            best[q:q + step] = merged
    return best, where
