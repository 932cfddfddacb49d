"""Frontier, dominance and margin on hand-made points; the paired bootstrap; and ``evaluate``
on tiny synthetic data (every model, the frontier, intervals, flags), run once more with a test
split on which every choice made on val would come out differently."""
import csv
import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cubecore.core import artifacts
from cubecore.core.config import (
    CubeParams,
    EvaluateParams,
    LossParams,
    Params,
    SplitParams,
    TrainParams,
)
from cubecore.core.frontier import dominates, frontier_report, margin, pareto_front
from cubecore.core.lineup import BASELINES, HEADLINE
from cubecore.evaluation import plots
from cubecore.evaluation.bootstrap import interval, resample_means
from cubecore.evaluation.run import MODELS, evaluate
from cubecore.training.run import train

POINTS = {"a": (0.5, 0.2), "b": (0.4, 0.3), "c": (0.3, 0.1), "d": (0.4, 0.2)}  # c, d are dominated


def test_pareto_front_and_dominance():
    assert pareto_front(POINTS) == ["b", "a"]
    assert dominates((0.5, 0.2), (0.4, 0.2)) and not dominates((0.4, 0.2), (0.4, 0.2))
    assert not dominates((0.5, 0.2), (0.4, 0.3))


@pytest.mark.parametrize("cube, dominated, expected", [
    ((0.45, 0.25), False, 0.05),    # between a and b: ahead of each on one metric by 0.05
    ((0.6, 0.35), False, 0.15),     # beyond both: moved down-left by 0.15 it meets a
    ((0.35, 0.15), True, -0.05),    # a and b both beat it on both metrics, by >= 0.05
    ((0.5, 0.2), False, 0.0),       # on the frontier (equal to a): neither inside nor outside
    ((0.45, 0.19), True, -0.01),    # inside, close to a
])
def test_margin_on_hand_made_points(cube, dominated, expected):
    report = frontier_report(POINTS, cube)
    assert report["dominated"] is dominated
    assert report["margin"] == pytest.approx(expected, abs=1e-9)
    assert report["frontier"] == ["b", "a"]


def test_margin_is_vectorised_over_resamples():
    cos, mrr = np.array([[0.5, 0.4], [0.5, 0.4]]), np.array([[0.2, 0.3], [0.2, 0.3]])
    assert margin(np.array([0.45, 0.35]), np.array([0.25, 0.15]), cos, mrr) == pytest.approx([0.05, -0.05])


def test_bootstrap_is_seeded_and_resamples_rows():
    values = np.random.default_rng(0).normal(size=(300, 2))
    first, again = resample_means(values, 200, seed=1), resample_means(values, 200, seed=1)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, resample_means(values, 200, seed=2))
    assert first.shape == (200, 2)
    assert first.mean(0) == pytest.approx(values.mean(0), abs=0.02)
    assert first.std(0) == pytest.approx(values.std(0) / np.sqrt(300), rel=0.2)
    # a constant column has no spread; the chunking does not change the draws (BLAS may sum
    # differently shaped products in another order: equal to the last few bits)
    assert np.allclose(resample_means(np.ones((50, 1)), 30, seed=0), 1)
    assert np.allclose(resample_means(values, 200, seed=1, chunk=7), first, rtol=1e-12, atol=1e-15)


def test_bootstrap_interval_is_the_95_percent_one():
    """For a mean of normal rows the 95 % interval is about mean +- 1.96 standard errors."""
    values = np.random.default_rng(5).normal(size=1000)
    low, high = interval(resample_means(values[:, None], 4000, seed=0)[:, 0])
    standard_error = values.std() / np.sqrt(len(values))
    assert (high - low) / 2 == pytest.approx(1.96 * standard_error, rel=0.06)
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.3 * standard_error)


