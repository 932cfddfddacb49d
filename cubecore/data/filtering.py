"""The ``filter`` stage: quality rules over pairs; every removed pair is written with its reasons."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from cubecore.core import artifacts
from cubecore.core.config import FilterParams
from cubecore.data import rows

log = logging.getLogger(__name__)

RULES = ("empty", "question_length", "answer_length", "identical", "duplicate", "low_qa_similarity")


def normalise(text: str) -> str:
    """Case-folded words only: 'Hello, there!' == 'hello there'."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def rule_masks(pairs: artifacts.Pairs, texts: list[str], embeddings: np.ndarray,
               params: FilterParams) -> dict[str, np.ndarray]:
    """One boolean mask per rule: True where the pair breaks it."""
    questions = [texts[i] for i in pairs.question_id]
    answers = [texts[i] for i in pairs.answer_id]
    q_len = np.array([len(t.strip()) for t in questions])
    a_len = np.array([len(t.strip()) for t in answers])
    masks = {
        "empty": (q_len == 0) | (a_len == 0),
        "question_length": (q_len < params.question_min_chars) | (q_len > params.question_max_chars),
        "answer_length": (a_len < params.answer_min_chars) | (a_len > params.answer_max_chars),
        "identical": np.zeros(len(pairs), bool),
        "duplicate": np.zeros(len(pairs), bool),
        "low_qa_similarity": np.zeros(len(pairs), bool),
    }
    if params.drop_identical:
        masks["identical"] = np.array([normalise(q) == normalise(a) for q, a in zip(questions, answers)], bool)
    if params.drop_duplicates:
        seen: set[tuple[int, int]] = set()
        for i, key in enumerate(zip(pairs.question_id.tolist(), pairs.answer_id.tolist())):
            masks["duplicate"][i] = key in seen
            seen.add(key)
    if params.min_qa_similarity:
        masks["low_qa_similarity"] = qa_cosine(pairs, embeddings) < params.min_qa_similarity
    return masks


def qa_cosine(pairs: artifacts.Pairs, embeddings: np.ndarray) -> np.ndarray:
    """Teacher cosine of each pair's question and answer, read in bounded chunks (``rows``)."""
    cosine = np.empty(len(pairs), dtype=np.float32)
    for (start, q), (_, a) in zip(rows.chunks(embeddings, pairs.question_id),
                                  rows.chunks(embeddings, pairs.answer_id)):
        norms = np.linalg.norm(q, axis=1) * np.linalg.norm(a, axis=1)
        cosine[start:start + len(q)] = (q * a).sum(1) / np.maximum(norms, 1e-12)
    return cosine


def filter_pairs(data_dir: str | Path, out_dir: str | Path, params: FilterParams) -> dict:
    """Write kept pairs and a rejects file (each removed pair with all its reasons)."""
    data = artifacts.Dataset.load(data_dir)
    pairs = artifacts.read_pairs(Path(data_dir) / "pairs.tsv")
    masks = rule_masks(pairs, data.texts, data.embeddings, params)
    removed = np.zeros(len(pairs), bool)
    for mask in masks.values():
        removed |= mask
    cosine = qa_cosine(pairs, data.embeddings)
    rejects = ({"question": data.texts[pairs.question_id[i]], "answer": data.texts[pairs.answer_id[i]],
                "conversation": pairs.conversation[i], "turn": int(pairs.turn[i]),
                "qa_cosine": round(float(cosine[i]), 4),
                "reasons": [rule for rule in RULES if masks[rule][i]]}
               for i in np.flatnonzero(removed))
    with artifacts.atomic_dir(out_dir) as tmp:
        artifacts.write_pairs(tmp / "pairs.tsv", pairs.take(np.flatnonzero(~removed)))
        artifacts.write_jsonl(tmp / "rejects.jsonl", rejects)
    metrics = {"pairs_in": len(pairs), "kept": int((~removed).sum()), "removed": int(removed.sum()),
               "removed_by_rule": {rule: int(masks[rule].sum()) for rule in RULES},
               "kept_qa_cosine_mean": round(float(cosine[~removed].mean()), 4) if (~removed).any() else None}
    log.info("filter: %s", metrics)
    return {"filter": metrics}
