"""Putting a workspace back after a failed or reverted run, on real DVC projects (README
"When an experiment fails" and "Experiments and review")."""
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from test_pipeline import FILES, user_pairs

REPO = Path(__file__).resolve().parents[1]


def readme_command(after: str) -> str:
    """The `$ ` command of the README that follows the line ``after`` (comment dropped)."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = lines.index(after)
    command = next(line for line in lines[start + 1:] if line.startswith("$ "))
    return command[2:].split("  #")[0].strip()


@pytest.mark.slow
def test_the_readme_recipe_restores_params_after_a_failed_experiment(make_project):
    """DVC rewrites params.yaml keeping its comments and column alignment (so often at the same
    size) and leaves git's index with the rewritten file's stat data: a plain `git checkout
    params.yaml` then kept `lr: -1` in 3 tries of 4. The README's recipe must win every time."""
    root, run = make_project()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")  # the real file: comments, aligned columns
    run("git", "commit", "-qam", "the committed params")
    committed = (root / "params.yaml").read_bytes()
    recipe = readme_command("error: params.yaml: filter.min_qa_similarity must be in [-1, 1], got 2.0")
    assert recipe.startswith("git ") and "params.yaml" in recipe
    for _ in range(4):
        output = run("dvc", "exp", "run", "-S", "train.lr=-1", fails=True)
        assert "train.lr must be > 0" in output
        assert re.search(rb"\n  lr: -1 ", (root / "params.yaml").read_bytes())  # rewritten in place
        run("bash", "-c", recipe)
        assert (root / "params.yaml").read_bytes() == committed
        assert run("git", "status", "--porcelain") == ""


@pytest.mark.slow
def test_experiments_run_at_once_through_the_queue(make_project):
    """Two plain `dvc exp run` at once in one workspace lose the first ('NoneType' object is not
    subscriptable at its end); the README's way to run several at once is the queue with as many
    workers. Both experiments must finish with their own results."""
    root, run = make_project(FILES)
    (root / "dialogues.jsonl").write_text(user_pairs(80), encoding="utf-8")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "data")  # queued runs see what git tracks
    readme = (REPO / "README.md").read_text()
    for name, lr in (("a", "0.002"), ("b", "0.003")):
        assert f"`dvc exp run --queue -n {name} -S train.lr={lr}`" in readme
        run("dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.lr={lr}")
    assert "`dvc queue start -j 2`" in readme
    try:
        run("dvc", "queue", "start", "-j", "2")
        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline:
            status = run("dvc", "queue", "status")
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            time.sleep(5)
    finally:
        run("dvc", "queue", "stop")
    assert len(re.findall(r"\bSuccess\b", status)) == 2, status
    shown = json.loads(run("dvc", "exp", "show", "--json"))
    results = {}
    for exp in (e for commit in shown for e in commit.get("experiments") or []):
        for rev in exp["revs"]:
            data = rev["data"]
            results[rev["name"]] = (data["params"]["params.yaml"]["data"]["train"]["lr"],
                                    data["metrics"]["metrics/headline.json"]["data"]["cube"]["mrr"])
    assert {name: lr for name, (lr, _) in results.items()} == {"a": 0.002, "b": 0.003}, shown
