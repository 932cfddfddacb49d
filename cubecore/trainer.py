"""The training loop: AdamW, warm-up + cosine or plateau LR, clipping, early stopping,
best/last checkpoints and resume. Works for any ``nn.Module`` mapping ``[B, dim] -> [B, dim]``.

Checkpoints live in ``train.checkpoint_dir/<run key>/`` (outside DVC's outputs, which DVC
deletes before a stage runs): ``best.safetensors``, ``last.safetensors`` and
``last_state.pt`` (optimizer, epoch, history; loaded with ``weights_only=True``). The run
key hashes everything that defines the run, so a resume never mixes two configurations;
a run that finishes removes its checkpoints (the caller saves the model).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from cubecore import curriculum
from cubecore.artifacts import atomic_path
from cubecore.config import TrainParams
from cubecore.errors import CubecoreError
from cubecore.losses import combined_loss
from cubecore.metrics import candidate_index, cosine, retrieval_ranks, retrieval_summary
from cubecore.modes import Mode, get_mode
from cubecore.tasks import TaskData

log = logging.getLogger(__name__)

HIGHER_IS_BETTER = {"val_loss": False, "val_cosine": True, "val_mrr": True}


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def run_key(*parts) -> str:
    """A short hash of the run's definition (params and data)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            digest.update(part.numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])
    model.train(was_training)
    return out


def evaluate_predictions(pred: torch.Tensor, data: TaskData, recall_at=(1, 5, 10)) -> dict:
    """Cosine to the target and retrieval of the target among the split's distinct targets."""
    first_rows, position = candidate_index(data.target_ids)
    ranks = retrieval_ranks(pred, data.targets[first_rows], position)
    cos = cosine(pred, data.targets)
    return {"cosine": float(cos.mean()), "cosine_median": float(cos.median()),
            **retrieval_summary(ranks, list(recall_at)), "candidates": len(first_rows)}


def log_epoch(live, row: dict) -> None:
    """One DVCLive step holding every figure of an epoch's row."""
    for name, value in row.items():
        if name != "epoch":
            live.log_metric(name, value)
    live.next_step()


@dataclass
class TrainState:
    epoch: int = 0                      # epochs completed
    step: int = 0
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    plateau_scale: float = 1.0
    history: list[dict] = field(default_factory=list)


