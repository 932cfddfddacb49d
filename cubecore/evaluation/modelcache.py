"""Trained baselines kept by content, so re-running ``evaluate`` retrains nothing unchanged.

``train.checkpoint_dir/baselines/<name>-<key>.safetensors`` holds one finished model's weights
and, in the file's metadata, the summary its training returned (best epoch, val figures). The
key is the run's identity (``cubecore.training.identity.run_key``). So changing only
``evaluate.recall_at``, a plot or the blend weights loads the baselines; changing their data
or training params trains them afresh. The directory is outside DVC's outputs (DVC deletes
those before a stage runs) and, like the checkpoints, shared by queued experiments
(``cubecore.core.paths``). Files are written atomically; one that cannot be loaded is reported in
one warning and replaced by a fresh training.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from cubecore.core.artifacts import atomic_path, umask
from cubecore.core.paths import usable_dir
from cubecore.training.checkpoints import UNLOADABLE

log = logging.getLogger(__name__)

def cache_file(name: str, key: str, checkpoint_dir: str) -> Path:
    return usable_dir(checkpoint_dir, "train.checkpoint_dir") / "baselines" / f"{name}-{key}.safetensors"


def _load(model: nn.Module, path: Path) -> dict | None:
    """The stored summary, with the weights loaded into ``model``; None if there is none usable."""
    if not path.exists():
        return None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as stored:
            summary = json.loads(stored.metadata()["summary"])
            model.load_state_dict({k: stored.get_tensor(k) for k in stored.keys()})
    except (*UNLOADABLE, json.JSONDecodeError) as exc:
        model.load_state_dict(before)
        log.warning("evaluate: discarding the unusable cached baseline %s (%s); training it again",
                    path, type(exc).__name__)
        return None
    return summary


def cached_fit(model: nn.Module, name: str, key: str, checkpoint_dir: str, fit: Callable[[], dict]) -> dict:
    """``fit()``'s summary, with ``model`` trained: loaded from the cache when this exact
    training already ran, else trained by ``fit`` and stored."""
    path = cache_file(name, key, checkpoint_dir)
    summary = _load(model, path)
    if summary is not None:
        log.info("evaluate: %s loaded from the baseline cache (%s), not retrained", name, path)
        return summary
    summary = fit()
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(weights, str(tmp), metadata={"summary": json.dumps(summary)})
        os.chmod(tmp, 0o666 & ~umask())  # safetensors writes 0600: give it the usual mode
    log.info("evaluate: %s trained and cached in %s", name, path)
    return summary
