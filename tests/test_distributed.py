"""Training in 2 processes (torchrun, DDP over gloo, CPU): the ranks stay in step, only rank 0
writes, the result is close to one process's, and a killed run resumes from rank 0's checkpoint."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cubecore import artifacts
from cubecore.config import load_params
from cubecore.distributed import SINGLE, Group
from cubecore.errors import CubecoreError

REPO = Path(__file__).resolve().parents[1]
DIM = 64

# Records, per rank, every file the worker opens for writing, creates or renames under the
# run's directory (Python's audit events; safetensors writes from Rust, but into a temp
# directory made and renamed with os.* calls, which are recorded).
AUDIT = textwrap.dedent("""
    import os, sys
    ROOT = os.environ["AUDIT_ROOT"]
    LOG = os.path.join(os.environ["AUDIT_DIR"], f"rank-{os.environ.get('RANK', 'none')}.txt")

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, os.PathLike)):
            path, mode, flags = os.fspath(args[0]), args[1], args[2]
            writing = any(c in mode for c in "wax+") if mode else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        elif event in ("os.rename", "os.mkdir"):
            path, writing = os.fspath(args[0]), True
        else:
            return
        if writing and str(path).startswith(ROOT) and not str(path).startswith(os.environ["AUDIT_DIR"]):
            with open(LOG, "a") as fh:
                fh.write(f"{event} {path}\\n")

    sys.addaudithook(hook)
""")


def corpus(root: Path, n: int) -> tuple[Path, Path]:
    """``n`` learnable pairs on disk (answer = a fixed nonlinear map of the question): 80 % train."""
    g = torch.Generator().manual_seed(0)
    questions = torch.nn.functional.normalize(torch.randn(n, DIM, generator=g), dim=-1)
    mixing = torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(1)) / DIM ** 0.5
    answers = torch.nn.functional.normalize(torch.tanh(2 * questions @ mixing) + 0.2, dim=-1)
    data, split = root / "extract", root / "split"
    data.mkdir(parents=True), split.mkdir()
    artifacts.write_texts(data / "texts.jsonl", [f"text {i}" for i in range(2 * n)])
    artifacts.write_embeddings(data / "embeddings.npy", torch.cat([questions, answers]).numpy())
    artifacts.write_json(data / "teacher.json", {"model": "synthetic"})
    ids = np.arange(n)
    for name, rows in (("train", ids[: n * 8 // 10]), ("val", ids[n * 8 // 10:])):
        artifacts.write_pairs(split / f"{name}.tsv", artifacts.Pairs(rows, rows + n, ["c"] * len(rows), rows * 0))
    return data, split


EPOCHS = 4
PAIRS = 1200
TRAIN_ROWS = PAIRS * 8 // 10  # 960: 60 batches of 16


def params_file(root: Path, processes: int) -> Path:
    params = {"cube": {"lattice": [4, 4, 4], "channels": 4, "hidden": 8, "position_channels": 2, "steps": 1},
              "train": {"epochs": EPOCHS, "batch_size": 16, "lr": 0.01, "patience": 5, "warmup_fraction": 0.0,
                        "checkpoint_dir": str(root / "checkpoints"), "distributed": {"processes": processes}}}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def stage_command(root: Path, data: Path, split: Path) -> list[str]:
    return [sys.executable, "-m", "stages.train", "--params", str(root / "params.yaml"), "--data", str(data),
            "--split", str(split), "--pretrained", str(root / "none"), "--model", str(root / "model"),
            "--live", str(root / "live"), "--metrics", str(root / "train.json"), "--speed", str(root / "speed.json"),
            "--allow-outside"]


def run_stage(root: Path, data: Path, split: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(stage_command(root, data, split), check=False, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def rank_lines(log: str) -> dict[tuple[int, int], tuple[int, str]]:
    """(epoch, rank) -> the rows that rank trained on in that epoch and its weights' hash."""
    found = re.findall(r"cube epoch (\d+): rank (\d) of 2 trained on (\d+) rows, has weights ([0-9a-f]{16})", log)
    return {(int(epoch), int(rank)): (int(rows), digest) for epoch, rank, rows, digest in found}


