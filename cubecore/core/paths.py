"""Where relative paths point, and checks that a path given by the user is usable.

DVC runs ``--temp`` and queued experiments in a throw-away copy of the repository
(``<repo>/.dvc/tmp/exps/[standalone/]tmpXXXX``) and exports ``DVC_ROOT=<repo>`` (seen with
DVC 3.67). A relative ``base.cache_dir`` or ``train.checkpoint_dir`` resolved against that
copy would give every experiment an empty cache, so :func:`project_path` resolves relative
paths against the original repository: all experiments of one repository share one cache.

Nothing is written outside the project by accident:

- a stage's path options (``--out``, ``--metrics``, ...) must stay inside the working
  directory; ``..`` that climbs out or an absolute path elsewhere is refused unless the
  command also says ``--allow-outside``;
- ``base.cache_dir`` and ``train.checkpoint_dir`` may not climb out with ``..`` either; an
  absolute (or ``~``) path is taken as intended (e.g. one cache shared by several clones).

The checks are lexical: a symlink the user made inside the project is followed as intended.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cubecore.core.errors import CubecoreError


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


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.normpath(root / path)).is_relative_to(root)


def output_path(path: str | Path, option: str, allow_outside: bool = False) -> Path:
    """``path`` if it stays inside the working directory (or ``allow_outside``), else an error
    naming the command-line ``option``."""
    path = Path(path).expanduser()
    root = Path.cwd().resolve()
    if not allow_outside and not _inside(path, root):
        raise CubecoreError(f"{option}: {path} is outside the project ({root}); pass --allow-outside "
                            f"if you mean to write there")
    return path


def usable_dir(path: str | Path, param: str) -> Path:
    """Create ``path`` (resolved with :func:`project_path`) and prove a file can be written in
    it; otherwise one error naming ``param``. Called before any long work starts."""
    raw = Path(path).expanduser()
    if not raw.is_absolute() and not _inside(raw, project_dir()):
        raise CubecoreError(f"{param}: {path} climbs out of the project ({project_dir()}); "
                            f"give an absolute path to keep it elsewhere")
    directory = project_path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        reason = "it is a file" if isinstance(exc, FileExistsError) else exc.strerror or str(exc)
        culprit = Path(exc.filename) if exc.filename else directory
        where = "" if directory in (culprit, culprit.parent) else f" ({culprit})"  # not our temp file's name
        raise CubecoreError(f"{param}: cannot use {directory} as a writable directory: "
                            f"{reason}{where}") from None
    return directory
