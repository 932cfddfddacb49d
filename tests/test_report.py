"""`python -m cubecore report` in a real git + DVC repository whose one stage writes eval.json.

The stage script stands in for `evaluate` (the real pipeline takes minutes): its numbers follow
`train.lr`, and its second version adds a frontier with bootstrap intervals. Every number in
the report is checked against `dvc metrics diff --json --all` and `dvc params diff --json`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real DVC in a temp repository

BIN = Path(sys.executable).parent

DVC_YAML = """\
stages:
  evaluate:
    cmd: python make_eval.py
    deps: [make_eval.py]
    params: [train.lr]
    outs:
      - plots/headline.png:
          cache: false
    metrics:
      - metrics/eval.json:
          cache: false
"""

# version 1: models and cube_vs_best_baseline only; version 2 adds a test split and the frontier
MAKE_EVAL = """\
import json, os, yaml
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
splits = {SPLITS}
def scores(shift):
    return {{s: {{"cosine": round(0.5 + shift * lr, 4), "mrr": round(0.7 - shift * lr / 2, 4),
                 "recall@1": round(0.6 + shift * lr / 3, 4), "candidates": 125}} for s in splits}}
out = {{"cube": scores(1.0), "identity": scores(0.0), "ridge": scores(0.25)}}
out["cube_vs_best_baseline"] = {{s: {{m: round(out["cube"][s][m] - max(out[b][s][m] for b in ("identity", "ridge")), 4)
                                    for m in ("cosine", "mrr")}} for s in splits}}
if {FRONTIER}:
    out["frontier"] = {{"test": {{"dominated": lr < 0.25, "dominated_by": ["ridge"] if lr < 0.25 else [],
                                 "margin": round(lr - 0.25, 4)}}}}
    out["confidence"] = {{"split": "test", "level": 0.95, "cosine": {{"baseline": "ridge", "value": round(lr - 0.25, 4),
                                                                 "low": round(lr - 0.3, 4), "high": round(lr - 0.2, 4)}},
                         "frontier_margin": {{"value": round(lr - 0.25, 4), "low": round(lr - 0.3, 4),
                                             "high": round(lr - 0.2, 4)}}}}
out["setup"] = {{"mode": "dialogue"}}
if {FRONTIER}:  # and row fingerprints: an lr above 0.35 stands for a run on other test rows
    for s in splits:
        out["setup"].update({{f"{{s}}_rows": 125, f"{{s}}_fingerprint": "ab12" if lr < 0.35 or s == "val" else "cd34"}})
os.makedirs("metrics", exist_ok=True); os.makedirs("plots", exist_ok=True)
json.dump(out, open("metrics/eval.json", "w"), indent=2)
open("plots/headline.png", "wb").write(b"PNG of lr=%s" % str(lr).encode())
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """HEAD~1 (lr 0.1, v1), HEAD (lr 0.2, v2), experiment `better` (lr 0.4), workspace (lr 0.3)."""
    root = tmp_path_factory.mktemp("review")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "DVC_SITE_CACHE_DIR": str(root.parent / "dvc-site"), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*command, cwd=root, check=True):
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        assert not check or done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
        return done

    run("git", "init", "-q")
    run(str(BIN / "dvc"), "init", "-q")
    (root / "dvc.yaml").write_text(DVC_YAML)
    for lr, splits, frontier in ((0.1, ["val"], False), (0.2, ["val", "test"], True)):
        (root / "make_eval.py").write_text(MAKE_EVAL.format(SPLITS=splits, FRONTIER=frontier))
        (root / "params.yaml").write_text(f"train:\n  lr: {lr}\n  epochs: 3\n")
        run(str(BIN / "dvc"), "repro", "-q")
        run("git", "add", "-A")
        run("git", "commit", "-qm", f"lr {lr}")
    run(str(BIN / "dvc"), "exp", "run", "-q", "-n", "better", "-S", "train.lr=0.4")
    (root / "params.yaml").write_text("train:\n  lr: 0.3\n  epochs: 3\n")
    run(str(BIN / "dvc"), "repro", "-q")
    return root, run


