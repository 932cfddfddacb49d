"""Benchmark: the `train` stage in 1 process and in N (torchrun, DDP), on the project's data.

Runs the real stage (``python -m stages.train``, which re-launches itself under torchrun for
N > 1) on ``data/extract``, ``data/split`` and ``models/pretrain`` with params.yaml's settings
and only ``train.distributed.processes`` changed, in interleaved rounds (1, N, 1, N, ...: the
machine is shared). Prints per run the training samples/s (all ranks' rows, batch loops only),
the wall time of the whole stage, and the cube's figures on val (chosen epoch) and test, then
N processes minus 1 process. Outputs go to ``--out`` (default a temp directory).

    .venv/bin/python bench/distributed.py [--processes 2] [--rounds 1] [--set train.batch_size=256] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from cubecore.core.config import load_params
from cubecore.evaluation.scoring import prediction_scores
from cubecore.model.inference import predict
from cubecore.training.modes import get_mode
from cubecore.training.run import load_model, load_split

FIGURES = ("cosine", "mrr", "recall@1")


def run(root: Path, processes: int, name: str, changes: list[str]) -> dict:
    """One stage run with ``processes`` (and ``changes``, ``key=value``); its speed, wall time and figures."""
    out = root / name
    out.mkdir(parents=True)
    raw = yaml.safe_load(Path("params.yaml").read_text())
    for change in [*changes, f"train.distributed.processes={processes}"]:
        key, _, value = change.partition("=")
        *parents, leaf = key.split(".")
        section = raw
        for parent in parents:
            section = section.setdefault(parent, {})
        section[leaf] = yaml.safe_load(value)
    (out / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    command = [sys.executable, "-m", "stages.train", "--params", str(out / "params.yaml"), "--data", "data/extract",
               "--split", "data/split", "--pretrained", "models/pretrain", "--model", str(out / "model"),
               "--live", str(out / "live"), "--curves", str(out / "curves.png"), "--metrics", str(out / "train.json"),
               "--speed", str(out / "speed.json"), "--allow-outside"]
    started = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=log)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "train.json").read_text())["train"]
    speed = json.loads((out / "speed.json").read_text())["train"]
    params = load_params(out / "params.yaml")
    mode = get_mode(params.train.mode)
    _, splits = load_split("data/extract", "data/split", mode.pairing, mode.pairing.input_noise(params.train),
                           params.base.seed, ("train", "test"))
    model, _ = load_model(out / "model")
    test = prediction_scores(predict(model, splits["test"].inputs), splits["test"].targets, splits["test"].target_ids)
    return {"processes": processes, "samples_per_second": speed["samples_per_second"], "wall_seconds": round(wall, 1),
            "epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
            **{f"val_{k}": metrics[f"val_{k}"] for k in FIGURES}, **{f"test_{k}": float(test[k]) for k in FIGURES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a params.yaml change")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    rows = [run(root, processes, f"round{r}-p{processes}", args.set) for r in range(args.rounds)
            for processes in (1, args.processes)]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k]) for k in keys) + " |")
    for one, many in zip(rows[::2], rows[1::2]):
        diff = {k: round(many[k] - one[k], 4) for k in keys if k.startswith(("val_", "test_"))}
        print(f"{args.processes} processes - 1: speed x{many['samples_per_second'] / one['samples_per_second']:.2f}, "
              f"wall x{many['wall_seconds'] / one['wall_seconds']:.2f}, {diff}")
    print(f"outputs in {root}")


if __name__ == "__main__":
    main()
