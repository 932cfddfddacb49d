"""The ``split`` stage: a seeded, group-aware train/val(/test) split of the kept pairs."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cubecore import artifacts
from cubecore.config import SplitParams
from cubecore.errors import CubecoreError

log = logging.getLogger(__name__)


def assign_splits(groups: list, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Split name per row ('train' / 'val' / 'test') with every group wholly on one side.

    Groups are shuffled with ``seed`` and dealt to test, then val, until each holds its
    fraction of the rows; the rest is train.
    """
    unique, inverse, counts = np.unique(np.asarray(groups, dtype=object).astype(str),
                                        return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    targets = [("test", test_fraction * len(groups)), ("val", val_fraction * len(groups))]
    side = np.full(len(unique), "train", dtype=object)
    filled = {"test": 0, "val": 0}
    current = 0
    for g in order:
        while current < len(targets) and filled[targets[current][0]] >= targets[current][1]:
            current += 1
        if current == len(targets):
            break
        name = targets[current][0]
        side[g] = name
        filled[name] += counts[g]
    return side[inverse]


def split_pairs(filtered_dir: str | Path, out_dir: str | Path, params: SplitParams, seed: int) -> dict:
    pairs = artifacts.read_pairs(Path(filtered_dir) / "pairs.tsv")
    if len(pairs) < 2:
        raise CubecoreError(f"{filtered_dir}/pairs.tsv: {len(pairs)} pairs left after filtering; "
                            f"nothing to split (loosen the filter params or add data)")
    groups = pairs.question_id.tolist() if params.group_by == "question" else pairs.conversation
    sides = assign_splits(groups, params.val_fraction, params.test_fraction, seed)
    names = ["train", "val"] + (["test"] if params.test_fraction > 0 else [])
    parts = {name: pairs.take(np.flatnonzero(sides == name)) for name in names}
    for name in ("train", "val"):
        if len(parts[name]) == 0:
            raise CubecoreError(f"split: the {name} side is empty; change split.val_fraction or add data")
    with artifacts.atomic_dir(out_dir) as tmp:
        for name, part in parts.items():
            artifacts.write_pairs(tmp / f"{name}.tsv", part)
    sizes = {name: len(part) for name, part in parts.items()}
    metrics = {**sizes, "groups": len(set(groups)), "group_by": params.group_by}
    log.info("split: %s", metrics)
    return {"split": metrics}
