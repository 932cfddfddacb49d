"""The split stage: each group placed by a hash of its content and the seed, written atomically."""
from __future__ import annotations

import random

import numpy as np
import pytest

from cubecore.core import artifacts
from cubecore.core.artifacts import Pairs
from cubecore.core.config import SplitParams
from cubecore.core.errors import CubecoreError
from cubecore.data.splitting import (
    MIN_PAIRS,
    assign_splits,
    row_fingerprint,
    split_fingerprints,
    split_pairs,
    unit_interval,
)


def write_corpus(directory, rows, shuffle_ids=None):
    """``rows`` of (question, answer, conversation, turn) as an extract's texts.jsonl and a filter's
    pairs.tsv; ``shuffle_ids`` (a seed) gives the texts other ids, as another extract would.
    Returns (filter dir, texts path)."""
    texts = list(dict.fromkeys(t for q, a, _, _ in rows for t in (q, a)))
    if shuffle_ids is not None:
        random.Random(shuffle_ids).shuffle(texts)
    ids = {t: i for i, t in enumerate(texts)}
    (directory / "filter").mkdir(parents=True, exist_ok=True)
    artifacts.write_texts(directory / "texts.jsonl", texts)
    artifacts.write_pairs(directory / "filter" / "pairs.tsv", Pairs(
        question_id=np.array([ids[r[0]] for r in rows], np.int64),
        answer_id=np.array([ids[r[1]] for r in rows], np.int64),
        conversation=[r[2] for r in rows], turn=np.array([r[3] for r in rows], np.int64)))
    return directory / "filter", directory / "texts.jsonl"


def corpus(n, questions=None, turns=5):
    """``n`` pairs: question ``i % questions`` (all distinct by default), a distinct answer each,
    conversations of ``turns`` pairs named by position."""
    questions = questions or n
    return [(f"question {i % questions}", f"answer {i}", f"file.json:{1 + i // turns}", i % turns) for i in range(n)]


def run_split(tmp_path, name, rows, params=SplitParams(), seed=0, shuffle_ids=None):
    """Split ``rows`` in ``tmp_path/name``; the metrics and each row's side by its texts."""
    filtered, texts = write_corpus(tmp_path / name, rows, shuffle_ids)
    metrics = split_pairs(filtered, texts, tmp_path / name / "split", params, seed)["split"]
    words = artifacts.read_texts(texts)
    sides = {}
    for part, pairs in read_split(tmp_path / name / "split").items():
        for q, a in zip(pairs.question_id.tolist(), pairs.answer_id.tolist()):
            sides[(words[q], words[a])] = part
    return metrics, sides


def read_split(out):
    return {name: artifacts.read_pairs(out / f"{name}.tsv")
            for name in ("train", "val", "test") if (out / f"{name}.tsv").exists()}


def test_every_pair_lands_on_one_side_and_the_metrics_say_where(tmp_path):
    rows = corpus(400, questions=300)
    metrics, sides = run_split(tmp_path, "a", rows, SplitParams(val_fraction=0.2, test_fraction=0.1), seed=3)
    assert set(sides) == {(q, a) for q, a, _, _ in rows}
    sizes = {name: list(sides.values()).count(name) for name in ("train", "val", "test")}
    assert sizes == {name: metrics[name] for name in sizes}
    assert metrics["fractions"] == {name: round(size / 400, 4) for name, size in sizes.items()}
    assert abs(sizes["val"] - 80) <= 25 and abs(sizes["test"] - 40) <= 20
    assert metrics["groups"] == 300 and metrics["group_by"] == "question"


@pytest.mark.parametrize("val, test", [(0.1, 0.1), (0.2, 0.05), (0.15, 0.0)])
def test_fractions_hold_within_a_point_on_25000_pairs(tmp_path, val, test):
    metrics, _ = run_split(tmp_path, "big", corpus(25_000, questions=20_000),
                           SplitParams(val_fraction=val, test_fraction=test), seed=42)
    expected = {"train": 1 - val - test, "val": val, **({"test": test} if test else {})}
    assert set(metrics["fractions"]) == set(expected)
    for name, fraction in expected.items():
        assert abs(metrics["fractions"][name] - fraction) <= 0.01, (name, metrics["fractions"])


@pytest.mark.parametrize("drop", [0, 777, 1999])
def test_removing_or_adding_one_pair_moves_no_other_row(tmp_path, drop):
    rows = corpus(2000, questions=1500)
    params = SplitParams(val_fraction=0.1, test_fraction=0.1)
    _, before = run_split(tmp_path, "all", rows, params)
    _, fewer = run_split(tmp_path, "fewer", rows[:drop] + rows[drop + 1:], params)
    _, more = run_split(tmp_path, "more", rows[:drop] + [("a new question", "a new answer", "new.json:1", 0)]
                        + rows[drop:], params)
    removed = (rows[drop][0], rows[drop][1])
    assert fewer == {row: side for row, side in before.items() if row != removed}
    assert {row: side for row, side in more.items() if row != ("a new question", "a new answer")} == before


