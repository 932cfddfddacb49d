"""The pipeline's inputs that live outside the repository's code, fingerprinted by content.

DVC cannot list the user's files (``data.files.paths``, ``data.dataset.path``) or an installed teacher as stage
dependencies, so the ``check`` stage writes this fingerprint to ``data/inputs.json`` on every
run and ``extract`` depends on that file: same content, nothing re-runs; an edited data file
or another teacher, ``extract`` and everything after it re-run. No paths of this machine are
recorded, so the fingerprint (and ``dvc.lock``) is the same on every checkout.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import math
from pathlib import Path

from cubecore.core.config import CubeParams, DatasetParams, Params
from cubecore.core.errors import CubecoreError
from cubecore.data.hfdataset import locate
from cubecore.data.modeldir import content_identity, resolve_model_dir, teacher_dim

SOURCE_PACKAGES = {"chatterbot": "chatterbot-corpus", "chitchat": "chitchat-dataset"}


def file_identity(path: str, param: str) -> dict:
    """``path`` as params.yaml names it, its size and SHA-256."""
    try:
        with open(Path(path).expanduser(), "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
            size = fh.tell()
    except OSError as exc:
        raise CubecoreError(f"{param}: cannot read {path} ({exc.strerror})") from None
    return {"path": path, "bytes": size, "sha256": digest}


def dataset_identity(dataset: DatasetParams) -> list[dict]:
    """Each file holding the dataset's rows, named from ``data.dataset.path`` as written, with its
    size and SHA-256 (a save_to_disk folder's Arrow files, state and info; the data files)."""
    base = Path(dataset.path).expanduser()
    return [file_identity(dataset.path if path == base else f"{dataset.path.rstrip('/')}/{path.relative_to(base)}",
                          "data.dataset.path") for path in locate(dataset).files]


LAYOUT_FREE = ("learned", "learned_skip")  # placements that map the teacher's dims onto any lattice


def lattice_problem(cube: CubeParams, dim: int | None) -> str | None:
    """Why ``cube.lattice`` cannot hold a teacher of ``dim`` dimensions: a placement that lays them
    on the lattice one per cell (all but ``learned`` and ``learned_skip``) needs that volume."""
    volume = math.prod(cube.lattice)
    if cube.placement in LAYOUT_FREE or dim is None or volume == dim:
        return None
    return (f"cube.lattice: {cube.lattice} holds {volume} cells but the teacher's dimension is {dim}; "
            f"use a lattice of volume {dim} or cube.placement: learned")


def check_lattice(params: Params) -> None:
    problem = lattice_problem(params.cube, teacher_dim(resolve_model_dir(params.teacher.model)))
    if problem:
        raise CubecoreError(problem)


def fingerprint_inputs(params: Params) -> dict:
    """The data source's content (files, a dataset's files or a package version) and the teacher's identity, after
    the one rule that needs the teacher: the lattice fits its dimension."""
    check_lattice(params)
    data = params.data
    if data.source == "files":
        source = [file_identity(path, f"data.files.paths[{i}]") for i, path in enumerate(data.files.paths)]
    elif data.source == "dataset":
        source = dataset_identity(data.dataset)
    else:
        package = SOURCE_PACKAGES[data.source]
        try:
            source = {"package": package, "version": importlib.metadata.version(package)}
        except importlib.metadata.PackageNotFoundError:
            raise CubecoreError(f"data.source: package {package!r} is not installed (run `make setup`)") from None
    return {"data": {"source": data.source, "content": source}, "teacher": content_identity(params.teacher.model)}
