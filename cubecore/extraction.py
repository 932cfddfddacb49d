"""The ``extract`` stage: turn pairs -> distinct texts -> teacher embeddings (cached)."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from cubecore import artifacts
from cubecore.artifacts import Pairs
from cubecore.config import Params
from cubecore.corpora import TurnPair, load_corpus
from cubecore.embcache import EmbeddingCache
from cubecore.errors import CubecoreError
from cubecore.paths import usable_dir
from cubecore.teacher import FIDELITY_SAMPLE, Teacher

log = logging.getLogger(__name__)

SHARD_TEXTS = 4096  # texts per cache shard: an interrupted run loses at most one shard of work


def shard_texts() -> int:
    """Texts per cache shard: ``SHARD_TEXTS``, or ``CUBECORE_SHARD_TEXTS`` (tests use tiny shards)."""
    value = os.environ.get("CUBECORE_SHARD_TEXTS", str(SHARD_TEXTS))
    if not value.isdigit() or int(value) < 1:
        raise CubecoreError(f"CUBECORE_SHARD_TEXTS must be a positive integer, got {value!r}")
    return int(value)


def embed_with_cache(texts: list[str], teacher: Teacher, cache: EmbeddingCache,
                     progress: bool = True) -> tuple[np.ndarray, dict]:
    """Embeddings for ``texts``, computing only what the cache lacks.

    The stats include the bf16-vs-fp32 fidelity recorded for the cache's namespace, so a run
    served entirely from the cache reports it too (None in fp32).
    """
    matrix, found = cache.get(texts, teacher.hidden_size)
    missing = np.flatnonzero(~found)
    started = time.perf_counter()
    shard = shard_texts()
    for start in range(0, len(missing), shard):
        rows = missing[start:start + shard]
        chunk = [texts[i] for i in rows]
        matrix[rows] = teacher.embed(chunk, progress=progress)
        cache.put(chunk, matrix[rows])
        log.info("embedded %d / %d new texts", min(start + shard, len(missing)), len(missing))
    seconds = time.perf_counter() - started
    fidelity = None
    if teacher.precision == "bf16":
        if teacher.fidelity is None and cache.fidelity() is None and texts:  # e.g. a cache from before it was kept
            teacher.embed(texts[:FIDELITY_SAMPLE], progress=False)  # the first call measures it
        fidelity = cache.record_fidelity(teacher.fidelity) if teacher.fidelity is not None else cache.fidelity()
    stats = {
        "texts": len(texts),
        "cache_hits": int(found.sum()),
        "cache_misses": int(len(missing)),
        "embed_seconds": round(seconds, 3),
        "texts_per_second": round(len(missing) / seconds, 1) if len(missing) and seconds > 0 else None,
        "bf16_worst_cosine_to_fp32": fidelity,
    }
    return matrix, stats


def index_texts(turn_pairs: list[TurnPair]) -> tuple[list[str], Pairs]:
    """Distinct texts (each embedded once: turn i answers one pair and asks the next) and
    the pairs as ids into them."""
    text_ids: dict[str, int] = {}
    for pair in turn_pairs:
        text_ids.setdefault(pair.question, len(text_ids))
        text_ids.setdefault(pair.answer, len(text_ids))
    pairs = Pairs(
        question_id=np.array([text_ids[p.question] for p in turn_pairs], dtype=np.int64),
        answer_id=np.array([text_ids[p.answer] for p in turn_pairs], dtype=np.int64),
        conversation=[p.conversation for p in turn_pairs],
        turn=np.array([p.turn for p in turn_pairs], dtype=np.int64),
    )
    return list(text_ids), pairs


def extract(params: Params, out_dir: str | Path, progress: bool = True) -> tuple[dict, dict]:
    """Write texts, embeddings, pairs and the teacher identity to ``out_dir``; return the
    metrics (the same on every run) and the run's speed and cache figures, apart."""
    started = time.perf_counter()
    cache_dir = usable_dir(params.base.cache_dir, "base.cache_dir")
    corpus = load_corpus(params.data)
    texts, pairs = index_texts(corpus.pairs)
    teacher = Teacher(params.teacher)
    cache = EmbeddingCache(cache_dir, teacher.cache_namespace())
    embeddings, stats = embed_with_cache(texts, teacher, cache, progress=progress)
    with artifacts.atomic_dir(out_dir) as tmp:
        artifacts.write_texts(tmp / "texts.jsonl", texts)
        artifacts.write_embeddings(tmp / "embeddings.npy", embeddings)
        artifacts.write_pairs(tmp / "pairs.tsv", pairs)
        artifacts.write_json(tmp / "teacher.json", teacher.identity())
        artifacts.write_jsonl(tmp / "rejects.jsonl", corpus.rejects)
    speed = {key: stats.pop(key) for key in ("cache_hits", "cache_misses", "embed_seconds", "texts_per_second")}
    speed["stage_seconds"] = round(time.perf_counter() - started, 3)
    metrics = {"source": params.data.source, **corpus.counts(), "pairs": len(pairs), "distinct_texts": len(texts),
               "dim": teacher.hidden_size, "precision": teacher.precision,
               **stats}
    log.info("extract: %s %s", metrics, speed)
    return {"extract": metrics}, {"extract": speed}
