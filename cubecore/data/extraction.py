"""The ``extract`` stage: turn pairs -> distinct texts -> teacher embeddings (cached)."""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import torch

from cubecore.core import artifacts
from cubecore.core.artifacts import Pairs
from cubecore.core.config import Params, TeacherParams
from cubecore.core.errors import CubecoreError
from cubecore.core.paths import usable_dir
from cubecore.data.corpora import load_corpus
from cubecore.data.embcache import EmbeddingCache, write_shard
from cubecore.data.records import TurnPair
from cubecore.data.teacher import FIDELITY_SAMPLE, Teacher

log = logging.getLogger(__name__)

SHARD_TEXTS = 4096  # texts per cache shard: an interrupted run loses at most one shard of work


def shard_texts() -> int:
    """Texts per cache shard: ``SHARD_TEXTS``, or ``CUBECORE_SHARD_TEXTS`` (tests use tiny shards)."""
    value = os.environ.get("CUBECORE_SHARD_TEXTS", str(SHARD_TEXTS))
    if not value.isdigit() or int(value) < 1:
        raise CubecoreError(f"CUBECORE_SHARD_TEXTS must be a positive integer, got {value!r}")
    return int(value)


def chunked(rows: np.ndarray, size: int) -> list[np.ndarray]:
    """``rows`` cut into consecutive chunks of ``size``: one teacher call and one cache shard each."""
    return [rows[start:start + size] for start in range(0, len(rows), size)]


def embed_with_cache(texts: list[str], teacher: Teacher, cache: EmbeddingCache,
                     progress: bool = True, workers: int = 1) -> tuple[np.ndarray, dict]:
    """Embeddings for ``texts``, computing only what the cache lacks (with ``workers`` processes).

    The stats include the bf16-vs-fp32 fidelity recorded for the cache's namespace, so a run
    served entirely from the cache reports it too (None in fp32).
    """
    matrix, found = cache.get(texts, teacher.hidden_size)
    missing = np.flatnonzero(~found)
    chunks = chunked(missing, shard_texts())
    started = time.perf_counter()
    if len(missing):
        fill_cache(texts, chunks, teacher, cache, workers, progress)
        matrix[missing], filled = cache.get([texts[i] for i in missing], teacher.hidden_size)
        if not filled.all():
            raise CubecoreError(f"embedding cache {cache.directory}: {int((~filled).sum())} texts just embedded "
                                "are not in it (a shard damaged while this run wrote it: see the warning above)")
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
        "chunks": len(chunks),  # of the misses, one shard each: parallelism is per chunk
        "worker_processes": worker_processes(workers, len(chunks)),
        "bf16_worst_cosine_to_fp32": fidelity,
    }
    return matrix, stats


def worker_processes(workers: int, chunks: int) -> int:
    """The processes that embed ``chunks`` chunks with ``workers`` asked for: 0 when this
    process embeds them itself (one worker asked, or at most one chunk)."""
    used = min(workers, chunks)
    return used if used > 1 else 0


def fill_cache(texts: list[str], chunks: list[np.ndarray], teacher: Teacher, cache: EmbeddingCache,
               workers: int = 1, progress: bool = True) -> None:
    """Embed each chunk of rows of ``texts`` in one teacher call and store it as one cache shard.

    With ``workers`` > 1 the chunks go to that many processes, each with its own teacher and
    ``cores / workers`` torch threads. A chunk's batches are formed the same way in any
    process (the teacher pads per length-sorted batch, and in bf16 a text's vector depends on
    its batch), so the shards hold the same bytes as with one worker.
    """
    chunks = [rows for rows in chunks if len(rows)]
    total, done = sum(map(len, chunks)), 0
    workers = worker_processes(workers, len(chunks))
    if not workers:
        for rows in chunks:
            chunk = [texts[i] for i in rows]
            cache.put(chunk, teacher.embed(chunk, progress=progress))
            done += len(rows)
            log.info("embedded %d / %d new texts", done, total)
        return
    if teacher.precision == "bf16" and teacher.fidelity is None:  # the gate, on one worker's sample
        teacher.embed([texts[i] for i in chunks[0][:FIDELITY_SAMPLE]], progress=False)
    threads = max(1, torch.get_num_threads() // workers)
    log.info("embedding %d texts in %d chunks with %d worker processes, %d torch threads each",
             total, len(chunks), workers, threads)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(teacher.params, teacher.fidelity, threads, cache.directory)) as pool:
        jobs = [pool.submit(_embed_chunk, [texts[i] for i in rows]) for rows in chunks]
        try:
            for job in as_completed(jobs):
                done += job.result()
                log.info("embedded %d / %d new texts", done, total)
        except BrokenProcessPool:
            raise CubecoreError(f"an extract worker process died (killed, or out of memory?); the {done} texts "
                                f"embedded before are kept in {cache.directory}") from None
        finally:
            for job in jobs:
                job.cancel()
    cache.refresh()


_worker: dict = {}  # one worker process's teacher params, then its teacher, and the cache directory


def _start_worker(params: TeacherParams, fidelity: float | None, threads: int, directory: Path) -> None:
    torch.set_num_threads(threads)
    _worker.update(params=params, fidelity=fidelity, directory=directory)


def _embed_chunk(chunk: list[str]) -> int:
    if "teacher" not in _worker:  # built in the first task, so a CubecoreError reaches the parent as it is
        _worker["teacher"] = Teacher(_worker["params"])
        _worker["teacher"].fidelity = _worker["fidelity"]  # measured by the parent on one worker's sample
    write_shard(_worker["directory"], chunk, _worker["teacher"].embed(chunk, progress=False))
    return len(chunk)


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


