"""Verdicts that hold when a metric saturates or the teacher fails (issue #19, part 2):
a metric equal for every model is left out of the margin and said so; ties count at their
expected rank; a teacher that cannot tell texts apart is flagged or stops `extract`;
ROUGE-L keeps combining marks with their letters."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cubecore.core.frontier import frontier_report

# autoencoder mode: each input retrieves itself, MRR 1 for every model but `mean` (one vector for
# every row); the cube is 0.0187 behind linear on cosine
SATURATED = {"identity": (0.8012, 1.0), "mean": (0.3050, 0.0213), "ridge": (0.9101, 1.0), "linear": (0.9174, 1.0),
             "mlp": (0.9150, 1.0)}
CUBE = (0.8987, 1.0)
RESTS = "on cosine (mrr saturated: 1 for the cube and 4 of 5 baselines)"


# --- the frontier when a metric is saturated --------------------------------------------------

def test_a_tie_at_mrr_1_leaves_that_baseline_s_term_to_cosine():
    report = frontier_report(SATURATED, CUBE)
    assert report["saturated"] == {"mrr": {"tied": 4, "of": 5}}
    assert report["dominated"] and report["dominated_by"] == ["ridge", "linear", "mlp"]
    assert report["margin"] == -0.0187  # 0.8987 - 0.9174: the tie at MRR 1 no longer lifts it to 0


def test_a_baseline_below_the_ceiling_is_still_compared_on_both():
    points = {**SATURATED, "linear": (0.9174, 0.99)}  # ahead on cosine, behind on MRR: not dominating
    report = frontier_report(points, CUBE)
    assert report["dominated_by"] == ["ridge", "mlp"] and report["saturated"] == {"mrr": {"tied": 3, "of": 5}}
    assert report["margin"] == -0.0163  # mlp's cosine lead; linear's term is its MRR lag, +0.01
    below = frontier_report(SATURATED, (0.8987, 0.999))  # the cube not at the ceiling: MRR separates
    assert below["saturated"] == {} and below["margin"] == -0.001


def test_a_baseline_equal_to_the_cube_at_the_ceiling_is_a_margin_of_0():
    report = frontier_report({"identity": CUBE, "mean": (0.3, 0.02)}, CUBE)
    assert report["margin"] == 0 and not report["dominated"]
    assert report["saturated"] == {"mrr": {"tied": 1, "of": 2}}


def test_the_bootstrap_margin_leaves_the_tie_out_too():
    """MRR 1 on every row for the cube and linear: every resample ties there, and the margin's
    interval is cosine's, below 0."""
    from cubecore.evaluation.run import confidence

    rng = np.random.default_rng(0)
    rows = 400
    linear = rng.uniform(0.85, 0.98, rows)
    values = {name: {"cosine": cos, "mrr": mrr, "recall@1": (mrr == 1).astype(float)}
              for name, cos, mrr in (("cube", linear - 0.02, np.ones(rows)), ("linear", linear, np.ones(rows)),
                                     ("mean", linear - 0.5, 1 / rng.integers(1, 50, rows)))}
    best = {"cosine": "linear", "mrr": "linear", "recall@1": "linear"}
    report = confidence(values, best, ["linear", "mean"], 200, 0)["frontier_margin"]
    assert report["value"] == -0.02 and report["high"] < 0


def test_gates_say_what_the_verdict_rests_on():
    from cubecore.core.gates import parse, shortfall

    frontier = frontier_report(SATURATED, CUBE)
    results = {"frontier": {"test": frontier}, "confidence": {"frontier_margin": {"value": -0.0187, "low": -0.02,
                                                                                  "high": -0.017}},
               "setup": {"report_split": "test"}}
    assert shortfall(parse("not_dominated", [1]), results) == (
        f"the cube (cosine 0.8987, MRR 1.0000) is dominated {RESTS} by ridge, linear, mlp (margin -0.0187)")
    assert shortfall(parse("beats: frontier", [1]), results) == (
        f"the cube's frontier margin {RESTS} is -0.0187 (needs > 0)")
    assert shortfall(parse("beats: frontier beyond noise", [1]), results).startswith(
        f"the frontier margin -0.0187 {RESTS} is not above 0 beyond noise")


def test_the_sweep_table_and_the_report_say_it_too():
    from test_experiments import evaluation, params, record

    from cubecore.cli.experiments import build
    from cubecore.cli.report import frontier_section

    eval_json = evaluation(CUBE, -0.0187, -0.0213, -0.0161)
    eval_json["frontier"]["test"]["saturated"] = {"mrr": {"tied": 4, "of": 5}}  # `dvc exp show` keeps it (no list)
    text = build([record("a" * 40, params(), eval_json, name="autoencoder")], "c")
    assert f"| -0.0187 [-0.0213, -0.0161] | inside, beyond noise, {RESTS} | yes |" in text
    side = SimpleNamespace(label="new", eval={"frontier": {"test": frontier_report(SATURATED, CUBE)}})
    old = SimpleNamespace(label="old", eval={})
    assert f"- the verdict (test) rests {RESTS}" in frontier_section(old, side)


# --- ties count at their expected rank --------------------------------------------------------

def test_a_tie_counts_at_its_expected_rank():
    from cubecore.evaluation.scoring import retrieval_ranks

    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0],    # tied with 3 others: 1 + 3/2
                           [2.0, 1.0, 1.0, 0.0]])   # one ahead, tied with 1: 1 + 1 + 1/2
    assert retrieval_ranks(scores, torch.eye(4), torch.tensor([3, 2])).tolist() == [2.5, 2.5]


