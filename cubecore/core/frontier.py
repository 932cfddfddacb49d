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
- ``margin < 0``: some baseline beats the cube on *both* metrics by at least ``-margin``
  (or on one, tying it at the ceiling on the other: see below): the cube lies inside (is
  dominated).

Geometrically it is the largest ``t`` such that the cube moved to ``(cos - t, mrr - t)`` is
still not beaten on both metrics by any baseline: the distance to the frontier's staircase
along the diagonal, in the metrics' own units (both are on a 0-1 scale). Only frontier
points can attain the minimum, so dominated baselines never change it.

Both metrics are at most 1. A metric at that ceiling for the cube is **saturated** (MRR is 1
in autoencoder mode, where each input retrieves itself): against a baseline at the ceiling too,
its difference of 0 cannot separate the two, yet it would keep that baseline's term, and so
the margin, from going below 0 however far behind the cube is on the other metric. Such a
tie is left out of the baseline's term (which is 0 when both metrics tie there): a baseline
that ties the cube at MRR 1 and is ahead on cosine makes the margin negative, as it dominates
the cube. Dominance needs no such care: equal on one metric, ``q`` dominates ``p`` exactly
when it is better on the other.
"""
from __future__ import annotations

import numpy as np

Point = tuple[float, float]  # (cosine, mrr)
METRICS = ("cosine", "mrr")
CEILING = 1.0  # the best cosine and MRR there are


def dominates(q: Point, p: Point) -> bool:
    return q[0] >= p[0] and q[1] >= p[1] and tuple(q) != tuple(p)


def pareto_front(points: dict[str, Point]) -> list[str]:
    """Names of the points no other point dominates, by increasing cosine."""
    front = [n for n, p in points.items() if not any(dominates(q, p) for q in points.values())]
    return sorted(front, key=lambda n: (points[n][0], -points[n][1]))


def margin(cube_cos, cube_mrr, cos: np.ndarray, mrr: np.ndarray) -> np.ndarray:
    """The signed margin (see the module docstring); baselines on the last axis of ``cos`` and
    ``mrr``, so a batch of bootstrap resamples is one call."""
    ahead = []
    for cube, base in ((cube_cos, cos), (cube_mrr, mrr)):
        cube = np.asarray(cube)[..., None]
        ahead.append(np.where((cube >= CEILING) & (base >= CEILING), -np.inf, cube - base))  # a tie at the ceiling
    term = np.max(ahead, axis=0)
    return np.where(np.isneginf(term), 0.0, term).min(axis=-1)


def saturated(points: dict[str, Point], cube: Point) -> dict[str, dict[str, int]]:
    """Per metric at its ceiling for the cube: how many of the baselines are there too (``tied``)
    ``of`` how many; metrics no baseline ties there are left out."""
    ties = {m: sum(p[i] >= CEILING for p in points.values()) for i, m in enumerate(METRICS) if cube[i] >= CEILING}
    return {m: {"tied": n, "of": len(points)} for m, n in ties.items() if n}


def basis(report: dict) -> str:
    """What a verdict on a frontier report rests on, to follow "dominated" or "margin": e.g.
    " on cosine (mrr saturated: 1 for the cube and 104 of 105 baselines)"; "" when no metric
    is saturated (or the report predates ``saturated``)."""
    flat = report.get("saturated") or {}
    if not flat:
        return ""
    rest = " and ".join(m for m in METRICS if m not in flat) or "nothing else"
    ties = "; ".join(f"{m} saturated: 1 for the cube and {t['tied']} of {t['of']} baselines" for m, t in flat.items())
    return f" on {rest} ({ties})"


def parameter(name: str) -> float:
    """The parameter of a family member: 0.42 for ``blend@0.42``."""
    return float(name.rpartition("@")[2])


def family_range(names: list[str]) -> str:
    """``blend@0.73…0.81 (9 weights)`` for several members of a family, the name for one."""
    names = sorted(names, key=parameter)
    if len(names) == 1:
        return names[0]
    return f"{names[0]}…{names[-1].rpartition('@')[2]} ({len(names)} weights)"


def short_list(names: list[str]) -> str:
    """Model names for a message or a table cell: each family (``blend@a``, ``shift@b``) as one
    range, e.g. "linear, mlp, blend@0.49…0.6 (12 weights)"; "nothing" when empty."""
    families: dict[str, list[str]] = {}
    for name in names:
        families.setdefault(name.partition("@")[0] if "@" in name else name, []).append(name)
    return ", ".join(family_range(members) if "@" in members[0] else members[0]
                     for members in families.values()) or "nothing"


def frontier_report(points: dict[str, Point], cube: Point) -> dict:
    """The frontier of the baseline ``points``, and where the cube stands against it (the points
    themselves go to the frontier plot's data, not to the metrics). ``saturated`` is a mapping of
    numbers, not a list, so that ``dvc exp show`` keeps it."""
    cos, mrr = np.array([points[n] for n in points]).T
    return {"cube": {"cosine": round(cube[0], 4), "mrr": round(cube[1], 4)},
            "frontier": pareto_front(points),
            "dominated": any(dominates(p, cube) for p in points.values()),
            "dominated_by": [n for n, p in points.items() if dominates(p, cube)],
            "margin": round(float(margin(cube[0], cube[1], cos, mrr)), 4),
            "saturated": saturated(points, cube)}
