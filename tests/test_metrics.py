"""Retrieval ranks on hand-built similarity matrices with known ranks, MRR and Recall@k."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cubecore.evaluation.scoring import (
    mixed_retrieval_ranks,
    retrieval_ranks,
    retrieval_summary,
    target_ranks,
)

CANDIDATES = torch.eye(4)  # candidate j is the basis vector e_j, so pred[i, j] orders the scores
PRED = torch.tensor([[3.0, 2.0, 1.0, 0.0],    # true 2: two candidates score higher -> rank 3
                     [1.0, 1.0, 1.0, 1.0],    # true 3: tied with 3 others -> its expected rank 1 + 3/2
                     [0.0, 5.0, 4.0, 0.0],    # true 1: the best -> rank 1
                     [0.0, 1.0, 2.0, 3.0]])   # true 0: three higher -> rank 4
TRUE = torch.tensor([2, 3, 1, 0])


@pytest.mark.parametrize("chunk", [1, 3, 2048])
def test_ranks_are_one_based_and_a_tie_counts_at_its_expected_rank(chunk):
    assert retrieval_ranks(PRED, CANDIDATES, TRUE, chunk=chunk).tolist() == [3, 2.5, 1, 4]


def test_summary_from_known_ranks():
    summary = retrieval_summary(torch.tensor([3, 1, 1, 4]), [1, 3, 4])
    assert summary["mrr"] == pytest.approx((1 / 3 + 1 + 1 + 1 / 4) / 4)
    assert summary["recall@1"] == pytest.approx(0.5)
    assert summary["recall@3"] == pytest.approx(0.75)
    assert summary["recall@4"] == pytest.approx(1.0)


def test_a_repeated_target_is_one_candidate():
    """Rows 0 and 2 share text 7: three distinct candidates, and a row whose prediction hits
    its repeated target exactly ranks first, not behind its own duplicate."""
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    ids = np.array([7, 3, 7, 5])
    ranks, candidates = target_ranks(targets.clone(), targets, ids)
    assert candidates == 3
    assert ranks.tolist() == [1, 1, 1, 1]
    pred = torch.tensor([[0.0, 1.0]] * 4)   # points at text 3; text 5 is second, text 7 third
    assert target_ranks(pred, targets, ids)[0].tolist() == [3, 1, 3, 2]


def test_mixed_ranks_equal_the_ranks_of_each_mixed_prediction():
    g = torch.Generator().manual_seed(0)
    first, second = (F.normalize(torch.randn(300, 16, generator=g), dim=-1) for _ in range(2))
    candidates = torch.randn(40, 16, generator=g)
    true = torch.randint(0, 40, (300,), generator=g)
    weights = [k / 20 for k in range(21)]
    mixed = mixed_retrieval_ranks(first, second, candidates, true, weights)
    for i, a in enumerate(weights):
        assert torch.equal(mixed[i], retrieval_ranks((1 - a) * first + a * second, candidates, true))


def test_mixed_ranks_at_the_ends_are_the_parts_own_ranks():
    pred, candidates, true = PRED / PRED.norm(dim=-1, keepdim=True).clamp_min(1e-9), CANDIDATES, TRUE
    other = torch.flip(pred, [1])
    ranks = mixed_retrieval_ranks(pred, other, candidates, true, [0.0, 1.0])
    assert ranks[0].tolist() == [3, 2.5, 1, 4]
    assert torch.equal(ranks[1], retrieval_ranks(other, candidates, true))
