"""The training loop: AdamW, warm-up + cosine or plateau LR, clipping, early stopping,
best/last checkpoints and resume. Works for any ``nn.Module`` mapping ``[B, dim] -> [B, dim]``.

Checkpoints live in ``train.checkpoint_dir/<run key>/``, locked while a process uses them
(see cubecore/training/checkpoints.py). The run key hashes everything that defines the run, so a
resume never mixes two configurations; a run that finishes removes its checkpoints (the
caller saves the model).

In several processes (``group``, cubecore/training/distributed.py) each rank trains on its shard of
every global batch under DDP; rank 0 alone validates, checkpoints and logs, and shares what
the other ranks need to stay in step (the validation row, a resumed state).
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from cubecore.core.config import TrainParams
from cubecore.core.errors import CubecoreError
from cubecore.core.lineup import HIGHER_IS_BETTER
from cubecore.core.machine import peak_memory_mb
from cubecore.core.paths import project_path, usable_dir
from cubecore.core.progress import progress as progress_bar
from cubecore.evaluation.scoring import prediction_scores
from cubecore.model.inference import predict
from cubecore.training import curriculum
from cubecore.training.checkpoints import RunDirectory
from cubecore.training.distributed import SINGLE, Group, weights_digest
from cubecore.training.identity import digest
from cubecore.training.losses import Objective
from cubecore.training.modes import Mode, get_mode
from cubecore.training.pairings import TaskData

log = logging.getLogger(__name__)

def log_epoch(live, row: dict) -> None:
    """One DVCLive step holding every figure of an epoch's row."""
    for name, value in row.items():
        if name != "epoch":
            live.log_metric(name, value)
    live.next_step()


