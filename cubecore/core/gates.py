"""Opt-in gates: ``evaluate.require`` turns a result into a pass or a failed stage.

Each entry of the list is one requirement, checked on the report split (``test`` when
``split.test_fraction`` > 0, else ``val``) after ``eval.json`` and the plots are written:

=====================================  ==============================================================
``not_dominated``                      no baseline (every ``blend@a`` and ``shift@b`` included) is at
                                       least as good as the cube on cosine and MRR and better on one
``lattice_matters``                    the trivial affine fit ``alpha * x + c`` of the cube's outputs
                                       (fitted on train) has R² at most ``evaluate.affine_r2_limit``
``beats: frontier``                    the cube's frontier margin is > 0: on one of cosine and MRR it
                                       is ahead of every baseline
``beats: <baseline>``                  the cube's cosine and MRR are both above the baseline's
                                       (identity, mean, ridge, linear, mlp, blend, shift)
``beats: best``                        the same against the best baseline per metric (chosen on val)
``beats: <baseline|best> on <metric>`` one metric only: cosine, cosine_median, mrr, recall@<k> (k in
                                       ``evaluate.recall_at``), bleu, rouge_l (``best``: a headline one)
``... beyond noise``                   the 95 % bootstrap interval of the difference lies above 0
                                       (only ``best`` on cosine, mrr or recall@1, and ``frontier``)
=====================================  ==============================================================

For example ``require: [not_dominated, "beats: best on mrr beyond noise"]``. YAML reads an
unquoted ``- beats: ridge`` as a one-key mapping; it is taken as the same text. A failed
requirement stops the stage with one line naming every failed entry, the split and the gap.

Where a metric is saturated (at its ceiling for the cube and some baselines: MRR 1 in
autoencoder mode) the frontier's verdicts rest on the other metric (``cubecore.core.frontier``),
and the messages of ``not_dominated`` and ``beats: frontier`` say so.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from cubecore.core.errors import CubecoreError
from cubecore.core.frontier import basis, short_list
from cubecore.core.lineup import BASELINES, HEADLINE, INTERVALS

log = logging.getLogger(__name__)

FRONTIER = ("cosine", "mrr")  # what `beats: <target>` compares without `on`
BEATS = re.compile(r"beats:\s*(?P<target>\S+?)(?:\s+on\s+(?P<metric>\S+?))?(?P<noise>\s+beyond noise)?")


@dataclass(frozen=True)
class Requirement:
    text: str
    target: str | None = None  # None: not_dominated or lattice_matters (the text says which)
    metrics: tuple[str, ...] = ()
    beyond_noise: bool = False


def as_text(entry) -> object:
    """A one-key YAML mapping (``- beats: ridge`` unquoted) as the text it was meant to be."""
    if isinstance(entry, dict) and len(entry) == 1:
        ((key, value),) = entry.items()
        return f"{key}: {value}"
    return entry


def parse(text: str, recall_at: list[int]) -> Requirement:
    """The requirement ``text`` states, or a CubecoreError saying what is wrong with it."""
    text = text.strip()
    if text in ("not_dominated", "lattice_matters"):
        return Requirement(text)
    match = BEATS.fullmatch(text)
    if match is None:
        raise CubecoreError(f"{text!r} is not a requirement (not_dominated, lattice_matters, 'beats: <target>', "
                            f"'beats: <target> on <metric>', each optionally ending in 'beyond noise')")
    target, metric, noise = match["target"], match["metric"], bool(match["noise"])
    if target not in ("frontier", "best", *BASELINES):
        raise CubecoreError(f"{text!r}: unknown target {target!r} (frontier, best, {', '.join(BASELINES)})")
    known = ("cosine", "cosine_median", "mrr", *(f"recall@{k}" for k in recall_at), "bleu", "rouge_l")
    if target == "frontier" and metric:
        raise CubecoreError(f"{text!r}: the frontier is over cosine and MRR together; drop 'on {metric}'")
    if metric and metric not in known:
        raise CubecoreError(f"{text!r}: unknown metric {metric!r} ({', '.join(known)})")
    if target == "best" and metric and metric not in HEADLINE:
        raise CubecoreError(f"{text!r}: the best baseline is chosen per headline metric ({', '.join(HEADLINE)})")
    metrics = (metric,) if metric else FRONTIER
    if noise and not (target == "frontier" or target == "best" and set(metrics) <= set(INTERVALS)):
        raise CubecoreError(f"{text!r}: 'beyond noise' needs a bootstrap interval: 'beats: frontier' or "
                            f"'beats: best' on {', '.join(INTERVALS)}")
    return Requirement(text, target, () if target == "frontier" else metrics, noise)


def shortfall(req: Requirement, results: dict) -> str | None:
    """Why ``results`` (eval.json's content) miss ``req`` on the report split, or None."""
    split = results["setup"]["report_split"]
    frontier, confidence = results["frontier"][split], results["confidence"]
    if req.text == "lattice_matters":
        anatomy = results["anatomy"]
        r2, limit = anatomy[split]["trivial"]["r2"], anatomy["affine_r2_limit"]
        if r2 <= limit:
            return None
        return (f"alpha * x + c (alpha {anatomy['alpha']:.4f}, fitted on train) explains the cube's outputs "
                f"with R² {r2:.4f} > evaluate.affine_r2_limit {limit:g}: the lattice adds next to nothing")
    if req.target is None:
        cube = frontier["cube"]
        if not frontier["dominated"]:
            return None
        return (f"the cube (cosine {cube['cosine']:.4f}, MRR {cube['mrr']:.4f}) is dominated{basis(frontier)} by "
                f"{short_list(frontier['dominated_by'])} (margin {frontier['margin']:.4f})")
    if req.target == "frontier":
        entry = confidence["frontier_margin"] if req.beyond_noise else None
        if entry is not None and entry["low"] <= 0:
            return (f"the frontier margin {entry['value']:.4f}{basis(frontier)} is not above 0 beyond noise "
                    f"(95 % interval {entry['low']:.4f} to {entry['high']:.4f})")
        if entry is None and frontier["margin"] <= 0:
            return f"the cube's frontier margin{basis(frontier)} is {frontier['margin']:.4f} (needs > 0)"
        return None
    gaps = []
    for metric in req.metrics:
        other = results["setup"]["best_baseline"][metric] if req.target == "best" else req.target
        if req.beyond_noise:
            entry = confidence[metric]
            if entry["low"] <= 0:
                gaps.append(f"cube - {other} on {metric} is {entry['value']:.4f}, 95 % interval "
                            f"{entry['low']:.4f} to {entry['high']:.4f} (not above 0)")
            continue
        cube, base = results["cube"][split][metric], results[other][split][metric]
        if cube <= base:
            gaps.append(f"the cube's {metric} {cube:.4f} is not above {other}'s {base:.4f} (short by {base - cube:.4f})")
    return "; ".join(gaps) or None


def enforce(require: list[str], recall_at: list[int], results: dict) -> None:
    """Raise one CubecoreError naming every requirement ``results`` miss; log when all hold."""
    if not require:
        return
    split = results["setup"]["report_split"]
    failed = [f'"{text}": {gap}' for text in require
              if (gap := shortfall(parse(text, recall_at), results)) is not None]
    if failed:
        raise CubecoreError(f"evaluate.require failed on {split}: {' | '.join(failed)}")
    log.info("evaluate.require: all %d requirements hold on %s", len(require), split)
