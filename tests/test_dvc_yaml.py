"""dvc.yaml against the code: each stage's code deps are exactly what its script imports,
its cmd names the paths it writes, and every param that changes results is tracked."""
from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

import cubecore.core.config

REPO = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]

RUN_SETTINGS = set(cubecore.core.config.RUN_SETTINGS)  # no stage lists them: changing them re-runs nothing
PARAMS = {key for key, _ in cubecore.core.config.leaf_fields()}  # the schema's (params.yaml lists the same)


def module_file(root: Path, name: str) -> Path | None:
    """The repository file of dotted module ``name`` (a package gives its ``__init__.py``)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, root: Path) -> set[str]:
    """Dotted names of every module ``path`` imports anywhere in its body (functions too)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*filter(None, parent), *filter(None, [node.module])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def code_closure(script: Path, root: Path = REPO) -> set[str]:
    """Repository files ``script`` runs when imported: itself, every module of this repository it
    imports directly or not, and the non-empty ``__init__.py`` of the packages they belong to."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path, root):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                found = module_file(root, ".".join(parts[:depth]))
                if found is not None:
                    todo.append(found)
    return {p.relative_to(root).as_posix() for p in seen
            if p.name != "__init__.py" or p.read_text().strip()}


def stage_script(stage: dict) -> Path:
    words = shlex.split(stage["cmd"])
    return REPO / (words[words.index("-m") + 1].replace(".", "/") + ".py")


def declared(stage: dict, section: str) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in stage.get(section, [])]


def cmd_paths(stage: dict) -> list[str]:
    """The values of the cmd's ``--<name> PATH`` options (but ``--params``)."""
    words = shlex.split(stage["cmd"])
    return [value for option, value in zip(words, words[1:]) if option.startswith("--") and option != "--params"]


def is_code(path: str) -> bool:
    return path.endswith(".py") or (path.startswith(("cubecore", "stages")) and (REPO / path).is_dir())


def room_files(room: str, root: Path = REPO) -> set[str]:
    """The code files a folder dep stands for: its modules, recursively, and non-empty ``__init__.py``."""
    return {p.relative_to(root).as_posix() for p in (root / room).rglob("*.py")
            if p.name != "__init__.py" or p.read_text().strip()}


def compact(files: set[str], root: Path = REPO) -> set[str]:
    """``files`` with every folder of ``cubecore/`` whose code is wholly among them named as the folder."""
    rooms = sorted({Path(f).parent.as_posix() for f in files if f.startswith("cubecore/")}, key=len)
    out = set(files)
    for room in rooms:
        if room != "cubecore" and room_files(room, root) <= files and not any(room.startswith(r + "/") for r in out):
            out = {f for f in out if not f.startswith(room + "/")} | {room}
    return out


