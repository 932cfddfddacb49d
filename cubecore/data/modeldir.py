"""Where a teacher's model directory is and what it is, without importing torch.

``teacher.model`` names a local model directory or an installed package that ships one.
A teacher's identity is its content (the SHA-256 of config, tokenizer and weight files) and,
for a package, its name and version: never the path it happens to live at on this machine.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
from pathlib import Path

from cubecore.core.errors import CubecoreError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "merges.txt", "vocab.json",
                   "tokenizer.model", "special_tokens_map.json", "added_tokens.json")


def _weight_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir()
                  if p.suffix == ".safetensors" or (p.suffix == ".bin" and p.name.startswith("pytorch_model")))


def _model_dir_in(root: Path) -> Path | None:
    """The directory under ``root`` (itself first) that holds a config.json and weights."""
    for config in sorted(root.rglob("config.json"), key=lambda p: len(p.parts)):
        if _weight_files(config.parent):
            return config.parent
    return None


def resolve_model_dir(name: str) -> Path:
    """A local model directory for ``name`` (a path, or an installed package shipping a model)."""
    path = Path(name).expanduser()
    if path.exists():
        found = _model_dir_in(path) if path.is_dir() else None
        if found is None:
            raise CubecoreError(f"teacher.model: {path} holds no config.json with model weights")
        return found
    spec = importlib.util.find_spec(name.replace("-", "_")) if name.replace("-", "_").isidentifier() else None
    if spec is not None and spec.submodule_search_locations:
        found = _model_dir_in(Path(next(iter(spec.submodule_search_locations))))
        if found is None:
            raise CubecoreError(f"teacher.model: package {name!r} is installed but ships no model weights")
        return found
    raise CubecoreError(
        f"teacher.model: {name!r} is neither a local directory nor an installed package; models are "
        f"never downloaded at run time (this machine is offline): download it where there is a "
        f"network, copy the directory here and set teacher.model to its path")


def fingerprint(model_dir: Path) -> str:
    """SHA-256 over the config, tokenizer and weight files: the teacher's identity for the cache."""
    digest = hashlib.sha256()
    tokenizer = [model_dir / name for name in TOKENIZER_FILES if (model_dir / name).exists()]
    files = [model_dir / "config.json", *tokenizer, *_weight_files(model_dir)]
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def content_identity(name: str) -> dict:
    """``teacher.model`` as written, the package version (None for a directory) and the content hash."""
    version = None
    if not Path(name).expanduser().exists():
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"model": name, "version": version, "weights_sha256": fingerprint(resolve_model_dir(name))}


def teacher_dim(model_dir: Path) -> int | None:
    """The width of the teacher's hidden states (its embedding dimension), from config.json."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return next((config[key] for key in ("hidden_size", "d_model", "n_embd") if isinstance(config.get(key), int)), None)
