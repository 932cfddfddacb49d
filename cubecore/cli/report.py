"""A review report in one Markdown file: base against the workspace or a DVC experiment.

    python -m cubecore report [--base HEAD] [--exp NAME] [--out report.md]

Changed params come from ``dvc params diff --json``; metrics (with the row fingerprints that
say whether both sides were scored on the same rows), the frontier and the plots are read at
both revisions through DVC's file system (git-tracked files, so a plain clone
without network or DVC remote is enough). DVC is the one installed beside this Python.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from cubecore.core.artifacts import atomic_path
from cubecore.core.errors import CubecoreError
from cubecore.core.frontier import basis, short_list

log = logging.getLogger(__name__)

EVAL = "metrics/eval.json"
PLOTS = "plots"
# eval.json keys that are not models: the cube against the baselines (frontier, confidence,
# cube_vs_best_baseline), the run's setup, a mode's further views and the seed's targets
NOT_MODELS = ("frontier", "confidence", "cube_vs_best_baseline", "setup", "views", "targets", "anatomy")


def dvc(*args: str) -> str:
    """Stdout of ``dvc <args>`` run by the DVC installed next to this interpreter."""
    executable = Path(sys.executable).parent / "dvc"
    if not executable.exists():
        raise CubecoreError(f"{executable}: not found; install the project's requirements (`make setup`)")
    done = subprocess.run([str(executable), *args], capture_output=True, text=True,
                          env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CubecoreError(f"`dvc {' '.join(args)}` failed: {reason}")
    return done.stdout


class Side:
    """One side of the comparison: the workspace (``rev`` None), a git revision or an experiment."""

    def __init__(self, rev: str | None):
        from dvc.api import DVCFileSystem
        from dvc.exceptions import DvcException

        self.rev = rev
        self.label = rev or "workspace"
        self.fs = DVCFileSystem(".", rev=rev)
        try:
            text = self.fs.read_text(EVAL)
        except FileNotFoundError:
            text = "{}"
        except DvcException as exc:  # an unknown revision or experiment name
            raise CubecoreError(f"{self.label}: {exc}") from None
        try:
            self.eval = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CubecoreError(f"{EVAL} ({self.label}):{exc.lineno}: malformed JSON ({exc.msg})") from None

    def pngs(self) -> list[str]:
        if not self.fs.isdir(PLOTS):
            return []
        return sorted(p for p in self.fs.ls(PLOTS, detail=False) if p.endswith(".png"))


def cell(value) -> str:
    """A value for a Markdown table: numbers to 4 decimals, intervals as [lo, hi]."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return "[" + ", ".join(cell(float(v)) for v in value) + "]"
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|")


def param_cell(value) -> str:
    """A param as written in params.yaml (no rounding)."""
    return cell(value if value is None or isinstance(value, str) else json.dumps(value))


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def leaves(tree, prefix: tuple = ()):
    """``(path, value)`` for every non-dict value of a nested dict."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, (*prefix, str(key)))
    else:
        yield prefix, tree


def union(*sequences) -> list:
    """Items of all sequences, first occurrence order."""
    return list(dict.fromkeys(item for sequence in sequences for item in sequence))


def models(results: dict) -> list[str]:
    """Top-level eval.json keys that hold a model's per-split metrics."""
    return [name for name, splits in results.items() if name not in NOT_MODELS and isinstance(splits, dict)
            and all(isinstance(metrics, dict) for metrics in splits.values())]


def params_section(base: Side, new: Side) -> list[str]:
    revs = [base.rev] + ([new.rev] if new.rev else [])
    changed = json.loads(dvc("params", "diff", "--json", *revs) or "{}")
    rows = [[cell(name if file == "params.yaml" else f"{file}:{name}"), param_cell(v.get("old")),
             param_cell(v.get("new"))]
            for file, entries in changed.items() for name, v in entries.items()]
    return ["## Params that changed", "", *(table(["param", base.label, new.label], rows) if rows else ["None."])]


