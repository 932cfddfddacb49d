"""Training modes side by side on the pipeline's own data (not a test): each configuration is
trained and evaluated like `dvc repro` would, on `data/extract` + `data/split`.

    .venv/bin/python bench/modes.py --set cube.channels=8 --set cube.steps=2 > modes.md

Prints a Markdown table: per configuration the cube's validation cosine / MRR / Recall@1,
its margin to the best baseline, the views (dual's reconstruction, the backward cube), the
epochs and wall time to reach the ridge baseline's validation cosine and the plain dialogue
run's best validation cosine (the seed's "3x faster from the autoencoder" claim), and the
whole training time. Run `dialogue` first (it sets the second goal).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from cubecore.core.config import load_params
from cubecore.evaluation.run import evaluate
from cubecore.training.run import pretrain, train

CONFIGS = {
    "dialogue": {},
    "dialogue + distill (seed: 0.7 KD / 0.3 hard)": {"train.loss.distill": 0.7, "train.loss.cosine": 0.3,
                                                     "train.loss.infonce": 0.03},
    "dialogue + curriculum linear": {"train.curriculum.schedule": "linear"},
    "dialogue from pretrain": {"train.init": "pretrain"},
    "dual fixed": {"train.mode": "dual"},
    "dual alternate": {"train.mode": "dual", "train.dual.balancing": "alternate"},
    "dual adaptive": {"train.mode": "dual", "train.dual.balancing": "adaptive"},
    "bidirectional": {"train.mode": "bidirectional"},
}


class Recorder:
    """Stands in for DVCLive: keeps each epoch's row and the time it ended."""

    def __init__(self):
        self.rows, self.row, self.started = [], {}, time.perf_counter()

    def log_metric(self, name, value):
        self.row[name] = value

    def next_step(self):
        self.rows.append({**self.row, "seconds": time.perf_counter() - self.started})
        self.row = {}


def with_overrides(params_file: Path, overrides: dict, out: Path) -> Path:
    raw = yaml.safe_load(params_file.read_text())
    for key, value in overrides.items():
        *parents, last = key.split(".")
        section = raw
        for name in parents:
            section = section.setdefault(name, {})
        section[last] = value
    out.write_text(yaml.safe_dump(raw))
    return out


def reach(rows: list[dict], cosine: float) -> str:
    """The first epoch (and its wall time) whose validation cosine reaches ``cosine``."""
    epoch = next((i for i, row in enumerate(rows) if row["val_cosine"] >= cosine), None)
    return f"{epoch + 1} / {rows[epoch]['seconds']:.0f}" if epoch is not None else f"not reached ({cosine:.4f})"


def parse_value(text: str):
    return yaml.safe_load(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", action="append", default=[], help="key=value applied to every configuration")
    parser.add_argument("--only", action="append", help="configuration names to run (default: all)")
    parser.add_argument("--data", default="data/extract")
    parser.add_argument("--split", default="data/split")
    args = parser.parse_args()
    common = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    work = Path(tempfile.mkdtemp(prefix="bench-modes-"))
    common.setdefault("train.checkpoint_dir", str(work / "checkpoints"))
    started = time.perf_counter()
    configs = {name: overrides for name, overrides in CONFIGS.items() if not args.only or name in args.only}
    if any(overrides.get("train.init") == "pretrain" for overrides in configs.values()):
        base = load_params(with_overrides(Path(args.params), common, work / "base.yaml"))
        pretrain(base, args.data, args.split, work / "pretrain", progress=False)
        print(f"pretrain stage: {time.perf_counter() - started:.0f} s")
    print(f"common overrides: {common or 'none'}\n")
    print("| configuration | val cosine | val MRR | val R@1 | MRR − best baseline | view | epochs (best) "
          "| epochs / s to ridge cosine | epochs / s to dialogue's best cosine | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    goal = None  # the plain dialogue run's best validation cosine
    for name, overrides in configs.items():
        params = load_params(with_overrides(Path(args.params), {**common, **overrides}, work / "p.yaml"))
        model_dir, recorder = work / name.replace(" ", "_").replace("/", "-"), Recorder()
        began = time.perf_counter()
        summary = train(params, args.data, args.split, model_dir, live=recorder, progress=False,
                        pretrained_dir=work / "pretrain")["train"]
        seconds = time.perf_counter() - began
        metrics = evaluate(params, args.data, args.split, model_dir).metrics
        cube, ridge = metrics["cube"]["val"], metrics["ridge"]["val"]["cosine"]
        goal = goal if goal is not None else max(row["val_cosine"] for row in recorder.rows)
        to_ridge, to_goal = reach(recorder.rows, ridge), reach(recorder.rows, goal)
        views = "; ".join(f"{key}: cube {v['cube']['val']['cosine']:.3f}, input {v['identity']['val']['cosine']:.3f}, "
                          f"ridge {v['ridge']['val']['cosine']:.3f}" for key, v in metrics.get("views", {}).items())
        print(f"| {name} | {cube['cosine']:.4f} | {cube['mrr']:.4f} | {cube['recall@1']:.4f} "
              f"| {metrics['cube_vs_best_baseline']['val']['mrr']:+.4f} | {views or '—'} "
              f"| {summary['epochs_run']} ({summary['best_epoch']}) | {to_ridge} | {to_goal} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