def collapsed_targets() -> tuple[torch.Tensor, np.ndarray]:
    """13 distinct answers, 12 of which the teacher embeds as one vector (Thai read as [UNK])."""
    unk, other = F.normalize(torch.randn(2, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    return torch.stack([unk] * 12 + [other]), np.arange(13)


def test_a_teacher_that_embeds_texts_alike_cannot_make_a_run_look_perfect():
    from cubecore.evaluation.scoring import prediction_scores

    targets, ids = collapsed_targets()
    scores = prediction_scores(targets.clone(), targets, ids)  # the perfect prediction of every row
    assert scores["cosine"] == pytest.approx(1.0)
    assert scores["mrr"] == pytest.approx((12 / 6.5 + 1) / 13)  # 12 rows tied with 11 others: rank 6.5
    assert scores["recall@1"] == pytest.approx(1 / 13)


def test_mixed_ranks_count_ties_as_target_ranks_do():
    from cubecore.evaluation.scoring import (
        candidate_index,
        mixed_retrieval_ranks,
        target_ranks,
    )

    targets, ids = collapsed_targets()
    ids = np.concatenate([ids, ids[:4]])  # repeated answers: still one candidate each
    targets = torch.cat([targets, targets[:4]])
    g = torch.Generator().manual_seed(1)
    first = F.normalize(targets + 0.3 * torch.randn(targets.shape, generator=g), dim=-1)
    second = F.normalize(torch.stack([targets[0]] * len(targets)), dim=-1)  # `mean`-like: the same vector for all
    first_rows, position = candidate_index(ids)
    weights = [0.0, 0.25, 0.5, 1.0]
    mixed = mixed_retrieval_ranks(first, second, targets[first_rows], position, weights)
    for i, a in enumerate(weights):
        assert torch.equal(mixed[i], target_ranks((1 - a) * first + a * second, targets, ids)[0])
    assert mixed[-1].tolist()[:12] == [6.5] * 12


# --- a teacher that cannot tell texts apart ---------------------------------------------------

def extract_params(tmp_path, data):
    from cubecore.core.config import Params, TeacherParams

    params = Params()
    params.base.cache_dir = str(tmp_path / "cache")
    params.data = data
    params.teacher = TeacherParams(device="cpu", precision="fp32", batch_size=8)
    return params


def test_a_teacher_that_cannot_read_the_corpus_stops_extract(tmp_path):
    """Thai chatterbot through MiniLM: 12 of its 13 texts become [UNK]."""
    from cubecore.core.config import DataParams
    from cubecore.core.errors import CubecoreError
    from cubecore.data.extraction import extract

    params = extract_params(tmp_path, DataParams(source="chatterbot", languages=["thai"], max_pairs=None))
    with pytest.raises(CubecoreError) as info:
        extract(params, tmp_path / "extract", progress=False)
    message = str(info.value)
    assert "\n" not in message and "12 of 13 distinct texts" in message and "[UNK]" in message
    assert not (tmp_path / "extract").exists()


def test_texts_the_teacher_cannot_tell_apart_are_counted_and_named(tmp_path, caplog):
    from cubecore.core.config import DataParams, FilesParams
    from cubecore.data.extraction import extract

    pairs = [("Hello there", "hello there"), ("How are you today?", "สวัสดี"),
             *((f"What is question {i}?", f"It is answer {i}, I think.") for i in range(20))]
    path = tmp_path / "pairs.csv"
    path.write_text("question,answer\n" + "".join(f"{q},\"{a}\"\n" for q, a in pairs), encoding="utf-8")
    params = extract_params(tmp_path, DataParams(source="files", files=FilesParams(paths=[str(path)])))
    with caplog.at_level(logging.INFO, logger="cubecore.data.extraction"):
        metrics = extract(params, tmp_path / "extract", progress=False)[0]["extract"]
    assert metrics["collapsed_texts"] == 2 and metrics["unknown_token_texts"] == 1  # uncased: Hello = hello
    messages = [r.getMessage() for r in caplog.records]
    assert any("2 of 44 distinct texts" in m and "'Hello there' and 'hello there'" in m for m in messages)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]  # 2 of 44 alike: no warning
    assert len(warnings) == 1 and "1 of 44" in warnings[0] and "'สวัสดี'" in warnings[0]


# --- ROUGE-L keeps combining marks -------------------------------------------------------------

def test_combining_marks_stay_with_their_letters():
    from cubecore.evaluation.scoring import UnicodeTokenizer, text_scores

    tokenizer = UnicodeTokenizer()
    assert tokenizer.tokenize("वह कैसे है?") == ["वह", "कैसे", "है"]
    assert tokenizer.tokenize("שָׁלוֹם, עוֹלָם") == ["שָׁלוֹם", "עוֹלָם"]
    assert tokenizer.tokenize("கொண்டு") == ["கொண்டு"]  # Tamil: spacing marks (Mc) too
    assert text_scores(["वह किसी है"], ["वह कैसे है"])["rouge_l"] == round(2 / 3, 4)  # one word of three differs
    assert text_scores(["שְׁלוֹם"], ["שָׁלוֹם"])["rouge_l"] == 0.0  # other points: another word


def test_unspaced_scripts_are_still_one_token_per_character():
    from cubecore.evaluation.scoring import UnicodeTokenizer

    tokenizer = UnicodeTokenizer()
    assert tokenizer.tokenize("สวัสดีครับ") == list("สวัสดีครับ")  # Thai marks stay tokens of their own
    assert tokenizer.tokenize("ok\u0e31") == ["ok", "\u0e31"]
    assert tokenizer.tokenize("Привет, мир! 你好") == ["привет", "мир", "你", "好"]