def change(old, new) -> str:
    """``old → new (±diff)``, or what is missing on one side."""
    number = (int, float)
    if isinstance(old, number) and isinstance(new, number):
        return f"{cell(float(old))} → {cell(float(new))} ({float(new) - float(old):+.4f})"
    if isinstance(new, number):
        return f"— → {cell(float(new))} (new)"
    if isinstance(old, number):
        return f"{cell(float(old))} → — (removed)"
    return "—"


def scored_rows(evaluation: dict) -> dict[str, tuple]:
    """Per split whose rows ``setup`` fingerprints: (fingerprint, row count)."""
    setup = evaluation.get("setup", {})
    return {key.removesuffix("_fingerprint"): (value, setup.get(f"{key.removesuffix('_fingerprint')}_rows"))
            for key, value in setup.items() if key.endswith("_fingerprint")}


def row_changes(base: dict, new: dict, base_label: str, new_label: str) -> list[str]:
    """A line per split that the two evaluations scored on different rows, or may have."""
    before, after = scored_rows(base), scored_rows(new)
    lines = []
    for split in union(after, before):
        if split in before and split in after:
            if before[split] != after[split]:
                (old_print, old_rows), (new_print, new_rows) = before[split], after[split]
                lines.append(f"- **scored on different {split} rows**: {base_label} `{old_print}` "
                             f"({cell(old_rows)} rows), {new_label} `{new_print}` ({cell(new_rows)} rows), so the "
                             f"{split} changes mix the model with the data")
        elif all(any(split in side[m] for m in models(side)) for side in (base, new)):
            lines.append(f"- {split} rows: {base_label if split in after else new_label} records no row fingerprint, "
                         f"so whether both sides were scored on the same rows is unknown")
    return lines


def metrics_section(base: Side, new: Side) -> list[str]:
    names = union(models(new.eval), models(base.eval))
    if not names:
        return ["## Headline metrics", "", f"No {EVAL} on either side (run `dvc repro`)."]
    lines = ["## Headline metrics", "", f"Each cell: {base.label} → {new.label} (change). Higher is better."]
    changes = row_changes(base.eval, new.eval, base.label, new.label)
    if changes:
        lines += ["", *changes]
    splits = union(*(side.eval[m] for side in (new, base) for m in names if m in side.eval))
    for split in splits:
        # the headline metrics are those evaluate compares the cube on; else every metric
        headline = union(*(side.eval.get("cube_vs_best_baseline", {}).get(split, {}) for side in (new, base)))
        if not headline:
            headline = union(*(side.eval.get(m, {}).get(split, {}) for side in (new, base) for m in names))
        rows = [[name, *(change(base.eval.get(name, {}).get(split, {}).get(metric),
                                new.eval.get(name, {}).get(split, {}).get(metric)) for metric in headline)]
                for name in names]
        lines += ["", f"### {split}", "", *table(["model", *headline], rows)]
    return lines


def verdict(low: float, high: float) -> str:
    return "cube ahead beyond noise" if low > 0 else "cube behind beyond noise" if high < 0 else "within noise"


def anatomy_rows(evaluation: dict) -> dict[str, str]:
    """What the cube computes, per evaluated split (``cubecore.evaluation.anatomy``): how much of its output
    the affine fits of its input explain, and the cube beside its lattice switched off."""
    anatomy, rows = evaluation.get("anatomy", {}), {}
    for split, entry in anatomy.items():
        if not isinstance(entry, dict) or "trivial" not in entry:
            continue
        rows[f"{split}: R² of α·x + c (α {cell(anatomy.get('alpha'))}) / of W·x + c, fitted on train"] = (
            f"{cell(entry['trivial']['r2'])} / {cell(entry['general']['r2'])}")
        rows[f"{split}: cosine / MRR, cube vs lattice off (0 steps)"] = (
            f"{cell(entry['cube']['cosine'])} / {cell(entry['cube']['mrr'])} vs "
            f"{cell(entry['lattice_off']['cosine'])} / {cell(entry['lattice_off']['mrr'])}")
    return rows


