"""The `ceiling` stage: the teacher fine-tuned as a dual encoder beside the frozen teacher."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import save_tiny_model

from cubecore.core import artifacts
from cubecore.core.config import CeilingParams, Params, TeacherParams
from cubecore.core.errors import CubecoreError

# question -> answer pairs whose answer shares no word with its question: nothing to copy over
PAIRS = [
    ("what colour is the sky", "a deep shade of blue today"),
    ("how old is your dog", "she turned seven last spring"),
    ("where do you live now", "a small flat near the harbour"),
    ("what did you eat", "pasta with tomatoes and basil"),
    ("do you like football", "never watched a single match"),
    ("which book are you reading", "an old novel about sailors"),
    ("when does the train leave", "at half past nine tonight"),
    ("who won the game", "the visitors, three to one"),
    ("why are you so tired", "the baby cried all night"),
    ("can you play piano", "only a few simple songs"),
    ("is it raining outside", "yes, bring an umbrella"),
    ("what is your job", "i repair bicycles downtown"),
    ("how was the concert", "loud but really wonderful"),
    ("did you call mum", "yesterday, for an hour"),
    ("where are my keys", "on the kitchen table"),
    ("what time is it", "nearly midnight already"),
]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as ``train.threads: 1`` gives the stage: two on busy shared cores ran
    the fine-tune 30x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm_dir):
    """A tiny, randomly initialised BERT with the MiniLM tokenizer: fast to fine-tune."""
    from transformers import AutoTokenizer, BertConfig

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), config, tokenizer)


def teacher_params(model_dir) -> TeacherParams:
    return TeacherParams(model=str(model_dir), max_length=32, batch_size=4, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory, tiny_bert):
    """PAIRS extracted by the tiny teacher (texts, embeddings) and split 8 train / 4 val / 4 test."""
    from cubecore.data.teacher import Teacher

    root = tmp_path_factory.mktemp("ceiling-data")
    texts = [t for pair in PAIRS for t in pair]
    data, split = root / "extract", root / "split"
    data.mkdir(), split.mkdir()
    artifacts.write_texts(data / "texts.jsonl", texts)
    artifacts.write_embeddings(data / "embeddings.npy", Teacher(teacher_params(tiny_bert)).embed(texts, progress=False))
    artifacts.write_json(data / "teacher.json", {"model": "tiny-bert"})
    ids = np.arange(len(PAIRS))
    for name, rows in (("train", ids[:8]), ("val", ids[8:12]), ("test", ids[12:])):
        artifacts.write_pairs(split / f"{name}.tsv", artifacts.Pairs(2 * rows, 2 * rows + 1, ["c"] * len(rows), rows * 0))
    return root


def enabled(tiny_bert, **ceiling) -> Params:
    return Params(teacher=teacher_params(tiny_bert),
                  ceiling=CeilingParams(enabled=True, **{"epochs": 1, "batch_size": 4, "lr": 1e-3, **ceiling}))


def test_the_loss_is_the_in_batch_cross_entropy_of_scaled_cosines():
    import torch

    from cubecore.evaluation.ceiling import in_batch_loss

    q = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]])
    a = torch.tensor([[3.0, 4.0], [1.0, 1.0], [-1.0, 0.0]])
    cos = [[(qi @ aj / (qi.norm() * aj.norm())).item() for aj in a] for qi in q]
    by_hand = sum(math.log(sum(math.exp(20 * c) for c in row)) - 20 * row[i] for i, row in enumerate(cos)) / 3
    assert in_batch_loss(q, a).item() == pytest.approx(by_hand, rel=1e-5)
    assert in_batch_loss(q, a, scale=1.0).item() == pytest.approx(
        sum(math.log(sum(math.exp(c) for c in row)) - row[i] for i, row in enumerate(cos)) / 3, rel=1e-5)
    # the same answer text twice: not a negative of the rows it answers
    masked = sum(math.log(sum(math.exp(20 * c) for j, c in enumerate(row) if j == i or {i, j} != {0, 1}))
                 - 20 * row[i] for i, row in enumerate(cos)) / 3
    assert in_batch_loss(q, a, answer_ids=np.array([5, 5, 7])).item() == pytest.approx(masked, rel=1e-5)


def test_the_loss_is_sentence_transformers_multiple_negatives_ranking_loss():
    import torch

    from cubecore.evaluation.ceiling import in_batch_loss

    losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")  # a dev dependency only
    torch.manual_seed(0)
    q, a = torch.randn(6, 16), torch.randn(6, 16)
    reference = losses.MultipleNegativesRankingLoss(model=None).compute_loss_from_embeddings([q, a], None)
    assert in_batch_loss(q, a).item() == pytest.approx(reference.item(), rel=1e-6)


def test_disabled_is_a_no_op_that_imports_no_model(tmp_path, repo_root):
    from cubecore.evaluation.ceiling import ceiling

    assert ceiling(Params(), tmp_path / "none", tmp_path / "none") == ({"ceiling": {"skipped": True}}, {"ceiling": {}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ceiling": {"enabled": False}}))
    metrics, speed = tmp_path / "ceiling.json", tmp_path / "speed.json"
    argv = ["stages.ceiling", "--allow-outside", "--params", str(tmp_path / "params.yaml"), "--data",
            str(tmp_path / "none"), "--split", str(tmp_path / "none"), "--metrics", str(metrics), "--speed", str(speed)]
    code = (f"import runpy, sys; sys.argv = {argv!r}; runpy.run_module('stages.ceiling', run_name='__main__'); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # neither torch nor transformers was imported
    assert json.loads(metrics.read_text()) == {"ceiling": {"skipped": True}}
    assert json.loads(speed.read_text())["ceiling"]["stage_seconds"] < 1.0


def test_a_few_steps_of_fine_tuning_raise_train_retrieval(tiny_bert):
    from cubecore.evaluation.ceiling import DualEncoder, fine_tune, retrieval

    texts = [t for pair in PAIRS[:8] for t in pair]
    pairs = artifacts.Pairs(np.arange(8) * 2, np.arange(8) * 2 + 1, ["c"] * 8, np.zeros(8, np.int64))
    encoder = DualEncoder(teacher_params(tiny_bert))
    before = retrieval(encoder, texts, pairs, [1], 8, progress=False)[0]
    losses = fine_tune(encoder, [texts[i] for i in pairs.question_id], [texts[i] for i in pairs.answer_id],
                       pairs.answer_id, CeilingParams(enabled=True, epochs=15, batch_size=4, lr=1e-3), 0, progress=False)
    after = retrieval(encoder, texts, pairs, [1], 8, progress=False)[0]
    assert losses[-1] < losses[0]
    assert after["mrr"] > before["mrr"] + 0.2 and after["recall@1"] > before["recall@1"]
    assert before["candidates"] == after["candidates"] == 8 and after["rows"] == 8


def test_enabled_reports_the_fine_tuned_and_the_frozen_teacher_on_the_test_rows(tiny_bert, on_disk):
    import torch

    from cubecore.evaluation.ceiling import ceiling
    from cubecore.evaluation.scoring import retrieval_summary, target_ranks

    metrics, speed = ceiling(enabled(tiny_bert, max_train_pairs=6), on_disk / "extract", on_disk / "split",
                             progress=False)
    report = metrics["ceiling"]
    keys = ["mrr", "recall@1", "recall@5", "recall@10", "candidates", "rows"]
    assert list(report["test"]) == list(report["frozen_teacher"]) == keys
    assert report["test"]["rows"] == report["test"]["candidates"] == 4
    assert report["train_pairs"] == 6 and report["epochs"] == 1 and report["split"] == "test"
    assert speed["ceiling"]["seconds"] > 0 and "seconds" not in json.dumps(metrics)
    # the frozen teacher is evaluate's `identity` baseline: the extracted question ranking the answers
    test = artifacts.read_pairs(on_disk / "split" / "test.tsv")
    embeddings = torch.from_numpy(artifacts.read_embeddings(on_disk / "extract" / "embeddings.npy", mmap=False))
    ranks, _ = target_ranks(embeddings[test.question_id], embeddings[test.answer_id], test.answer_id)
    identity = retrieval_summary(ranks, [1, 5, 10])
    assert report["frozen_teacher"]["mrr"] == round(identity["mrr"], 4)
    assert report["frozen_teacher"]["recall@1"] == round(identity["recall@1"], 4)
    again, _ = ceiling(enabled(tiny_bert, max_train_pairs=6), on_disk / "extract", on_disk / "split", progress=False)
    assert again == metrics  # seeded: the same sample, batches and figures


def test_embeddings_of_another_teacher_are_refused(tiny_bert, on_disk, tmp_path):
    from cubecore.evaluation.ceiling import ceiling

    data = tmp_path / "extract"
    data.mkdir()
    (data / "texts.jsonl").write_bytes((on_disk / "extract" / "texts.jsonl").read_bytes())
    stored = artifacts.read_embeddings(on_disk / "extract" / "embeddings.npy")
    artifacts.write_embeddings(data / "embeddings.npy", np.random.default_rng(0).normal(size=stored.shape))
    with pytest.raises(CubecoreError, match="not this teacher's"):
        ceiling(enabled(tiny_bert), data, on_disk / "split", progress=False)


def test_without_a_test_split_the_validation_rows_are_scored(tiny_bert, on_disk):
    from cubecore.evaluation.ceiling import ceiling

    params = enabled(tiny_bert)
    params = dataclasses.replace(params, split=dataclasses.replace(params.split, test_fraction=0.0))
    report = ceiling(params, on_disk / "extract", on_disk / "split", progress=False)[0]["ceiling"]
    assert report["split"] == "val" and report["val"]["rows"] == 4 and report["train_pairs"] == 8
