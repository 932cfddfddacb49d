"""Is this checkout ready to run the pipeline? One line per check, with what to do.

    python -m cubecore doctor [--params params.yaml]

Run it from the repository root. Exit 0 when every check is ok, 1 when one found a
problem, 2 when none found a problem but one could not check.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cubecore.core.config import CubeParams, DataParams, TeacherParams, load_params
from cubecore.core.errors import CubecoreError
from cubecore.data.inputs import LAYOUT_FREE, lattice_problem
from cubecore.data.modeldir import resolve_model_dir, teacher_dim

OK, PROBLEM, CANNOT = "ok", "problem", "cannot check"


@dataclass
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<12}  {self.name}: {self.detail}"


def teacher(params: TeacherParams) -> Check:
    """Load the teacher, embed one text, and say which precision ``auto`` picked here."""
    from cubecore.data.teacher import Teacher

    try:
        model = Teacher(params)
        model.embed(["Is the teacher here?"], progress=False)
    except (CubecoreError, OSError, RuntimeError) as exc:
        return Check("teacher", PROBLEM, f"{exc} (see teacher.* in params.yaml)")
    fidelity = f", worst cosine to fp32 {model.fidelity:.4f}" if model.fidelity is not None else ""
    return Check("teacher", OK, f"{params.model} loads from {model.model_dir}; dimension {model.hidden_size}; "
                                f"precision {params.precision} -> {model.precision} on {model.device.type}{fidelity}")


def lattice(cube: CubeParams, teacher_model: str) -> Check:
    """Does ``cube.lattice`` fit the teacher's dimension (read from its config, no weights loaded)?"""
    try:
        dim = teacher_dim(resolve_model_dir(teacher_model))
    except CubecoreError as exc:
        return Check("lattice", CANNOT, f"the teacher's dimension is unknown: {exc}")
    volume = math.prod(cube.lattice)
    if dim is None:
        return Check("lattice", CANNOT, f"{teacher_model}'s config.json names no hidden size, so the volume "
                                        f"cube.lattice needs is unknown (it holds {volume})")
    problem = lattice_problem(cube, dim)
    if problem:
        return Check("lattice", PROBLEM, problem)
    if cube.placement in LAYOUT_FREE:
        return Check("lattice", OK, f"the teacher's dimension is {dim}; cube.placement {cube.placement} maps it onto "
                                    f"any lattice (cube.lattice {cube.lattice} holds {volume} cells)")
    return Check("lattice", OK, f"the teacher's dimension {dim} needs a lattice of volume {dim} with "
                                f"cube.placement {cube.placement}; cube.lattice {cube.lattice} holds {volume}")


def corpus(params: DataParams) -> Check:
    """Read the configured source as the extract stage would."""
    from cubecore.data.corpora import load_corpus

    try:
        found = load_corpus(params)
    except CubecoreError as exc:
        return Check("corpus", PROBLEM, str(exc))
    return Check("corpus", OK, f"data.source {params.source!r}: {len(found.pairs)} turn pairs found")


def python(root: Path, path: str | None) -> Check:
    """Is the ``python`` DVC runs for ``python -m stages.*`` (the first on ``path``) the project's?"""
    venv = root / ".venv" / "bin"
    expected = venv if venv.is_dir() else Path(sys.executable).parent
    found = shutil.which("python", path=path)
    fix = f"run `source {expected / 'activate'}` before `dvc ...`, or use `make repro` (it puts {expected} first)"
    if found is None:
        return Check("python", PROBLEM, f"no `python` on PATH, so DVC cannot run the stages; {fix}")
    if not os.path.samefile(Path(found).parent, expected):
        return Check("python", PROBLEM, f"`python` on PATH is {found}, not {expected / 'python'}: DVC would run the "
                                        f"stages without the project's packages; {fix}")
    return Check("python", OK, f"`python` on PATH is {found}, the one DVC will run")


def root_relative() -> bool:
    """Does this version resolve relative cache paths against the repository root, also inside
    DVC's temporary experiment copies (``cubecore.core.paths``)?"""
    return importlib.util.find_spec("cubecore.core.paths") is not None


def cache_writable(root: Path, cache_dir: str) -> Check:
    directory = Path(cache_dir).expanduser()
    directory = directory if directory.is_absolute() else root / directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        return Check("cache", PROBLEM, f"base.cache_dir {directory} is not writable ({exc.strerror or exc}); "
                                       f"fix its permissions or set base.cache_dir in params.yaml")
    return Check("cache", OK, f"base.cache_dir {directory} is writable")