def frontier_rows(evaluation: dict) -> dict[str, str]:
    """Review rows from ``frontier`` (per split: margin, who dominates the cube), ``confidence``
    (bootstrap intervals, with a verdict) and ``cube_vs_best_baseline``, keyed by their label."""
    rows = {}
    for split, report in evaluation.get("frontier", {}).items():
        rows[f"{split}: margin to the frontier"] = cell(report.get("margin"))
        rows[f"{split}: dominated by"] = short_list(report.get("dominated_by", []))
    confidence = evaluation.get("confidence", {})
    level = f"{round(100 * confidence.get('level', 0.95))} % interval"
    for metric, estimate in confidence.items():
        if isinstance(estimate, dict) and {"value", "low", "high"} <= set(estimate):
            against = f"cube − best baseline, {metric}" if "baseline" in estimate else metric.replace("_", " ")
            who = f" ({estimate['baseline']})" if "baseline" in estimate else ""
            rows[f"{confidence.get('split')}: {against} ({level})"] = (
                f"{cell(estimate['value'])}{who} [{cell(estimate['low'])}, {cell(estimate['high'])}] "
                f"{verdict(estimate['low'], estimate['high'])}")
    for path, value in leaves(evaluation.get("cube_vs_best_baseline", {}), ("cube_vs_best_baseline",)):
        rows[".".join(path)] = cell(value)
    return {**rows, **anatomy_rows(evaluation)}


def frontier_section(base: Side, new: Side) -> list[str]:
    lines = ["## The cube against the frontier", ""]
    if "frontier" not in new.eval:
        lines.append(f"- frontier and dominance: not computed by this version ({new.label}'s {EVAL} "
                     f"has no `frontier`)")
    for split, report in new.eval.get("frontier", {}).items():
        before = base.eval.get("frontier", {}).get(split, {}).get("dominated")
        lines.append(f"- **dominated** ({split}): {cell(report.get('dominated'))} ({base.label}: {cell(before)})")
        if basis(report):
            lines.append(f"- the verdict ({split}) rests{basis(report)}")
    if "confidence" not in new.eval:
        lines.append("- bootstrap intervals: not computed by this version")
    before, after = frontier_rows(base.eval), frontier_rows(new.eval)
    labels = union(after, before)
    if labels:
        rows = [[label, before.get(label, cell(None)), after.get(label, cell(None))] for label in labels]
        lines += ["", *table(["quantity", base.label, new.label], rows)]
    return lines


def plots_section(new: Side, out: Path) -> list[str]:
    """Images of the compared side: linked in place for the workspace, copied out of a revision."""
    links = []
    for name in new.pngs():
        target = Path(name)
        if new.rev is not None:
            target = out.parent / f"{out.stem}_plots" / target.name
            with atomic_path(target) as tmp:
                tmp.write_bytes(new.fs.read_bytes(name))
        link = Path(os.path.relpath(target.resolve(), out.parent.resolve())).as_posix()
        links.append(f"![{target.stem}]({link})")
    return ["## Plots", "", *(links or [f"No PNG in {PLOTS}/ of {new.label}."])]


def build(base_rev: str, exp: str | None, out: Path) -> str:
    """The report's Markdown text (writing the images of a revision next to ``out``)."""
    if not Path(".dvc").is_dir():
        raise CubecoreError(f"{Path.cwd()}: not a DVC repository; run the report from the repository root")
    base, new = Side(base_rev), Side(exp)
    command = f"python -m cubecore report --base {base_rev}" + (f" --exp {exp}" if exp else "")
    sections = [[f"# Review: {new.label} against {base.label}", "", f"Generated by `{command}`."],
                params_section(base, new), metrics_section(base, new), frontier_section(base, new),
                plots_section(new, out)]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    text = build(args.base, args.exp, out)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("report: wrote %s (%s against %s)", out, args.exp or "workspace", args.base)


def add_parser(commands) -> None:
    parser = commands.add_parser("report", help="write a Markdown review report: params, metrics, frontier, plots")
    parser.add_argument("--base", default="HEAD", help="git revision or experiment to compare against (HEAD)")
    parser.add_argument("--exp", default=None, help="a DVC experiment (or revision) to report instead of the workspace")
    parser.add_argument("--out", default="report.md", help="Markdown file to write (report.md); a revision's images go "
                        "beside it in <name>_plots/")
    parser.set_defaults(run=run)