@pytest.fixture(scope="module")
def corpus_dirs(tmp_path_factory) -> tuple[Path, Path]:
    return corpus(tmp_path_factory.mktemp("ddp-data"), PAIRS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus_dirs):
    """The same training in 1 process and in 2 (the stage re-launching itself under torchrun,
    the 2-process one audited): ``{processes: (root, completed process)}``."""
    root = tmp_path_factory.mktemp("ddp")
    data, split = corpus_dirs
    out = {}
    for processes in (1, 2):
        run_root = root / f"p{processes}"
        audit = run_root / "audit"
        audit.mkdir(parents=True)
        (audit / "sitecustomize.py").write_text(AUDIT)
        params_file(run_root, processes)
        env = {"AUDIT_ROOT": str(run_root), "AUDIT_DIR": str(audit),
               "PYTHONPATH": os.pathsep.join([str(audit), os.environ.get("PYTHONPATH", "")])}
        out[processes] = run_root, run_stage(run_root, data, split, env if processes == 2 else None)
    return out


def test_two_ranks_end_every_epoch_with_identical_weights(runs):
    root, done = runs[2]
    found = rank_lines(done.stderr)
    epochs = range(1, EPOCHS + 1)
    assert sorted(found) == [(e, r) for e in epochs for r in (0, 1)], done.stderr[-3000:]
    for epoch in epochs:
        assert found[epoch, 0][1] == found[epoch, 1][1]
        assert found[epoch, 0][0] == found[epoch, 1][0] == TRAIN_ROWS // 2  # each rank half of every batch
    assert found[1, 0][1] != found[EPOCHS, 0][1]  # the weights did change: the hashes are not of a constant
    speed = json.loads((root / "speed.json").read_text())["train"]
    assert speed["processes"] == 2 and speed["samples_per_second"] > 0


def test_only_rank_0_writes(runs):
    root, _ = runs[2]
    audit = root / "audit"
    rank0 = (audit / "rank-0.txt").read_text()
    assert not (audit / "rank-1.txt").exists(), (audit / "rank-1.txt").read_text()
    for written in (".model.", "live/", ".train.json.", ".speed.json.", "checkpoints/"):  # atomic: temp names
        assert f"{root}/{written}" in rank0, f"rank 0 wrote no {written}"
    assert sorted(p.name for p in (root / "model").iterdir()) == ["model.json", "model.safetensors"]
    curve = (root / "live" / "plots" / "metrics" / "val_loss.tsv").read_text().splitlines()
    assert len(curve) == 1 + EPOCHS  # header + one row per epoch: one DVCLive writer
    assert not list((root / "checkpoints").glob("*/*"))  # the finished run cleared its checkpoints


def test_two_processes_give_a_result_close_to_one(runs):
    """Both runs take the same global batches of the same seeded permutations; DDP averages the
    shards' gradients, weighted to the global batch's mean. The cosine term is then the same
    gradient up to float rounding; InfoNCE differs (each rank's rows see only the 7 other rows
    of its shard as negatives, not 15). Measured here: val_cosine differs by 0.0001, val_loss
    (which holds the InfoNCE term) by 0.003. Tolerances 0.002 and 0.01: below what the last
    three of the 4 epochs gain (0.003 and 0.018), so a 2-process run that trained less, or on
    other rows, fails; equal figures would mean the ranks did not train on shards at all."""
    one = json.loads((runs[1][0] / "train.json").read_text())["train"]
    two = json.loads((runs[2][0] / "train.json").read_text())["train"]
    assert one["epochs_run"] == two["epochs_run"] == EPOCHS
    assert abs(one["val_cosine"] - two["val_cosine"]) < 0.002, (one, two)
    assert abs(one["val_loss"] - two["val_loss"]) < 0.01, (one, two)
    assert one["val_cosine"] != two["val_cosine"]  # really two different runs


