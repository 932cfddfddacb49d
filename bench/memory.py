"""Benchmark: the two memory mechanisms of issue 9, each against what it replaced, on a project's
own data (``data/extract``, ``data/split`` and ``models/cube`` of a ``dvc repro``).

- **batch reads**: a training epoch's batches of question and answer rows read the way the
  trainer does (``rows.MappedRows``: one ``pread`` per row, nothing mapped), against fancy
  indexing of the memory map with its pages released after every batch (``rows.release``):
  microseconds per batch and the growth of this process's resident file pages.
- **evaluate's heap**: ``evaluation.evaluate`` in two fresh processes, with and without
  ``stage.steady_heap``: wall time and peak RSS of each (the trained baselines come from the
  model cache when it holds them, so run the stage once first for a fair second figure);
  and, for the reason the steady heap is kept out of training, the cube's training steps
  (``bench/train.py``'s step: params.yaml's cube and batch, fp32) in two fresh processes with
  and without it: samples/s.
- **the ceiling's heap** (``--ceiling-pairs N``, off by default: minutes per process): the
  ``ceiling`` stage fine-tuning the teacher on N train pairs in three fresh processes, with
  glibc's default heap, with ``stage.steady_heap`` and with ``malloc_trim(0)`` before every
  step: fine-tune seconds, peak RSS and the fine-tuned MRR (the same in all three).

    .venv/bin/python bench/memory.py [--root .] [--batches 2000] [--ceiling-pairs 960]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the cubecore next to this script


def resident_file_kb() -> int:
    """Resident file-backed pages of this process (Linux /proc), in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    return 0


def batch_reads(root: Path, batches: int, batch_size: int) -> dict:
    """Microseconds per batch of question + answer rows, and resident file pages grown, per reader."""
    from cubecore.core import artifacts
    from cubecore.data import rows

    pairs = artifacts.read_pairs(root / "data/split/train.tsv")
    matrix = artifacts.read_embeddings(root / "data/extract/embeddings.npy")
    mapped = [rows.MappedRows(matrix, ids) for ids in (pairs.question_id, pairs.answer_id)]

    def mapped_batch(index: np.ndarray) -> None:
        for part in mapped:
            part[index]

    def released_batch(index: np.ndarray) -> None:
        for ids in (pairs.question_id, pairs.answer_id):
            np.asarray(matrix[ids[index]], dtype=np.float32)
        rows.release(matrix)

    order = np.random.default_rng(0).integers(0, len(pairs.question_id), (batches, batch_size))
    out = {}
    for name, read in (("pread per row (MappedRows)", mapped_batch), ("mapped, released per batch", released_batch)):
        before, started = resident_file_kb(), time.perf_counter()
        for index in order:
            read(index)
        out[name] = {"us_per_batch": round((time.perf_counter() - started) / batches * 1e6, 1),
                     "resident_file_growth_kb": resident_file_kb() - before}
    return out


