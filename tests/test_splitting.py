"""The split stage: seeded, group-aware, written atomically."""
from __future__ import annotations

import numpy as np
import pytest

from cubecore import artifacts
from cubecore.artifacts import Pairs
from cubecore.config import SplitParams
from cubecore.errors import CubecoreError
from cubecore.splitting import MIN_PAIRS, assign_splits, split_pairs


def write_filtered(directory, question_id, conversation):
    directory.mkdir(parents=True, exist_ok=True)
    n = len(question_id)
    artifacts.write_pairs(directory / "pairs.tsv", Pairs(
        question_id=np.asarray(question_id, np.int64),
        answer_id=np.arange(1000, 1000 + n, dtype=np.int64),
        conversation=list(conversation),
        turn=np.arange(n, dtype=np.int64) % 7))
    return directory


@pytest.fixture
def filtered(tmp_path):
    """120 pairs; 30 questions asked 4 times each; 24 conversations of 5 turns."""
    n = 120
    return write_filtered(tmp_path / "filter", [i % 30 for i in range(n)], [f"conv{i // 5}" for i in range(n)])


def read_split(out):
    return {name: artifacts.read_pairs(out / f"{name}.tsv")
            for name in ("train", "val", "test") if (out / f"{name}.tsv").exists()}


def answer_ids(parts, name):
    return sorted(parts[name].answer_id.tolist())


def test_fractions_are_respected(tmp_path):
    n = 200
    data = write_filtered(tmp_path / "filter", list(range(n)), [f"c{i}" for i in range(n)])
    metrics = split_pairs(data, tmp_path / "split", SplitParams(val_fraction=0.2, test_fraction=0.1), seed=3)
    parts = read_split(tmp_path / "split")
    sizes = {name: len(part) for name, part in parts.items()}
    assert sizes == {name: metrics["split"][name] for name in ("train", "val", "test")}
    assert sum(sizes.values()) == n
    assert abs(sizes["val"] - 40) <= 2 and abs(sizes["test"] - 20) <= 2
    # every pair lands on exactly one side
    assert sorted(sum((answer_ids(parts, s) for s in parts), [])) == list(range(1000, 1000 + n))


def test_same_seed_same_split_other_seed_other_split(filtered, tmp_path):
    params = SplitParams(val_fraction=0.25)
    split_pairs(filtered, tmp_path / "a", params, seed=7)
    split_pairs(filtered, tmp_path / "b", params, seed=7)
    split_pairs(filtered, tmp_path / "c", params, seed=8)
    a, b, c = (read_split(tmp_path / name) for name in "abc")
    assert (tmp_path / "a" / "val.tsv").read_bytes() == (tmp_path / "b" / "val.tsv").read_bytes()
    assert answer_ids(a, "train") == answer_ids(b, "train")
    assert answer_ids(a, "val") != answer_ids(c, "val")


def test_group_by_question_keeps_a_question_on_one_side(filtered, tmp_path):
    metrics = split_pairs(filtered, tmp_path / "split",
                          SplitParams(val_fraction=0.2, test_fraction=0.2, group_by="question"), seed=0)
    parts = read_split(tmp_path / "split")
    sides = {name: set(part.question_id.tolist()) for name, part in parts.items()}
    assert set(sides) == {"train", "val", "test"}
    assert not sides["train"] & sides["val"]
    assert not sides["train"] & sides["test"]
    assert not sides["val"] & sides["test"]
    assert metrics["split"]["groups"] == 30 and metrics["split"]["group_by"] == "question"


def test_group_by_conversation_keeps_a_conversation_on_one_side(filtered, tmp_path):
    metrics = split_pairs(filtered, tmp_path / "split",
                          SplitParams(val_fraction=0.2, test_fraction=0.2, group_by="conversation"), seed=0)
    parts = read_split(tmp_path / "split")
    sides = {name: set(part.conversation) for name, part in parts.items()}
    assert not sides["train"] & sides["val"]
    assert not sides["train"] & sides["test"]
    assert not sides["val"] & sides["test"]
    assert metrics["split"]["groups"] == 24
    # question groups (i % 30) cut across conversations (i // 5), so this split does mix questions
    questions = {name: set(part.question_id.tolist()) for name, part in parts.items()}
    assert questions["train"] & questions["val"]


def test_test_fraction_writes_test_tsv(filtered, tmp_path):
    split_pairs(filtered, tmp_path / "without", SplitParams(val_fraction=0.2, test_fraction=0.0), seed=0)
    assert sorted(p.name for p in (tmp_path / "without").iterdir()) == ["train.tsv", "val.tsv"]
    metrics = split_pairs(filtered, tmp_path / "with", SplitParams(val_fraction=0.2, test_fraction=0.1), seed=0)
    assert sorted(p.name for p in (tmp_path / "with").iterdir()) == ["test.tsv", "train.tsv", "val.tsv"]
    assert len(artifacts.read_pairs(tmp_path / "with" / "test.tsv")) == metrics["split"]["test"] > 0


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_too_few_pairs_stop_with_the_minimum_and_the_params(tmp_path, n):
    # 2 pairs used to reach `train` and crash there (UnboundLocalError: 'lr')
    data = write_filtered(tmp_path / "filter", list(range(n)), [f"c{i}" for i in range(n)])
    with pytest.raises(CubecoreError) as info:
        split_pairs(data, tmp_path / "split", SplitParams(), seed=0)
    message = str(info.value)
    assert message.startswith(f"{data}/pairs.tsv: {n} pairs after filtering give the ")
    assert f"at least {MIN_PAIRS}" in message and "split.val_fraction" in message and "filter.*" in message
    assert "\n" not in message
    assert not (tmp_path / "split").exists()