class BatchLoss(nn.Module):
    """One training batch's loss, as one module (the model and the loss's own parameters), so
    DDP sees every parameter a batch uses, whatever the mode calls."""

    def __init__(self, model: nn.Module, objective: Objective, mode: Mode, params: TrainParams):
        super().__init__()
        self.model, self.objective, self.mode, self.params = model, objective, mode, params

    def forward(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, step: int):
        return self.mode.batch_loss(self.model, x, y, self.params, generator, step, self._objective)

    def _objective(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The training loss of ``pred`` against ``target``, in float32 even under bf16 autocast."""
        with torch.autocast("cpu", enabled=False):
            return self.objective(pred.float(), target)


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
    """Trains ``model``; ``name`` (default: the model's class) labels its log lines, ``mode``
    (default: ``train.mode``) defines its batch loss (the baselines pass theirs) and ``group``
    the training processes this one belongs to (default: it alone)."""

    def __init__(self, model: nn.Module, params: TrainParams, seed: int, key: str, name: str | None = None,
                 mode: Mode | None = None, group: Group = SINGLE):
        self.model = model
        self.group = group
        self.name = name or type(model).__name__
        self.params = params
        self.mode = mode or get_mode(params.mode)
        self.seed = seed
        layout = [(name, list(tensor.shape)) for name, tensor in model.state_dict().items()]
        if group.main:  # only rank 0 writes checkpoints
            root = usable_dir(params.checkpoint_dir, "train.checkpoint_dir")  # fail now, not after an epoch
        else:
            root = project_path(params.checkpoint_dir)
        self.run = RunDirectory(root, digest(key, layout))  # a changed model never resumes
        self.directory = self.run.path
        self.objective = Objective(params.loss)  # the temperature is not weight-decayed
        self.optimizer = torch.optim.AdamW([{"params": model.parameters()},
                                            {"params": self.objective.parameters(), "weight_decay": 0.0}],
                                           lr=params.lr, weight_decay=params.weight_decay)
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
    def _resume(self) -> bool:
        if not self.params.resume:
            if self.group.main:
                self.run.clear()
            return False
        state = self.run.resume(self.model, self.optimizer, {"objective": self.objective}) if self.group.main else None
        if self.group.world > 1:
            state = self._share_resumed(state)
        if state is None:
            return False
        self.state = TrainState(**state)
        log.info("resuming from %s after epoch %d", self.directory, self.state.epoch)
        return True

    def _share_resumed(self, state: dict | None) -> dict | None:
        """Rank 0's resumed state (trainer, model, optimizer, loss), loaded on every rank."""
        modules = {"model": self.model, "optimizer": self.optimizer, "objective": self.objective}
        shared = self.group.broadcast(None if state is None else
                                      {"trainer": state, **{k: m.state_dict() for k, m in modules.items()}})
        if shared is not None and not self.group.main:
            for name, module in modules.items():
                module.load_state_dict(shared[name])
        return None if shared is None else shared["trainer"]

    def load_best(self) -> None:
        self.run.load_best(self.model)

    def _diverged(self, loss: torch.Tensor, terms: dict, epoch: int, x: torch.Tensor, y: torch.Tensor) -> CubecoreError:
        """What is known when the loss stops being finite: where, which term, whether the data
        or the model is to blame, and the best checkpoint if one was saved."""
        bad = [name for name, value in terms.items() if not math.isfinite(value)]
        where = f"train: the loss is {loss.item()} at epoch {epoch}, step {self.state.step + 1}"
        where += f" (non-finite term: {', '.join(bad)})" if bad else ""
        if not torch.isfinite(x).all() or not torch.isfinite(y).all():
            cause = "the batch's inputs or targets hold NaN/inf: check the embeddings written by extract"
        else:
            cause = (f"inputs and targets are finite, so training diverged: try a lower train.lr "
                     f"(now {self.params.lr:g}) or train.grad_clip (now {self.params.grad_clip:g}, 0 = off)")
        if self.run.best_file.exists():
            kept = f"the best checkpoint (epoch {self.state.best_epoch}) is kept in {self.run.best_file}"
        else:
            kept = "no checkpoint was saved before it"
        return CubecoreError(f"{where}; {cause}; {kept}")

    # --- the loop ------------------------------------------------------------------------
    def _improved(self, value: float) -> bool:
        best = self.state.best_value
        if best is None:
            return True
        return value > best if HIGHER_IS_BETTER[self.params.monitor] else value < best

    def _validate(self, val: TaskData) -> dict:
        """The epoch's validation figures, computed by rank 0 and shared with every rank."""
        return self.group.broadcast(self._scores(val) if self.group.main else None)

    def _scores(self, val: TaskData) -> dict:
        pred, targets = predict(self.model, val.inputs), val.targets[:]  # [:]: read mapped rows
        scores = prediction_scores(pred, targets, val.target_ids)
        row = {"val_loss": self.objective.batched(pred, targets, self.params.batch_size),
               "val_cosine": scores["cosine"], "val_mrr": scores["mrr"], "val_recall@1": scores["recall@1"]}
        if self.params.loss.learn_temperature:
            row["temperature"] = float(self.objective.temperature().detach())
        return row

    def fit(self, train: TaskData, val: TaskData, live=None, progress: bool = True) -> dict:
        """Train until ``epochs`` or early stopping; leave the best weights in the model.

        The run directory is locked throughout (by rank 0): an identical run waits for this one."""
        with self.run if self.group.main else contextlib.nullcontext():
            return self._fit(train, val, live, progress)

    def _fit(self, train: TaskData, val: TaskData, live, progress: bool) -> dict:
        p, group = self.params, self.group
        resumed = self._resume()
        # a learned temperature sits out the batches that use no InfoNCE (e.g. dual's autoencoder steps)
        batch_loss = group.wrap(BatchLoss(self.model, self.objective, self.mode, p),
                                some_unused=p.loss.learn_temperature)
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
            started, total, trained = time.perf_counter(), 0.0, 0
            lr = self.lr_at(self.state.step, total_steps)  # the epoch's rate even if every batch is skipped
            noise = group.rank_generator(generator)
            bar = progress_bar(range(0, len(order), p.batch_size), f"{self.name} epoch {epoch}/{p.epochs}",
                               enabled=progress and group.main)
            for start in bar:
                index = order[start:start + p.batch_size]
                if len(index) < 2 * group.world:  # every rank needs 2 rows (InfoNCE): all skip alike
                    continue
                rows = group.shard(index)
                x, y = train.inputs[rows], train.targets[rows]  # read once (training rows come from disk)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=p.precision == "bf16"):
                    loss, terms = batch_loss(x, y, noise, self.state.step)
                if not torch.isfinite(loss):
                    raise self._diverged(loss, terms, epoch, x, y)
                lr = self.lr_at(self.state.step, total_steps)
                for param_group in self.optimizer.param_groups:
                    param_group["lr"] = lr
                self.optimizer.zero_grad(set_to_none=True)
                group.weighted(loss, len(rows), len(index)).backward()
                if p.grad_clip > 0:
                    nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
                self.optimizer.step()
                if self.objective.keeps_queue:  # the global batch's targets: the same queue on every rank
                    self.objective.enqueue(y if len(rows) == len(index) else train.targets[index])
                self.state.step += 1
                total += loss.item() * len(rows)
                trained += len(rows)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            seconds += time.perf_counter() - started
            samples += len(order)
            row = {"epoch": epoch, "train_loss": group.sum(total) / len(order), **self._validate(val), "lr": lr}
            self._end_epoch(row)
            if group.world > 1:
                log.info("%s epoch %d: rank %d of %d trained on %d rows, has weights %s", self.name, epoch,
                         group.rank, group.world, trained, weights_digest(self.model, self.objective))
            if live is not None:
                log_epoch(live, row)
            if group.main:
                log.info(self._epoch_line(row))
        if self.state.best_value is None:
            raise CubecoreError("train: no epoch completed (is the training split empty?)")
        if group.main:  # the other ranks end with the last epoch's weights and write nothing
            self.load_best()
            self.run.clear()  # checkpoints exist to resume a run that did not finish
        return {"epochs_run": self.state.epoch, "best_epoch": self.state.best_epoch,
                "stopped_early": self.state.epoch < p.epochs, "resumed": resumed,
                "speed": {"samples_per_second": round(samples / seconds, 1) if seconds else None,
                          "peak_memory_mb": round(peak_memory_mb(), 1)},
                **{k: v for k, v in self.state.history[self.state.best_epoch - 1].items() if k.startswith("val_")}}

    def _epoch_line(self, row: dict) -> str:
        """``<name> epoch 3/40: train_loss 0.61, val_loss 0.58, ... (best val_loss so far)``."""
        figures = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch")
        best = self.state.best_epoch == row["epoch"]
        note = f"best {self.params.monitor} so far" if best else f"best epoch {self.state.best_epoch}"
        return f"{self.name} epoch {row['epoch']}/{self.params.epochs}: {figures} ({note})"

    def _end_epoch(self, row: dict) -> None:
        value = row[self.params.monitor]
        self.state.epoch = row["epoch"]
        self.state.history.append(row)
        if self._improved(value):
            self.state.best_value, self.state.best_epoch, self.state.bad_epochs = value, row["epoch"], 0
            if self.group.main:
                self.run.save_best(self.model)
        else:
            self.state.bad_epochs += 1
            if self.params.schedule == "plateau" and self.state.bad_epochs % max(1, self.params.patience // 2) == 0:
                self.state.plateau_scale *= 0.5
        if self.group.main:
            self.run.save_last(self.model, self.optimizer, vars(self.state), {"objective": self.objective})