def test_a_conversation_keeps_its_side_when_others_come_and_go(tmp_path):
    # conversations are named by position (<file>:<line>): dropping one renames all after it
    rows = corpus(1000, turns=5)
    params = SplitParams(val_fraction=0.2, test_fraction=0.1, group_by="conversation")
    _, before = run_split(tmp_path, "all", rows, params)
    shifted = [(q, a, f"file.json:{int(c.split(':')[1]) - 1}", t) for q, a, c, t in rows[5:]]
    _, after = run_split(tmp_path, "fewer", shifted, params)
    assert after == {row: side for row, side in before.items() if row not in {(q, a) for q, a, _, _ in rows[:5]}}


def test_the_same_question_lands_on_the_same_side_in_two_corpora(tmp_path):
    shared = [f"shared question {i}" for i in range(300)]
    one = [(q, f"answer {i} in one", f"one.csv:{i + 2}", 0) for i, q in enumerate(shared)]
    two = [(f"other question {i}", f"other answer {i}", f"two.jsonl:{i + 1}", 0) for i in range(500)]
    two += [(q, f"answer {i} in two", f"two.jsonl:{i + 501}", 0) for i, q in enumerate(reversed(shared))]
    params = SplitParams(val_fraction=0.2, test_fraction=0.2)
    _, first = run_split(tmp_path, "one", one, params, seed=5)
    _, second = run_split(tmp_path, "two", two, params, seed=5, shuffle_ids=1)
    side_one = {q: side for (q, _), side in first.items()}
    side_two = {q: side for (q, _), side in second.items()}
    assert {q: side_one[q] for q in shared} == {q: side_two[q] for q in shared}
    assert len(set(side_one.values())) == 3


def test_same_seed_same_split_other_seed_other_split(tmp_path):
    rows = corpus(120, questions=30)
    params = SplitParams(val_fraction=0.25)
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        run_split(tmp_path, name, rows, params, seed)
    a, b, c = ((tmp_path / name / "split" / "val.tsv").read_bytes() for name in "abc")
    assert a == b and a != c


def test_group_by_question_keeps_a_question_text_on_one_side(tmp_path):
    rows = corpus(120, questions=30)
    metrics, sides = run_split(tmp_path, "a", rows, SplitParams(val_fraction=0.2, test_fraction=0.2), seed=0)
    by_question = {}
    for (q, _), side in sides.items():
        by_question.setdefault(q, set()).add(side)
    assert all(len(s) == 1 for s in by_question.values())
    assert set(sides.values()) == {"train", "val", "test"}
    assert metrics["groups"] == 30


def test_group_by_conversation_keeps_a_conversation_on_one_side(tmp_path):
    rows = corpus(120, questions=30, turns=5)
    params = SplitParams(val_fraction=0.2, test_fraction=0.2, group_by="conversation")
    metrics, sides = run_split(tmp_path, "a", rows, params, seed=0)
    by_conversation = {}
    for q, a, c, _ in rows:
        by_conversation.setdefault(c, set()).add(sides[(q, a)])
    assert all(len(s) == 1 for s in by_conversation.values())
    assert metrics["groups"] == 24 and metrics["group_by"] == "conversation"
    # question groups (i % 30) cut across conversations (i // 5), so this split does mix questions
    by_question = {}
    for (q, _), side in sides.items():
        by_question.setdefault(q, set()).add(side)
    assert any(len(s) > 1 for s in by_question.values())


def test_identical_conversations_are_one_group(tmp_path):
    rows = [(f"q{t}", f"a{t}", f"f.json:{c}", t) for c in (1, 9) for t in range(3)]
    rows += [(f"x{i}", f"y{i}", f"g.json:{i}", 0) for i in range(200)]
    metrics, sides = run_split(tmp_path, "a", rows, SplitParams(val_fraction=0.3, test_fraction=0.2,
                                                                 group_by="conversation"), seed=0)
    assert metrics["groups"] == 201
    assert len({sides[(f"q{t}", f"a{t}")] for t in range(3)}) == 1


def test_test_fraction_writes_test_tsv(tmp_path):
    rows = corpus(120, questions=30)
    run_split(tmp_path, "without", rows, SplitParams(val_fraction=0.2, test_fraction=0.0))
    assert sorted(p.name for p in (tmp_path / "without" / "split").iterdir()) == ["train.tsv", "val.tsv"]
    metrics, _ = run_split(tmp_path, "with", rows, SplitParams(val_fraction=0.2, test_fraction=0.1))
    assert sorted(p.name for p in (tmp_path / "with" / "split").iterdir()) == ["test.tsv", "train.tsv", "val.tsv"]
    assert len(artifacts.read_pairs(tmp_path / "with" / "split" / "test.tsv")) == metrics["test"] > 0


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5])
def test_too_few_pairs_stop_with_the_minimum_and_the_params(tmp_path, n):
    # 2 pairs used to reach `train` and crash there (UnboundLocalError: 'lr')
    filtered, texts = write_corpus(tmp_path, corpus(n))
    with pytest.raises(CubecoreError) as info:
        split_pairs(filtered, texts, tmp_path / "split", SplitParams(), seed=0)
    message = str(info.value)
    assert message.startswith(f"{filtered}/pairs.tsv: {n} pairs after filtering give the ")
    assert f"at least {MIN_PAIRS}" in message and "split.val_fraction" in message and "filter.*" in message
    assert "\n" not in message
    assert not (tmp_path / "split").exists()


