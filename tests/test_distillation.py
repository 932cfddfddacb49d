"""Similarity distillation (cubecore.training.distillation): known values, temperature, zero at the target."""
import math

import pytest
import torch

from cubecore.core.config import LossParams
from cubecore.training.distillation import similarity_distillation_loss
from cubecore.training.losses import combined_loss

TARGET = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
PRED = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # row 0 right, row 1 points at the other target


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_a_hand_computed_value(temperature):
    # row 0's profile equals the teacher's (KL 0); row 1: teacher logits [0, 1/T], student [1/T, 0],
    # KL = (q2 - q1) / T = tanh(1 / 2T) / T; mean over 2 rows, times T**2
    expected = 0.5 * temperature * math.tanh(1 / (2 * temperature))
    assert float(similarity_distillation_loss(PRED, TARGET, temperature)) == pytest.approx(expected, rel=1e-5)


def test_it_is_zero_when_the_prediction_is_the_target():
    target = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    assert float(similarity_distillation_loss(target.clone(), target, 3.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(similarity_distillation_loss(2.5 * target, target, 3.0)) == pytest.approx(0.0, abs=1e-6)


def test_large_temperature_flattens_kl_and_t2_keeps_the_logit_matching_limit():
    g = torch.Generator().manual_seed(1)  # float64: at T = 1000 the KL is ~1e-7, below float32's resolution
    pred, target = torch.randn(8, 16, generator=g).double(), torch.randn(8, 16, generator=g).double()
    n = torch.nn.functional.normalize
    diff = n(pred, dim=-1) @ n(target, dim=-1).T - n(target, dim=-1) @ n(target, dim=-1).T
    limit = 0.5 * diff.var(dim=1, unbiased=False).mean()      # documented T -> inf limit
    losses = {t: float(similarity_distillation_loss(pred, target, t)) for t in (1.0, 10.0, 1000.0)}
    kls = {t: value / t ** 2 for t, value in losses.items()}
    assert kls[1.0] > kls[10.0] > kls[1000.0] > 0                  # both sides flatten toward uniform
    assert losses[1000.0] == pytest.approx(float(limit), rel=1e-3)
    assert abs(losses[10.0] - float(limit)) < abs(losses[1.0] - float(limit))


def test_the_loss_pulls_the_prediction_toward_the_teachers_profile():
    pred = PRED.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([pred], lr=0.5)
    first = similarity_distillation_loss(pred, TARGET, 1.0).item()
    for _ in range(50):
        optimizer.zero_grad()
        similarity_distillation_loss(pred, TARGET, 1.0).backward()
        optimizer.step()
    assert similarity_distillation_loss(pred, TARGET, 1.0).item() < 0.1 * first
    assert torch.nn.functional.cosine_similarity(pred[1], TARGET[1], dim=0).item() > 0.5


def test_combined_loss_weights_the_distillation_term():
    weights = LossParams(cosine=1.0, infonce=0.0, distill=0.7, distill_temperature=3.0)
    total, terms = combined_loss(PRED, TARGET, weights)
    assert set(terms) == {"cosine", "distill"}
    assert terms["distill"] == pytest.approx(0.5 * 3.0 * math.tanh(1 / 6.0), rel=1e-5)
    assert float(total) == pytest.approx(terms["cosine"] + 0.7 * terms["distill"], rel=1e-6)
