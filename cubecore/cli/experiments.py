"""The sweep table: every DVC experiment of this repository against the frontier, in Markdown.

    python -m cubecore experiments [--rev REV ...] [--save-json FILE] [--out FILE [--force]]
    python -m cubecore experiments --input FILE [--out FILE [--force]]

Reads ``dvc exp show --json`` (the params and headline metrics DVC recorded for each baseline
commit and its experiments; nothing is typed by hand) with each run's ``metrics/eval.json`` and
``metrics/train.json`` from its git commit (DVC lists only the headline file, so that its own
table stays narrow), and writes one row per run, best frontier
margin first: the params it changed against its baseline commit, the cube's size and its
cosine / MRR / Recall@1 on the report split, the signed margin to the baselines' frontier
with its bootstrap interval and verdict, and that run's strongest baselines. Runs of
a mode with further views (``dual``'s reconstruction, ``bidirectional``'s backward cube) get
a second table. Runs scored on different report-split rows (``setup.<split>_fingerprint``)
are named with their row sets. Regenerating from the same experiments gives the same file.
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

from cubecore.cli.report import EVAL, cell, dvc, leaves, param_cell, table, verdict
from cubecore.core.artifacts import atomic_path
from cubecore.core.config import RUN_SETTINGS
from cubecore.core.errors import CubecoreError
from cubecore.core.frontier import basis

log = logging.getLogger(__name__)

TRAIN = "metrics/train.json"
DETAIL = (EVAL, TRAIN)  # git-tracked outputs, not DVC metrics: read from each run's commit


class Run:
    """One baseline commit or experiment, as ``dvc exp show --json`` recorded it."""

    def __init__(self, record: dict, baseline: Run | None = None, state: str | None = None):
        data = record.get("data") or {}
        self.state = state  # the queue's executor state; None for a baseline or a workspace run
        self.rev = record.get("rev") or data.get("rev") or "?"
        name = record.get("name")
        if baseline is None:
            name = f"{name} (baseline {self.rev[:7]})" if name else f"baseline {self.rev[:7]}"
        self.name = name or self.rev[:7]
        self.baseline = baseline
        self.params = dict(leaves(data.get("params", {}).get("params.yaml", {}).get("data", {})))
        metrics = data.get("metrics", {})
        self.eval = metrics.get(EVAL, {}).get("data", {})
        self.train = metrics.get(TRAIN, {}).get("data", {}).get("train", {})
        self.split = self.eval.get("setup", {}).get("report_split")

    @property
    def complete(self) -> bool:
        """Finished with an evaluation (a running experiment shows its baseline's files)."""
        return self.state in (None, "success") and bool(self.split) and "frontier" in self.eval

    def changed(self) -> str:
        """``key=value`` for each param that differs from the baseline commit's."""
        if self.baseline is None:
            return "— (baseline)"
        keys = [k for k in self.params if self.params[k] != self.baseline.params.get(k)]
        shown = [".".join(k) for k in keys if ".".join(k) not in RUN_SETTINGS]
        return ", ".join(f"{name}={param_cell(self.params[tuple(name.split('.'))])}" for name in shown) or "none"

    def blend_points(self) -> int | None:
        """How many blend weights the run's frontier had (runs before ``evaluate.blend_steps`` listed them)."""
        steps = self.params.get(("evaluate", "blend_steps"))
        weights = self.params.get(("evaluate", "blend_weights"))
        return steps + 1 if isinstance(steps, int) else len(weights) if isinstance(weights, list) else None

    def rows(self) -> tuple:
        """The report split, its row fingerprint (None where the run recorded none) and row count."""
        setup = self.eval.get("setup", {})
        return self.split, setup.get(f"{self.split}_fingerprint"), setup.get(f"{self.split}_rows")

    def metric(self, model: str, name: str):
        return self.eval.get(model, {}).get(self.split, {}).get(name)

    def margin(self) -> float:
        return self.eval["frontier"][self.split]["margin"]

    def interval(self) -> tuple[float | None, float | None]:
        """The margin's bootstrap interval (None where the run did not compute one)."""
        estimate = self.eval.get("confidence", {}).get("frontier_margin", {})
        return estimate.get("low"), estimate.get("high")

    def verdict(self) -> str:
        """Outside or inside, beyond noise or not, and on which metrics when one is saturated."""
        rests = basis(self.eval["frontier"][self.split])
        return verdict_of(self.margin(), *self.interval()) + (f",{rests}" if rests else "")

    def row(self) -> list[str]:
        setup, frontier = self.eval.get("setup", {}), self.eval["frontier"][self.split]
        low, high = self.interval()
        best = setup.get("best_baseline", {})
        strongest = [f"{cell(self.metric(best[m], m))} ({best[m]})" if m in best else "—" for m in ("cosine", "mrr")]
        return [self.name, self.changed(), f"{setup.get('cube_parameters', 0):,}",
                *(cell(self.metric("cube", m)) for m in ("cosine", "mrr", "recall@1")),
                f"{signed(self.margin())} [{signed(low)}, {signed(high)}]", self.verdict(),
                cell(frontier.get("dominated")), *strongest, *self.anatomy(),
                cell(self.train.get("best_epoch")), cell(self.train.get("epochs_run"))]

    def anatomy(self) -> list[str]:
        """R² of the cube's trivial / general affine fit, and its cosine / MRR with the lattice off."""
        entry = self.eval.get("anatomy", {}).get(self.split)
        if not entry:
            return ["—", "—"]
        off = entry["lattice_off"]
        return [f"{cell(entry['trivial']['r2'])} / {cell(entry['general']['r2'])}",
                f"{cell(off['cosine'])} / {cell(off['mrr'])}"]


HEADER = ["run", "changed params", "cube params", "cosine", "MRR", "R@1", "frontier margin [95 % CI]",
          "verdict", "dominated", "best baseline cosine", "best baseline MRR", "R² α·x+c / W·x+c",
          "lattice off cosine / MRR", "best epoch", "epochs"]


def signed(value: float | None) -> str:
    return "—" if value is None else f"{value + 0.0:+.4f}"  # + 0.0: no "-0.0000"


def verdict_of(margin: float, low: float | None, high: float | None) -> str:
    """Outside / inside the frontier, and whether the bootstrap interval clears zero."""
    if low is None or high is None:
        return "outside" if margin > 0 else "inside"
    return {"cube ahead beyond noise": "outside, beyond noise", "cube behind beyond noise": "inside, beyond noise",
            "within noise": "on the frontier (within noise)"}[verdict(low, high)]


def collect(records: list[dict]) -> list[Run]:
    """Every baseline commit and experiment with an evaluation, in ``dvc exp show`` order."""
    runs = []
    for record in records:
        if record.get("rev") == "workspace":
            continue
        baseline = Run(record)
        runs.append(baseline)
        for group in record.get("experiments") or []:
            state = (group.get("executor") or {}).get("state")
            runs += [Run(rev, baseline, state) for rev in group.get("revs", [])]
    return runs


def git_file(rev: str, path: str) -> dict | None:
    """The JSON content of ``path`` at commit ``rev``, or None where it has no such file."""
    done = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise CubecoreError(f"{path} (commit {rev[:7]}):{exc.lineno}: malformed JSON ({exc.msg})") from None


def attach_detail(records: list[dict]) -> None:
    """Put each run's ``DETAIL`` files, read from its commit, beside the metrics ``dvc exp show``
    recorded for it, in the same form (so a saved file regenerates the table on its own)."""
    for record in records:
        runs = [record, *(rev for group in record.get("experiments") or [] for rev in group.get("revs", []))]
        for entry in runs:
            data, rev = entry.get("data"), entry.get("rev")
            if not data or not rev or rev == "workspace":
                continue
            metrics = data.setdefault("metrics", {})
            for path in DETAIL:
                content = git_file(rev, path)
                if content is not None:
                    metrics[path] = {"data": content}


def views_table(runs: list[Run]) -> list[str]:
    """The further views of modes that have them (e.g. reconstruction): cube, input, ridge."""
    rows = []
    for run in runs:
        for view, models in run.eval.get("views", {}).items():
            rows.append([run.name, view, *(cell(models.get(m, {}).get(run.split, {}).get(metric))
                                           for m in ("cube", "identity", "ridge") for metric in ("cosine", "mrr"))])
    if not rows:
        return []
    header = ["run", "view", "cube cosine", "cube MRR", "input cosine", "input MRR", "ridge cosine", "ridge MRR"]
    return ["## Further views of a mode", "", *table(header, rows)]


def row_sets(done: list[Run]) -> list[str]:
    """When the runs were scored on different rows, which runs on which; and who recorded none."""
    sets: dict[tuple, list[str]] = {}
    for run in done:
        if run.rows()[1]:
            sets.setdefault(run.rows(), []).append(run.name)
    lines = []
    if len(sets) > 1:
        splits = {split for split, _, _ in sets}
        which = splits.pop() if len(splits) == 1 else "report-split"
        listed = "; ".join(f"`{fingerprint}` ({cell(count)} {split} rows): {', '.join(names)}"
                           for (split, fingerprint, count), names in sets.items())
        lines.append(f"- **Scored on different {which} rows**: {listed}. Margins compared across these sets mix "
                     f"the change with a data change.")
    unknown = [run.name for run in done if not run.rows()[1]]
    if sets and unknown:
        lines.append(f"- No row fingerprint recorded (evaluated before there was one): {', '.join(unknown)}; "
                     f"their rows may differ from the others'.")
    return lines


def summary(done: list[Run]) -> list[str]:
    best, split = done[0], done[0].split
    outside = [r.name for r in done if (r.interval()[0] or -1.0) > 0]
    grids = sorted({r.blend_points() for r in done} - {None})
    return [f"- Runs evaluated: {len(done)}; every figure on the report split `{split}` "
            f"({cell(best.eval['setup'].get(f'{split}_rows'))} rows).",
            f"- Blend weights on each run's frontier: {' or '.join(map(str, grids)) or 'not recorded'}"
            + (" (a coarse grid overstates margins: README, `evaluate.blend_steps`)." if grids and grids[0] < 101 else "."),
            f"- Best frontier margin: **{best.name}**, {signed(best.margin())} ({best.verdict()}).",
            f"- Outside the frontier beyond noise: {', '.join(outside)}." if outside else
            "- No run lies outside the frontier beyond noise.", *row_sets(done)]


def build(records: list[dict], command: str) -> str:
    runs = collect(records)
    done = sorted((r for r in runs if r.complete), key=lambda r: -r.margin())
    missing = [f"{r.name} ({r.state or 'no evaluation'})" for r in runs if not r.complete]
    if not done:
        raise CubecoreError(f"`dvc exp show` lists no run with a complete {EVAL}; run `dvc repro` or `dvc exp run` first")
    bases = {r.baseline.rev if r.baseline else r.rev for r in done}
    lines = ["# Experiments", "",
             f"Generated by `{command}` from `dvc exp show --json` (baseline commit"
             f"{'s' if len(bases) > 1 else ''} {', '.join(sorted(b[:7] for b in bases))}); do not edit by hand.",
             "The frontier margin is min over baselines of max(Δcosine, ΔMRR) (README, \"Reading the results\"): > 0 outside "
             "the baselines' frontier, < 0 dominated; its interval is the paired bootstrap's. Each run's baselines "
             "(`linear`, `mlp`) are trained with that run's loss and budget.", "",
             *summary(done), "", "## Runs, best margin first", "", *table(HEADER, [r.row() for r in done])]
    views = views_table(done)
    if views:
        lines += ["", *views]
    if missing:
        lines += ["", f"Listed by DVC without a finished evaluation: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> None:
    if args.input:
        path = Path(args.input)
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CubecoreError(f"{path}: cannot read `dvc exp show --json` output ({exc})") from None
        flags = ["--input", args.input]
    else:
        if not Path(".dvc").is_dir():
            raise CubecoreError(f"{Path.cwd()}: not a DVC repository; run this from the repository root")
        flags = [flag for rev in args.rev or [] for flag in ("--rev", rev)]
        records = json.loads(dvc("exp", "show", "--json", *flags) or "[]")
        attach_detail(records)
        if args.save_json:
            with atomic_path(Path(args.save_json)) as tmp:
                tmp.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            flags = ["--input", args.save_json]  # the doc names the command that regenerates it from the file
    command = " ".join(["python -m cubecore experiments", *flags, *(["--out", args.out] if args.out else [])])
    text = build(records, command)
    if not args.out:
        sys.stdout.write(text)
        return
    out = Path(args.out)
    if out.exists() and not args.force and tracked(out):
        raise CubecoreError(f"{out}: tracked by git; pass --force to overwrite it (or print to stdout without --out)")
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("experiments: wrote %s", out)


def tracked(path: Path) -> bool:
    """Whether git tracks ``path`` (False outside a git repository)."""
    done = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], capture_output=True)
    return done.returncode == 0


def add_parser(commands) -> None:
    parser = commands.add_parser("experiments", help="print the table of every DVC experiment against the frontier")
    parser.add_argument("--out", help="Markdown file to write instead of printing (a git-tracked file needs --force)")
    parser.add_argument("--force", action="store_true", help="overwrite --out even when git tracks it")
    parser.add_argument("--rev", action="append", help="a baseline commit whose experiments to list (HEAD); repeatable")
    parser.add_argument("--input", metavar="JSON", help="read a saved `dvc exp show --json` instead of asking DVC "
                        "(regenerates a committed table from committed data)")
    parser.add_argument("--save-json", metavar="JSON", help="also save the `dvc exp show --json` output read, "
                        "so the table can be regenerated from it with --input")
    parser.set_defaults(run=run)