class Trainer:
    def __init__(self, model: nn.Module, params: TrainParams, seed: int, key: str, mode: Mode | None = None):
        """``mode`` defines the batch loss; ``train.mode`` unless given (the baselines pass theirs)."""
        self.model = model
        self.params = params
        self.mode = mode or get_mode(params.mode)
        self.seed = seed
        layout = [(name, list(tensor.shape)) for name, tensor in model.state_dict().items()]
        self.directory = Path(params.checkpoint_dir) / run_key(key, layout)  # a changed model never resumes
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        self.state = TrainState()

    # --- learning rate -------------------------------------------------------------------
    def lr_at(self, step: int, total_steps: int) -> float:
        warmup = max(1, int(self.params.warmup_fraction * total_steps))
        if step < warmup:
            return self.params.lr * (step + 1) / warmup
        if self.params.schedule == "plateau":
            return self.params.lr * self.state.plateau_scale
        progress = (step - warmup) / max(1, total_steps - warmup)
        return self.params.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    # --- checkpoints ---------------------------------------------------------------------
    def _save(self, name: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        with atomic_path(self.directory / f"{name}.safetensors") as tmp:
            save_file(weights, str(tmp))
        if name == "last":
            state = {"optimizer": self.optimizer.state_dict(), "trainer": vars(self.state)}
            with atomic_path(self.directory / "last_state.pt") as tmp:
                torch.save(state, tmp)

    def _resume(self) -> bool:
        weights, state_file = self.directory / "last.safetensors", self.directory / "last_state.pt"
        if not (self.params.resume and weights.exists() and state_file.exists()):
            return False
        state = torch.load(state_file, weights_only=True)
        self.model.load_state_dict(load_file(str(weights)))
        self.optimizer.load_state_dict(state["optimizer"])
        self.state = TrainState(**state["trainer"])
        log.info("resuming from %s after epoch %d", self.directory, self.state.epoch)
        return True

    def load_best(self) -> None:
        self.model.load_state_dict(load_file(str(self.directory / "best.safetensors")))

    # --- the loop ------------------------------------------------------------------------
    def _improved(self, value: float) -> bool:
        best = self.state.best_value
        if best is None:
            return True
        return value > best if HIGHER_IS_BETTER[self.params.monitor] else value < best

    def _validate(self, val: TaskData) -> dict:
        pred = predict(self.model, val.inputs)
        loss, _ = combined_loss(pred, val.targets, self.params.loss)
        scores = evaluate_predictions(pred, val)
        return {"val_loss": float(loss), "val_cosine": scores["cosine"], "val_mrr": scores["mrr"],
                "val_recall@1": scores["recall@1"]}

    def fit(self, train: TaskData, val: TaskData, live=None, progress: bool = True) -> dict:
        """Train until ``epochs`` or early stopping; leave the best weights in the model."""
        p = self.params
        resumed = self._resume()
        if live is not None:  # DVCLive's files were deleted with the stage outputs: replay
            for row in self.state.history:
                log_epoch(live, row)
        hardness = curriculum.difficulty(train.inputs, train.targets)
        total_steps = sum(math.ceil(curriculum.admitted_rows(p.curriculum, epoch, p.epochs, len(train)) / p.batch_size)
                          for epoch in range(1, p.epochs + 1))
        samples, seconds = 0, 0.0
        self.model.train()
        while self.state.epoch < p.epochs and self.state.bad_epochs < p.patience:
            epoch = self.state.epoch + 1
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(len(train), generator=generator)
            order = curriculum.admit(order, hardness,
                                     curriculum.admitted_rows(p.curriculum, epoch, p.epochs, len(train)))
            started, total = time.perf_counter(), 0.0
            lr = self.lr_at(self.state.step, total_steps)  # the epoch's rate even if every batch is skipped
            bar = tqdm(range(0, len(order), p.batch_size), desc=f"epoch {epoch}/{p.epochs}",
                       unit="batch", leave=False, disable=not progress)
            for start in bar:
                index = order[start:start + p.batch_size]
                if len(index) < 2:
                    continue
                loss, terms = self.mode.batch_loss(self.model, train.inputs[index], train.targets[index], p,
                                                   generator, self.state.step)
                if not torch.isfinite(loss):
                    raise CubecoreError(f"train: loss is {loss.item()} at epoch {epoch}, step "
                                        f"{self.state.step + 1}; the best checkpoint is kept in "
                                        f"{self.directory} (lower train.lr or check the inputs)")
                lr = self.lr_at(self.state.step, total_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if p.grad_clip > 0:
                    nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
                self.optimizer.step()
                self.state.step += 1
                total += loss.item() * len(index)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            seconds += time.perf_counter() - started
            samples += len(order)
            row = {"epoch": epoch, "train_loss": total / len(order), **self._validate(val), "lr": lr}
            self._end_epoch(row)
            if live is not None:
                log_epoch(live, row)
            log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items()})
        if self.state.best_value is None:
            raise CubecoreError("train: no epoch completed (is the training split empty?)")
        self.load_best()
        shutil.rmtree(self.directory)  # checkpoints exist to resume a run that did not finish
        return {"epochs_run": self.state.epoch, "best_epoch": self.state.best_epoch,
                "stopped_early": self.state.epoch < p.epochs, "resumed": resumed,
                "samples_per_second": round(samples / seconds, 1) if seconds else None,
                "peak_memory_mb": round(peak_memory_mb(), 1),
                **{k: v for k, v in self.state.history[self.state.best_epoch - 1].items() if k.startswith("val_")}}

    def _end_epoch(self, row: dict) -> None:
        value = row[self.params.monitor]
        self.state.epoch = row["epoch"]
        self.state.history.append(row)
        if self._improved(value):
            self.state.best_value, self.state.best_epoch, self.state.bad_epochs = value, row["epoch"], 0
            self._save("best")
        else:
            self.state.bad_epochs += 1
            if self.params.schedule == "plateau" and self.state.bad_epochs % max(1, self.params.patience // 2) == 0:
                self.state.plateau_scale *= 0.5
        self._save("last")