def report(run, cwd, *args):
    return run(sys.executable, "-m", "cubecore", "report", *args, cwd=cwd, check=False)


def cells(text: str) -> dict:
    """``{(split, model, metric): (old, new, change)}`` from the report's headline tables."""
    found, split, header = {}, None, None
    for line in text.splitlines():
        if line.startswith("### "):
            split = line[4:]
        elif line.startswith("| model |"):
            header = [c.strip() for c in line.strip("|").split("|")]
        elif split and header and line.startswith("| ") and "→" in line:
            row = [c.strip() for c in line.strip("|").split("|")]
            for metric, value in zip(header[1:], row[1:]):
                match = re.fullmatch(r"(\S+) → (\S+) \((\S+)\)", value)
                numbers = [None if x in ("—", "new", "removed") else float(x) for x in match.groups()]
                found[(split, row[0], metric)] = tuple(numbers)
        elif line.startswith("## "):
            split = header = None
    return found


def check_against_dvc(run, cwd, text, *revs):
    """Every metrics diff entry of a model's headline metric is in the report, and vice versa."""
    diff = json.loads(run(str(BIN / "dvc"), "metrics", "diff", "--json", "--all", *revs, cwd=cwd).stdout)
    entries = diff["metrics/eval.json"]
    table = cells(text)
    assert table, text
    for (split, model, metric), (old, new, change) in table.items():
        entry = entries[f"{model}.{split}.{metric}"]
        assert old == (None if entry.get("old") is None else pytest.approx(entry["old"], abs=5e-5))
        assert new == pytest.approx(entry["new"], abs=5e-5)
        if old is not None:
            assert change == pytest.approx(entry["diff"], abs=1e-4)
    models = {key.split(".")[0] for key in entries} - {"cube_vs_best_baseline", "frontier", "confidence", "setup"}
    assert {model for _, model, _ in table} == models
    assert any(change not in (None, 0.0) for _, _, change in table.values())
    return table


def test_workspace_against_an_older_commit(repo):
    root, run = repo
    done = report(run, root, "--base", "HEAD~1", "--out", "review.md")
    assert done.returncode == 0, done.stderr
    text = (root / "review.md").read_text()
    table = check_against_dvc(run, root, text, "HEAD~1")
    assert table[("val", "cube", "cosine")][1] == pytest.approx(0.5 + 0.3, abs=5e-5)  # the workspace's lr
    assert table[("test", "cube", "cosine")][0] is None  # no test split at HEAD~1
    params = json.loads(run(str(BIN / "dvc"), "params", "diff", "--json", "HEAD~1").stdout)["params.yaml"]
    assert params["train.lr"] == {"old": 0.1, "new": 0.3, "diff": pytest.approx(0.2)}
    assert "| train.lr | 0.1 | 0.3 |" in text
    assert "train.epochs" not in text  # unchanged params stay out
    assert "- **dominated** (test): no (HEAD~1: —)" in text  # lr 0.3 >= 0.25
    # lr 0.3: interval [0.0, 0.1] touches zero; the margin is a plain number
    assert ("| test: cube − best baseline, cosine (95 % interval) | — | 0.0500 (ridge) [0.0000, 0.1000] within noise |"
            in text)
    assert "| test: margin to the frontier | — | 0.0500 |" in text and "| test: dominated by | — | nothing |" in text
    assert "not computed by this version" not in text
    assert "- val rows: HEAD~1 records no row fingerprint, so whether both sides were scored on the same rows" in text
    assert "![headline](plots/headline.png)" in text


