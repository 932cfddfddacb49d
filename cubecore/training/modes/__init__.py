"""Training modes by ``train.mode``; each module defines one ``MODE`` (see ``base.Mode``)."""
from __future__ import annotations

from cubecore.core.errors import CubecoreError
from cubecore.training.modes import autoencoder, bidirectional, dialogue, dual
from cubecore.training.modes.base import Mode

MODES: dict[str, Mode] = {module.MODE.name: module.MODE for module in (dialogue, autoencoder, dual, bidirectional)}


def get_mode(name: str) -> Mode:
    if name not in MODES:
        raise CubecoreError(f"train.mode must be one of {' | '.join(MODES)}, got {name!r}")
    return MODES[name]
