"""The process a run trains in: its torch threads and its seeds."""
from __future__ import annotations

import numpy as np
import torch


def use_threads(threads: int) -> None:
    """``train.threads`` torch threads for this process (0 leaves torch's default)."""
    if threads:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
