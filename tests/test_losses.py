"""Losses: known inputs give known values; duplicates and queued copies are not negatives."""
import dataclasses
import math

import pytest
import torch

from cubecore.core.config import LossParams
from cubecore.training.losses import (
    Objective,
    combined_loss,
    cosine_loss,
    info_nce_loss,
)

E = torch.eye(3)


def test_cosine_loss_values():
    assert float(cosine_loss(E, E)) == pytest.approx(0.0)
    assert float(cosine_loss(E, E.roll(1, 0))) == pytest.approx(1.0)
    assert float(cosine_loss(E, -E)) == pytest.approx(2.0)


def test_info_nce_known_value():
    # logits = I / t: each row picks its own target with -log(e^{1/t} / (e^{1/t} + 2))
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert float(info_nce_loss(E, E, t)) == pytest.approx(expected, rel=1e-5)
    # a prediction pointing at the wrong target costs more
    assert float(info_nce_loss(E.roll(1, 0), E, t)) > expected


def test_a_repeated_target_is_not_a_negative():
    """Rows 0 and 1 share one answer: each sees the other's copy masked (two candidates);
    row 2 sees both copies as negatives (three candidates)."""
    target = torch.stack([E[0], E[0], E[1]])
    two, three = -math.log(math.e / (math.e + 1)), -math.log(math.e / (math.e + 2))
    loss = float(info_nce_loss(target.clone(), target, 1.0))
    assert loss == pytest.approx((2 * two + three) / 3, rel=1e-5)


def test_queue_negatives_count_and_a_queued_positive_is_masked():
    t = 1.0
    pred = target = E[:2]
    in_batch = float(info_nce_loss(pred, target, t))
    with_queue = float(info_nce_loss(pred, target, t, negatives=E[2:]))
    # each row: its target (logit 1) against the other row and e2 (logits 0)
    assert with_queue == pytest.approx(-math.log(math.e / (math.e + 2)), rel=1e-5)
    assert with_queue > in_batch
    # a queued copy of a row's own target (same text, any scale) is masked: it changes nothing
    own_copy = torch.stack([E[0] * 3, E[2]])
    assert float(info_nce_loss(E[:1], E[:1], t, negatives=own_copy)) == pytest.approx(
        float(info_nce_loss(E[:1], E[:1], t, negatives=E[2:])), rel=1e-5)


def test_combined_loss_weights_the_terms():
    weights = LossParams(cosine=2.0, mse=0.0, infonce=0.5, temperature=1.0)
    total, terms = combined_loss(E, E, weights)
    assert terms["cosine"] == pytest.approx(0.0, abs=1e-6)
    assert float(total) == pytest.approx(0.5 * terms["infonce"], rel=1e-5)


def test_the_queue_keeps_the_newest_targets():
    objective = Objective(LossParams(queue_size=3))
    batches = torch.eye(5)[:, None, :] * 2  # five batches of one target each, e_0 .. e_4
    for batch in batches:
        objective.enqueue(batch)
    assert torch.equal(objective.queue, torch.eye(5)[2:])  # normalised, oldest first, newest kept
    objective = Objective(LossParams(queue_size=0))
    objective.enqueue(E)
    assert len(objective.queue) == 0


def test_the_objective_uses_its_queue():
    weights = LossParams(cosine=0.0, infonce=1.0, temperature=1.0, queue_size=8)
    objective = Objective(weights)
    objective.enqueue(E[2:])
    loss, _ = objective(E[:2], E[:2])
    assert float(loss) == pytest.approx(float(info_nce_loss(E[:2], E[:2], 1.0, negatives=E[2:])), rel=1e-5)


def test_learned_temperature_gets_gradients_and_is_clamped():
    learned = Objective(LossParams(temperature=0.05, learn_temperature=True))
    assert float(learned.temperature().detach()) == pytest.approx(0.05)
    loss, _ = learned(E + 0.1, E)
    loss.backward()
    assert learned.log_temperature.grad is not None and learned.log_temperature.grad != 0
    fixed = Objective(LossParams(temperature=0.05))
    assert not fixed.log_temperature.requires_grad
    with torch.no_grad():
        learned.log_temperature.fill_(math.log(1e-5))
    assert float(learned.temperature().detach()) == pytest.approx(0.01)


def test_validation_loss_sees_as_many_negatives_as_training():
    """Batched: each batch of the training size plus the rows before it as queued negatives."""
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(10, 4, generator=g), torch.randn(10, 4, generator=g)
    weights = LossParams(cosine=1.0, infonce=1.0, temperature=0.1, queue_size=3)
    objective = Objective(weights)
    expected = []
    for start in range(0, 10, 4):
        stop = min(10, start + 4)
        extra = min(3, 10 - (stop - start))
        others = torch.arange(start - extra, start) % 10
        loss, _ = combined_loss(pred[start:stop], target[start:stop], weights, 0.1, target[others])
        expected.append(float(loss) * (stop - start))
    assert objective.batched(pred, target, 4) == pytest.approx(sum(expected) / 10, rel=1e-5)
    # without a queue, one batch holding every row is the plain loss over all rows
    plain = Objective(dataclasses.replace(weights, queue_size=0))
    assert plain.batched(pred, target, 64) == pytest.approx(float(combined_loss(pred, target, weights)[0]), rel=1e-5)
    # and smaller batches mean fewer negatives, hence a lower InfoNCE
    assert plain.batched(pred, target, 2) < plain.batched(pred, target, 64)
