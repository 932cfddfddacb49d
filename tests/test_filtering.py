"""The filter stage's quality rules over a hand-built dataset directory."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cubecore.core import artifacts
from cubecore.core.artifacts import Pairs
from cubecore.core.config import FilterParams
from cubecore.data.filtering import RULES, filter_pairs, normalise

GOOD_Q = "What is your favourite colour?"
GOOD_A = "My favourite colour is blue, thanks."
TEXTS = [
    GOOD_Q,                                 # 0
    GOOD_A,                                 # 1
    "   ",                                  # 2 empty once stripped
    "Hi",                                   # 3 question too short (< 5)
    "Ok",                                   # 4 answer too short (< 10)
    "Hello there, friend!",                 # 5
    "hello  there friend",                  # 6 same as 5 after normalisation
    "Tell me about the stock market.",      # 7
    "Penguins cannot fly but swim well.",   # 8 its vector is orthogonal to 7's
    "Do you like long walks outside?",      # 9
    "Yes, I walk every single evening.",    # 10
]
E = np.array([1, 0, 0, 0], np.float32)
EMBEDDINGS = np.stack([E] * len(TEXTS))
EMBEDDINGS[8] = [0, 1, 0, 0]              # cos(7, 8) = 0
EMBEDDINGS[10] = [0.8, 0.6, 0, 0]         # cos(9, 10) = 0.8

# (question, answer, expected reasons)
PAIRS = [
    (0, 1, []),
    (2, 1, ["empty", "question_length"]),
    (3, 1, ["question_length"]),
    (0, 4, ["answer_length"]),
    (5, 6, ["identical"]),
    (0, 1, ["duplicate"]),
    (7, 8, ["low_qa_similarity"]),
    (9, 10, []),
    (3, 4, ["question_length", "answer_length"]),
]


def make_dataset(directory, pairs=PAIRS):
    directory.mkdir(parents=True, exist_ok=True)
    artifacts.write_texts(directory / "texts.jsonl", TEXTS)
    artifacts.write_embeddings(directory / "embeddings.npy", EMBEDDINGS)
    artifacts.write_pairs(directory / "pairs.tsv", Pairs(
        question_id=np.array([p[0] for p in pairs], np.int64),
        answer_id=np.array([p[1] for p in pairs], np.int64),
        conversation=[f"c{i}" for i in range(len(pairs))],
        turn=np.arange(len(pairs), dtype=np.int64)))
    artifacts.write_json(directory / "teacher.json", {"hidden_size": 4, "pooling": "mean"})
    return directory


def read_rejects(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "extract")


def test_normalise():
    assert normalise("Hello!") == normalise("hello") == "hello"
    assert normalise("Hello, there!") == "hello there"
    assert normalise("Hello there") != normalise("Hello where")


def test_each_rule_and_rejects(dataset, tmp_path):
    out = tmp_path / "filter"
    metrics = filter_pairs(dataset, out, FilterParams(min_qa_similarity=0.3))["filter"]
    expected_removed = {f"c{i}": reasons for i, (_, _, reasons) in enumerate(PAIRS) if reasons}

    assert metrics["pairs_in"] == len(PAIRS)
    assert metrics["pairs_in"] == metrics["kept"] + metrics["removed"]
    assert metrics["kept"] == 2 and metrics["removed"] == len(expected_removed)
    assert metrics["removed_by_rule"] == {
        rule: sum(rule in reasons for _, _, reasons in PAIRS) for rule in RULES}
    assert metrics["kept_qa_cosine_mean"] == pytest.approx((1.0 + 0.8) / 2, abs=1e-4)

    kept = artifacts.read_pairs(out / "pairs.tsv")
    assert kept.conversation == ["c0", "c7"]
    assert kept.question_id.tolist() == [0, 9] and kept.answer_id.tolist() == [1, 10]
    assert kept.turn.tolist() == [0, 7]

    rejects = read_rejects(out / "rejects.jsonl")
    assert len(rejects) == metrics["removed"]
    assert {r["conversation"]: r["reasons"] for r in rejects} == expected_removed
    low = next(r for r in rejects if r["conversation"] == "c6")
    assert low["question"] == TEXTS[7] and low["answer"] == TEXTS[8] and low["turn"] == 6
    assert low["qa_cosine"] == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("threshold", [0, 0.0, None])
def test_zero_or_none_disables_similarity(dataset, tmp_path, threshold):
    out = tmp_path / "filter"
    metrics = filter_pairs(dataset, out, FilterParams(min_qa_similarity=threshold))["filter"]
    assert metrics["removed_by_rule"]["low_qa_similarity"] == 0
    assert "c6" in artifacts.read_pairs(out / "pairs.tsv").conversation
    assert metrics["kept"] == 3


def test_similarity_threshold_is_a_floor(dataset, tmp_path):
    # cos(9, 10) = 0.8: kept at 0.79, removed at 0.81
    kept = filter_pairs(dataset, tmp_path / "a", FilterParams(min_qa_similarity=0.79))["filter"]
    strict = filter_pairs(dataset, tmp_path / "b", FilterParams(min_qa_similarity=0.81))["filter"]
    assert strict["removed_by_rule"]["low_qa_similarity"] == kept["removed_by_rule"]["low_qa_similarity"] + 1


def test_identical_and_duplicate_rules_can_be_switched_off(dataset, tmp_path):
    params = FilterParams(drop_identical=False, drop_duplicates=False, min_qa_similarity=0.3)
    metrics = filter_pairs(dataset, tmp_path / "filter", params)["filter"]
    assert metrics["removed_by_rule"]["identical"] == 0
    assert metrics["removed_by_rule"]["duplicate"] == 0
    kept = artifacts.read_pairs(tmp_path / "filter" / "pairs.tsv").conversation
    assert kept == ["c0", "c4", "c5", "c7"]


def test_length_limits_follow_params(dataset, tmp_path):
    params = dataclasses.replace(FilterParams(), question_min_chars=1, answer_min_chars=1, question_max_chars=25)
    metrics = filter_pairs(dataset, tmp_path / "filter", params)["filter"]
    # now only "   " breaks the minimum; the 30-char and 31-char questions break the maximum
    long_questions = sum(len(TEXTS[q].strip()) > 25 for q, _, _ in PAIRS)
    assert metrics["removed_by_rule"]["question_length"] == 1 + long_questions
    assert metrics["removed_by_rule"]["answer_length"] == 0


def test_rerun_replaces_output(dataset, tmp_path):
    out = tmp_path / "filter"
    filter_pairs(dataset, out, FilterParams(min_qa_similarity=None))
    (out / "stale.txt").write_text("left over", encoding="utf-8")
    filter_pairs(dataset, out, FilterParams(min_qa_similarity=0.3))
    assert sorted(p.name for p in out.iterdir()) == ["pairs.tsv", "rejects.jsonl"]
    assert len(artifacts.read_pairs(out / "pairs.tsv")) == 2