def test_code_closure_follows_every_kind_of_import(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    files = {
        "stages/run.py": "from pkg import a\n",
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\n\ndef f():\n    from pkg.sub import b\n    return b\n",
        "pkg/sub/__init__.py": "X = 1\n",
        "pkg/sub/b.py": "from . import c\nfrom ..d import thing\n",
        "pkg/sub/c.py": "",
        "pkg/d.py": "thing = 1\n",
        "pkg/unused.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert code_closure(tmp_path / "stages/run.py", tmp_path) == {
        "stages/run.py", "pkg/a.py", "pkg/sub/__init__.py", "pkg/sub/b.py", "pkg/sub/c.py", "pkg/d.py"}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_code_deps_are_what_the_stage_imports(name):
    stage = STAGES[name]
    expected = compact(code_closure(stage_script(stage)))  # a folder whose code the stage runs whole is named once
    listed = [d for d in declared(stage, "deps") if is_code(d)]
    missing, stale = sorted(expected - set(listed)), sorted(set(listed) - expected)
    assert not missing and not stale, (
        f"dvc.yaml stage {name!r}: add to deps {missing}, remove from deps {stale} "
        f"(its code is exactly {sorted(expected)})")
    assert len(listed) == len(set(listed)), f"{name}: a dep is listed twice"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_cmd_names_the_paths_the_stage_reads_and_writes(name):
    stage = STAGES[name]
    given = cmd_paths(stage)
    known = [p for section in ("deps", "outs", "metrics", "plots") for p in declared(stage, section)]
    for path in given:  # a path the cmd names is tracked (speed files are git-ignored, by design)
        assert path.startswith("metrics/speed/") or any(k == path or k.startswith(f"{path}/") for k in known), \
            f"{name}: cmd names {path}, which the stage does not declare"
    for out in (p for section in ("outs", "metrics", "plots") for p in declared(stage, section)):
        assert any(out == p or out.startswith(f"{p}/") for p in given), f"{name}: {out} is not in its cmd"
    fingerprints = {p for s in STAGES.values() if s.get("always_changed") for p in declared(s, "outs")}
    for dep in declared(stage, "deps"):  # data it reads; a fingerprint is a dep only to re-run it
        if not is_code(dep) and dep not in fingerprints:
            assert dep in given, f"{name}: cmd does not name its dep {dep}"


def tracked_by(key: str) -> list[str]:
    return [name for name, stage in STAGES.items()
            if any(key == p or key.startswith(f"{p}.") for p in stage.get("params", []))]


def test_every_param_that_changes_results_is_tracked_and_run_settings_are_not():
    assert RUN_SETTINGS <= PARAMS
    untracked = sorted(k for k in PARAMS - RUN_SETTINGS if not tracked_by(k))
    assert not untracked, f"params.yaml keys no stage lists under params in dvc.yaml: {untracked}"
    assert not {k: tracked_by(k) for k in RUN_SETTINGS if tracked_by(k)}
    for name, stage in STAGES.items():
        for entry in stage.get("params", []):
            assert any(k == entry or k.startswith(f"{entry}.") for k in PARAMS), f"{name}: no param {entry}"


def test_the_trained_cube_is_a_declared_model_artifact():
    cube = DVC_YAML["artifacts"]["cube"]
    assert cube["type"] == "model" and cube["desc"] and cube["labels"]
    assert cube["path"] in declared(STAGES["train"], "outs")  # cached: `dvc artifacts get` fetches it


def test_each_plot_is_declared_once_and_dvclive_curves_by_directory():
    top = [next(iter(p)) if isinstance(p, dict) else p for p in DVC_YAML["plots"]]
    in_stages = [p for stage in STAGES.values() for p in declared(stage, "plots")]
    assert len(top + in_stages) == len(set(top + in_stages))
    words = shlex.split(STAGES["train"]["cmd"])
    live = words[words.index("--live") + 1]
    # every curve DVCLive logs, present and future, by its folder (inside a DVC-cached output)
    assert f"{live}/plots/metrics" in top and live in declared(STAGES["train"], "outs")


def test_train_can_be_restored_from_the_run_cache():
    """DVC saves a stage to its run-cache only when each of its uncached outputs is a metric or
    a plot (``no_cache_outs`` in dvc/stage/__init__.py)."""
    train = STAGES["train"]
    uncached = [next(iter(o)) for o in train.get("outs", []) if isinstance(o, dict)
                and next(iter(o.values())).get("cache") is False]
    assert not uncached, f"train's uncached outs {uncached} keep it out of the run-cache: declare them as metrics or plots"
    assert not any(isinstance(o, dict) and next(iter(o.values())).get("persist") for o in train.get("outs", []))


def test_readme_graph_is_the_dag():
    outs = {name: [p for section in ("outs", "metrics", "plots") for p in declared(stage, section)]
            for name, stage in STAGES.items()}
    dag = {(a, b) for b, stage in STAGES.items() for dep in declared(stage, "deps") for a in STAGES
           if a != b and any(dep == out or dep.startswith(f"{out}/") for out in outs[a])}
    readme = (REPO / "README.md").read_text()
    graph = readme[readme.index("```mermaid"):].split("```")[1]
    drawn = set()
    for line in graph.splitlines():
        nodes = [n.strip() for n in line.split("-->")]
        drawn |= set(zip(nodes, nodes[1:]))
    assert drawn == dag, f"README graph: draw {sorted(dag - drawn)}, remove {sorted(drawn - dag)}"


def test_evaluate_tracks_the_train_keys_its_mlp_baseline_trains_with():
    # The MLP baseline trains with the cube's Trainer and train.* params, but for these two: the
    # mode comes from models/cube (a dep), the target cosine is only reported by `train`.
    # reported by train only; the MLP trains in one process whatever train.distributed says
    train_stage_only = {"train.mode", "train.target_cosine", "train.memory_limit_gb", "train.distributed.processes"}
    train_keys = {k for k in PARAMS if k.startswith("train.")}
    by_train = {k for k in train_keys if "train" in tracked_by(k)}
    by_evaluate = {k for k in train_keys if "evaluate" in tracked_by(k)}
    assert by_evaluate == by_train - train_stage_only, (
        f"evaluate params: add {sorted(by_train - train_stage_only - by_evaluate)}, "
        f"remove {sorted(by_evaluate - (by_train - train_stage_only))}")
