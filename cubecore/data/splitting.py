"""The ``split`` stage: train/val(/test) by a hash of each group's content and ``base.seed``.

A group is a question text (``split.group_by: question``) or a conversation, keyed by the
texts of its kept pairs in turn order, not by its id: chatterbot's and the user files' ids
are positions (``<file>:<line>``). Identical conversations are thus one group. The group's
key, hashed with blake2b keyed by the seed and read as a number u in [0, 1), decides its
side: test when u < ``test_fraction``, val when u < ``test_fraction + val_fraction``, else
train. A side depends on nothing else, so adding or removing data moves only the groups that
changed, and the fractions hold in expectation: ``metrics/split.json`` records the realised
ones and a fingerprint of each split's rows (``row_fingerprint``).

It also reports how many validation (and test) questions, answers and texts occur as any
text in train (``overlap_with_train``): in dialogue mode a turn's answer is the next turn's
question, so texts cross sides even when question groups do not; in autoencoder mode those
texts are left out of the validation rows (see ``tasks.split_tasks``).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from cubecore.core import artifacts
from cubecore.core.artifacts import Pairs
from cubecore.core.config import SplitParams
from cubecore.core.errors import CubecoreError

log = logging.getLogger(__name__)


def unit_interval(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``key`` and ``seed`` alone (blake2b, not Python's salted ``hash``)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2 ** 53


def assign_splits(keys: list[str], val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Split name per row ('train' / 'val' / 'test') from its group key and ``seed`` alone
    (see the module docstring), so every group sits wholly on one side."""
    sides: dict[str, str] = {}
    for key in keys:
        if key not in sides:
            u = unit_interval(key, seed)
            sides[key] = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
    return np.array([sides[key] for key in keys], dtype=object)


def group_keys(pairs: Pairs, texts: list[str], group_by: str) -> list[str]:
    """Each row's group key: its question's text, or its conversation's (question, answer)
    texts in turn order, as JSON."""
    if group_by == "question":
        return [texts[i] for i in pairs.question_id]
    turns: dict[str, list] = {}
    for conversation, turn, q, a in zip(pairs.conversation, pairs.turn.tolist(), pairs.question_id.tolist(),
                                        pairs.answer_id.tolist()):
        turns.setdefault(conversation, []).append((turn, texts[q], texts[a]))
    content = {name: json.dumps(sorted(rows), ensure_ascii=False) for name, rows in turns.items()}
    return [content[name] for name in pairs.conversation]


def row_fingerprint(pairs: Pairs, texts: list[str]) -> str:
    """A short hash of some rows' (question, answer) texts, whatever their order or text ids."""
    digests = sorted(hashlib.blake2b(json.dumps([texts[q], texts[a]], ensure_ascii=False).encode("utf-8"),
                                     digest_size=16).digest()
                     for q, a in zip(pairs.question_id.tolist(), pairs.answer_id.tolist()))
    return hashlib.blake2b(b"".join(digests), digest_size=6).hexdigest()


def split_fingerprints(split_dir: str | Path, texts: list[str], names: list[str]) -> dict[str, str]:
    """``{"<name>_fingerprint": row_fingerprint}`` of the split files ``names`` (eval.json's setup)."""
    return {f"{name}_fingerprint": row_fingerprint(artifacts.read_pairs(Path(split_dir) / f"{name}.tsv"), texts)
            for name in names}


MIN_PAIRS = 2  # per split: a training batch needs two rows, and so does any ranking


def check_sizes(where: str, parts: dict[str, Pairs], groups: int, group_by: str) -> None:
    """Stop unless every split has ``MIN_PAIRS`` rows, saying what would help."""
    pairs = sum(map(len, parts.values()))
    if groups < len(parts) and groups < pairs:  # pairs share groups, and a group cannot be cut
        noun = "question" if group_by == "question" else "conversation"
        have = f"all share one {noun}" if groups == 1 else f"come from only {groups} {noun}s"
        instead = "" if group_by == "question" else ", or set split.group_by: question"
        raise CubecoreError(f"{where}: the {pairs} pairs after filtering {have}; each {noun} stays on one side, so "
                            f"the {len(parts)} splits ({', '.join(parts)}) cannot all get rows: add data (data.*) or "
                            f"loosen the filter (filter.*){instead}")
    for name, part in parts.items():
        if len(part) < MIN_PAIRS:
            change = ("split.val_fraction / split.test_fraction (lower)" if name == "train"
                      else f"split.{name}_fraction (higher)")
            raise CubecoreError(f"{where}: {pairs} pairs after filtering give the {name} split {len(part)}; "
                                f"each split needs at least {MIN_PAIRS} ({MIN_PAIRS * len(parts)} in all): "
                                f"add data (data.*), loosen the filter (filter.*) or change {change}")


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


def split_pairs(filtered_dir: str | Path, texts_path: str | Path, out_dir: str | Path, params: SplitParams,
                seed: int) -> dict:
    """Split the kept pairs of ``filtered_dir`` (text ids into ``texts_path``) into ``out_dir``; return the metrics."""
    pairs = artifacts.read_pairs(Path(filtered_dir) / "pairs.tsv")
    texts = artifacts.read_texts(texts_path)
    keys = group_keys(pairs, texts, params.group_by)
    sides = assign_splits(keys, params.val_fraction, params.test_fraction, seed)
    names = ["train", "val"] + (["test"] if params.test_fraction > 0 else [])
    parts = {name: pairs.take(np.flatnonzero(sides == name)) for name in names}
    groups = len(set(keys))
    check_sizes(f"{filtered_dir}/pairs.tsv", parts, groups, params.group_by)
    with artifacts.atomic_dir(out_dir) as tmp:
        for name, part in parts.items():
            artifacts.write_pairs(tmp / f"{name}.tsv", part)
    sizes = {name: len(part) for name, part in parts.items()}
    metrics = {**sizes, "fractions": {name: round(size / len(pairs), 4) for name, size in sizes.items()},
               "groups": groups, "group_by": params.group_by,
               "row_fingerprint": {name: row_fingerprint(part, texts) for name, part in parts.items()},
               "overlap_with_train": cross_split_overlap(parts)}
    log.info("split: %s", metrics)
    return {"split": metrics}
