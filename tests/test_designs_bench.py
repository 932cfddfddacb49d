"""bench/designs.py resumes a study from its ``--work`` directory: runs spread over processes
are assembled, a finished run is neither trained nor evaluated again, a changed param is."""
import json
import subprocess
import sys

import yaml
from conftest import REPO, tiny_params
from test_modes import on_disk  # noqa: F401  (the fixture: a tiny extracted + split dataset)

TINY_RUN = {"cube": {"lattice": [4, 4, 4]}, "train": {"epochs": 1, "batch_size": 16},
            "evaluate": {"bootstrap": 200, "blend_steps": 3}}


def designs(on_disk, tmp_path, *args) -> str:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(TINY_RUN)), encoding="utf-8")
    done = subprocess.run([sys.executable, "bench/designs.py", "--params", str(params), "--data", str(on_disk / "extract"),
                           "--split", str(on_disk / "split"), "--work", str(tmp_path / "work"), *args],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def verbs(stdout: str) -> dict[str, str]:
    """``{run: "done" | "reused"}`` from the progress lines."""
    return {line.split()[1]: line.split()[0] for line in stdout.splitlines() if line.startswith(("done ", "reused "))}


def test_a_study_spread_over_processes_is_assembled_without_training_again(on_disk, tmp_path):  # noqa: F811
    first = designs(on_disk, tmp_path, "--no-default", "--no-twins", "--design", "cube.update=bilinear",
                    "--out", str(tmp_path / "a.json"))
    assert verbs(first) == {"cube.update=bilinear": "done"}

    whole = designs(on_disk, tmp_path, "--design", "cube.update=bilinear", "--out", str(tmp_path / "b.json"))
    assert verbs(whole) == {"default": "done", "cube.steps=0": "done", "cube.update=bilinear": "reused"}
    a, b = (json.loads((tmp_path / name).read_text(encoding="utf-8")) for name in ("a.json", "b.json"))
    bilinear_a, bilinear_b = (next(r for r in s["rows"] if r["run"] == "cube.update=bilinear") for s in (a, b))
    assert bilinear_a["cube_minus_twin"] is None  # its twin (the default's) was not in that process
    assert bilinear_b["twin"] == "cube.steps=0" and bilinear_b["cube_minus_twin"] is not None
    for key in ("cube", "trivial_r2", "frontier_margin", "cube_minus_lattice_off", "train_seconds"):
        assert bilinear_a[key] == bilinear_b[key], key

    changed = designs(on_disk, tmp_path, "--no-default", "--no-twins", "--design", "cube.update=bilinear",
                      "--set", "train.lr=0.02", "--out", str(tmp_path / "c.json"))
    assert verbs(changed) == {"cube.update=bilinear": "done"}
