"""Relative cache paths resolve to the original repository, also inside DVC's experiment copies."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cubecore.core.errors import CubecoreError
from cubecore.core.paths import output_path, project_path, usable_dir

REPO = Path(__file__).resolve().parents[1]


def extract_figures(root: Path) -> dict:
    """extract's metrics, with the cache and speed figures wherever they are kept."""
    figures = {}
    for name in ("metrics/extract.json", "metrics/speed/extract.json"):
        if (root / name).exists():
            figures.update(json.loads((root / name).read_text())["extract"])
    return figures


@pytest.mark.parametrize("copy", [".dvc/tmp/exps/tmpab12", ".dvc/tmp/exps/standalone/tmpcd34"])
def test_relative_paths_leave_a_dvc_experiment_copy(tmp_path, monkeypatch, copy):
    repo = tmp_path / "repo"
    workspace = repo / copy
    (workspace / ".dvc").mkdir(parents=True)
    (workspace / "sub").mkdir()
    monkeypatch.setenv("DVC_ROOT", str(repo))
    monkeypatch.chdir(workspace)
    assert project_path(".cache/embeddings") == repo / ".cache/embeddings"
    monkeypatch.chdir(workspace / "sub")  # a stage with its own wdir keeps its place
    assert project_path("x") == repo / "sub" / "x"
    assert project_path(tmp_path / "abs") == tmp_path / "abs"


def test_relative_paths_outside_an_experiment_copy_are_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "elsewhere"))
    monkeypatch.chdir(tmp_path)
    assert project_path(".cache/embeddings") == tmp_path / ".cache/embeddings"
    monkeypatch.delenv("DVC_ROOT")
    assert project_path("a/b") == tmp_path / "a/b"


@pytest.mark.slow
def test_temp_and_queued_experiments_share_the_repository_cache(make_project):
    root, run = make_project()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["base"]["cache_dir"] = ".cache/embeddings"  # relative, as in the shipped params.yaml
    params["train"]["checkpoint_dir"] = ".cache/checkpoints"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git", "commit", "-qam", "relative cache paths")
    run("dvc", "repro", "extract")
    first = extract_figures(root)
    assert first["cache_misses"] == first["texts"] > 0 and (root / ".cache/embeddings").is_dir()

    shards = sorted((root / ".cache/embeddings").rglob("*.emb.npy"))

    run("dvc", "exp", "run", "--temp", "extract", "-S", "data.max_pairs=250", "--name", "temp-run")
    run("dvc", "exp", "run", "--queue", "extract", "-S", "data.max_pairs=200", "--name", "queued-run")
    run("dvc", "queue", "start")
    deadline = time.time() + 600
    while re.search(r"\b(Queued|Running)\b", run("dvc", "queue", "status")) and time.time() < deadline:
        time.sleep(2)
    refs = run("git", "for-each-ref", "--format=%(refname)", "refs/exps").split()
    for name in ("temp-run", "queued-run"):
        assert [r for r in refs if r.endswith(f"/{name}")], (name, run("dvc", "queue", "status"), refs)
    # the speed file (with the cache figures) is not tracked; the queued run's log has them
    assert "'cache_misses': 0" in run("dvc", "queue", "logs", "queued-run")
    # every text came from the repository's cache: no shard was added, none inside the copies
    assert sorted((root / ".cache/embeddings").rglob("*.emb.npy")) == shards
    assert not list((root / ".dvc/tmp/exps").rglob(".cache"))  # nothing cached inside the copies


# --- nothing is written outside the project by accident -------------------------------------

@pytest.mark.parametrize("path", ["../elsewhere", "data/../../elsewhere", "/tmp/elsewhere"])
def test_a_stage_path_outside_the_project_is_refused(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CubecoreError, match=r"^--out: .* is outside the project .*--allow-outside"):
        output_path(path, "--out")
    assert output_path(path, "--out", allow_outside=True) == Path(path)


@pytest.mark.parametrize("path", ["data/extract", "data/../metrics/x.json", str(Path("/") / "PROJECT" / "out")])
def test_a_stage_path_inside_the_project_is_accepted(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    path = path.replace("/PROJECT", str(tmp_path))
    assert output_path(path, "--out") == Path(path)


def test_the_stage_script_refuses_in_one_line_before_any_work(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    done = subprocess.run([sys.executable, "-m", "stages.extract", "--out", "../extract",
                           "--metrics", "metrics/extract.json", "--speed", "metrics/speed/extract.json"], cwd=project,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: --out: ../extract is outside the project ({project.resolve()}); "
        f"pass --allow-outside if you mean to write there"]
    assert not (tmp_path / "extract").exists()


def test_cache_dirs_may_not_climb_out_but_may_be_absolute(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    with pytest.raises(CubecoreError, match=r"^base.cache_dir: \.\./cache climbs out of the project"):
        usable_dir("../cache", "base.cache_dir")
    assert not (tmp_path / "cache").exists()
    assert usable_dir(tmp_path / "cache", "base.cache_dir") == tmp_path / "cache"
    assert usable_dir(".cache/x", "base.cache_dir") == project.resolve() / ".cache/x"
