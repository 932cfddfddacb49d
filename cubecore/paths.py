"""Where relative paths point, and checks that a directory param is usable.

DVC runs ``--temp`` and queued experiments in a throw-away copy of the repository
(``<repo>/.dvc/tmp/exps/[standalone/]tmpXXXX``) and exports ``DVC_ROOT=<repo>`` (seen with
DVC 3.67). A relative ``base.cache_dir`` or ``train.checkpoint_dir`` resolved against that
copy would give every experiment an empty cache, so :func:`project_path` resolves relative
paths against the original repository: all experiments of one repository share one cache.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cubecore.errors import CubecoreError


def experiment_copy_root(cwd: Path, dvc_root: Path) -> Path | None:
    """The root of the DVC experiment copy holding ``cwd``, or None outside one."""
    exps = dvc_root / ".dvc" / "tmp" / "exps"
    if not cwd.is_relative_to(exps):
        return None
    for candidate in (cwd, *cwd.parents):
        if candidate == exps:
            return None
        if (candidate / ".dvc").is_dir():
            return candidate
    return None


def project_dir() -> Path:
    """The directory relative paths resolve against: the working directory, or, inside a DVC
    experiment copy, the same place in the original repository."""
    cwd = Path.cwd().resolve()
    dvc_root = os.environ.get("DVC_ROOT")
    if dvc_root:
        root = Path(dvc_root).resolve()
        copy = experiment_copy_root(cwd, root)
        if copy is not None:
            return root / cwd.relative_to(copy)
    return cwd


def project_path(path: str | Path) -> Path:
    """``path`` with ``~`` expanded; a relative path is taken from :func:`project_dir`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_dir() / path


def usable_dir(path: str | Path, param: str) -> Path:
    """Create ``path`` (resolved with :func:`project_path`) and prove a file can be written in
    it; otherwise one error naming ``param``. Called before any long work starts."""
    directory = project_path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != directory else ""
        raise CubecoreError(f"{param}: cannot use {directory} as a writable directory: "
                            f"{reason}{where}") from None
    return directory