def test_bootstrap_interval_covers_the_true_difference():
    """Paired rows: model b = a + 0.05 + noise. 95 % intervals cover 0.05 in most datasets."""
    covered = 0
    for trial in range(40):
        rng = np.random.default_rng(100 + trial)
        a = rng.normal(size=400)
        b = a + 0.05 + 0.2 * rng.normal(size=400)
        low, high = interval(resample_means((b - a)[:, None], 500, seed=trial)[:, 0])
        covered += low <= 0.05 <= high
        assert high - low < 0.06  # paired: the shared per-row noise cancels
    assert covered >= 34


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A synthetic corpus (64-d vectors, answer = nonlinear map of question), a trained cube,
    60 train / 12 val / 6 test questions, each with its own answer: (params, data, split, model)."""
    root = tmp_path_factory.mktemp("eval")
    g = torch.Generator().manual_seed(0)
    n, dim = 78, 64
    questions = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)
    mixing = torch.randn(dim, dim, generator=torch.Generator().manual_seed(1)) / dim ** 0.5
    answers = torch.nn.functional.normalize(torch.tanh(2 * questions @ mixing) + 0.2, dim=-1)
    texts = [f"question number {i}" for i in range(n)] + [f"the answer is {i}" for i in range(n)]
    data = root / "extract"
    data.mkdir()
    artifacts.write_texts(data / "texts.jsonl", texts)
    artifacts.write_embeddings(data / "embeddings.npy", torch.cat([questions, answers]).numpy())
    artifacts.write_json(data / "teacher.json", {"model": "synthetic"})
    split = root / "split"
    split.mkdir()
    for name, rows in {"train": range(0, 60), "val": range(60, 72), "test": range(72, 78)}.items():
        rows = np.array(list(rows))
        artifacts.write_pairs(split / f"{name}.tsv", artifacts.Pairs(rows, rows + n, [str(r) for r in rows],
                                                                     np.zeros(len(rows), dtype=np.int64)))
    params = Params(
        split=SplitParams(val_fraction=0.15, test_fraction=0.08),
        cube=CubeParams(lattice=[4, 4, 4], channels=4, hidden=8, position_channels=2, steps=1),
        train=TrainParams(epochs=3, batch_size=16, lr=0.01, patience=3, checkpoint_dir=str(root / "ckpt"),
                          loss=LossParams(cosine=1.0, infonce=0.1, queue_size=32)),
        evaluate=EvaluateParams(recall_at=[1, 5, 10], ridge_alphas=[1.0], blend_steps=2,
                                bootstrap=200))
    train(params, data, split, root / "model", progress=False)
    return params, data, split, root / "model"


@pytest.fixture(scope="module")
def evaluated(synthetic):
    """``evaluate`` on the synthetic corpus, with the warnings it logged."""
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("cubecore.evaluation.run").addHandler(handler)
    try:
        result = evaluate(*synthetic)
        metrics, curves = result.metrics, result
    finally:
        logging.getLogger("cubecore.evaluation.run").removeHandler(handler)
    return metrics, curves, warnings


@pytest.fixture(scope="module")
def report_differs(synthetic, tmp_path_factory):
    """``evaluate`` with the same model, train and val rows, but a test split whose answers are
    the questions themselves (test row 72 twice: 7 rows, 6 distinct answers), and recall_at
    [1, 6, 12]: on test the identity (and blend@1) is perfect, on val ridge (and blend@0) is
    best, so whatever is chosen on val differs from what test would choose. The trained
    baselines come from the cache when ``evaluated`` ran first (same train and val rows, same
    training params)."""
    params, data, split, model = synthetic
    changed = tmp_path_factory.mktemp("report-differs")
    for name in ("train", "val"):
        (changed / f"{name}.tsv").write_bytes((split / f"{name}.tsv").read_bytes())
    rows = np.array([72, 73, 74, 75, 76, 77, 72])
    artifacts.write_pairs(changed / "test.tsv", artifacts.Pairs(rows, rows, [str(r) for r in rows],
                                                                np.zeros(len(rows), dtype=np.int64)))
    params = dataclasses.replace(params, evaluate=dataclasses.replace(params.evaluate, recall_at=[1, 6, 12]))
    result = evaluate(params, data, changed, model)
    return result.metrics, result


def test_evaluate_reports_every_model_on_val_and_test(evaluated):
    metrics, curves, _ = evaluated
    for name in MODELS:
        assert set(metrics[name]) == {"val", "test"}
        assert metrics[name]["test"]["candidates"] == 6
    assert set(curves.recall) == set(MODELS)
    assert metrics["setup"]["report_split"] == "test"


def test_recall_at_k_beyond_the_candidates_is_flagged(evaluated):
    metrics, _, warnings = evaluated
    assert metrics["setup"]["trivial_recall"] == {
        "val": {"recall@1": False, "recall@5": False, "recall@10": False},
        "test": {"recall@1": False, "recall@5": False, "recall@10": True}}
    assert warnings == ["evaluate: test has 6 candidates, so recall@10 is 1 for every model (trivial)"]
    assert all(metrics[name]["test"]["recall@10"] == 1.0 for name in MODELS)


def test_the_frontier_points_are_the_models_metrics(evaluated):
    """The frontier's points come from the per-row values; each model's metrics from its ranks'
    summary (a separate path): they agree, and blend@0 / blend@1 point like ridge / identity."""
    metrics, curves, _ = evaluated
    for split in ("val", "test"):
        points = curves.frontier["points"][split]
        assert set(points) == {"cube", "identity", "mean", "ridge", "linear", "mlp", "blend@0", "blend@0.5", "blend@1",
                               *(f"shift@{k / 10:g}" for k in range(41))}
        assert points["shift@0"] == pytest.approx(points["identity"], abs=1e-5)  # x + 0 * mean is the input
        shift = f"shift@{metrics['setup']['shift_weight']:g}"
        assert points[shift] == pytest.approx((metrics["shift"][split]["cosine"], metrics["shift"][split]["mrr"]), abs=6e-5)
        for name in ("cube", "identity", "mean", "ridge", "linear", "mlp"):
            assert points[name] == pytest.approx((metrics[name][split]["cosine"], metrics[name][split]["mrr"]),
                                                 abs=6e-5), (split, name)
        assert points["blend@0"] == pytest.approx(points["ridge"], abs=1e-5)
        assert points["blend@1"] == pytest.approx(points["identity"], abs=1e-5)
        assert points["blend@0"] != pytest.approx(points["blend@1"], abs=0.05)  # so the two checks can tell them apart


def test_the_frontier_report_is_the_pareto_verdict_on_the_baselines_points(evaluated):
    """Per split, against the baselines' points (the cube is not one of them): who dominates the
    cube, the frontier and the margin, worked out here from their definitions."""
    metrics, curves, _ = evaluated
    for split in ("val", "test"):
        points = dict(curves.frontier["points"][split])
        cube = points.pop("cube")
        report = metrics["frontier"][split]
        assert set(points) == {"identity", "mean", "ridge", "linear", "mlp", "blend@0", "blend@0.5", "blend@1",
                               *(f"shift@{k / 10:g}" for k in range(41))}
        assert (report["cube"]["cosine"], report["cube"]["mrr"]) == (round(cube[0], 4), round(cube[1], 4))
        beaten_by = [n for n, (c, m) in points.items() if c >= cube[0] and m >= cube[1] and (c, m) != cube]
        assert report["dominated_by"] == beaten_by and report["dominated"] is bool(beaten_by)
        assert report["margin"] == pytest.approx(min(max(cube[0] - c, cube[1] - m) for c, m in points.values()),
                                                 abs=6e-5)
        front = [n for n, (c, m) in points.items()
                 if not any(c2 >= c and m2 >= m and (c2, m2) != (c, m) for c2, m2 in points.values())]
        assert sorted(report["frontier"]) == sorted(front)


def test_the_intervals_are_of_the_report_split_against_the_best_baseline(evaluated):
    """The interval's point value (from per-row arrays) is the difference of the summary metrics
    (from ranks); its pairing is tested on hand-made rows in tests/test_bootstrap.py."""
    metrics, _, _ = evaluated
    confidence = metrics["confidence"]
    assert confidence["split"] == "test" and confidence["resamples"] == 200
    for m in ("cosine", "mrr", "recall@1"):
        entry, best = confidence[m], metrics["setup"]["best_baseline"][m]
        assert entry["baseline"] == best
        assert entry["value"] == pytest.approx(metrics["cube"]["test"][m] - metrics[best]["test"][m], abs=2e-4)
        assert metrics["cube_vs_best_baseline"]["test"][m] == pytest.approx(entry["value"], abs=2e-4)
        assert entry["low"] <= entry["value"] <= entry["high"]
    assert confidence["frontier_margin"]["value"] == pytest.approx(metrics["frontier"]["test"]["margin"], abs=2e-4)


def test_dvc_recall_plot_draws_every_model(repo_root):
    """DVC cannot import the model list, so dvc.yaml repeats it: this keeps the two equal."""
    plots = yaml.safe_load((repo_root / "dvc.yaml").read_text())["plots"]
    columns = [y for plot in plots if isinstance(plot, dict) for spec in plot.values()
               for y in spec.get("y", {}).get("plots/recall_at_k.csv", [])]
    assert columns == list(MODELS)


def test_the_best_baseline_per_metric_is_chosen_on_val_not_on_the_report_split(report_differs):
    metrics, _ = report_differs
    on = {split: {m: max(BASELINES, key=lambda b: metrics[b][split][m]) for m in HEADLINE} for split in ("val", "test")}
    assert on["test"]["cosine"] == "identity" != on["val"]["cosine"]  # the data can tell the two apart
    assert metrics["setup"]["best_baseline"] == on["val"]
    assert metrics["confidence"]["cosine"]["baseline"] == on["val"]["cosine"]
    cosine = on["val"]["cosine"]
    assert metrics["cube_vs_best_baseline"]["test"]["cosine"] == pytest.approx(
        metrics["cube"]["test"]["cosine"] - metrics[cosine]["test"]["cosine"], abs=2e-4)


def test_the_blend_weight_is_chosen_on_val_not_on_the_report_split(report_differs):
    """The blend with the best val cosine + MRR (blend@0 here); test would pick blend@1."""
    metrics, curves = report_differs
    points = curves.frontier["points"]
    on = {split: max((0.0, 0.5, 1.0), key=lambda a: sum(points[split][f"blend@{a:g}"])) for split in ("val", "test")}
    assert on == {"val": 0.0, "test": 1.0}
    assert metrics["setup"]["blend_weight"] == on["val"]
    for split in ("val", "test"):  # and the `blend` model is that blend on every split
        assert (metrics["blend"][split]["cosine"], metrics["blend"][split]["mrr"]) == pytest.approx(
            points[split][f"blend@{on['val']:g}"], abs=6e-5)


def test_recall_at_k_is_trivial_from_k_equal_to_the_distinct_answers(report_differs):
    """Val has 12 distinct answers, test 6 (in 7 rows): recall@12 and recall@6 are 1 there."""
    metrics, _ = report_differs
    assert metrics["cube"]["test"]["candidates"] == 6 and metrics["setup"]["test_rows"] == 7
    assert metrics["setup"]["trivial_recall"] == {
        "val": {"recall@1": False, "recall@6": False, "recall@12": True},
        "test": {"recall@1": False, "recall@6": True, "recall@12": True}}
    assert all(metrics[name]["test"]["recall@6"] == 1.0 for name in MODELS)


def test_the_frontier_points_are_plot_data_not_metrics(evaluated, tmp_path):
    """eval.json keeps the verdict per split (no point list to flood `dvc exp show`); the
    frontier CSV holds the report split's points: the cube first, the baselines, the frontier flagged."""
    metrics, curves, _ = evaluated
    assert set(metrics["frontier"]["test"]) == {"cube", "frontier", "dominated", "dominated_by", "margin", "saturated"}
    plots.frontier(curves.frontier, tmp_path / "frontier.png", tmp_path / "frontier.csv", "t")
    with open(tmp_path / "frontier.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["model"] == "cube"
    assert float(rows[0]["mrr"]) == metrics["frontier"]["test"]["cube"]["mrr"]
    assert {r["model"] for r in rows if r["on_frontier"] == "True"} == set(metrics["frontier"]["test"]["frontier"])
    assert {r["model"] for r in rows} >= {"identity", "ridge", "linear", "mlp", "blend@0.5"}


def test_changing_only_recall_at_retrains_no_baseline(synthetic, evaluated, caplog):
    """The trained baselines come from the cache when only evaluation settings changed: no
    epoch is logged, each says it was loaded, and their figures are the first run's."""
    params, *paths = synthetic
    changed = dataclasses.replace(params, evaluate=dataclasses.replace(params.evaluate, recall_at=[1, 2]))
    with caplog.at_level(logging.INFO):
        metrics = evaluate(changed, *paths).metrics
    lines = [r.getMessage() for r in caplog.records]
    assert not [line for line in lines if " epoch " in line]
    for name in ("mlp", "linear"):
        assert sum(line.startswith(f"evaluate: {name} loaded from the baseline cache") for line in lines) == 1
        assert metrics[name]["test"]["mrr"] == evaluated[0][name]["test"]["mrr"]
        assert "recall@2" in metrics[name]["test"]
    assert metrics["setup"]["linear_best_epoch"] == evaluated[0]["setup"]["linear_best_epoch"]


def test_a_missed_requirement_fails_the_stage_after_writing_its_results(synthetic, tmp_path):
    """`evaluate.require` on a real run: metrics and plots are written, then exit 1 with one
    line naming the failed entry, the split and the gap (the held entry is not named)."""
    params, data, split, model = synthetic
    raw = dataclasses.asdict(params)
    raw["evaluate"]["require"] = ["beats: mean on mrr", "beats: ridge on mrr"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "stages.evaluate", "--data", str(data), "--split", str(split),
                           "--model", str(model), "--plots", "plots", "--metrics", "eval.json",
                           "--headline", "headline.json", "--speed", "speed.json", "--allow-outside"],
                          cwd=tmp_path, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 1, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert (tmp_path / "plots" / "frontier.png").exists() and (tmp_path / "plots" / "recall_at_k.csv").exists()
    cube, ridge = metrics["cube"]["test"]["mrr"], metrics["ridge"]["test"]["mrr"]
    margin = metrics["confidence"]["frontier_margin"]
    assert json.loads((tmp_path / "headline.json").read_text()) == {  # what `dvc exp show` lists, from eval.json
        "split": "test", "cube": {m: metrics["cube"]["test"][m] for m in ("cosine", "mrr", "recall@1")},
        "margin": margin["value"], "margin_low": margin["low"], "margin_high": margin["high"],
        "trivial_r2": metrics["anatomy"]["test"]["trivial"]["r2"]}
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [(f'error: evaluate.require failed on test: "beats: ridge on mrr": the cube\'s mrr {cube:.4f} '
                       f"is not above ridge's {ridge:.4f} (short by {ridge - cube:.4f})")]


def test_evaluate_trains_its_baselines_with_train_threads(synthetic):
    """The trained baselines run like the cube: `train.threads` (2 threads were 2-5x slower under load)."""
    params, *paths = synthetic
    torch.set_num_threads(2)
    evaluate(params, *paths)
    assert params.train.threads == 1 and torch.get_num_threads() == 1


def test_anatomy_and_the_trivial_class_are_in_every_evaluation(evaluated, tmp_path):
    metrics, curves, _ = evaluated
    anatomy = metrics["anatomy"]
    assert anatomy["fitted_on"] == "train" and anatomy["steps"] == 1 and anatomy["affine_r2_limit"] == 0.9
    for split in ("val", "test"):
        assert {"cube", "trivial", "general", "lattice_off", "step_share"} <= set(anatomy[split])
        assert anatomy[split]["cube"] == {m: metrics["cube"][split][m] for m in ("cosine", "mrr")}
    val = curves.frontier["points"]["val"]
    chosen = max((n for n in val if n.startswith("shift@")), key=lambda n: sum(val[n]))  # best val cosine + MRR
    assert metrics["setup"]["shift_weight"] == float(chosen.split("@")[1])
    assert val[chosen] == pytest.approx((metrics["shift"]["val"]["cosine"], metrics["shift"]["val"]["mrr"]), abs=1e-4)
    plots.anatomy(curves.anatomy, tmp_path / "anatomy.png", "anatomy")
    assert (tmp_path / "anatomy.png").stat().st_size > 10_000
