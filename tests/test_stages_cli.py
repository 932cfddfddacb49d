"""Stage scripts as DVC runs them: one-line errors, exit code 1, no partial outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_filtering import PAIRS, make_dataset


def run_stage(repo_root, module, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def paths(tmp_path):
    return {"data": make_dataset(tmp_path / "extract"), "out": tmp_path / "filter",
            "metrics": tmp_path / "metrics" / "filter.json", "speed": tmp_path / "speed" / "filter.json",
            "params": tmp_path / "params.yaml"}


def filter_args(paths):
    return ["--allow-outside", "--params", paths["params"], "--data", paths["data"], "--out", paths["out"],
            "--metrics", paths["metrics"], "--speed", paths["speed"]]


@pytest.mark.parametrize("params_text, name", [
    ("filter:\n  bogus: 1\n", "filter.bogus"),
    ("filter:\n  min_qa_similarity: high\n", "filter.min_qa_similarity"),
])
def test_bad_params_fail_in_one_line(repo_root, paths, params_text, name):
    paths["params"].write_text(params_text, encoding="utf-8")
    result = run_stage(repo_root, "stages.filter", *filter_args(paths))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert name in lines[0]
    assert "Traceback" not in result.stderr
    assert not paths["out"].exists()
    assert not paths["metrics"].exists()


def test_missing_input_names_the_file(repo_root, paths, tmp_path):
    paths["params"].write_text("filter:\n  min_qa_similarity: 0.5\n", encoding="utf-8")
    paths["data"] = tmp_path / "never-extracted"
    result = run_stage(repo_root, "stages.filter", *filter_args(paths))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(paths["data"]) in lines[0]
    assert not paths["out"].exists()


def test_filter_stage_writes_outputs_and_metrics(repo_root, paths):
    paths["params"].write_text("filter:\n  min_qa_similarity: 0.5\n", encoding="utf-8")
    result = run_stage(repo_root, "stages.filter", *filter_args(paths))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(paths["metrics"].read_text(encoding="utf-8"))["filter"]
    assert metrics["pairs_in"] == len(PAIRS) == metrics["kept"] + metrics["removed"]
    assert sorted(p.name for p in paths["out"].iterdir()) == ["pairs.tsv", "rejects.jsonl"]
    speed = json.loads(paths["speed"].read_text(encoding="utf-8"))["filter"]
    assert set(speed) == {"stage_seconds", "peak_memory_mb"} and speed["stage_seconds"] > 0