def evaluate_child(root: Path, steady: bool) -> dict:
    """Run in a fresh process: ``evaluate`` on the project, with or without the steady heap."""
    from cubecore.core.config import load_params
    from cubecore.core.stage import steady_heap
    from cubecore.evaluation.run import evaluate

    if steady:
        steady_heap()
    started = time.perf_counter()
    evaluate(load_params(root / "params.yaml"), root / "data/extract", root / "data/split", root / "models/cube")
    return {"seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def train_child(root: Path, steady: bool, steps: int = 100) -> dict:
    """Run in a fresh process: cube training samples/s, with or without the steady heap."""
    sys.path.insert(0, str(ROOT / "bench"))
    from train import rate, training_step

    from cubecore.core.config import load_params
    from cubecore.core.stage import steady_heap
    from cubecore.model.cube import CubicCore

    if steady:
        steady_heap()
    params = load_params(root / "params.yaml")
    torch.set_num_threads(params.train.threads or torch.get_num_threads())
    torch.manual_seed(params.base.seed)
    batch = params.train.batch_size
    step = training_step(CubicCore(params.cube, 384), batch, 384, params.train.loss)
    return {"samples_per_second": round(max(rate(step, steps) for _ in range(3)) * batch, 1)}


def ceiling_child(root: Path, heap: str, pairs: int) -> dict:
    """Run in a fresh process: the ``ceiling`` stage on ``pairs`` train pairs with glibc's
    default heap, the steady heap, or ``malloc_trim(0)`` before every fine-tuning step."""
    import ctypes
    import dataclasses

    from cubecore.core.config import load_params
    from cubecore.core.machine import peak_memory_mb
    from cubecore.core.stage import steady_heap
    from cubecore.evaluation import ceiling

    if heap == "steady":
        steady_heap()
    elif heap == "trim":
        trim, loss = ctypes.CDLL("libc.so.6").malloc_trim, ceiling.in_batch_loss
        ceiling.in_batch_loss = lambda *args, **kwargs: (trim(0), loss(*args, **kwargs))[1]
    params = load_params(root / "params.yaml")
    params = dataclasses.replace(params, ceiling=dataclasses.replace(params.ceiling, enabled=True, max_train_pairs=pairs))
    metrics, speed = ceiling.ceiling(params, root / "data/extract", root / "data/split", progress=False)
    report = metrics["ceiling"]["split"]
    return {"fine_tune_seconds": speed["ceiling"]["fine_tune_seconds"], "peak_rss_mb": round(peak_memory_mb()),
            "mrr": metrics["ceiling"][report]["mrr"]}


def child(root: Path, mode: str, *extra: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--root", str(root), "--child", mode, *extra], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".", help="project directory after `dvc repro`")
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--ceiling-pairs", type=int, default=0, help="also the ceiling's heap, on N train pairs")
    parser.add_argument("--child", choices=["steady", "default", "train-steady", "train-default",
                                            "ceiling-default", "ceiling-steady", "ceiling-trim"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = Path(args.root).resolve()
    if args.child and args.child.startswith("ceiling-"):
        print(json.dumps(ceiling_child(root, args.child.removeprefix("ceiling-"), args.ceiling_pairs)))
        return
    if args.child:
        run = train_child if args.child.startswith("train-") else evaluate_child
        print(json.dumps(run(root, args.child.endswith("steady"))))
        return
    from cubecore.core.config import load_params

    params = load_params(root / "params.yaml")
    torch.set_num_threads(params.train.threads or torch.get_num_threads())
    print(f"load average {os.getloadavg()[0]:.2f}; {root}")
    for name, figures in batch_reads(root, args.batches, params.train.batch_size).items():
        print(f"batch reads  {name:<28s} {figures['us_per_batch']:8.1f} us/batch  "
              f"resident file pages +{figures['resident_file_growth_kb']:,} kB")
    for mode in ("default", "steady"):
        heap = "steady_heap" if mode == "steady" else "glibc default"
        figures = child(root, mode)
        print(f"evaluate     {heap:<28s} {figures['seconds']:8.1f} s         peak RSS {figures['peak_rss_mb']:,} MB")
    for mode in ("default", "steady"):
        heap = "steady_heap" if mode == "steady" else "glibc default"
        print(f"cube training {heap:<27s} {child(root, f'train-{mode}')['samples_per_second']:8.1f} samples/s")
    if args.ceiling_pairs:
        for heap, name in (("default", "glibc default"), ("steady", "steady_heap"), ("trim", "malloc_trim every step")):
            figures = child(root, f"ceiling-{heap}", "--ceiling-pairs", str(args.ceiling_pairs))
            print(f"ceiling      {name:<28s} {figures['fine_tune_seconds']:8.1f} s fine-tune  "
                  f"peak RSS {figures['peak_rss_mb']:,} MB  MRR {figures['mrr']}")


if __name__ == "__main__":
    main()
