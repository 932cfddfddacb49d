"""End to end: real DVC on a copy of this project in a temp git repo, with tiny params."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(make_project):
    """A git + DVC project holding this repo's tracked code and a tiny params.yaml."""
    return make_project()


@pytest.mark.slow
def test_repro_noop_experiment_and_review(project):
    root, run = project
    run("dvc", "repro")
    evaluation = json.loads((root / "metrics/eval.json").read_text())
    for model in ("cube", "identity", "mean", "ridge", "mlp"):
        assert {"cosine", "mrr", "recall@1", "bleu", "rouge_l"} <= set(evaluation[model]["val"]), model
    assert evaluation["identity"]["val"]["cosine"] != evaluation["ridge"]["val"]["cosine"]
    for png in ("training_curves", "val_cosine_hist", "recall_at_k", "headline"):
        assert (root / f"plots/{png}.png").stat().st_size > 10_000, png
    first = json.loads((root / "metrics/extract.json").read_text())["extract"]
    assert first["cache_misses"] == first["texts"] > 0

    again = run("dvc", "repro")
    for stage in ("extract", "filter", "split", "train", "evaluate"):
        assert f"Stage '{stage}' didn't change, skipping" in again

    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline run")
    output = run("dvc", "exp", "run", "-S", "data.max_pairs=250", "-S", "train.lr=0.002")
    assert "Running stage 'extract'" in output
    cached = json.loads((root / "metrics/extract.json").read_text())["extract"]
    assert cached["cache_misses"] == 0 and cached["cache_hits"] == cached["texts"] > 0

    params_diff = run("dvc", "params", "diff", "--md")
    assert "data.max_pairs" in params_diff and "train.lr" in params_diff
    metrics_diff = run("dvc", "metrics", "diff", "--md")
    assert "cube.val.cosine" in metrics_diff and "train.val_cosine" in metrics_diff
    table = run("dvc", "exp", "show", "--md", "--no-pager")
    assert "cube.val.mrr" in table and "0.002" in table


@pytest.mark.slow
def test_answer_command_uses_the_trained_pipeline(project):
    root, run = project
    if not (root / "models/cube/model.safetensors").exists():
        run("dvc", "repro")
    output = run(sys.executable, "-m", "cubecore", "answer", "How are you?", "--top-k", "3")
    lines = output.strip().splitlines()
    assert [line.split(".")[0] for line in lines] == ["1", "2", "3"], output
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)


def test_answer_command_before_the_pipeline_ran(tmp_path):
    done = subprocess.run([sys.executable, "-m", "cubecore", "answer", "Hi"], cwd=tmp_path,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: models/cube: no trained model")
