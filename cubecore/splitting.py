"""The ``split`` stage: a seeded, group-aware train/val(/test) split of the kept pairs.

``metrics/split.json`` also reports how many validation (and test) questions, answers and
texts occur as any text in train (``overlap_with_train``): in dialogue mode a turn's answer is
the next turn's question, so texts cross sides even when question groups do not; in
autoencoder mode those texts are left out of the validation rows (see ``tasks.split_tasks``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cubecore import artifacts
from cubecore.artifacts import Pairs
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


MIN_PAIRS = 2  # per split: a training batch needs two rows, and so does any ranking


def cross_split_overlap(parts: dict[str, Pairs]) -> dict:
    """For each split but train: how many of its distinct questions, answers and texts also
    occur as any text (question or answer) in train. Grouping by question keeps a question
    text off both sides as a question, not as the answer of another turn."""
    train_texts = np.union1d(parts["train"].question_id, parts["train"].answer_id)
    overlap = {}
    for name, part in parts.items():
        if name == "train":
            continue
        sets = {"questions": np.unique(part.question_id), "answers": np.unique(part.answer_id),
                "texts": np.union1d(part.question_id, part.answer_id)}
        overlap[name] = {key: {"distinct": len(ids), "in_train": int(np.isin(ids, train_texts).sum())}
                         for key, ids in sets.items()}
    return overlap


def split_pairs(filtered_dir: str | Path, out_dir: str | Path, params: SplitParams, seed: int) -> dict:
    pairs = artifacts.read_pairs(Path(filtered_dir) / "pairs.tsv")
    groups = pairs.question_id.tolist() if params.group_by == "question" else pairs.conversation
    sides = assign_splits(groups, params.val_fraction, params.test_fraction, seed)
    names = ["train", "val"] + (["test"] if params.test_fraction > 0 else [])
    parts = {name: pairs.take(np.flatnonzero(sides == name)) for name in names}
    for name, part in parts.items():
        if len(part) < MIN_PAIRS:
            change = ("split.val_fraction / split.test_fraction (lower)" if name == "train"
                      else f"split.{name}_fraction (higher)")
            raise CubecoreError(f"{filtered_dir}/pairs.tsv: {len(pairs)} pairs after filtering give the {name} "
                                f"split {len(part)}; each split needs at least {MIN_PAIRS} ({MIN_PAIRS * len(parts)} in all): "
                                f"add data (data.*), "
                                f"loosen the filter (filter.*) or change {change}")
    with artifacts.atomic_dir(out_dir) as tmp:
        for name, part in parts.items():
            artifacts.write_pairs(tmp / f"{name}.tsv", part)
    sizes = {name: len(part) for name, part in parts.items()}
    metrics = {**sizes, "groups": len(set(groups)), "group_by": params.group_by,
               "overlap_with_train": cross_split_overlap(parts)}
    log.info("split: %s", metrics)
    return {"split": metrics}
