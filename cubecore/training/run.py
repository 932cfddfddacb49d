"""The ``train`` and ``pretrain`` stages: fit the model of ``train.mode`` on the split and
write the model directory.

``models/cube/`` holds ``model.safetensors`` (the best epoch's weights) and ``model.json``
(cube params, dimension, mode and the teacher's identity): enough to rebuild the model.
``pretrain`` trains the same cube as a denoising autoencoder into ``models/pretrain/``;
with ``train.init: pretrain`` the ``train`` stage starts from those weights.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from cubecore.core import artifacts
from cubecore.core.config import CubeParams, Params, as_dict
from cubecore.core.errors import CubecoreError
from cubecore.model.inference import parameter_count
from cubecore.training.distributed import SINGLE, Group
from cubecore.training.identity import run_key
from cubecore.training.loop import Trainer
from cubecore.training.modes import get_mode
from cubecore.training.pairings import Pairing, split_tasks
from cubecore.training.runtime import seed_everything, use_threads

log = logging.getLogger(__name__)


def load_split(data_dir: str | Path, split_dir: str | Path, pairing: Pairing, noise: float, seed: int, names):
    """The dataset and one TaskData per split name, ``train`` first (see ``split_tasks``)."""
    data = artifacts.Dataset.load(data_dir)
    parts = {name: artifacts.read_pairs(Path(split_dir) / f"{name}.tsv") for name in names}
    return data, split_tasks(pairing, data.embeddings, parts, noise, seed)


def pretrained_weights(pretrained_dir: str | Path, cube: CubeParams, dim: int) -> dict:
    """The ``pretrain`` stage's cube weights; they must come from the same cube shape."""
    model, info = load_model(pretrained_dir)
    if info["cube"] != as_dict(cube) or info["dim"] != dim:
        raise CubecoreError(f"{pretrained_dir}: the pretrained cube has cube params {info['cube']} and dim "
                            f"{info['dim']}; train.init: pretrain needs the same as now (re-run `dvc repro pretrain`)")
    return model.state_dict()


def train(params: Params, data_dir: str | Path, split_dir: str | Path, model_dir: str | Path,
          live=None, progress: bool = True, pretrained_dir: str | Path = "models/pretrain",
          group: Group = SINGLE) -> tuple[dict, dict]:
    """Train ``train.mode``'s model (from ``pretrained_dir``'s cube when ``train.init: pretrain``);
    return the metrics and, apart, the run's speed (and whether it resumed). In a ``group`` of
    several processes, only rank 0 writes ``model_dir`` (cubecore/training/distributed.py)."""
    p = params.train
    use_threads(p.threads)
    mode = get_mode(p.mode)
    data, splits = load_split(data_dir, split_dir, mode.pairing, mode.pairing.input_noise(p), params.base.seed,
                              ("train", "val"))
    dim = data.embeddings.shape[1]
    seed_everything(params.base.seed)
    model = mode.build(params.cube, dim)
    start = pretrained_weights(pretrained_dir, params.cube, dim) if p.init == "pretrain" else {}
    if start:
        mode.warm_start(model, start)
    key = run_key("cube", model, p, params.base.seed, splits["train"], splits["val"], as_dict(params.cube),
                  *start.values())
    trainer = Trainer(model, p, params.base.seed, key, name="cube", mode=mode, group=group)
    summary = trainer.fit(splits["train"], splits["val"], live=live, progress=progress)
    if group.main:
        with artifacts.atomic_dir(model_dir) as tmp:
            artifacts.save_weights({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
            artifacts.write_json(tmp / "model.json", {"cube": as_dict(params.cube), "dim": dim, "mode": p.mode,
                                                      "teacher": data.teacher})
    speed = {**summary.pop("speed"), "resumed": summary.pop("resumed"), "processes": group.world}
    # the best epoch's val figures are evaluate's cube on val (eval.json) and DVCLive's curves
    # (data/train): kept out of this DVC metric, so `dvc exp show` stays narrow
    metrics = {"mode": p.mode, "init": p.init, "parameters": parameter_count(model),
               "train_rows": len(splits["train"]), "val_rows": len(splits["val"]),
               **{k: v for k, v in summary.items() if not k.startswith("val_")},
               "reached_target_cosine": summary["val_cosine"] >= p.target_cosine,
               "within_memory_limit": speed["peak_memory_mb"] <= p.memory_limit_gb * 1024}
    log.info("train: %s %s", metrics, speed)
    if not metrics["within_memory_limit"]:
        log.warning("train: peak RSS %.0f MB is above train.memory_limit_gb %g (%.0f MB)",
                    speed["peak_memory_mb"], p.memory_limit_gb, p.memory_limit_gb * 1024)
    return {"train": metrics}, {"train": speed}


def pretrain(params: Params, data_dir: str | Path, split_dir: str | Path, model_dir: str | Path,
             live=None, progress: bool = True) -> tuple[dict, dict]:
    """The ``pretrain`` stage: the cube as a denoising autoencoder, with ``train.pretrain``'s
    epochs and learning rate and every other ``train`` setting as configured. With
    ``train.init: scratch`` nothing is trained: ``model.json`` says so (a cheap stage)."""
    if params.train.init != "pretrain":
        with artifacts.atomic_dir(model_dir) as tmp:
            artifacts.write_json(tmp / "model.json", {"skipped": "train.init is scratch: nothing was pretrained"})
        return {"pretrain": {"skipped": True}}, {"pretrain": {}}
    p = dataclasses.replace(params.train, mode="autoencoder", init="scratch", epochs=params.train.pretrain.epochs,
                            lr=params.train.pretrain.lr)
    metrics, speed = train(dataclasses.replace(params, train=p), data_dir, split_dir, model_dir, live, progress)
    return {"pretrain": metrics["train"]}, {"pretrain": speed["train"]}


def load_model(model_dir: str | Path) -> tuple[nn.Module, dict]:
    """The trained model of ``model.json``'s mode (eval mode) and its ``model.json``."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.safetensors").exists():
        raise CubecoreError(f"{model_dir}: no trained model (run `make repro` or `dvc repro` first)")
    info = artifacts.read_json(model_dir / "model.json")
    model = get_mode(info["mode"]).build(CubeParams(**info["cube"]), info["dim"])
    model.load_state_dict(load_file(str(model_dir / "model.safetensors")))
    return model.eval(), info
