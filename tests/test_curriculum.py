"""Curriculum (cubecore.training.curriculum): the admitted share, easy rows first, wired into the trainer."""
import dataclasses

import pytest
import torch
from test_trainer import params, synthetic

from cubecore.core.config import CubeParams, CurriculumParams
from cubecore.model.cube import CubicCore
from cubecore.training.curriculum import (
    admit,
    admitted_fraction,
    admitted_rows,
    difficulty,
)
from cubecore.training.loop import Trainer

LINEAR = CurriculumParams(schedule="linear", start_fraction=0.25, ramp_fraction=0.5)


def test_linear_schedule_grows_from_the_start_share_to_all_rows():
    fractions = [admitted_fraction(LINEAR, epoch, 8) for epoch in range(1, 9)]
    assert fractions[0] == 0.25
    assert fractions == sorted(fractions)
    assert fractions[4:] == [1.0] * 4            # ramp over ceil(0.5 * 8) = 4 epochs: all from epoch 5
    assert fractions[3] < 1.0
    assert admitted_fraction(CurriculumParams(), 1, 8) == 1.0   # the default is off


def test_admit_keeps_the_easiest_rows_in_the_shuffled_order():
    hardness = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7])
    order = torch.tensor([4, 2, 0, 3, 1])
    assert admit(order, hardness, 2).tolist() == [3, 1]         # the two easiest, in `order`'s order
    assert admit(order, hardness, 5).tolist() == order.tolist()
    assert admit(order, torch.zeros(5), 1).tolist() == order.tolist()  # ties are admitted together


def test_admitted_rows_count():
    assert [admitted_rows(LINEAR, epoch, 8, 100) for epoch in (1, 2, 5)] == [25, 44, 100]
    assert admitted_rows(CurriculumParams(), 1, 8, 100) == 100


def test_difficulty_is_one_minus_the_input_target_cosine():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert difficulty(x, y).tolist() == pytest.approx([0.0, 1.0])


def test_the_trainer_steps_only_on_admitted_rows_and_still_learns(tmp_path):
    cube = CubeParams(lattice=[4, 4, 4], channels=4, hidden=8, position_channels=2, steps=1)
    p = params(tmp_path, epochs=1, curriculum=LINEAR)
    trainer = Trainer(CubicCore(cube, 64), p, seed=0, key="curriculum")
    trainer.fit(synthetic(256, 1), synthetic(64, 2), progress=False)
    assert trainer.state.step == 2                # 64 of 256 rows in epoch 1: 2 batches of 32, not 8
    torch.manual_seed(0)
    trainer = Trainer(CubicCore(cube, 64), dataclasses.replace(p, epochs=4), seed=0, key="curriculum4")
    trainer.fit(synthetic(256, 1), synthetic(64, 2), progress=False)
    history = trainer.state.history
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert trainer.state.step == 2 + 5 + 8 + 8    # 64, 160, 256, 256 rows
    assert history[-1]["lr"] < 0.05 * p.lr         # the cosine decay counts the admitted steps only