def open_sources(params: Params):
    """The corpus, its distinct texts and pairs, the teacher (weights not loaded yet) and its cache."""
    cache_dir = usable_dir(params.base.cache_dir, "base.cache_dir")  # checked before the corpus loads
    corpus = load_corpus(params.data)
    texts, pairs = index_texts(corpus.pairs)
    teacher = Teacher(params.teacher)
    # the per-teacher folder is where shards are written: proven writable before any text is embedded
    usable_dir(cache_dir / teacher.cache_namespace(), "base.cache_dir")
    return corpus, texts, pairs, teacher, EmbeddingCache(cache_dir, teacher.cache_namespace())


def embed_shard(params: Params, index: int, count: int, workers: int = 1) -> dict:
    """Fill the cache with shard ``index`` (1-based) of ``count`` of the texts ``params`` need.

    The distinct texts are cut into consecutive chunks of ``shard_texts()`` and shard i takes
    chunks i, i + count, ...: disjoint, together complete, and the same on every machine
    whatever its cache holds. Each chunk's cache misses are embedded as one teacher call, so on
    a cold cache the shards hold the bytes a single ``extract`` would have computed.
    """
    _, texts, _, teacher, cache = open_sources(params)
    mine = chunked(np.arange(len(texts)), shard_texts())[index - 1::count]
    cached = cache.holds(texts)
    misses = [chunk[~cached[chunk]] for chunk in mine]
    fill_cache(texts, misses, teacher, cache, workers, progress=False)
    if teacher.fidelity is not None:
        cache.record_fidelity(teacher.fidelity)
    embedded = sum(map(len, misses))
    return {"texts": len(texts), "shard_texts": sum(map(len, mine)),
            "embedded": embedded, "cache": str(cache.directory)}


COLLAPSE_WARNING, COLLAPSE_ERROR = 0.05, 0.5  # shares of the distinct texts


def quoted(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[:width] + "...")


def indistinct(texts: list[str], embeddings: np.ndarray, teacher: Teacher) -> dict:
    """What the teacher cannot tell apart, as extract metrics: ``collapsed_texts``, the distinct
    texts it reads as the same tokens as another one (uncased "Hi" and "hi"; a script it does not
    know, read as unknown tokens) or embeds as the same vector, and ``unknown_token_texts``, the
    texts at least half of whose tokens are the tokenizer's unknown token.

    Logged with an example: a warning for unknown-token texts, and for collapsed ones when they
    are ``COLLAPSE_WARNING`` of the texts or more. When more than ``COLLAPSE_ERROR`` collapse, a
    CubecoreError: their answers would tie, and no metric could separate the models.
    """
    ids = teacher.token_ids(texts)
    unknown = teacher.mostly_unknown(ids)
    if unknown.any():
        log.warning("extract: %d of %d texts are mostly the tokenizer's unknown token %s, which the teacher "
                    "cannot read (e.g. %s)", unknown.sum(), len(texts), teacher.tokenizer.unk_token,
                    quoted(texts[np.argmax(unknown)]))
    tokens, vectors = [tuple(row) for row in ids], [hash(row.tobytes()) for row in embeddings]
    same_tokens, same_vector = Counter(tokens), Counter(vectors)
    collapsed = [i for i in range(len(texts)) if same_tokens[tokens[i]] > 1 or same_vector[vectors[i]] > 1]
    if collapsed:
        i = collapsed[0]
        j = next(j for j in collapsed if j != i and (tokens[j] == tokens[i] or vectors[j] == vectors[i]))
        unread = f", mostly {teacher.tokenizer.unk_token} tokens" if unknown[i] else ""
        said = (f"{len(collapsed)} of {len(texts)} distinct texts look the same to the teacher as another one "
                f"(e.g. {quoted(texts[i])} and {quoted(texts[j])}{unread}), so they share one embedding")
        if len(collapsed) > COLLAPSE_ERROR * len(texts):
            raise CubecoreError(f"teacher.model {teacher.params.model}: {said}: it cannot tell this corpus's texts "
                                f"apart; choose a teacher that reads its language")
        log.log(logging.WARNING if len(collapsed) >= COLLAPSE_WARNING * len(texts) else logging.INFO,
                "extract: %s", said)
    return {"collapsed_texts": len(collapsed), "unknown_token_texts": int(unknown.sum())}


def extract(params: Params, out_dir: str | Path, progress: bool = True) -> tuple[dict, dict]:
    """Write texts, embeddings, pairs and the teacher identity to ``out_dir``; return the
    metrics (the same on every run) and the run's speed and cache figures, apart."""
    corpus, texts, pairs, teacher, cache = open_sources(params)
    embeddings, stats = embed_with_cache(texts, teacher, cache, progress=progress,
                                        workers=params.extract.workers)
    alike = indistinct(texts, embeddings, teacher)
    with artifacts.atomic_dir(out_dir) as tmp:
        artifacts.write_texts(tmp / "texts.jsonl", texts)
        artifacts.write_embeddings(tmp / "embeddings.npy", embeddings)
        artifacts.write_pairs(tmp / "pairs.tsv", pairs)
        artifacts.write_json(tmp / "teacher.json", teacher.identity())
        artifacts.write_jsonl(tmp / "rejects.jsonl", corpus.rejects)
    speed = {key: stats.pop(key) for key in ("cache_hits", "cache_misses", "embed_seconds", "texts_per_second",
                                             "chunks", "worker_processes")}
    metrics = {"source": params.data.source, **corpus.counts(), "pairs": len(pairs), "distinct_texts": len(texts),
               **alike, "dim": teacher.hidden_size, "precision": teacher.precision,
               **stats}
    log.info("extract: %s %s", metrics, speed)
    return {"extract": metrics}, {"extract": speed}