def seed_giving(keys, val, test, name, size):
    """The first seed whose hash split gives split ``name`` ``size`` rows and the others enough."""
    names = ["train", "val"] + (["test"] if test else [])
    for seed in range(10_000):
        sides = assign_splits(keys, val, test, seed)
        if all((sides == n).sum() == size if n == name else (sides == n).sum() >= MIN_PAIRS for n in names):
            return seed
    raise AssertionError("no such seed")


def test_the_small_split_is_named(tmp_path):
    rows = corpus(10)
    filtered, texts = write_corpus(tmp_path, rows)
    keys = [q for q, _, _, _ in rows]
    for val, test, name, change in ((0.1, 0.0, "val", r"split.val_fraction \(higher\)"),
                                    (0.3, 0.2, "test", r"split.test_fraction \(higher\)"),
                                    (0.45, 0.45, "train", r"split.val_fraction / split.test_fraction \(lower\)")):
        seed = seed_giving(keys, val, test, name, 1)
        with pytest.raises(CubecoreError, match=rf"10 pairs after filtering give the {name} split 1; .*{change}"):
            split_pairs(filtered, texts, tmp_path / "split", SplitParams(val_fraction=val, test_fraction=test), seed)
    seed = seed_giving(keys, 0.2, 0.0, "val", 2)
    assert split_pairs(filtered, texts, tmp_path / "split", SplitParams(val_fraction=0.2, test_fraction=0.0),
                       seed)["split"]["val"] == 2


@pytest.mark.parametrize("group_by", ["question", "conversation"])
def test_one_group_says_so_instead_of_suggesting_fractions(tmp_path, group_by):
    filtered, texts = write_corpus(tmp_path, [("same question", f"answer {i}", "c.json:1", i) for i in range(3)])
    with pytest.raises(CubecoreError) as info:
        split_pairs(filtered, texts, tmp_path / "split", SplitParams(group_by=group_by), seed=0)
    message = str(info.value)
    assert f"the 3 pairs after filtering all share one {group_by}" in message
    assert "fraction" not in message and "\n" not in message
    assert ("split.group_by: question" in message) == (group_by == "conversation")
    assert not (tmp_path / "split").exists()


def test_overlap_with_train_counts_texts_crossing_sides(tmp_path):
    # a chain of turns: pair i is text i -> text i+1, so a question on one side is often
    # the answer of the pair before it on the other side
    n = 40
    rows = [(f"text {i}", f"text {i + 1}", "c.json:1", i) for i in range(n)]
    filtered, texts = write_corpus(tmp_path, rows)
    metrics = split_pairs(filtered, texts, tmp_path / "split", SplitParams(val_fraction=0.25, test_fraction=0.0),
                          seed=1)["split"]
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


def test_a_group_side_depends_on_its_key_and_the_seed_alone():
    groups = [f"g{i}" for i in range(200) for _ in range(3)]
    sides = assign_splits(groups, val_fraction=0.25, test_fraction=0.25, seed=1)
    assert set(sides.tolist()) == {"train", "val", "test"}
    for g in set(groups):
        assert len({s for s, x in zip(sides, groups) if x == g}) == 1
    assert assign_splits(groups[:30], 0.25, 0.25, seed=1).tolist() == sides[:30].tolist()
    # a stable hash, not Python's salted `hash`: the same number in every process
    assert unit_interval("How are you?", 42) == pytest.approx(0.18002, abs=1e-5)
    assert unit_interval("How are you?", 43) != unit_interval("How are you?", 42)


def test_row_fingerprint_is_the_rows_texts_whatever_their_order_and_ids(tmp_path):
    rows = corpus(50)
    _, one = write_corpus(tmp_path / "one", rows)
    _, two = write_corpus(tmp_path / "two", rows[::-1], shuffle_ids=3)
    first = row_fingerprint(artifacts.read_pairs(tmp_path / "one" / "filter" / "pairs.tsv"), artifacts.read_texts(one))
    second = row_fingerprint(artifacts.read_pairs(tmp_path / "two" / "filter" / "pairs.tsv"), artifacts.read_texts(two))
    assert first == second and len(first) == 12
    _, three = write_corpus(tmp_path / "three", rows[1:])
    assert row_fingerprint(artifacts.read_pairs(tmp_path / "three" / "filter" / "pairs.tsv"),
                           artifacts.read_texts(three)) != first


def test_evaluate_records_the_fingerprints_the_split_stage_wrote(tmp_path):
    metrics, _ = run_split(tmp_path, "a", corpus(200), SplitParams(val_fraction=0.2, test_fraction=0.2))
    texts = artifacts.read_texts(tmp_path / "a" / "texts.jsonl")
    assert split_fingerprints(tmp_path / "a" / "split", texts, ["val", "test"]) == {
        "val_fingerprint": metrics["row_fingerprint"]["val"], "test_fingerprint": metrics["row_fingerprint"]["test"]}


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
