"""What was trained, on what, and how well, in a few lines (`python -m cubecore info`).

The summary puts the cube beside the best baseline of each headline metric, per evaluated
split; ``--json`` prints ``model.json`` and every metrics file as one JSON object instead.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cubecore.cli.report import anatomy_rows
from cubecore.core.errors import CubecoreError

NOT_MODELS = ("cube", "cube_vs_best_baseline", "anatomy")


def add_parser(commands) -> None:
    parser = commands.add_parser("info", help="summarise the trained model, its data and its metrics",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true",
                        help="print model.json and every metrics file as one JSON object (for scripts)")
    parser.add_argument("--model", default="models/cube", metavar="DIR",
                        help="folder of the trained model (default: %(default)s)")
    parser.add_argument("--metrics", default="metrics", metavar="DIR",
                        help="folder of the pipeline's metrics files (default: %(default)s)")
    parser.set_defaults(run=run)


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CubecoreError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def load(model_dir: str | Path, metrics_dir: str | Path) -> dict[str, dict]:
    """``{path: content}`` for model.json and each ``<metrics>/*.json``."""
    model_json = Path(model_dir) / "model.json"
    if not model_json.exists():
        raise CubecoreError(f"{model_json}: not found (run `make repro` or `dvc repro` first)")
    speed = sorted(Path(metrics_dir).glob("speed/*.json"))  # run speed, kept apart from the results
    return {str(p): read(p) for p in [model_json, *sorted(Path(metrics_dir).glob("*.json")), *speed]}


def section(files: dict[str, dict], metrics_dir: str | Path, name: str) -> dict:
    """The ``name`` section of ``<metrics_dir>/<name>.json``, by its exact path (so ``train`` is
    never ``pretrain.json``); empty when that stage has not run."""
    content = files.get(str(Path(metrics_dir) / f"{name}.json"), {})
    return content.get(name.split("/")[-1], content)


def describe(files: dict[str, dict], metrics_dir: str | Path) -> list[str]:
    """Model, teacher, data and training, one line each."""
    model = next(iter(files.values()))
    cube, teacher = model["cube"], model["teacher"]
    train, extract, filtered, split = (section(files, metrics_dir, n) for n in ("train", "extract", "filter", "split"))
    size = "×".join(map(str, cube["lattice"]))
    parameters = f", {train['parameters']:,} parameters" if "parameters" in train else ""
    lines = [f"model     3-D cubic core ({model['mode']}): {size} lattice, {cube['channels']} channels, "
             f"{cube['steps']} step{'s' if cube['steps'] != 1 else ''}, {cube['update']} update{parameters}",
             f"teacher   {teacher['model']} ({teacher.get('architecture', '?')}, {model['dim']}-d, "
             f"{teacher['pooling']} pooling, max {teacher['max_length']} tokens, {teacher.get('precision', '?')})"]
    if extract and filtered and split:
        sizes = " / ".join(f"{split[s]:,} {s}" for s in ("train", "val", "test") if split.get(s))
        lines.append(f"data      {extract['source']}: {extract['pairs']:,} pairs, {filtered['kept']:,} kept "
                     f"by the filter; {sizes}")
    if train:
        stop = "stopped early" if train["stopped_early"] else "ran every epoch"
        speed = section(files, metrics_dir, "speed/train")
        rate = f", {speed['samples_per_second']} samples/s" if speed.get("samples_per_second") else ""
        lines.append(f"training  {train['epochs_run']} epochs ({stop}), best epoch {train['best_epoch']}{rate}")
    return lines


def comparison(evaluation: dict) -> list[str]:
    """Per evaluated split: each headline metric of the cube beside the best baseline."""
    lines = []
    setup = evaluation.get("setup", {})
    chosen = setup.get("best_baseline", {})  # chosen on val, when evaluate records it
    for split, differences in evaluation.get("cube_vs_best_baseline", {}).items():
        baselines = [name for name, scores in evaluation.items() if name not in NOT_MODELS
                     and isinstance(scores, dict) and set(differences) <= set(scores.get(split, ()))]
        rows = setup.get(f"{split}_rows", "?")
        lines += ["", f"{f'{split} ({rows} rows)':<20}{'cube':>8}  {'best baseline':<22}{'cube - best':>11}"]
        wins = 0
        for metric, difference in differences.items():
            best = chosen.get(metric) or max(baselines, key=lambda b: evaluation[b][split][metric])
            wins += difference > 0
            lines.append(f"  {metric:<18}{evaluation['cube'][split][metric]:>8.4f}  "
                         f"{evaluation[best][split][metric]:<7.4f} {best:<14}{difference:>+11.4f}")
        lines.append(f"  the cube beats the best baseline on {wins} of {len(differences)} metrics "
                     f"(baselines: {', '.join(baselines)})")
        lines += [f"  {label.split(': ', 1)[1]}: {value}" for label, value in anatomy_rows(evaluation).items()
                  if label.startswith(f"{split}: ")]
    return lines


def run(args: argparse.Namespace) -> None:
    files = load(args.model, args.metrics)
    if args.json:
        print(json.dumps(files, indent=2))
        return
    evaluation = section(files, args.metrics, "eval")
    lines = describe(files, args.metrics) + (comparison(evaluation) if evaluation else
                               ["", "not evaluated yet: run `dvc repro` for the metrics"])
    print("\n".join(lines))
