"""Training in 2 processes (torchrun, DDP over gloo, CPU): the ranks stay in step, only rank 0
writes, the result is close to one process's and the same on one machine or two, and a killed
run resumes from rank 0's checkpoint."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cubecore.core import artifacts
from cubecore.core.config import load_params
from cubecore.core.errors import CubecoreError
from cubecore.training.distributed import SINGLE, Group

REPO = Path(__file__).resolve().parents[1]
DIM = 64

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


def params_file(root: Path, processes: int, **train) -> Path:
    params = {"cube": {"lattice": [4, 4, 4], "channels": 4, "hidden": 8, "position_channels": 2, "steps": 1},
              "train": {"epochs": EPOCHS, "batch_size": 16, "lr": 0.01, "patience": 5, "warmup_fraction": 0.0,
                        "checkpoint_dir": str(root / "checkpoints"), "distributed": {"processes": processes},
                        **train}}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def stage_command(root: Path, data: Path, split: Path) -> list[str]:
    return [sys.executable, "-m", "stages.train", "--params", str(root / "params.yaml"), "--data", str(data),
            "--split", str(split), "--pretrained", str(root / "none"), "--model", str(root / "model"),
            "--live", str(root / "live"), "--curves", str(root / "curves.png"), "--metrics", str(root / "train.json"),
            "--speed", str(root / "speed.json"), "--allow-outside"]


def run_stage(root: Path, data: Path, split: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(stage_command(root, data, split), check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def two_machines(root: Path, data: Path, split: Path) -> list[str]:
    """README's recipe across machines, both "machines" here: each runs the stage in its own
    directory with CUBECORE_TORCHRUN naming its node rank and node 0's address; their logs."""
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launchers = []
    for node in (0, 1):
        (root / f"node{node}").mkdir(parents=True)
        params_file(root / f"node{node}", 2)
        flags = f"--nnodes 2 --nproc-per-node 1 --node-rank {node} --master-addr 127.0.0.1 --master-port {port}"
        launchers.append(subprocess.Popen(stage_command(root / f"node{node}", data, split), cwd=REPO, text=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          env={**os.environ, "CUBECORE_TORCHRUN": flags}))
    logs = [launcher.communicate(timeout=300)[1] for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], logs
    return logs


def rank_lines(log: str) -> dict[tuple[int, int], tuple[int, str]]:
    """(epoch, rank) -> the rows that rank trained on in that epoch and its weights' hash."""
    found = re.findall(r"cube epoch (\d+): rank (\d) of 2 trained on (\d+) rows, has weights ([0-9a-f]{16})", log)
    return {(int(epoch), int(rank)): (int(rows), digest) for epoch, rank, rows, digest in found}


@pytest.fixture(scope="module")
def corpus_dirs(tmp_path_factory) -> tuple[Path, Path]:
    return corpus(tmp_path_factory.mktemp("ddp-data"), PAIRS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus_dirs) -> dict:
    """The same training in 1 process (``one``) and in 2 processes on two "machines" (``node0``,
    ``node1``), and the 2 processes' log."""
    root = tmp_path_factory.mktemp("ddp")
    data, split = corpus_dirs
    (root / "one").mkdir()
    params_file(root / "one", 1)
    run_stage(root / "one", data, split)
    logs = two_machines(root, data, split)
    return {"one": root / "one", "node0": root / "node0", "node1": root / "node1", "log": "\n".join(logs)}


def test_two_ranks_end_every_epoch_with_identical_weights(runs):
    found = rank_lines(runs["log"])
    epochs = range(1, EPOCHS + 1)
    assert sorted(found) == [(e, r) for e in epochs for r in (0, 1)], runs["log"][-3000:]
    for epoch in epochs:
        assert found[epoch, 0][1] == found[epoch, 1][1]
        assert found[epoch, 0][0] == found[epoch, 1][0] == TRAIN_ROWS // 2  # each rank half of every batch
    assert found[1, 0][1] != found[EPOCHS, 0][1]  # the weights did change: the hashes are not of a constant
    speed = json.loads((runs["node0"] / "speed.json").read_text())["train"]
    assert speed["processes"] == 2 and speed["samples_per_second"] > 0


def test_only_rank_0_writes(runs):
    """Each "machine" was given its own output paths and checkpoint_dir: rank 1's stayed empty."""
    assert sorted(p.name for p in runs["node1"].iterdir()) == ["params.yaml"]
    root = runs["node0"]
    assert {p.name for p in root.iterdir()} == {"params.yaml", "model", "live", "curves.png", "train.json",
                                                "speed.json", "checkpoints"}
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
    three of the 4 epochs gain (0.003 and 0.018), so a run about two epochs behind fails. They
    do not catch small errors in the gradient average (AdamW hardly sees a gradient's scale:
    summing the ranks' gradients instead of averaging them stayed within 0.0002); the weights
    and shard tests above check the mechanics."""
    assert [json.loads((runs[r] / "train.json").read_text())["train"]["epochs_run"] for r in ("one", "node0")] \
        == [EPOCHS, EPOCHS]
    one, two = (json.loads((runs[r] / "live" / "metrics.json").read_text()) for r in ("one", "node0"))  # last epoch
    assert abs(one["val_cosine"] - two["val_cosine"]) < 0.002, (one, two)
    assert abs(one["val_loss"] - two["val_loss"]) < 0.01, (one, two)
    assert one["val_cosine"] != two["val_cosine"]  # really two different runs, not one result read twice


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


def test_a_learned_temperature_stays_in_step_through_steps_that_do_not_use_it(tmp_path):
    """dual mode, alternating: the autoencoder steps use no InfoNCE, so the learned temperature
    gets no gradient there (DDP must not wait for one); the queue and per-rank input noise are
    in play too. The hashes cover the model and the loss's temperature."""
    data, split = corpus(tmp_path / "data", 200)
    params_file(tmp_path, 2, epochs=2, mode="dual", dual={"balancing": "alternate", "switch_every": 3},
                loss={"learn_temperature": True, "queue_size": 32})
    found = rank_lines(run_stage(tmp_path, data, split).stderr)
    assert sorted(found) == [(e, r) for e in (1, 2) for r in (0, 1)]
    assert found[1, 0] == found[1, 1] and found[2, 0] == found[2, 1]
    assert found[1, 0] != found[2, 0]


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
    0's last checkpoint and ends as the same run never interrupted: the ``runs`` fixture's, which
    ran on two "machines" (this one on one, the stage re-launching itself under torchrun)."""
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
    straight = json.loads((runs["node0"] / "train.json").read_text())
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
