"""The content-addressed embedding cache and extraction's use of it."""
from __future__ import annotations

import numpy as np

from cubecore.config import TeacherParams
from cubecore.embcache import EmbeddingCache
from cubecore.extraction import embed_with_cache


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
    from cubecore.teacher import Teacher

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
    monkeypatch.setattr("cubecore.embcache.time.strftime", lambda fmt: "20260101-000000")
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
