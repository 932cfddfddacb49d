"""Paired bootstrap over evaluation rows: resample rows, recompute every model's means.

Rows are resampled with replacement, the same rows for every model (paired), so a
difference between two models keeps the correlation of their per-row scores. Per-row scores
(cosine, reciprocal rank, hit@1) are computed once; the candidate set of retrieval stays
fixed, so a resample costs one matrix product.
"""
from __future__ import annotations

import numpy as np

LEVEL = 0.95


def resample_means(values: np.ndarray, resamples: int, seed: int, chunk: int = 100) -> np.ndarray:
    """Means of the columns of ``values`` ``[rows, K]`` over ``resamples`` seeded resamples of
    its rows: ``[resamples, K]``."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, values.shape[1]))
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        index = rng.integers(0, n, (r, n)) + n * np.arange(r)[:, None]
        counts = np.bincount(index.ravel(), minlength=r * n).reshape(r, n)
        out[start:start + r] = counts @ values / n
    return out


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap samples."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)
