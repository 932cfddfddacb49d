"""Teachers beyond the packaged MiniLM: a LLaMA-style decoder (64-d, last-token pooling) and a
768-d encoder, each tiny and randomly initialised, with a tokenizer built here offline, saved
with ``save_pretrained`` and run as ``teacher.model: <folder>`` through ``check`` and ``extract``."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import save_tiny_model

from cubecore.core import artifacts
from cubecore.core.config import load_params
from cubecore.core.errors import CubecoreError
from cubecore.data.extraction import extract
from cubecore.data.inputs import fingerprint_inputs
from cubecore.model.cube import CubicCore

pytestmark = pytest.mark.teachers

PAIRS = [
    ("How are you doing today?", "Pretty well, thanks for asking."),
    ("What is your favourite colour?", "Blue, like a clear summer sky."),
    ("Do you like to read books?", "Yes, mostly novels and some history."),
    ("Where did you grow up?", "In a small town near the sea."),
    ("What are you cooking tonight?", "A vegetable soup with fresh bread."),
    ("Can you recommend a film?", "Try an old comedy, they age well."),
    ("Is it going to rain later?", "The forecast says light showers."),
    ("How was your weekend?", "Quiet, I went for a long walk."),
]


@pytest.fixture(scope="module")
def llama64_dir(tmp_path_factory):
    """A 64-d, 2-layer LLaMA-style decoder with a byte-level BPE tokenizer trained here on the
    texts: no padding or unknown token, as decoder-only tokenizers ship."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([text for pair in PAIRS for text in pair], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64)
    return save_tiny_model(tmp_path_factory.mktemp("llama-64"), config, tokenizer)


@pytest.fixture(scope="module")
def encoder768_dir(tmp_path_factory):
    """A 768-d, 1-layer BERT-style encoder with a character WordPiece tokenizer (uncased)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    characters = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    vocab = {token: i for i, token in enumerate([*special, *characters, *(f"##{c}" for c in characters)])}
    wordpiece = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=1, num_attention_heads=12,
                        intermediate_size=64, max_position_embeddings=64)
    return save_tiny_model(tmp_path_factory.mktemp("encoder-768"), config, tokenizer)


def project_params(tmp_path, teacher_dir, pooling: str, lattice: list[int], data: dict):
    """params.yaml for ``teacher_dir`` and ``data``, with the cache in ``tmp_path``."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({
        "base": {"cache_dir": str(tmp_path / "cache")},
        "data": {**data, "max_pairs": None},
        "teacher": {"model": str(teacher_dir), "pooling": pooling, "max_length": 32, "batch_size": 4,
                    "device": "cpu"},
        "cube": {"lattice": lattice, "placement": "reshape"},
    }), encoding="utf-8")
    return path


def extracted(params, out):
    """Run ``extract``; its metrics, embeddings and teacher identity."""
    metrics, _ = extract(params, out, progress=False)
    return metrics["extract"], artifacts.read_embeddings(out / "embeddings.npy"), json.loads(
        (out / "teacher.json").read_text())


def test_llama_decoder_through_check_and_extract(tmp_path, llama64_dir):
    """Last-token pooling end to end, the pairs read from a Parquet dataset (one row rejected)."""
    import pyarrow
    import pyarrow.parquet

    rows = {"question": [q for q, _ in PAIRS] + ["Anyone there?"], "answer": [a for _, a in PAIRS] + [None]}
    pyarrow.parquet.write_table(pyarrow.table(rows), tmp_path / "pairs.parquet")
    data = {"source": "dataset", "dataset": {"path": str(tmp_path / "pairs.parquet")}}
    params = load_params(project_params(tmp_path, llama64_dir, "last", [4, 4, 4], data))
    assert fingerprint_inputs(params)["teacher"]["model"] == str(llama64_dir)  # check accepts 4 x 4 x 4 = 64
    metrics, embeddings, teacher = extracted(params, tmp_path / "extract")
    assert metrics["dim"] == 64 and metrics["pairs"] == len(PAIRS) and metrics["records_rejected"] == 1
    assert embeddings.shape == (2 * len(PAIRS), 64) and np.isfinite(embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert (teacher["architecture"], teacher["hidden_size"], teacher["pooling"]) == ("llama", 64, "last")
    assert metrics["collapsed_texts"] == 0 and metrics["unknown_token_texts"] == 0
    rejects = [json.loads(line) for line in (tmp_path / "extract" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["row"], r["reasons"]) for r in rejects] == [(len(PAIRS), ["missing answer"])]


def test_check_refuses_a_lattice_of_another_volume(repo_root, tmp_path, llama64_dir):
    data = {"source": "files", "files": {"paths": [str(tmp_path / "pairs.jsonl")]}}
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in PAIRS))
    params = project_params(tmp_path, llama64_dir, "last", [8, 8, 6], data)
    with pytest.raises(CubecoreError, match=r"^cube.lattice: \[8, 8, 6\] holds 384 cells but the teacher's "
                                            r"dimension is 64; use a lattice of volume 64"):
        fingerprint_inputs(load_params(params))
    done = subprocess.run([sys.executable, "-m", "stages.check", "--params", str(params), "--out",
                           str(tmp_path / "inputs.json"), "--allow-outside"],
                          cwd=repo_root, capture_output=True, text=True)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: cube.lattice: [8, 8, 6] holds 384 cells")
    assert not (tmp_path / "inputs.json").exists()


def test_768_encoder_on_an_8_8_12_lattice(tmp_path, encoder768_dir):
    """A 768-d teacher laid on [8, 8, 12] by ``placement: reshape``: check, extract and the cube."""
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in PAIRS))
    data = {"source": "files", "files": {"paths": [str(tmp_path / "pairs.jsonl")]}}
    params = load_params(project_params(tmp_path, encoder768_dir, "mean", [8, 8, 12], data))
    fingerprint_inputs(params)
    metrics, embeddings, teacher = extracted(params, tmp_path / "extract")
    assert metrics["dim"] == 768 and embeddings.shape == (2 * len(PAIRS), 768)
    assert (teacher["architecture"], teacher["hidden_size"]) == ("bert", 768)
    assert metrics["collapsed_texts"] == 0 and metrics["unknown_token_texts"] == 0
    cube = CubicCore(params.cube, 768)
    with torch.no_grad():
        out = cube(torch.from_numpy(np.array(embeddings)))
    assert out.shape == (2 * len(PAIRS), 768) and torch.isfinite(out).all()
    with pytest.raises(CubecoreError, match=r"\[8, 8, 6\] holds 384 cells but the teacher's dimension is 768"):
        fingerprint_inputs(load_params(project_params(tmp_path, encoder768_dir, "mean", [8, 8, 6], data)))
