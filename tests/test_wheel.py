"""`pip install .` without -e gives a package that runs the stages and the commands: built as a
wheel, installed into a fresh venv (the dependencies borrowed from this one) outside the repo."""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_runs_a_stage_and_a_command(tmp_path):
    source = tmp_path / "source"  # a clean copy: no build/ left from an earlier build
    shutil.copytree(REPO / "cubecore", source / "cubecore", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheel"), str(source)], check=True, capture_output=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin/python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co. from this venv
    wheel = next((tmp_path / "wheel").glob("cubecore-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, capture_output=True)
    work = tmp_path / "work"  # no cubecore/ here: the import must come from the installed wheel
    shutil.copytree(REPO / "stages", work / "stages")
    shutil.copy(REPO / "params.yaml", work / "params.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(python), "-c", "import cubecore.training.modes.dual, cubecore; print(cubecore.__file__)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout
    assert where.startswith(site)
    subprocess.run([str(python), "-m", "stages.check", "--out", "data/inputs.json"], cwd=work, env=env, check=True)
    assert (work / "data/inputs.json").exists()
    done = subprocess.run([str(python), "-m", "cubecore", "info"], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "models/cube/model.json: not found" in done.stderr  # a clean, known error
