"""Does a cube design make the lattice matter? Train and evaluate designs beside the default
cube and each one's lattice-free twin (``cube.steps: 0``), and print what the anatomy says.

    python bench/designs.py --design cube.update=bilinear --design cube.placement=projected \\
        --set train.epochs=3 --out /tmp/designs/screen.json

Every run is ``cubecore.training.run.train`` then ``cubecore.evaluation.run.evaluate`` on the pipeline's
data (``--data``, ``--split``: read only), with ``--params`` (default: /work/main/params.yaml),
then the ``--set`` overrides shared by every run, then the design's own (a design is one or
more comma-separated ``key=value``; values are YAML). Runs: the default, each design, and the
twin of each with ``cube.steps=0`` (``--no-twins`` skips them). At 0 steps no rule runs, so a
twin that differs from another only in ``cube.update`` is the same function and the same
training: it is trained once. Models and checkpoints go under ``--work`` (never into the
project); ``train.checkpoint_dir`` is overridden to ``<work>/checkpoints``. Each run keeps its
model and its row in ``<work>/runs/<run>-<digest>/`` (the digest covers its effective params and
``--data`` / ``--split``), so a study run again with the same ``--work`` resumes: a finished run
is not trained or evaluated again, only its test predictions are recomputed for the pairings.
Runs may thus be spread over several processes sharing ``--work``, and one last command with
every design assembles them into one table.

One row per run, on the report split (test): parameters; the trivial (``alpha*x + c``) and
general (``W x + c``) affine fits' R² to the cube's outputs (fitted on train rows); the cube's
cosine / MRR; the lattice off (the trained cube run with 0 steps) and the twin (trained with
0 steps), each as cube minus it with a paired-bootstrap 95 % interval; the frontier margin with
its interval, dominated or not; cube minus the best baseline per metric. A design meets the
goal when its trivial R² <= ``evaluate.affine_r2_limit``, the lattice off and the twin are both
worse beyond noise (some metric's interval above 0, neither below), and it is not dominated.

The committed study: ``docs/results/designs-default.json`` (written by ``--out``) and
``docs/designs-default.md``, generated from it by ``--from docs/results/designs-default.json
--markdown docs/designs-default.md`` (tests/test_designs_doc.py regenerates and compares it).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cubecore.core.artifacts import write_json  # noqa: E402
from cubecore.core.config import load_params  # noqa: E402
from cubecore.core.lineup import BASELINES  # noqa: E402
from cubecore.evaluation.anatomy import lattice_steps  # noqa: E402
from cubecore.evaluation.bootstrap import interval, resample_means  # noqa: E402
from cubecore.evaluation.run import evaluate, per_row  # noqa: E402
from cubecore.model.inference import predict  # noqa: E402
from cubecore.training.modes import get_mode  # noqa: E402
from cubecore.training.run import load_model, load_split, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("cosine", "mrr")
IRRELEVANT_AT_ZERO_STEPS = ("cube.update",)  # no rule runs: a twin differing only here is the same run
DEFAULT_DATA = {"title": "default data", "text": "the default data (`make repro`'s `data/`)"}


def parse_sets(text: str) -> dict:
    """``"cube.update=bilinear,train.epochs=3"`` -> ``{"cube.update": "bilinear", "train.epochs": 3}``
    (a comma splits only before the next ``key=``, so ``cube.lattice=[6, 6, 4]`` stays whole)."""
    out = {}
    for item in filter(None, (part.strip() for part in re.split(r",\s*(?=[\w.]+=)", text))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set/--design: {item!r} is not key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def with_overrides(raw: dict, overrides: dict) -> dict:
    """A copy of ``raw`` params with the dotted ``overrides`` set."""
    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        section = raw
        *parents, leaf = key.split(".")
        for part in parents:
            section = section.setdefault(part, {})
        section[leaf] = value
    return raw


def run_dir(work: Path, name: str, raw: dict, data: Path, split: Path) -> Path:
    """``<work>/runs/<name>-<digest>``: the digest covers the run's params (but not where its
    checkpoints go) and its data, so a changed param or dataset never reuses an old run."""
    params = {**raw, "train": {k: v for k, v in raw.get("train", {}).items() if k != "checkpoint_dir"}}
    identity = json.dumps([params, str(data.resolve()), str(split.resolve())], sort_keys=True, default=str)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    slug = re.sub(r"[^\w.=-]+", "_", name)
    return work / "runs" / f"{slug}-{digest}"


def run_name(overrides: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items()) or "default"


def runs_for(designs: list[dict], twins: bool, default: bool) -> list[tuple[str, dict, str | None]]:
    """(name, overrides, name of its twin) per run: each design, then its twin unless already run."""
    runs, seen = [], {}
    for design in ([{}] if default else []) + designs:
        twin, new_twin = None, None
        if twins and design.get("cube.steps") != 0:
            new_twin = {**design, "cube.steps": 0}
            key = run_name({k: v for k, v in new_twin.items() if k not in IRRELEVANT_AT_ZERO_STEPS})
            if key in seen:
                new_twin = None
            else:
                seen[key] = run_name(new_twin)
            twin = seen[key]
        runs.append((run_name(design), design, twin))
        if new_twin is not None:
            runs.append((twin, new_twin, None))
    return runs


def row_values(model, rows) -> dict[str, np.ndarray]:
    values = per_row(predict(model, rows.inputs), rows)
    return {m: values[m] for m in METRICS}


def paired(a: dict[str, np.ndarray], b: dict[str, np.ndarray], resamples: int, seed: int) -> dict:
    """a minus b per metric: mean and paired-bootstrap 95 % interval."""
    diffs = np.stack([a[m] - b[m] for m in METRICS], axis=1)
    means = resample_means(diffs, resamples, seed)
    out = {}
    for i, m in enumerate(METRICS):
        low, high = interval(means[:, i])
        out[m] = {"value": round(float(diffs[:, i].mean()), 4), "low": round(low, 4), "high": round(high, 4)}
    return out


def worse_beyond_noise(delta: dict | None) -> bool | None:
    """The cube beats the ablation beyond noise on some metric and loses on none beyond noise."""
    if delta is None:
        return None
    return any(delta[m]["low"] > 0 for m in METRICS) and not any(delta[m]["high"] < 0 for m in METRICS)


def fmt_delta(delta: dict | None) -> str:
    if delta is None:
        return "—"
    return " / ".join(f"{delta[m]['value']:+.4f} [{delta[m]['low']:+.4f}, {delta[m]['high']:+.4f}]" for m in METRICS)


def train_and_evaluate(params, data: Path, split: Path, model_dir: Path, design: dict) -> dict:
    """Train one run into ``model_dir`` and evaluate it: its row of the study, on the report split."""
    start = time.perf_counter()
    train_metrics, _ = train(params, data, split, model_dir, progress=False)
    trained = time.perf_counter() - start
    metrics = evaluate(params, data, split, model_dir).metrics
    report = metrics["confidence"]["split"]
    anatomy, frontier = metrics["anatomy"][report], metrics["frontier"][report]
    return {
        "overrides": design, "split": report, "parameters": metrics["setup"]["cube_parameters"],
        "best_epoch": train_metrics["train"].get("best_epoch"), "epochs": params.train.epochs,
        "train_seconds": round(trained, 1),
        "trivial_r2": anatomy["trivial"]["r2"], "general_r2": anatomy["general"]["r2"],
        "alpha": metrics["anatomy"]["alpha"], "step_share": anatomy["step_share"],
        "cube": {m: metrics["cube"][report][m] for m in METRICS},
        "lattice_off": anatomy["lattice_off"],
        "frontier_margin": metrics["confidence"]["frontier_margin"],
        "dominated": frontier["dominated"], "dominated_by": frontier["dominated_by"][:5],
        "cube_vs_best_baseline": metrics["cube_vs_best_baseline"][report],
        "best_baseline": metrics["setup"]["best_baseline"],
        "baselines": {name: {m: metrics[name][report][m] for m in METRICS} for name in BASELINES},
        "mlp_parameters": metrics["setup"]["mlp_parameters"],
        "affine_r2_limit": params.evaluate.affine_r2_limit, "seed": params.base.seed,
        "resamples": params.evaluate.bootstrap,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "extract")
    parser.add_argument("--split", type=Path, default=ROOT / "data" / "split")
    parser.add_argument("--set", action="append", default=[], help="key=value[,key=value] for every run")
    parser.add_argument("--design", action="append", default=[], help="one design: key=value[,key=value]")
    parser.add_argument("--no-default", action="store_true", help="skip the default cube (and its twin)")
    parser.add_argument("--no-twins", action="store_true", help="skip the cube.steps=0 twins")
    parser.add_argument("--work", type=Path, default=None, help="models and checkpoints (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="JSON file for the rows")
    parser.add_argument("--from", dest="source", type=Path, help="no training: read the rows of an earlier --out")
    parser.add_argument("--markdown", type=Path, help="also write the table as a Markdown page")
    parser.add_argument("--data-title", default=DEFAULT_DATA["title"], help="what --data holds, in the page's title")
    parser.add_argument("--data-text", default=DEFAULT_DATA["text"], help="what --data holds, in the page's text")
    args = parser.parse_args()
    if args.source:
        study = json.loads(args.source.read_text(encoding="utf-8"))
        page = markdown(study, f"python bench/designs.py --from {args.source}")
        args.markdown.write_text(page, encoding="utf-8") if args.markdown else print(page)
        return
    if not args.out:
        parser.error("--out is required unless --from is given")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="designs-"))
    work.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(args.params.read_text(encoding="utf-8"))
    shared = {"train.checkpoint_dir": str((work / "checkpoints").resolve()), "train.threads": 1}
    for text in args.set:
        shared.update(parse_sets(text))
    designs = [parse_sets(text) for text in args.design]
    runs = runs_for(designs, not args.no_twins, not args.no_default)
    print(f"work dir {work}; shared overrides {shared}; runs: {[name for name, _, _ in runs]}", flush=True)

    results: dict[str, dict] = {}
    values: dict[str, dict] = {}
    test_rows = None
    for name, design, twin in runs:
        run_raw = with_overrides(raw, {**shared, **design})
        directory = run_dir(work, name, run_raw, args.data, args.split)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "params.yaml").write_text(yaml.safe_dump(run_raw, sort_keys=False), encoding="utf-8")
        params = load_params(directory / "params.yaml")
        model_dir, row_file = directory / "model", directory / "row.json"
        finished = row_file.exists()
        row = (json.loads(row_file.read_text(encoding="utf-8")) if finished
               else train_and_evaluate(params, args.data, args.split, model_dir, design))
        if test_rows is None:
            mode = get_mode(params.train.mode)
            _, splits = load_split(args.data, args.split, mode.pairing, mode.pairing.input_noise(params.train),
                                   params.base.seed, ("train", "val", row["split"]))
            test_rows = splits[row["split"]]
        model, _ = load_model(model_dir)
        values[name] = {"cube": row_values(model, test_rows)}
        with lattice_steps(model, 0):
            values[name]["lattice_off"] = row_values(model, test_rows)
        row["cube_minus_lattice_off"] = (paired(values[name]["cube"], values[name]["lattice_off"], row["resamples"],
                                                row["seed"]) if params.cube.steps else None)
        if not finished:
            write_json(row_file, row)
        results[name] = {"run": name, **row, "twin": twin}
        print(f"{'reused' if finished else 'done'} {name} ({directory}): train {row['train_seconds']:.0f} s, "
              f"best epoch {row['best_epoch']}, cube {row['cube']}, trivial R² {row['trivial_r2']}", flush=True)

    for name, row in results.items():
        twin = row["twin"]
        row["twin_cube"] = results[twin]["cube"] if twin else None
        row["cube_minus_twin"] = (paired(values[name]["cube"], values[twin]["cube"],
                                         row["resamples"], row["seed"]) if twin else None)
        row["lattice_off_worse"] = worse_beyond_noise(row["cube_minus_lattice_off"])
        row["twin_worse"] = worse_beyond_noise(row["cube_minus_twin"])
        row["meets_goal"] = bool(row["trivial_r2"] <= row["affine_r2_limit"] and row["lattice_off_worse"]
                                 and row["twin_worse"] and not row["dominated"])

    study = {"shared": {k: v for k, v in shared.items() if k != "train.checkpoint_dir"},
             "designs": args.design, "data": {"title": args.data_title, "text": args.data_text},
             "rows": list(results.values())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(study, indent=1) + "\n", encoding="utf-8")
    page = markdown(study, " ".join(["python bench/designs.py", *sys.argv[1:]]))
    args.markdown.write_text(page, encoding="utf-8") if args.markdown else print(page)


def markdown(study: dict, command: str) -> str:
    """The study as a Markdown page: one row per run, on the report split."""
    header = ("| run | params | trivial R² | general R² | cube cos / MRR | lattice off cos / MRR | "
              "cube − lattice off (cos / MRR) [95 % CI] | cube − twin (cos / MRR) [95 % CI] | "
              "frontier margin [95 % CI] | dominated | cube − best baseline (cos / MRR / R@1) | goal |")
    data = study.get("data", DEFAULT_DATA)
    lines = [f"# Cube designs against their anatomy ({data['title']})", "",
             "The rows come from `python bench/designs.py "
             + " ".join(f"--design {d}" for d in study["designs"]) + f" --out <file>` on {data['text']}. "
             f"Generated by `{command}`; do not edit by hand. Each design trained with the shared "
             f"overrides {study['shared']} beside its `cube.steps: 0` twin; figures on the test split, "
             "intervals from the paired bootstrap. A design meets the goal when its trivial R² is at "
             "most `evaluate.affine_r2_limit`, its lattice switched off and its twin are both worse "
             "beyond noise, and it is not dominated.", "", header, "|" + "---|" * (header.count(" | ") + 1)]
    for row in study["rows"]:
        fm, vs = row["frontier_margin"], row["cube_vs_best_baseline"]
        lines.append(f"| {row['run']} | {row['parameters']:,} | {row['trivial_r2']:.4f} | {row['general_r2']:.4f} | "
                     f"{row['cube']['cosine']:.4f} / {row['cube']['mrr']:.4f} | "
                     f"{row['lattice_off']['cosine']:.4f} / {row['lattice_off']['mrr']:.4f} | "
                     f"{fmt_delta(row['cube_minus_lattice_off'])} | {fmt_delta(row['cube_minus_twin'])} | "
                     f"{fm['value']:+.4f} [{fm['low']:+.4f}, {fm['high']:+.4f}] | "
                     f"{'yes' if row['dominated'] else 'no'} | "
                     f"{vs['cosine']:+.4f} / {vs['mrr']:+.4f} / {vs['recall@1']:+.4f} | "
                     f"{'MET' if row['meets_goal'] else 'no'} |")
    met = [row["run"] for row in study["rows"] if row["meets_goal"]]
    lines += ["", f"Designs that meet the goal: {', '.join(met)}." if met else "No design meets the goal."]
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    main()