def cache_shared(cache_dir: str) -> Check:
    """Do queued and ``--temp`` experiments (run in copies under .dvc/tmp/exps) use this cache?"""
    if Path(cache_dir).expanduser().is_absolute():
        return Check("cache sharing", OK, f"base.cache_dir {cache_dir} is absolute: every experiment uses it")
    if root_relative():
        return Check("cache sharing", OK, f"base.cache_dir {cache_dir} resolves against the repository root, "
                                          f"also in queued experiments")
    return Check("cache sharing", PROBLEM, f"base.cache_dir {cache_dir} is relative and this version resolves it "
                                           f"inside each queued experiment's temporary copy, so each re-embeds "
                                           f"the corpus; set an absolute base.cache_dir in params.yaml")


def analytics(root: Path, env: Mapping[str, str]) -> Check:
    """DVC analytics reach the network; off by ``core.analytics false`` or ``DVC_NO_ANALYTICS``."""
    from dvc.config import Config, ConfigError, to_bool

    if not (root / ".dvc").is_dir():
        return Check("dvc analytics", CANNOT, f"{root} is not a DVC repository (no .dvc/); run it from the root")
    try:
        enabled = to_bool(Config(dvc_dir=str(root / ".dvc"), validate=False).get("core", {}).get("analytics", "true"))
    except ConfigError as exc:
        return Check("dvc analytics", CANNOT, f"cannot read DVC's config: {exc}")
    if not enabled:
        return Check("dvc analytics", OK, "core.analytics is false in DVC's config")
    if env.get("DVC_NO_ANALYTICS"):
        return Check("dvc analytics", OK, "DVC_NO_ANALYTICS is set here (not in DVC's config: run "
                                          "`dvc config core.analytics false` so other shells are covered too)")
    return Check("dvc analytics", PROBLEM, "DVC sends usage analytics over the network on every command; run "
                                           "`dvc config core.analytics false` and commit .dvc/config, or export "
                                           "DVC_NO_ANALYTICS=1")


def train_memory(root: Path, limit_gb: float) -> Check:
    """Did the last ``train`` run (``metrics/speed/train.json``) stay within ``train.memory_limit_gb``?"""
    speed = root / "metrics" / "speed" / "train.json"
    if not speed.exists():
        return Check("train memory", OK, f"no train run recorded yet ({speed.relative_to(root)})")
    try:
        peak_mb = float(json.loads(speed.read_text(encoding="utf-8"))["train"]["peak_memory_mb"])
    except (ValueError, KeyError, TypeError) as exc:
        return Check("train memory", CANNOT, f"{speed}: no train.peak_memory_mb in it ({exc!r})")
    figures = f"the last train run peaked at {peak_mb / 1024:.2f} GB RSS (train.memory_limit_gb {limit_gb:g})"
    if peak_mb > limit_gb * 1024:
        return Check("train memory", PROBLEM, f"{figures}: above the limit on this machine (docs/benchmarks.md, "
                                              f"\"Scale\", says what grows with the corpus)")
    return Check("train memory", OK, figures)


def checks(root: Path, params_path: str, env: Mapping[str, str]):
    """Every check in turn, cheap ones first (a generator, so each line can print as it finishes)."""
    yield python(root, env.get("PATH"))
    yield analytics(root, env)
    try:
        params = load_params(params_path)
    except CubecoreError as exc:
        yield Check("params", PROBLEM, str(exc))
        for name in ("cache", "cache sharing", "train memory", "corpus", "teacher", "lattice"):
            yield Check(name, CANNOT, f"{params_path} did not load")
        return
    yield cache_writable(root, params.base.cache_dir)
    yield cache_shared(params.base.cache_dir)
    yield train_memory(root, params.train.memory_limit_gb)
    yield corpus(params.data)
    yield teacher(params.teacher)
    yield lattice(params.cube, params.teacher.model)


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bar
    statuses = set()
    for check in checks(Path.cwd(), args.params, os.environ):
        print(check.line(), flush=True)
        statuses.add(check.status)
    sys.exit(1 if PROBLEM in statuses else 2 if CANNOT in statuses else 0)


def add_parser(commands) -> None:
    parser = commands.add_parser("doctor",
                                 help="check this machine: teacher, lattice, corpus, python, cache, DVC analytics, "
                                      "the last train run's memory")
    parser.add_argument("--params", default="params.yaml", help="the params file to check (default: %(default)s)")
    parser.set_defaults(run=run)