def test_the_small_split_is_named(tmp_path):
    # 10 pairs, val_fraction 0.1: val gets 1 pair, train 9
    data = write_filtered(tmp_path / "filter", list(range(10)), [f"c{i}" for i in range(10)])
    with pytest.raises(CubecoreError, match=r"give the val split 1; .*split.val_fraction \(higher\)"):
        split_pairs(data, tmp_path / "split", SplitParams(val_fraction=0.1, test_fraction=0.0), seed=0)
    with pytest.raises(CubecoreError, match=r"give the test split 1; .*split.test_fraction \(higher\)"):
        split_pairs(data, tmp_path / "split", SplitParams(val_fraction=0.3, test_fraction=0.1), seed=0)
    assert split_pairs(data, tmp_path / "split", SplitParams(val_fraction=0.2, test_fraction=0.0), seed=0)["split"]["val"] == 2


def test_single_group_leaves_train_empty_and_raises(tmp_path):
    data = write_filtered(tmp_path / "filter", [5, 5, 5], ["c", "c", "c"])
    with pytest.raises(CubecoreError, match="give the train split 0"):
        split_pairs(data, tmp_path / "split", SplitParams(), seed=0)
    assert not (tmp_path / "split").exists()


def test_overlap_with_train_counts_texts_crossing_sides(tmp_path):
    # a chain of turns: pair i is text i -> text i+1, so a question on one side is often
    # the answer of the pair before it on the other side
    n = 40
    directory = tmp_path / "filter"
    directory.mkdir()
    artifacts.write_pairs(directory / "pairs.tsv", Pairs(
        question_id=np.arange(n, dtype=np.int64), answer_id=np.arange(1, n + 1, dtype=np.int64),
        conversation=["c"] * n, turn=np.arange(n, dtype=np.int64)))
    metrics = split_pairs(directory, tmp_path / "split", SplitParams(val_fraction=0.25, test_fraction=0.0), seed=1)["split"]
    parts = read_split(tmp_path / "split")
    train_texts = set(parts["train"].question_id.tolist()) | set(parts["train"].answer_id.tolist())
    val = parts["val"]
    expected = {
        "questions": {"distinct": len(set(val.question_id.tolist())),
                      "in_train": len(set(val.question_id.tolist()) & train_texts)},
        "answers": {"distinct": len(set(val.answer_id.tolist())),
                    "in_train": len(set(val.answer_id.tolist()) & train_texts)},
        "texts": {"distinct": len(set(val.question_id.tolist()) | set(val.answer_id.tolist())),
                  "in_train": len((set(val.question_id.tolist()) | set(val.answer_id.tolist())) & train_texts)},
    }
    assert metrics["overlap_with_train"] == {"val": expected}
    assert 0 < expected["texts"]["in_train"] < expected["texts"]["distinct"]
    assert not set(val.question_id.tolist()) & set(parts["train"].question_id.tolist())  # grouped by question


def test_assign_splits_deals_whole_groups():
    groups = ["a"] * 5 + ["b"] * 5 + ["c"] * 5 + ["d"] * 5
    sides = assign_splits(groups, val_fraction=0.25, test_fraction=0.25, seed=1)
    assert sorted(sides.tolist()) == ["test"] * 5 + ["train"] * 10 + ["val"] * 5
    for g in "abcd":
        assert len({s for s, x in zip(sides, groups) if x == g}) == 1


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    out = tmp_path / "split"
    with pytest.raises(RuntimeError):
        with artifacts.atomic_dir(out) as tmp:
            (tmp / "train.tsv").write_text("partial", encoding="utf-8")
            raise RuntimeError("killed mid-write")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp directory left behind either


def test_atomic_dir_failure_keeps_previous_output(tmp_path):
    out = tmp_path / "split"
    with artifacts.atomic_dir(out) as tmp:
        (tmp / "train.tsv").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with artifacts.atomic_dir(out) as tmp:
            (tmp / "train.tsv").write_text("new", encoding="utf-8")
            raise RuntimeError("killed mid-write")
    assert (out / "train.tsv").read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["split"]
    with artifacts.atomic_dir(out) as tmp:  # success replaces the directory whole
        (tmp / "val.tsv").write_text("newer", encoding="utf-8")
    assert [p.name for p in out.iterdir()] == ["val.tsv"]

