"""The seed's quality thresholds as reported pass/fail fields, never as gates.

- ``bleu``: the seed's dialogue ``bleu_threshold`` (0.4) against the cube's BLEU of the
  decoded answers (dialogue pairing, or the pairing the mode is evaluated on);
- ``reconstruction_cosine``: the autoencoder's ``similarity_threshold`` (0.95) against the
  cube's cosine on autoencoder rows (``autoencoder`` mode, or ``dual``'s reconstruction view).

Each is ``{"target", "value", "passed"}`` per evaluated split; a threshold whose rows the
mode does not produce is left out.
"""
from __future__ import annotations

from cubecore.core.config import EvaluateParams


def seed_targets(metrics: dict, mode, params: EvaluateParams) -> dict:
    """Pass/fail of each seed threshold that applies to ``mode``, from evaluate's ``metrics``."""
    sources = {"bleu": (metrics["cube"], "bleu", params.bleu_target)}
    reconstruction = metrics["cube"] if mode.pairing.name == "autoencoder" else next(
        (metrics["views"][view.name]["cube"] for view in mode.views if view.pairing.name == "autoencoder"), None)
    if reconstruction is not None:
        sources["reconstruction_cosine"] = (reconstruction, "cosine", params.reconstruction_target)
    return {name: {split: {"target": target, "value": scores[metric], "passed": scores[metric] >= target}
                   for split, scores in by_split.items()}
            for name, (by_split, metric, target) in sources.items()}
