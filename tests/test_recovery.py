"""Putting a workspace back after a failed or reverted run, on real DVC projects (README
"When an experiment fails" and "Experiments and review")."""
import re
import shutil
from pathlib import Path

import pytest
import yaml

from test_pipeline import FILES, changed_stages, user_pairs

REPO = Path(__file__).resolve().parents[1]
STAGES = [name for name in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"] if name != "check"]


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
def test_reverting_a_data_edit_restores_every_stage_from_the_run_cache(make_project):
    root, run = make_project(FILES)
    data = root / "dialogues.jsonl"
    data.write_text(user_pairs(80), encoding="utf-8")
    run("dvc", "repro")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline run")

    with open(data, "a", encoding="utf-8") as fh:
        fh.write(user_pairs(10, start=80))
    edited = run("dvc", "repro")
    assert all(f"Running stage '{stage}'" in edited for stage in STAGES), edited

    data.write_text(user_pairs(80), encoding="utf-8")  # the edit reverted
    reverted = run("dvc", "repro")
    for stage in STAGES:
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in reverted, reverted
    assert re.findall(r"Running stage '(\w+)'", reverted) == ["check"]
    assert run("git", "status", "--porcelain") == ""  # metrics and images in git: the committed bytes
    assert changed_stages(run) == []
