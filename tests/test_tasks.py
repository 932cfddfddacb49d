"""Training modes as rows (cubecore.training.pairings): disjoint autoencoder splits, minimum sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cubecore.core.artifacts import Pairs
from cubecore.core.config import AutoencoderParams, TrainParams
from cubecore.core.errors import CubecoreError
from cubecore.training.loop import Trainer
from cubecore.training.pairings import (
    AUTOENCODER,
    DIALOGUE,
    MIN_ROWS,
    split_tasks,
    task_data,
)

EMBEDDINGS = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)


def chain(*texts: int) -> Pairs:
    """Adjacent turns of one conversation: texts[i] -> texts[i+1]."""
    return Pairs(np.array(texts[:-1], np.int64), np.array(texts[1:], np.int64), ["c"] * (len(texts) - 1),
                 np.arange(len(texts) - 1, dtype=np.int64))


# texts 3 and 6 sit in pairs on both sides; 9 is in val and test
PARTS = {"train": chain(0, 1, 2, 3), "val": chain(3, 4, 5, 6, 9), "test": chain(6, 7, 8, 9)}


def test_autoencoder_validation_and_test_texts_are_not_training_texts():
    tasks = split_tasks(AUTOENCODER, EMBEDDINGS, PARTS, noise=0.5, seed=1)
    assert tasks["train"].target_ids.tolist() == [0, 1, 2, 3]
    assert tasks["val"].target_ids.tolist() == [4, 5, 6, 9]         # 3 is a training text
    assert tasks["test"].target_ids.tolist() == [7, 8]              # 6 and 9 are validation texts
    for name in ("val", "test"):
        assert np.array_equal(tasks[name].targets.numpy(), EMBEDDINGS[tasks[name].target_ids])
    # the same texts per split, in the old per-split pairing, overlap train
    naive = task_data(AUTOENCODER, EMBEDDINGS, PARTS["val"]).target_ids
    assert 3 in naive.tolist()


def test_only_a_noisy_pairing_gets_noise():
    params = TrainParams(autoencoder=AutoencoderParams(noise=0.5))
    assert (AUTOENCODER.input_noise(params), DIALOGUE.input_noise(params)) == (0.5, 0.0)


def test_dialogue_rows_are_the_pairs():
    tasks = split_tasks(DIALOGUE, EMBEDDINGS, PARTS, noise=0.0, seed=1)
    assert [len(tasks[name]) for name in PARTS] == [len(pairs) for pairs in PARTS.values()]
    assert tasks["val"].target_ids.tolist() == PARTS["val"].answer_id.tolist()
    assert torch.equal(tasks["val"].inputs, torch.from_numpy(EMBEDDINGS[PARTS["val"].question_id]))


def test_validation_inputs_are_corrupted_once_with_the_seed():
    a = split_tasks(AUTOENCODER, EMBEDDINGS, PARTS, noise=0.5, seed=1)
    b = split_tasks(AUTOENCODER, EMBEDDINGS, PARTS, noise=0.5, seed=1)
    assert torch.equal(a["val"].inputs, b["val"].inputs)
    assert not torch.equal(a["val"].inputs, a["val"].targets)
    assert torch.equal(a["train"].inputs[:], a["train"].targets[:])  # the trainer corrupts per batch


@pytest.mark.parametrize("mode, parts, small", [
    (AUTOENCODER, {"train": chain(0, 1, 2), "val": chain(2, 1)}, "val"),   # every val text is in train
    (AUTOENCODER, {"train": chain(0, 1), "val": chain(2, 3, 4), "test": chain(4, 3)}, "test"),
    (DIALOGUE, {"train": chain(0, 1), "val": chain(2, 3, 4)}, "train"),
])
def test_a_split_below_the_minimum_stops_before_training(mode, parts, small):
    with pytest.raises(CubecoreError) as info:
        split_tasks(mode, EMBEDDINGS, parts, noise=0.5, seed=1)
    message = str(info.value)
    assert message.startswith(f"the {small} split has ")
    assert f"at least {MIN_ROWS}" in message and "split.val_fraction" in message and "\n" not in message


def test_an_epoch_whose_batches_are_all_skipped_does_not_crash(tmp_path):
    # one training row: its only batch is too small to step on (the old code raised
    # UnboundLocalError: 'lr'); the epoch still ends and records the scheduled rate
    torch.manual_seed(0)
    params = TrainParams(epochs=1, batch_size=4, checkpoint_dir=str(tmp_path))
    rows = task_data(DIALOGUE, EMBEDDINGS, chain(0, 1))
    val = task_data(DIALOGUE, EMBEDDINGS, chain(2, 3, 4))
    trainer = Trainer(nn.Linear(4, 4), params, seed=0, key="one-row")
    summary = trainer.fit(rows, val, progress=False)
    assert summary["epochs_run"] == 1
    assert trainer.state.history[0]["lr"] == pytest.approx(trainer.lr_at(0, 1))
