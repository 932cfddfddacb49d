"""Training in several processes: torchrun launch, the process group, and what ranks share.

With ``train.distributed.processes: N > 1`` the ``train`` stage re-launches itself under
``torchrun`` (``python -m torch.distributed.run``): ``--standalone --nproc-per-node N`` on one
machine, or the flags in the ``CUBECORE_TORCHRUN`` environment variable (``--nnodes``,
``--node-rank``, ``--master-addr`` ...) across machines, so machine addresses stay out of
params.yaml. It can also be started by ``torchrun`` directly. Every worker joins a gloo process group (training
runs on the CPU) and the trainer wraps its loss in DistributedDataParallel.

Each optimiser step takes the same global batch of ``train.batch_size`` rows of the epoch's
seeded permutation as one process would; rank ``r`` computes the loss of its disjoint shard
(``shard``), weighted so that DDP's gradient average is the gradient of the global batch's
mean loss. Rank 0 alone validates, checkpoints and writes outputs; it broadcasts each epoch's
validation row, so every rank takes the same early-stopping decision.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cubecore.core.errors import CubecoreError

log = logging.getLogger(__name__)

TORCHRUN_FLAGS = "CUBECORE_TORCHRUN"  # torchrun flags for a run across machines (README)


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes."""
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    # --- what ranks share --------------------------------------------------------------
    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch: disjoint, nearly equal, in order."""
        return index if self.world == 1 else torch.tensor_split(index, self.world)[self.rank]

    def weighted(self, loss: torch.Tensor, rows: int, total: int) -> torch.Tensor:
        """``loss`` (a mean over this rank's ``rows``) weighted so that DDP's average over ranks
        is the mean over all ``total`` rows of the global batch."""
        return loss if self.world == 1 else loss * (rows * self.world / total)

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks."""
        if self.world == 1:
            return value
        tensor = torch.tensor(value, dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor)

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def wrap(self, module: nn.Module, some_unused: bool = False) -> nn.Module:
        """``module`` under DDP (gradients averaged over the ranks in backward), or as is.
        ``some_unused``: a step may leave some trained parameters unused (DDP then looks for
        them in every step's graph, rather than wait for their gradients forever)."""
        if self.world == 1:
            return module
        return DistributedDataParallel(module, find_unused_parameters=some_unused)

    def rank_generator(self, generator: torch.Generator) -> torch.Generator:
        """The generator of this rank's random draws (input noise) after the shared ones (the
        permutation): ranks must not draw the same noise for different rows."""
        if self.world == 1:
            return generator
        return torch.Generator().manual_seed(generator.initial_seed() * self.world + self.rank)


SINGLE = Group()


def weights_digest(*modules: nn.Module) -> str:
    """A short hash of the ``modules``' parameters (ranks in step have the same)."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.named_parameters():
            digest.update(name.encode())
            digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


_PRCTL = ctypes.CDLL(None).prctl if sys.platform == "linux" else None  # looked up now, not in a forked child


def die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies (Linux), so that a killed run
    leaves no worker behind (torchrun starts each in a session of its own) to finish it."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def launched() -> bool:
    """True inside a process started by torchrun."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def torchrun_command(processes: int, module: str, args: list[str]) -> list[str]:
    """The command that runs ``python -m module args`` in ``processes`` workers."""
    flags = shlex.split(os.environ.get(TORCHRUN_FLAGS, ""))
    if not flags:
        flags = ["--standalone", f"--nproc-per-node={processes}"]
    return [sys.executable, "-m", "torch.distributed.run", *flags, "-m", module, *args]


def relaunch(processes: int) -> None:
    """With ``processes > 1`` outside torchrun: run this stage (the ``__main__`` module, same
    arguments) under torchrun, wait, and exit; otherwise return and let the caller train.

    The workers' output is passed through as it comes; when they fail, their first ``error:``
    line ends the output, once, instead of each rank's copy and torchrun's failure report."""
    if processes == 1 or launched():
        return
    module = sys.modules["__main__"].__spec__.name
    command = torchrun_command(processes, module, sys.argv[1:])
    log.info("train: %d processes: %s", processes, shlex.join(command))
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                          preexec_fn=die_with_parent) as launcher:  # noqa: PLW1509 (no dlopen in the child)
        error, failing = None, False
        for line in launcher.stderr:
            if line.startswith("error: "):
                error = error or line[len("error: "):].strip()
            failing = failing or (error is not None and "torch/distributed/elastic" in line)
            if not failing and not line.startswith("error: "):
                sys.stderr.write(line)
    if launcher.returncode:
        raise CubecoreError(error or f"train: the {processes} training processes under torchrun failed "
                                     f"(exit code {launcher.returncode}; torchrun's report is above)")
    sys.exit(0)


@contextlib.contextmanager
def process_group(processes: int):
    """Join the training processes' group (gloo) for the block; yield this process's Group.

    One process (``processes: 1``) joins nothing. The number torchrun started must be
    ``train.distributed.processes``: the per-rank batch, and so the result, depends on it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != processes:
        raise CubecoreError(f"train.distributed.processes is {processes} but {world} processes were started "
                            f"(WORLD_SIZE={world}): give torchrun (or {TORCHRUN_FLAGS}) --nnodes x --nproc-per-node "
                            f"= {processes}")
    if processes == 1:
        yield SINGLE
        return
    die_with_parent()
    dist.init_process_group("gloo")
    try:
        group = Group(dist.get_rank(), dist.get_world_size())
        log.info("train: rank %d of %d joined the process group (gloo)", group.rank, group.world)
        yield group
    finally:
        dist.destroy_process_group()
