"""A training run's identity: one hash of everything that changes what the run produces.

The cube's checkpoints (``train.checkpoint_dir/<key>/``) and the trained baselines' cache
(``.../baselines/<name>-<key>.safetensors``) are both named by ``run_key``, so a killed run
resumes and a finished baseline is reused exactly when nothing that defines it changed: the
model (its name, its definition and its parameter layout), the ``train.*`` params but the run
settings (``RUN_SETTINGS``: threads, resume, checkpoint_dir change how, not what), the seed,
and the train and val rows themselves (inputs and targets, which also differ per mode).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from torch import nn

from cubecore.core.config import RUN_SETTINGS, TrainParams, as_dict
from cubecore.data.rows import MappedRows, blocks
from cubecore.training.pairings import TaskData

TRAIN_RUN_SETTINGS = frozenset(key.removeprefix("train.") for key in RUN_SETTINGS if key.startswith("train."))


def digest(*parts) -> str:
    """A short hash of ``parts``: tensors and mapped rows by their bytes, anything else as JSON."""
    hasher = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            hasher.update(part.contiguous().numpy().view(np.uint8))  # no copy of the bytes
        elif isinstance(part, MappedRows):  # the same bytes as the tensor of its rows
            for block in blocks(part):
                hasher.update(block.numpy().view(np.uint8))
        else:
            hasher.update(json.dumps(part, sort_keys=True, default=str).encode())
    return hasher.hexdigest()[:16]


def training_settings(params: TrainParams) -> dict:
    """The ``train.*`` params that change what training produces (all but the run settings)."""
    return {key: value for key, value in as_dict(params).items() if key not in TRAIN_RUN_SETTINGS}


def run_key(name: str, model: nn.Module, params: TrainParams, seed: int, train: TaskData, val: TaskData,
            *definition) -> str:
    """The identity of training ``model`` (called ``name``) on ``train`` with early stopping on
    ``val``; ``definition`` adds what the layout does not show (the cube's params, start weights)."""
    layout = [(key, list(tensor.shape)) for key, tensor in model.state_dict().items()]
    return digest(name, layout, training_settings(params), seed,
                  train.inputs, train.targets, val.inputs, val.targets, *definition)