def test_an_experiment_by_name(repo):
    root, run = repo
    done = report(run, root, "--base", "HEAD", "--exp", "better", "--out", "out/exp.md")
    assert done.returncode == 0, done.stderr
    text = (root / "out" / "exp.md").read_text()
    table = check_against_dvc(run, root, text, "HEAD", "better")
    assert table[("test", "cube", "cosine")] == pytest.approx((0.7, 0.9, 0.2), abs=5e-5)
    assert "| train.lr | 0.2 | 0.4 |" in text
    assert ("| test: frontier margin (95 % interval) | -0.0500 [-0.1000, 0.0000] within noise "
            "| 0.1500 [0.1000, 0.2000] cube ahead beyond noise |") in text
    assert "| test: dominated by | ridge | nothing |" in text
    assert "- **dominated** (test): no (HEAD: yes)" in text
    assert ("- **scored on different test rows**: HEAD `ab12` (125 rows), better `cd34` (125 rows), so the test "
            "changes mix the model with the data") in text
    assert "different val rows" not in text
    # the experiment's image, not the workspace's, is copied beside the report
    assert "![headline](exp_plots/headline.png)" in text
    assert (root / "out" / "exp_plots" / "headline.png").read_bytes() == b"PNG of lr=0.4"
    assert (root / "plots" / "headline.png").read_bytes() == b"PNG of lr=0.3"


def test_a_version_without_frontier_says_so(repo):
    root, run = repo
    done = report(run, root, "--base", "HEAD~1", "--exp", "HEAD~1", "--out", "old.md")
    assert done.returncode == 0, done.stderr
    text = (root / "old.md").read_text()
    assert "frontier and dominance: not computed by this version" in text
    assert "bootstrap intervals: not computed by this version" in text
    assert "| cube_vs_best_baseline.val.cosine | 0.0750 | 0.0750 |" in text
    assert "None." in text  # no params changed


def test_plain_clone_without_dvc_cache(repo, tmp_path):
    root, run = repo
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(root), str(clone))
    done = report(run, clone, "--base", "HEAD~1")
    assert done.returncode == 0, done.stderr
    check_against_dvc(run, clone, (clone / "report.md").read_text(), "HEAD~1")


def test_unknown_revision_is_one_line(repo):
    root, run = repo
    done = report(run, root, "--base", "no-such-rev", "--out", "never.md")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-rev" in lines[0], done.stderr
    assert not (root / "never.md").exists()


def test_malformed_metrics_and_no_repository(repo, tmp_path):
    root, run = repo
    metrics = root / "metrics" / "eval.json"
    good = metrics.read_text()
    try:
        metrics.write_text(good[:40])
        done = report(run, root, "--out", "never.md")
    finally:
        metrics.write_text(good)
    assert done.returncode == 1
    assert done.stderr.startswith("error: metrics/eval.json (workspace):") and "malformed JSON" in done.stderr
    done = report(run, tmp_path)
    assert done.returncode == 1 and "not a DVC repository" in done.stderr
    assert not (root / "never.md").exists() and not (tmp_path / "report.md").exists()


def test_rows_scored_on_each_side_are_compared():
    from cubecore.cli.report import row_changes

    def evaluation(**setup):
        return {"cube": {"val": {"cosine": 0.5}, "test": {"cosine": 0.5}}, "setup": setup}

    same = evaluation(val_fingerprint="aaa", val_rows=10, test_fingerprint="bbb", test_rows=12)
    assert row_changes(same, same, "main", "workspace") == []
    other = evaluation(val_fingerprint="aaa", val_rows=10, test_fingerprint="ccc", test_rows=12)
    assert row_changes(same, other, "main", "workspace") == [
        "- **scored on different test rows**: main `bbb` (12 rows), workspace `ccc` (12 rows), so the test changes "
        "mix the model with the data"]
    fewer = evaluation(val_fingerprint="aaa", val_rows=9, test_fingerprint="bbb", test_rows=12)  # same pairs, fewer rows
    assert [line.split(":")[0] for line in row_changes(same, fewer, "main", "workspace")] == [
        "- **scored on different val rows**"]
    older = evaluation(val_rows=10, test_rows=12)
    assert row_changes(older, same, "HEAD~1", "workspace") == [
        f"- {split} rows: HEAD~1 records no row fingerprint, so whether both sides were scored on the same rows "
        "is unknown" for split in ("val", "test")]
    assert row_changes(older, older, "HEAD~1", "workspace") == []
    no_test = {"cube": {"val": {"cosine": 0.5}}, "setup": {"val_rows": 10}}
    assert [line[:10] for line in row_changes(no_test, same, "HEAD~1", "workspace")] == ["- val rows"]
