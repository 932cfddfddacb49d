"""Dominance, the Pareto frontier and the margin at their edges: ties on one metric, equal
points, the order of the frontier (tests/test_evaluation.py has the general hand-made cases);
and the blend family's points, which ``evaluate`` computes all at once."""
import numpy as np
import pytest
import torch

from cubecore.core.frontier import (
    dominates,
    frontier_report,
    margin,
    pareto_front,
    short_list,
)
from cubecore.evaluation.baselines import Blend, Linear, blend_family
from cubecore.evaluation.run import blend_rows, per_row
from cubecore.training.pairings import TaskData


def test_a_tie_on_cosine_is_decided_by_mrr():
    assert dominates((0.5, 0.3), (0.5, 0.2))
    assert not dominates((0.5, 0.2), (0.5, 0.3))


def test_a_tie_on_mrr_is_decided_by_cosine():
    assert dominates((0.6, 0.2), (0.5, 0.2))
    assert not dominates((0.5, 0.2), (0.6, 0.2))


def test_an_equal_point_does_not_dominate():
    assert not dominates((0.5, 0.2), (0.5, 0.2))


def test_a_point_tied_on_cosine_and_worse_on_mrr_is_off_the_frontier():
    points = {"low": (0.5, 0.1), "high": (0.5, 0.4), "far": (0.7, 0.05)}  # only "high" dominates "low"
    assert pareto_front(points) == ["high", "far"]


def test_equal_points_are_both_on_the_frontier():
    assert pareto_front({"a": (0.5, 0.2), "twin": (0.5, 0.2), "c": (0.3, 0.1)}) == ["a", "twin"]


def test_the_frontier_is_listed_by_increasing_cosine():
    points = {"right": (0.9, 0.1), "left": (0.1, 0.9), "middle": (0.5, 0.5)}
    assert pareto_front(points) == ["left", "middle", "right"]


def test_a_cube_tied_on_cosine_with_a_better_mrr_baseline_is_dominated():
    report = frontier_report({"ridge": (0.5, 0.3), "mean": (0.2, 0.1)}, (0.5, 0.2))
    assert report["dominated"] and report["dominated_by"] == ["ridge"]
    assert report["margin"] == pytest.approx(0.0)  # not ahead on cosine, behind on MRR: max(0, -0.1)


def test_a_cube_that_dominates_every_baseline_is_not_dominated():
    report = frontier_report({"ridge": (0.5, 0.3), "mean": (0.2, 0.1)}, (0.6, 0.35))
    assert not report["dominated"] and report["dominated_by"] == []
    assert report["margin"] == pytest.approx(0.1)  # ahead of ridge by (0.1, 0.05), of mean by more


def test_margin_takes_each_baseline_s_best_metric_then_the_hardest_baseline():
    # ahead of b1 by (0.3, -0.1): 0.3; ahead of b2 by (-0.2, 0.1): 0.1 -> margin 0.1
    assert margin(0.5, 0.5, np.array([0.2, 0.7]), np.array([0.6, 0.4])) == pytest.approx(0.1)
    # behind b1 on both, by 0.1 and 0.3: -0.1
    assert margin(0.5, 0.5, np.array([0.6]), np.array([0.8])) == pytest.approx(-0.1)


def test_the_blend_points_are_each_blend_scored_on_its_own():
    """``blend_rows`` scores the whole family from two score matrices; each blend's per-row
    cosine, rank, MRR and hit@1 must be those of ``Blend(ridge, a)`` scored by itself (ridge a
    random map, so blend@0 and blend@1 are far apart; two rows share an answer)."""
    g = torch.Generator().manual_seed(0)
    ridge = Linear(torch.randn(16, 16, generator=g), torch.randn(16, generator=g))
    targets = torch.randn(40, 16, generator=g)
    ids = np.arange(40)
    targets[7], ids[7] = targets[3], ids[3]
    rows = TaskData(torch.randn(40, 16, generator=g), targets, ids)
    family = blend_family(ridge, 4)
    blended = blend_rows(family, rows)
    assert list(blended) == ["blend@0", "blend@0.25", "blend@0.5", "blend@0.75", "blend@1"]
    for name, blend in family.items():
        alone = per_row(Blend(ridge, blend.a)(rows.inputs), rows)
        assert np.allclose(blended[name]["cosine"], alone["cosine"], atol=1e-6), name
        for key in ("rank", "mrr", "recall@1"):
            assert np.array_equal(blended[name][key], alone[key]), (name, key)
    assert not np.allclose(blended["blend@0"]["cosine"], blended["blend@1"]["cosine"], atol=0.1)
    assert not np.array_equal(blended["blend@0"]["rank"], blended["blend@1"]["rank"])


def test_a_family_is_listed_as_one_range_whatever_its_order():
    names = ["linear", "blend@0.61", "blend@0.55", "mlp", *(f"blend@0.5{i}" for i in range(6, 10)), "blend@0.6"]
    assert short_list(names) == "linear, blend@0.55…0.61 (7 weights), mlp"
    assert short_list(["blend@0.7"]) == "blend@0.7" and short_list([]) == "nothing"
