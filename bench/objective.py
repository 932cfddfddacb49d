"""Experiment: does a queue of negatives (and a learned temperature) help the objective?

Trains the cube and the linear baseline (identity init) on an existing split with the
params file's settings, once per loss variant, and prints the best epoch's validation
cosine and MRR as a markdown table (with each run's seconds).

    .venv/bin/python bench/objective.py --params P --data DIR/extract --split DIR/split \\
        --epochs 3 --queues 0 4096 --infonce 0.1 0.3 --temperatures 0.05 0.2 --learn-temperature
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
import time

import torch

from cubecore.core.config import load_params
from cubecore.evaluation.baselines import LinearMap
from cubecore.model.cube import CubicCore
from cubecore.training.loop import Trainer
from cubecore.training.modes import get_mode
from cubecore.training.pairings import TaskData
from cubecore.training.run import load_split
from cubecore.training.runtime import seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--queues", type=int, nargs="+", default=[0, 4096])
    parser.add_argument("--infonce", type=float, nargs="+", default=None, help="InfoNCE weights to try")
    parser.add_argument("--temperatures", type=float, nargs="+", default=None, help="(start) temperatures to try")
    parser.add_argument("--learn-temperature", action="store_true", help="also try each queue with a learned T")
    parser.add_argument("--models", nargs="+", default=["cube", "linear"])
    parser.add_argument("--train-rows", type=int, default=None, help="use only the first N training rows")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    params = load_params(args.params)
    seed = params.base.seed
    _, splits = load_split(args.data, args.split, get_mode(params.train.mode).pairing, get_mode(params.train.mode).pairing.input_noise(params.train), seed,
                           ("train", "val"))
    if args.train_rows:
        rows = splits["train"]
        splits["train"] = TaskData(rows.inputs[:args.train_rows], rows.targets[:args.train_rows],
                                   rows.target_ids[:args.train_rows])
    if args.threads:
        torch.set_num_threads(args.threads)
    dim = splits["train"].inputs.shape[1]
    variants = [(w, t, q, learn) for w in (args.infonce or [params.train.loss.infonce])
                for t in (args.temperatures or [params.train.loss.temperature]) for q in args.queues
                for learn in ([False, True] if args.learn_temperature else [False])]
    print(f"train {len(splits['train'])} rows, val {len(splits['val'])} rows, epochs {args.epochs}, "
          f"batch {params.train.batch_size}, lr {params.train.lr}")
    print("| model | infonce | queue | temperature | val cosine | val MRR | best epoch | final T | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for infonce, temperature, queue, learn in variants:
        loss = dataclasses.replace(params.train.loss, infonce=infonce, temperature=temperature, queue_size=queue,
                                   learn_temperature=learn)
        for name in args.models:
            train_params = dataclasses.replace(params.train, epochs=args.epochs, patience=args.epochs, loss=loss,
                                               resume=False, checkpoint_dir=tempfile.mkdtemp())
            seed_everything(seed)
            model = CubicCore(params.cube, dim) if name == "cube" else LinearMap(dim)
            trainer = Trainer(model, train_params, seed, f"objective-{name}")
            started = time.perf_counter()
            summary = trainer.fit(splits["train"], splits["val"], progress=False)
            t = float(trainer.objective.temperature().detach())
            print(f"| {name} | {infonce} | {queue} | {temperature} {'learned' if learn else 'fixed'} | "
                  f"{summary['val_cosine']:.4f} | {summary['val_mrr']:.4f} | {summary['best_epoch']} | {t:.3f} | "
                  f"{time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