@pytest.mark.parametrize("rows, world", [(16, 2), (17, 2), (9, 4), (4, 2)])
def test_the_ranks_shards_of_a_batch_are_disjoint_and_cover_it(rows, world):
    index = torch.randperm(100)[:rows]
    shards = [Group(rank, world).shard(index) for rank in range(world)]
    assert torch.equal(torch.cat(shards), index)  # in order, disjoint, nothing left out
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert torch.equal(SINGLE.shard(index), index)


@pytest.mark.parametrize("processes, message", [
    (0, "train.distributed.processes must be >= 1, got 0"),
    (1.5, "train.distributed.processes must be int, got 1.5"),
    ("two", "train.distributed.processes must be int, got 'two'"),
    (9, "train.batch_size (16) must be >= 2 * train.distributed.processes (9)"),
])
def test_bad_process_counts_are_refused_in_one_line(tmp_path, processes, message):
    path = params_file(tmp_path, processes)
    with pytest.raises(CubecoreError) as error:
        load_params(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_process_count_torchrun_does_not_match_is_refused(tmp_path):
    data, split = corpus(tmp_path / "data", 40)
    params_file(tmp_path, 2)
    done = subprocess.run(stage_command(tmp_path, data, split), check=False, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "3"}, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: train.distributed.processes is 2 but 3 processes were started (WORLD_SIZE=3)")


def test_a_failing_worker_ends_the_stage_with_its_error_once(tmp_path):
    data, split = corpus(tmp_path / "data", 40)
    (data / "texts.jsonl").unlink()
    params_file(tmp_path, 2)
    done = subprocess.run(stage_command(tmp_path, data, split), check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == f"error: {data / 'texts.jsonl'}: not found (run `dvc repro` first)", done.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1  # not once per rank
    assert "ChildFailedError" not in done.stderr  # nor torchrun's traceback


def test_a_killed_two_process_run_resumes_from_rank_0s_checkpoint(tmp_path, corpus_dirs, runs):
    """Killed (the launcher and both workers, SIGKILL) after an epoch, the run resumes from rank
    0's last checkpoint and ends as the same run never interrupted (the ``runs`` fixture's)."""
    data, split = corpus_dirs
    params_file(tmp_path, 2)
    process = subprocess.Popen(stage_command(tmp_path, data, split), cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, states = time.time() + 120, []
    while not states and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
        states = list((tmp_path / "checkpoints").glob("*/last_state.pt"))
    assert states, "no checkpoint was written"
    os.killpg(process.pid, signal.SIGKILL)  # the stage, torchrun and (dying with it) the workers
    process.wait()
    time.sleep(0.5)  # let the kernel deliver the workers' death signal before looking
    assert not (tmp_path / "train.json").exists()
    assert 1 <= torch.load(states[0], weights_only=True)["trainer"]["epoch"] < EPOCHS

    done = run_stage(tmp_path, data, split)
    assert "resuming from" in done.stderr, done.stderr[-3000:]
    assert json.loads((tmp_path / "speed.json").read_text())["train"]["resumed"]
    assert not list((tmp_path / "checkpoints").glob("*/*"))
    straight = json.loads((runs[2][0] / "train.json").read_text())
    assert json.loads((tmp_path / "train.json").read_text()) == straight


@pytest.mark.slow
def test_dvc_runs_the_train_stage_in_two_processes(make_project):
    """Through real DVC: the param is a dependency of `train`, the stage runs under
    torchrun, and DVC records rank 0's outputs (nothing left to re-run)."""
    root, run = make_project()
    run("dvc", "repro", "train")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["distributed"]["processes"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run("dvc", "status", "train", "evaluate")
    assert "train.distributed" in status.split("evaluate:")[0] and "train:" in status
    output = run("dvc", "repro", "train")
    assert "Running stage 'train'" in output
    assert json.loads((root / "metrics/speed/train.json").read_text())["train"]["processes"] == 2
    assert json.loads((root / "metrics/train.json").read_text())["train"]["epochs_run"] >= 1
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert lock["train"]["params"]["params.yaml"]["train.distributed"] == {"processes": 2}
    assert "Stage 'train' didn't change, skipping" in run("dvc", "repro", "train")
