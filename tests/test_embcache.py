"""The content-addressed embedding cache and extraction's use of it."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_paths import extract_figures

from cubecore.core.config import TeacherParams
from cubecore.data.embcache import EmbeddingCache
from cubecore.data.extraction import embed_with_cache


def vectors(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_put_get_round_trip(tmp_path):
    cache = EmbeddingCache(tmp_path, "ns")
    matrix = vectors(3)
    cache.put(["alpha", "beta", "gamma"], matrix)
    assert len(cache) == 3
    got, found = cache.get(["gamma", "alpha", "beta"], 4)
    assert found.tolist() == [True, True, True]
    np.testing.assert_array_equal(got, matrix[[2, 0, 1]])


def test_missing_texts_are_reported(tmp_path):
    cache = EmbeddingCache(tmp_path, "ns")
    matrix = vectors(2)
    cache.put(["alpha", "beta"], matrix)
    got, found = cache.get(["alpha", "delta", "beta", "Alpha"], 4)
    assert found.tolist() == [True, False, True, False]
    np.testing.assert_array_equal(got[[0, 2]], matrix)
    assert not got[[1, 3]].any()


def test_new_instance_sees_earlier_shards(tmp_path):
    first = EmbeddingCache(tmp_path, "ns")
    a, b = vectors(2, seed=1), vectors(1, seed=2)
    first.put(["one", "two"], a)
    first.put(["three"], b)
    second = EmbeddingCache(tmp_path, "ns")
    assert len(second) == 3
    got, found = second.get(["three", "one", "two"], 4)
    assert found.all()
    np.testing.assert_array_equal(got, np.concatenate([b, a]))
    # another namespace (another teacher / pooling / max_length) shares nothing
    other = EmbeddingCache(tmp_path, "other")
    assert len(other) == 0
    assert not other.get(["one"], 4)[1].any()


def test_wrong_dim_is_a_miss(tmp_path):
    cache = EmbeddingCache(tmp_path, "ns")
    cache.put(["one"], vectors(1))
    assert not cache.get(["one"], 8)[1].any()


def test_half_written_shard_is_ignored(tmp_path):
    cache = EmbeddingCache(tmp_path, "ns")
    kept = vectors(1, seed=3)
    cache.put(["kept"], kept)
    # an interrupted put: embeddings written, keys never were; plus a torn temp file
    np.save(cache.directory / "99999999-999999-1-1.emb.npy", vectors(2, seed=4))
    (cache.directory / ".99999999-999999-1-1.keys.npy.abc123.tmp").write_bytes(b"\x93NUMPY torn")
    reopened = EmbeddingCache(tmp_path, "ns")
    assert len(reopened) == 1
    got, found = reopened.get(["kept", "lost"], 4)
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(got[0], kept[0])


def test_embed_with_cache_misses_then_hits(tmp_path, minilm_teacher, minilm_dir):
    from cubecore.data.teacher import Teacher

    texts = ["Good morning!", "How is the weather today?", "It is sunny and warm.", "Good morning!!"]
    cache = EmbeddingCache(tmp_path, minilm_teacher.cache_namespace())
    first, stats = embed_with_cache(texts, minilm_teacher, cache, progress=False)
    assert first.shape == (4, 384)
    assert stats["texts"] == 4 and stats["cache_misses"] == 4 and stats["cache_hits"] == 0
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)

    # a later run: a fresh cache instance and a fresh teacher; everything comes from disk,
    # so the teacher's weights are never loaded
    fresh = Teacher(TeacherParams(model=str(minilm_dir), pooling="mean", batch_size=2, device="cpu", precision="fp32"))
    assert fresh.cache_namespace() == minilm_teacher.cache_namespace()
    again, stats = embed_with_cache(texts, fresh, EmbeddingCache(tmp_path, fresh.cache_namespace()),
                                    progress=False)
    assert stats["cache_hits"] == 4 and stats["cache_misses"] == 0
    np.testing.assert_array_equal(again, first)
    assert fresh._model is None

    # a partly cached call embeds only the new text
    more, stats = embed_with_cache(texts[:2] + ["A brand new sentence."], minilm_teacher, cache, progress=False)
    assert stats["cache_hits"] == 2 and stats["cache_misses"] == 1
    np.testing.assert_array_equal(more[:2], first[:2])
    np.testing.assert_allclose(more[2], minilm_teacher.embed(["A brand new sentence."], progress=False)[0],
                               atol=1e-5)


def test_shard_names_never_collide(tmp_path, monkeypatch):
    # two caches on one directory in one process, or a re-put of known texts, in the same
    # second must not overwrite each other's shards; freeze the clock to make that certain
    monkeypatch.setattr("cubecore.data.embcache.time.strftime", lambda fmt: "20260101-000000")
    first, second = EmbeddingCache(tmp_path, "ns"), EmbeddingCache(tmp_path, "ns")
    first.put(["p"], np.full((1, 4), 1.0, np.float32))
    second.put(["q"], np.full((1, 4), 2.0, np.float32))
    cache = EmbeddingCache(tmp_path, "ns")
    cache.put(["x"], np.full((1, 4), 3.0, np.float32))
    cache.put(["x"], np.full((1, 4), 3.0, np.float32))
    cache.put(["y"], np.full((1, 4), 4.0, np.float32))
    got, found = cache.get(["p", "q", "x", "y"], 4)
    assert found.all()
    assert got[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]


# --- damaged shards: found, named, dropped, recomputed ------------------------------------

TEXTS = ["Good morning!", "How is the weather today?", "It is sunny and warm.", "See you tomorrow."]


def finite_garbage(path):
    stored = np.load(path)
    np.save(path, stored[::-1].copy())  # a valid file, plausible values, wrong rows


def nan_bytes(path):
    data = bytearray(path.read_bytes())
    data[-64:] = np.full(16, np.nan, np.float32).tobytes()
    path.write_bytes(bytes(data))


def truncated(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


DAMAGE = {"finite_garbage": finite_garbage, "nan_bytes": nan_bytes, "truncated": truncated,
          "random_bytes": random_bytes}


def only_shard(cache: EmbeddingCache, suffix: str):
    (path,) = cache.directory.glob(f"*{suffix}")
    return path


def damage_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("target", [".emb.npy", ".keys.npy"])
def test_a_damaged_shard_is_named_dropped_and_recomputed(tmp_path, minilm_teacher, damage, target, caplog):
    fresh = minilm_teacher.embed(TEXTS, progress=False)
    cache = EmbeddingCache(tmp_path, "ns")
    embed_with_cache(TEXTS, minilm_teacher, cache, progress=False)
    shard = only_shard(cache, target)
    DAMAGE[damage](shard)

    with caplog.at_level(logging.WARNING):
        got, stats = embed_with_cache(TEXTS, minilm_teacher, EmbeddingCache(tmp_path, "ns"), progress=False)
    (warning,) = damage_warnings(caplog)
    assert str(shard.with_name(shard.name.replace(target, ".emb.npy"))) in warning and "damaged" in warning
    assert stats["cache_misses"] == len(TEXTS)
    np.testing.assert_allclose(got, fresh, atol=1e-6)
    assert not shard.exists() and (cache.directory / "damaged" / shard.name).exists()

    caplog.clear()  # the recomputed shard replaced it: the next run is all hits, no warning
    again, stats = embed_with_cache(TEXTS, minilm_teacher, EmbeddingCache(tmp_path, "ns"), progress=False)
    assert stats["cache_hits"] == len(TEXTS) and not damage_warnings(caplog)
    np.testing.assert_array_equal(again, got)


def without_checksums(cache: EmbeddingCache) -> None:
    """Delete every ``.sum.json`` (as a user might, or as the code before checksums left a cache)."""
    for path in cache.directory.glob("*.sum.json"):
        path.unlink()


def test_a_shard_whose_checksum_file_is_gone_is_never_trusted(tmp_path, minilm_teacher, caplog):
    """The checksum file deleted and the vectors' bytes flipped (finite, right shape): the damage
    must not become permanent. The shard is set aside with one warning and its texts recomputed."""
    fresh = minilm_teacher.embed(TEXTS, progress=False)
    cache = EmbeddingCache(tmp_path, "ns")
    embed_with_cache(TEXTS, minilm_teacher, cache, progress=False)
    without_checksums(cache)
    emb = only_shard(cache, ".emb.npy")
    finite_garbage(emb)

    with caplog.at_level(logging.WARNING):
        got, stats = embed_with_cache(TEXTS, minilm_teacher, EmbeddingCache(tmp_path, "ns"), progress=False)
    (warning,) = damage_warnings(caplog)
    assert str(emb) in warning and "checksum file" in warning and "cannot be verified" in warning
    assert stats["cache_misses"] == len(TEXTS)
    np.testing.assert_allclose(got, fresh, atol=1e-6)
    assert (cache.directory / "damaged" / emb.name).exists()

    caplog.clear()  # recomputed into a new, checksummed shard: the next run is all hits
    again, stats = embed_with_cache(TEXTS, minilm_teacher, EmbeddingCache(tmp_path, "ns"), progress=False)
    assert stats["cache_hits"] == len(TEXTS) and not damage_warnings(caplog)
    np.testing.assert_array_equal(again, got)
    assert len(list(cache.directory.glob("*.sum.json"))) == 1


@pytest.mark.parametrize("damage", [None, "nan_bytes", "truncated", "random_bytes", "wrong_rows"])
def test_shards_without_checksums_are_set_aside_intact_or_not(tmp_path, damage, caplog):
    cache = EmbeddingCache(tmp_path, "ns")
    cache.put(["a", "b", "c", "d"], vectors(4, dim=8))
    without_checksums(cache)
    emb = only_shard(cache, ".emb.npy")
    if damage == "wrong_rows":
        np.save(emb, vectors(3, dim=8))
    elif damage:
        DAMAGE[damage](emb)
    with caplog.at_level(logging.WARNING):
        got, found = EmbeddingCache(tmp_path, "ns").get(["a", "b", "c", "d"], 8)
    assert not found.any() and not got.any()
    (warning,) = damage_warnings(caplog)
    assert str(emb) in warning


def test_a_garbled_checksum_file_drops_the_shard(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path, "ns")
    cache.put(["a"], vectors(1))
    only_shard(cache, ".sum.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        reopened = EmbeddingCache(tmp_path, "ns")
    assert len(reopened) == 0 and len(damage_warnings(caplog)) == 1


def test_fidelity_is_reported_on_a_run_served_from_the_cache(tmp_path, minilm_dir):
    from cubecore.data.teacher import Teacher

    def bf16():
        return Teacher(TeacherParams(model=str(minilm_dir), batch_size=2, device="cpu", precision="bf16"))

    first = bf16()
    cache = EmbeddingCache(tmp_path, first.cache_namespace())
    _, stats = embed_with_cache(TEXTS, first, cache, progress=False)
    assert stats["cache_misses"] == len(TEXTS) and stats["bf16_worst_cosine_to_fp32"] == first.fidelity
    later = bf16()
    _, stats = embed_with_cache(TEXTS, later, EmbeddingCache(tmp_path, later.cache_namespace()), progress=False)
    assert stats["cache_hits"] == len(TEXTS)
    assert later._model is None  # nothing was embedded, the figure came from the cache
    assert stats["bf16_worst_cosine_to_fp32"] == first.fidelity >= 0.999

    (cache.directory / "fidelity.json").unlink()  # a cache from before fidelity was kept: measured
    _, stats = embed_with_cache(TEXTS, later, EmbeddingCache(tmp_path, later.cache_namespace()), progress=False)
    assert stats["cache_hits"] == len(TEXTS) and stats["bf16_worst_cosine_to_fp32"] >= 0.999


# --- SIGKILL during extract, then a re-run ---------------------------------------------------

def run_extract(project, cache_dir, shard_texts=8, wait=True):
    """``python -m stages.extract`` in ``project`` (tiny params, the given cache, small shards)."""
    repo = Path(__file__).resolve().parents[1]
    params = {"base": {"cache_dir": str(cache_dir)}, "data": {"max_pairs": 50},
              "teacher": {"precision": "fp32", "batch_size": 8, "device": "cpu"}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(repo), "CUBECORE_SHARD_TEXTS": str(shard_texts)}
    command = [sys.executable, "-m", "stages.extract", "--out", "data/extract", "--metrics", "metrics/extract.json",
               "--speed", "metrics/speed/extract.json"]
    if not wait:
        return subprocess.Popen(command, cwd=project, env=env, stderr=subprocess.DEVNULL)
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return extract_figures(project)


@pytest.mark.slow
def test_extract_killed_after_a_shard_resumes_with_the_same_result(tmp_path):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    killed.mkdir()
    straight.mkdir()
    process = run_extract(killed, tmp_path / "cache-killed", wait=False)
    deadline = time.time() + 300
    while not list((tmp_path / "cache-killed").glob("*/*.keys.npy")) and time.time() < deadline:
        assert process.poll() is None, "extract ended before it could be killed"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "data/extract").exists()
    shards = len(list((tmp_path / "cache-killed").glob("*/*.keys.npy")))  # the keys file makes a shard visible

    resumed = run_extract(killed, tmp_path / "cache-killed")
    assert resumed["cache_hits"] >= 8 * shards > 0 and resumed["cache_misses"] == resumed["texts"] - resumed["cache_hits"]
    whole = run_extract(straight, tmp_path / "cache-straight")
    assert whole["cache_hits"] == 0 and whole["texts"] == resumed["texts"]
    for name in ("embeddings.npy", "texts.jsonl", "pairs.tsv"):
        assert (killed / "data/extract" / name).read_bytes() == (straight / "data/extract" / name).read_bytes(), name
