"""Benchmark: time and peak memory of filter, split, train and evaluate as the corpus grows.

For each size, a synthetic corpus of random unit vectors (dim 384) is written in the
project's own formats (``cubecore.core.artifacts``) into a temp dir: conversations of 11 texts,
each text a random step from the one before (adjacent cosine about 0.78, so the filter keeps
them), 10 pairs per conversation, 1.1 texts per pair. Then each stage runs in a fresh
subprocess on the real library functions:

- ``filter``: ``filtering.filter_pairs`` (params.yaml's filter rules);
- ``split``: ``splitting.split_pairs`` (params.yaml's fractions, group by question);
- ``train``: ``training.load_split`` of train + val, the run key over the training rows and
  ``Trainer.fit`` for one epoch capped at ``--max-steps`` batches (params.yaml's cube, loss and
  batch size), including its validation (retrieval over all distinct val targets);
- ``evaluate``: its heavy parts: ``load_split`` of train/val/test, ``baselines.fit_ridge`` on
  all of train (alpha chosen on a held-out tenth), ``metrics.target_ranks`` of the ridge's test
  predictions among all distinct test targets, and ``AnswerBank.decode`` (nearest training
  target text) of the first ``--queries`` test predictions against the whole answer bank.

Per stage it prints wall time and peak RSS (``ru_maxrss`` of that child from ``os.wait4``,
in MB = 2^20 bytes; it counts file pages mapped and touched as well as allocated memory), then
the growth factors from each size to the next, then each memory target (``TARGETS``: every
stage <= 8 GB at any size, train <= 4 GB up to 1M pairs) as ``pass``, ``FAIL`` or ``n/a``
(no size it applies to), and exits 1
when a stage misses one (or fails), so a run on any machine says whether the targets hold
there. Nothing is written into the repository.

    .venv/bin/python bench/scale.py [--sizes 100000,300000,1000000] [--max-steps 50]
                                    [--queries 2048] [--out results.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the cubecore next to this script
DIM = 384
TURNS = 11  # texts per conversation: 10 pairs
STAGES = ("filter", "split", "train", "evaluate")


@dataclass(frozen=True)
class Target:
    """Peak RSS of ``stage`` (None: every stage) at most ``limit_mb``, on corpora of up to
    ``max_pairs`` pairs (None: any size)."""
    stage: str | None
    limit_mb: int
    max_pairs: int | None = None

    def applies(self, row: dict) -> bool:
        return self.stage in (None, row["stage"]) and (self.max_pairs is None or row["size"] <= self.max_pairs)

    def __str__(self) -> str:
        size = "any size" if self.max_pairs is None else f"up to {self.max_pairs:,} pairs"
        return f"{self.stage or 'every stage'} <= {self.limit_mb / 1024:g} GB peak RSS at {size}"


TARGETS = (Target(None, 8 * 1024), Target("train", 4 * 1024, 1_000_000))


def verdicts(rows: list[dict]) -> list[tuple[str, str]]:
    """``(status, line)`` per target: ``pass`` or ``FAIL`` by the largest peak among the rows it
    applies to, ``n/a`` when none does; then a ``FAIL`` per stage that did not finish."""
    out = []
    for target in TARGETS:
        judged = [r for r in rows if target.applies(r) and "failed" not in r["info"]]
        worst = max(judged, key=lambda r: r["peak_rss_mb"], default=None)
        if worst is None:
            out.append(("n/a", f"{target}: no finished run it applies to"))
            continue
        status = "pass" if worst["peak_rss_mb"] <= target.limit_mb else "FAIL"
        out.append((status, f"{target}: largest {worst['peak_rss_mb']:,} MB ({worst['stage']} at {worst['size']:,} pairs)"))
    out += [("FAIL", f"{r['stage']} at {r['size']:,} pairs failed: {r['info']['failed']}")
            for r in rows if "failed" in r["info"]]
    return out


def generate(work: Path, pairs: int, seed: int = 0) -> None:
    """Write ``data/`` (texts, embeddings, pairs, teacher) for ``pairs`` pairs."""
    from cubecore.core import artifacts

    conversations = -(-pairs // (TURNS - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((conversations, TURNS, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    for j in range(1, TURNS):
        step = x[:, j - 1] + 0.8 * x[:, j]
        x[:, j] = step / np.linalg.norm(step, axis=-1, keepdims=True)
    out = work / "data"
    out.mkdir(parents=True)
    artifacts.write_embeddings(out / "embeddings.npy", x.reshape(-1, DIM))
    del x
    artifacts.write_texts(out / "texts.jsonl", [f"synthetic text number {i}" for i in range(conversations * TURNS)])
    conv, turn = np.divmod(np.arange(conversations * (TURNS - 1)), TURNS - 1)
    question = conv * TURNS + turn
    take = slice(0, pairs)
    artifacts.write_pairs(out / "pairs.tsv", artifacts.Pairs(question[take], question[take] + 1,
                                                             [f"c{c}" for c in conv[take]], turn[take]))
    artifacts.write_json(out / "teacher.json", {"name": "synthetic random unit vectors", "hidden_size": DIM})


def params(work: Path):
    from cubecore.core.config import load_params

    p = load_params(ROOT / "params.yaml")
    p.train.epochs, p.train.resume, p.train.checkpoint_dir = 1, False, str(work / "checkpoints")
    return p


def run_stage(stage: str, work: Path, max_steps: int, queries: int) -> dict:
    """One stage in this process (the child); returns what it counted."""
    import torch

    from cubecore.training.runtime import use_threads

    p = params(work)
    use_threads(p.train.threads)  # as the train and evaluate stages do
    if stage == "generate":
        raise AssertionError("generate runs via --generate")
    if stage == "filter":
        from cubecore.data.filtering import filter_pairs

        return filter_pairs(work / "data", work / "filtered", p.filter)["filter"]
    if stage == "split":
        from cubecore.data.splitting import split_pairs

        metrics = split_pairs(work / "filtered", work / "data" / "texts.jsonl", work / "split", p.split,
                              p.base.seed)["split"]
        return {k: metrics[k] for k in ("train", "val", "test")}
    from cubecore.training.modes import get_mode
    from cubecore.training.run import load_split

    pairing = get_mode(p.train.mode).pairing

    if stage == "train":
        from cubecore.core.config import as_dict
        from cubecore.data.rows import MappedRows
        from cubecore.model.cube import CubicCore
        from cubecore.training.identity import run_key
        from cubecore.training.loop import Trainer
        from cubecore.training.pairings import TaskData
        from cubecore.training.runtime import seed_everything

        data, splits = load_split(work / "data", work / "split", pairing, pairing.input_noise(p.train),
                                  p.base.seed, ("train", "val"))
        train, val = splits["train"], splits["val"]
        rows = max_steps * p.train.batch_size  # the first rows, still read from the map per batch
        capped = TaskData(*(MappedRows(part.matrix, part.ids[:rows]) for part in (train.inputs, train.targets)),
                          train.target_ids[:rows])
        seed_everything(p.base.seed)
        model = CubicCore(p.cube, DIM)
        key = run_key("cube", model, p.train, p.base.seed, capped, val, as_dict(p.cube))
        summary = Trainer(model, p.train, p.base.seed, key, name="cube").fit(capped, val, progress=False)
        return {"train_rows": len(train), "trained_rows": len(capped), "val_rows": len(val),
                "val_cosine": round(summary["val_cosine"], 4), "threads": torch.get_num_threads()}
    if stage == "evaluate":
        from cubecore.core.stage import steady_heap
        from cubecore.evaluation.baselines import fit_ridge
        from cubecore.evaluation.run import AnswerBank
        from cubecore.evaluation.scoring import target_ranks
        from cubecore.model.inference import predict

        steady_heap()  # as the evaluate stage does
        data, splits = load_split(work / "data", work / "split", pairing, pairing.input_noise(p.train),
                                  p.base.seed, ("train", "val", "test"))
        train, test = splits["train"], splits["test"]
        ridge, alpha = fit_ridge(train, p.evaluate.ridge_alphas, p.base.seed)
        pred = predict(ridge, test.inputs)
        ranks, candidates = target_ranks(pred, test.targets, test.target_ids)
        bank = AnswerBank(train.target_ids, data.embeddings, data.texts)
        decoded = bank.decode(pred[:queries])
        return {"ridge_alpha": alpha, "test_rows": len(test), "candidates": candidates,
                "test_mrr": round(float((1 / ranks.float()).mean()), 4), "bank": len(bank.texts),
                "decoded": len(decoded), "threads": torch.get_num_threads()}
    raise ValueError(stage)


def child(args: list[str]) -> tuple[float, float, dict]:
    """Run ``scale.py`` with ``args`` in a fresh process: wall seconds, peak RSS (MB), its result."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode:
        return seconds, usage.ru_maxrss / 1024, {"failed": f"exit {proc.returncode}"}
    return seconds, usage.ru_maxrss / 1024, json.loads(out.decode().strip().splitlines()[-1])


