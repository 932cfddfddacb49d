"""Is the cube outside the frontier of the baselines? Pareto frontier and signed margin.

Every model is a point (cosine, MRR), both higher-is-better. A point ``q`` *dominates* ``p``
when ``q`` is at least as good on both metrics and better on one. The *frontier* is the set
of baseline points no other baseline dominates.

The cube's **margin** to the frontier is

    margin = min over baselines b of max(cos_cube - cos_b, mrr_cube - mrr_b)

For one baseline, ``max(...)`` is how far the cube is ahead on the metric where it is most
ahead; the minimum takes the hardest baseline. So:

- ``margin > 0``: the cube beats every baseline on at least one metric by at least
  ``margin``: it lies outside the frontier, ``margin`` away from it;
- ``margin < 0``: some baseline beats the cube on *both* metrics by at least ``-margin``:
  the cube lies inside (is dominated).

Geometrically it is the largest ``t`` such that the cube moved to ``(cos - t, mrr - t)`` is
still not beaten on both metrics by any baseline: the distance to the frontier's staircase
along the diagonal, in the metrics' own units (both are on a 0-1 scale). Only frontier
points can attain the minimum, so dominated baselines never change it.
"""
from __future__ import annotations

import numpy as np

Point = tuple[float, float]  # (cosine, mrr)


def dominates(q: Point, p: Point) -> bool:
    return q[0] >= p[0] and q[1] >= p[1] and tuple(q) != tuple(p)


def pareto_front(points: dict[str, Point]) -> list[str]:
    """Names of the points no other point dominates, by increasing cosine."""
    front = [n for n, p in points.items() if not any(dominates(q, p) for q in points.values())]
    return sorted(front, key=lambda n: (points[n][0], -points[n][1]))


def margin(cube_cos, cube_mrr, cos: np.ndarray, mrr: np.ndarray) -> np.ndarray:
    """The signed margin (see the module docstring); baselines on the last axis of ``cos``
    and ``mrr``, so a batch of bootstrap resamples is one call."""
    cube_cos, cube_mrr = np.asarray(cube_cos)[..., None], np.asarray(cube_mrr)[..., None]
    return np.maximum(cube_cos - cos, cube_mrr - mrr).min(axis=-1)


def frontier_report(points: dict[str, Point], cube: Point) -> dict:
    """The frontier of the baseline ``points``, and where the cube stands against it (the points
    themselves go to the frontier plot's data, not to the metrics)."""
    cos, mrr = np.array([points[n] for n in points]).T
    return {"cube": {"cosine": round(cube[0], 4), "mrr": round(cube[1], 4)},
            "frontier": pareto_front(points),
            "dominated": any(dominates(p, cube) for p in points.values()),
            "dominated_by": [n for n, p in points.items() if dominates(p, cube)],
            "margin": round(float(margin(cube[0], cube[1], cos, mrr)), 4)}
