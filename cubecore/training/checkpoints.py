"""The checkpoints of one unfinished training run, and the lock that gives them one owner.

``train.checkpoint_dir/<run key>/`` holds ``best.safetensors`` (the best epoch's weights) and
``last_state.pt`` (weights, optimizer and trainer state of the last finished epoch, in one
file so they always agree; loaded with ``weights_only=True``). It lives outside DVC's outputs,
which DVC deletes before a stage runs, and is removed when the run finishes.

Two processes running the same configuration share a run key. While one uses the directory
it holds an ``fcntl.flock`` on ``<run key>.lock`` beside it; an identical run started
meanwhile waits (one log line names the holder) and then resumes from whatever the first
left: nothing if it finished, its last epoch if it was killed. Waiting, not failing, because
identical experiments queued in parallel (``dvc queue start -j 2``) should both finish; not
a private directory, because a killed run must stay resumable by the next identical one.
The kernel drops the lock when a process dies, so a killed run never blocks later ones.
A checkpoint that cannot be loaded (cut off, garbled, or a best file missing) is reported in
one warning and discarded, and the run starts afresh: orphaned state never crashes a run.
"""
from __future__ import annotations

import copy
import fcntl
import logging
import os
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from cubecore.core.artifacts import atomic_path

log = logging.getLogger(__name__)

UNLOADABLE = (OSError, RuntimeError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError,
              SafetensorError)


class RunDirectory:
    def __init__(self, root: Path, key: str):
        self.path = Path(root) / key
        self.lock_file = Path(root) / f"{key}.lock"
        self.best_file = self.path / "best.safetensors"
        self.state_file = self.path / "last_state.pt"
        self._fd: int | None = None

    # --- the lock ------------------------------------------------------------------------
    def __enter__(self) -> "RunDirectory":
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                log.warning("train: %s is in use by an identical run (process %s); waiting for it to end",
                            self.path, holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if self._same_file(fd):
                break
            os.close(fd)  # the previous holder finished and removed the lock file: take a fresh one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.lock_file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def __exit__(self, *exc) -> None:
        if not self.path.exists():  # finished (or never started): nothing left to guard
            self.lock_file.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    # --- checkpoints ---------------------------------------------------------------------
    def save_best(self, model: nn.Module) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        with atomic_path(self.best_file) as tmp:
            save_file(weights, str(tmp))

    def save_last(self, model: nn.Module, optimizer: torch.optim.Optimizer, trainer_state: dict,
                  extras: dict[str, nn.Module] | None = None) -> None:
        """The last epoch: model, optimizer, trainer state and ``extras`` (e.g. the loss's
        queue and temperature), in one atomic file so they always match."""
        self.path.mkdir(parents=True, exist_ok=True)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "trainer": trainer_state,
                 "extras": {name: module.state_dict() for name, module in (extras or {}).items()}}
        with atomic_path(self.state_file) as tmp:
            torch.save(state, tmp)

    def resume(self, model: nn.Module, optimizer: torch.optim.Optimizer,
               extras: dict[str, nn.Module] | None = None) -> dict | None:
        """Load the last epoch into ``model``, ``optimizer`` and ``extras``; return the trainer
        state, or None (and an empty directory) when there is nothing usable to resume."""
        extras = extras or {}
        for stray in self.path.glob(".*.tmp"):  # temp files of a process killed mid-write
            stray.unlink(missing_ok=True)
        if not self.state_file.exists():
            self.clear()
            return None
        before = {name: copy.deepcopy(m.state_dict()) for name, m in {"model": model, "optimizer": optimizer, **extras}.items()}
        try:
            state = torch.load(self.state_file, weights_only=True)
            trainer_state = dict(state["trainer"])
            if trainer_state.get("best_epoch", 0) > 0:
                load_file(str(self.best_file))  # fit() ends by loading it: it must be readable
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            for name, module in extras.items():
                module.load_state_dict(state["extras"][name])
        except UNLOADABLE as exc:
            for name, m in {"model": model, "optimizer": optimizer, **extras}.items():
                m.load_state_dict(before[name])
            log.warning("train: discarding the unusable checkpoint in %s (%s: %s); starting afresh",
                        self.path, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            self.clear()
            return None
        return trainer_state

    def load_best(self, model: nn.Module) -> None:
        model.load_state_dict(load_file(str(self.best_file)))

    def clear(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