def machine() -> str:
    """The CPU model, core count, glibc version and torch threads (``train.threads``) of this run."""
    import platform

    info = Path("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in (info.read_text() if info.exists() else "").splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    libc = " ".join(platform.libc_ver()) or "no glibc"
    threads = params(Path(tempfile.gettempdir())).train.threads or "torch's default"
    return f"{cpu}, {os.cpu_count()} cores, {libc}, train.threads {threads}"


def growth(rows: list[dict], sizes: list[int]) -> list[str]:
    lines = []
    for a, b in itertools.pairwise(sizes):
        for stage in STAGES:
            ra = next(r for r in rows if r["size"] == a and r["stage"] == stage)
            rb = next(r for r in rows if r["size"] == b and r["stage"] == stage)
            lines.append(f"{a:>9,} -> {b:<9,} x{b / a:.2f} pairs  {stage:<9} time x{rb['seconds'] / ra['seconds']:.2f}"
                         f"  peak RSS x{rb['peak_rss_mb'] / ra['peak_rss_mb']:.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="pairs per corpus, comma-separated")
    parser.add_argument("--max-steps", type=int, default=50, help="training batches (one capped epoch)")
    parser.add_argument("--queries", type=int, default=2048, help="test predictions decoded via the answer bank")
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(Path(args.work), args.generate)
        print(json.dumps({"pairs": args.generate}))
        return
    if args.stage:
        print(json.dumps(run_stage(args.stage, Path(args.work), args.max_steps, args.queries)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; {machine()}; peak RSS in MB (2^20 bytes)")
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="cubecore-scale-") as tmp:
            seconds, rss, _ = child(["--generate", str(size), "--work", tmp])
            print(f"{size:>9,} pairs  generate  {seconds:7.1f} s  {rss:7.0f} MB  (bench setup)", flush=True)
            for stage in STAGES:
                seconds, rss, info = child(["--stage", stage, "--work", tmp, "--max-steps", str(args.max_steps),
                                            "--queries", str(args.queries)])
                rows.append({"size": size, "stage": stage, "seconds": round(seconds, 1),
                             "peak_rss_mb": round(rss), "info": info})
                print(f"{size:>9,} pairs  {stage:<9} {seconds:7.1f} s  {rss:7.0f} MB  {info}", flush=True)
                if "failed" in info:
                    break
    if len(sizes) > 1 and all("failed" not in r["info"] for r in rows):
        print("\n".join(growth(rows, sizes)))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    judged = verdicts(rows)
    for status, line in judged:
        print(f"{status:<4}  {line}")
    sys.exit(1 if any(status == "FAIL" for status, _ in judged) else 0)


if __name__ == "__main__":
    main()
