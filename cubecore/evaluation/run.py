"""The ``evaluate`` stage: the cube beside simple baselines on the same rows.

For each evaluated split (val, and test when configured) and each model of ``MODELS``:
cosine to the target (mean, median), retrieval of the target among the split's distinct
targets (Recall@k, MRR), and decoding to text through an answer bank (the nearest training
target text), scored with BLEU and ROUGE-L against the reference text.

Everything is chosen on ``val`` and reported on ``test`` (when ``split.test_fraction`` > 0;
otherwise on ``val``): the cube's and the trained baselines' epochs (early stopping), the
blend weight (``blend`` is the ``blend@a`` with the best val mean of cosine and MRR), and
the best baseline per metric. ``eval.json`` also holds:

- ``cube_vs_best_baseline``: cube minus that best baseline per metric (positive: the cube wins);
- ``frontier``: per split, the Pareto frontier of all baselines (every ``blend@a`` included)
  in (cosine, MRR), whether the cube is dominated and its signed margin (``cubecore.core.frontier``);
  the points themselves are plot data (``plots/frontier.csv``), so ``dvc exp show`` stays readable;
- ``confidence``: paired-bootstrap 95 % intervals, on the report split, of cube minus best
  baseline for cosine, MRR and Recall@1, and of the frontier margin;
- ``setup.trivial_recall_at``: per split, the cut-offs k with k >= candidates (Recall@k = 1
  for every model there, so it says nothing);
- ``anatomy``: what the cube computes, against its affine fits and with its lattice switched off
  (``cubecore.evaluation.anatomy``). ``shift`` (``x + b * mean answer``, ``b`` chosen on val like the blend
  weight) is the cube's trivial class among the baselines, every ``shift@b`` a frontier point.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cubecore.core import artifacts
from cubecore.core.config import Params
from cubecore.core.frontier import frontier_report, margin
from cubecore.core.lineup import BASELINES, HEADLINE, INTERVALS, MODELS
from cubecore.data.splitting import split_fingerprints
from cubecore.evaluation.anatomy import anatomy
from cubecore.evaluation.baselines import (
    Blend,
    Identity,
    Shift,
    blend_family,
    fit_baselines,
    fit_ridge,
    shift_family,
)
from cubecore.evaluation.bootstrap import LEVEL, interval, resample_means
from cubecore.evaluation.nearest import nearest
from cubecore.evaluation.scoring import (
    candidate_index,
    cosine,
    mixed_retrieval_ranks,
    retrieval_summary,
    target_ranks,
    text_scores,
)
from cubecore.evaluation.targets import seed_targets
from cubecore.model.inference import parameter_count, predict
from cubecore.training.modes import get_mode
from cubecore.training.pairings import TaskData, corrupted_once, split_tasks
from cubecore.training.run import load_model, load_split
from cubecore.training.runtime import use_threads

log = logging.getLogger(__name__)


class AnswerBank:
    """Distinct texts with their embeddings; ``decode`` returns the nearest text per vector.

    The embeddings stay where they are (memory-mapped): each search reads them in blocks."""

    def __init__(self, ids: np.ndarray, embeddings: np.ndarray, texts: list[str]):
        self.ids = np.unique(ids)
        self.embeddings = embeddings
        self.texts = [texts[i] for i in self.ids]

    def nearest(self, pred: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and bank positions of the ``k`` nearest texts per row."""
        return nearest(pred, self.embeddings, self.ids, k)

    def decode(self, pred: torch.Tensor) -> list[str]:
        _, index = self.nearest(pred)
        return [self.texts[i] for i in index[:, 0].tolist()]


def row_values(pred: torch.Tensor, rows: TaskData, ranks: torch.Tensor) -> dict[str, np.ndarray]:
    """Each row's cosine, rank of its target (given), reciprocal rank and hit@1."""
    ranks = ranks.numpy()
    return {"cosine": cosine(pred, rows.targets).numpy(), "rank": ranks, "mrr": 1.0 / ranks,
            "recall@1": (ranks <= 1).astype(np.float64)}


def per_row(pred: torch.Tensor, rows: TaskData) -> dict[str, np.ndarray]:
    """Each row's cosine, rank of its target, reciprocal rank and hit@1."""
    return row_values(pred, rows, target_ranks(pred, rows.targets, rows.target_ids)[0])


def blend_rows(family: dict[str, Blend], rows: TaskData) -> dict[str, dict[str, np.ndarray]]:
    """``per_row`` of every blend of one ridge: the normalised ridge prediction and input are
    computed once, and the ranks of all blends come from their two score matrices."""
    blends = list(family.values())
    unit_ridge = F.normalize(predict(blends[0].ridge, rows.inputs), dim=-1)
    unit_input = F.normalize(rows.inputs, dim=-1)
    first_rows, position = candidate_index(rows.target_ids)
    ranks = mixed_retrieval_ranks(unit_ridge, unit_input, rows.targets[first_rows], position,
                                  [blend.a for blend in blends])
    return {name: row_values((1 - blend.a) * unit_ridge + blend.a * unit_input, rows, blend_ranks)
            for (name, blend), blend_ranks in zip(family.items(), ranks)}


def shift_rows(family: dict[str, Shift], rows: TaskData) -> dict[str, dict[str, np.ndarray]]:
    """``per_row`` of every ``x + b * mean``: a candidate's score ``x·t + b·mean·t`` ranks like
    the mix ``(1 - a)·mean·t + a·x·t`` with ``a = 1 / (1 + b)``, so two score matrices serve all."""
    shifts = list(family.values())
    mean = shifts[0].mean.expand(len(rows), -1)
    first_rows, position = candidate_index(rows.target_ids)
    ranks = mixed_retrieval_ranks(mean, rows.inputs, rows.targets[first_rows], position,
                                  [1 / (1 + shift.b) for shift in shifts])
    return {name: row_values(rows.inputs + shift.b * mean, rows, shift_ranks)
            for (name, shift), shift_ranks in zip(family.items(), ranks)}


def chosen_on_val(values_val: dict[str, dict[str, np.ndarray]], family: dict) -> str:
    """The member of ``family`` with the best val mean of cosine and MRR."""
    return max(family, key=lambda n: values_val[n]["cosine"].mean() + values_val[n]["mrr"].mean())


def summary(values: dict[str, np.ndarray], recall_at: list[int]) -> dict:
    """The per-row values summarised: cosine mean and median, Recall@k and MRR."""
    return {"cosine": float(values["cosine"].mean()), "cosine_median": float(np.median(values["cosine"])),
            **retrieval_summary(torch.from_numpy(values["rank"]), recall_at)}


def recall_curve(ranks: np.ndarray, max_k: int = 50) -> np.ndarray:
    """Recall@k for k = 1..max_k."""
    return np.array([(ranks <= k).mean() for k in range(1, max_k + 1)])


def rounded(scores: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


def score(pred: torch.Tensor, rows: TaskData, bank: AnswerBank, texts: list[str],
          recall_at: list[int]) -> tuple[dict, dict[str, np.ndarray]]:
    """One model's metrics on one split (rounded), and its per-row values."""
    values = per_row(pred, rows)
    references = [texts[i] for i in rows.target_ids]
    metrics = rounded({**summary(values, recall_at), "candidates": len(np.unique(rows.target_ids)),
                       **text_scores(bank.decode(pred), references)})
    return metrics, values


def score_views(model, mode, data, split_dir: str | Path, names: list[str], params: Params) -> dict:
    """The mode's further views (e.g. ``dual``'s reconstruction): per view name, the model,
    ``identity`` (the input itself) and ``ridge`` (fitted on the view's training rows, on noisy
    inputs where the view is noisy) per evaluated split, answers decoded through the view's own
    training targets."""
    parts = {name: artifacts.read_pairs(Path(split_dir) / f"{name}.tsv") for name in names}
    out = {}
    for view in mode.views:
        noise, seed = view.pairing.input_noise(params.train), params.base.seed
        rows = split_tasks(view.pairing, data.embeddings, parts, noise, seed)
        train = rows["train"]
        if noise:  # a ridge *denoiser*: fitted on noisy inputs, as the cube was trained
            train = corrupted_once(train, noise, seed)
        bank = AnswerBank(train.target_ids, data.embeddings, data.texts)
        models = {"cube": view.module(model), "identity": Identity(),
                  "ridge": fit_ridge(train, params.evaluate.ridge_alphas, seed)[0]}
        out[view.name] = {
            name: {split: score(predict(module, rows[split].inputs), rows[split], bank, data.texts,
                                params.evaluate.recall_at)[0] for split in names[1:]}
            for name, module in models.items()}
    return out


def points(values: dict[str, dict], names) -> dict[str, tuple[float, float]]:
    return {n: (float(values[n]["cosine"].mean()), float(values[n]["mrr"].mean())) for n in names}


def confidence(values: dict[str, dict], best: dict[str, str], point_names: list[str],
               resamples: int, seed: int) -> dict:
    """Paired-bootstrap intervals of cube minus best baseline (per metric) and of the margin."""
    diffs = np.stack([values["cube"][m] - values[best[m]][m] for m in INTERVALS], axis=1)
    cos, mrr = (np.stack([values[n][m] for n in ["cube", *point_names]], axis=1) for m in ("cosine", "mrr"))
    means = resample_means(np.concatenate([diffs, cos, mrr], axis=1), resamples, seed)
    diff_means, cos_means, mrr_means = np.split(means, [len(INTERVALS), len(INTERVALS) + cos.shape[1]], axis=1)
    report = {}
    for i, m in enumerate(INTERVALS):
        low, high = interval(diff_means[:, i])
        report[m] = {"baseline": best[m], "value": round(float(diffs[:, i].mean()), 4),
                     "low": round(low, 4), "high": round(high, 4)}
    cos, mrr = cos.mean(0), mrr.mean(0)
    low, high = interval(margin(cos_means[:, 0], mrr_means[:, 0], cos_means[:, 1:], mrr_means[:, 1:]))
    report["frontier_margin"] = {"value": round(float(margin(cos[0], mrr[0], cos[1:], mrr[1:])), 4),
                                 "low": round(low, 4), "high": round(high, 4)}
    return report


def headline(metrics: dict) -> dict:
    """The few figures a reviewer compares across runs (``metrics/headline.json``, the file
    ``dvc exp show`` and ``dvc metrics diff`` list): on the report split, the cube's cosine, MRR
    and Recall@1, its frontier margin with the bootstrap interval, and the R² of its trivial
    affine fit. Everything else stays in ``eval.json``."""
    split = metrics["setup"]["report_split"]
    margin = metrics["confidence"]["frontier_margin"]
    return {"split": split, "cube": {m: metrics["cube"][split][m] for m in INTERVALS},
            "margin": margin["value"], "margin_low": margin["low"], "margin_high": margin["high"],
            "trivial_r2": metrics["anatomy"][split]["trivial"]["r2"]}


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` found: ``metrics`` (written to metrics/eval.json) and what each plot draws."""
    metrics: dict
    cosine: dict[str, np.ndarray]  # per model: the val rows' cosine to their targets
    recall: dict[str, np.ndarray]  # per model: recall@k on val for every k
    frontier: dict                 # the report split's points, the blend and shift families, the frontier
    anatomy: dict                  # the cube's outputs against its affine fits (cubecore.evaluation.anatomy)

    @property
    def mode(self) -> str:
        return self.metrics["setup"]["mode"]


def evaluate(params: Params, data_dir: str | Path, split_dir: str | Path, model_dir: str | Path) -> Evaluation:
    """Metrics per model and split, and what the plots need (per-row cosine, recall curves)."""
    use_threads(params.train.threads)  # the trained baselines run like the cube (1 thread: 2-5x faster under load)
    cube, info = load_model(model_dir)
    mode, seed, recall_at = get_mode(info["mode"]), params.base.seed, params.evaluate.recall_at
    names = ["train", "val"] + (["test"] if params.split.test_fraction > 0 else [])
    noise = mode.pairing.input_noise(params.train)
    data, splits = load_split(data_dir, split_dir, mode.pairing, noise, seed, names)
    train = splits["train"]
    models, fitted = fit_baselines(train, splits["val"], params.train, params.evaluate.ridge_alphas,
                                   seed, parameter_count(cube),
                                   noise=noise)
    family = blend_family(models["ridge"], params.evaluate.blend_steps)
    shifts = shift_family(models["mean"])
    models = {"cube": cube, **models}
    point_names = [n for n in BASELINES if n not in ("blend", "shift")] + list(family) + list(shifts)
    bank = AnswerBank(train.target_ids, data.embeddings, data.texts)
    evaluated = names[1:]
    metrics: dict = {name: {} for name in MODELS}
    values: dict = {}
    trivial: dict = {}
    for split in evaluated:  # val first: the blend weight is chosen there
        rows = splits[split]
        values[split] = {**blend_rows(family, rows), **shift_rows(shifts, rows)}
        if split == "val":
            chosen_blend = chosen_on_val(values["val"], family)
            models["blend"], models["shift"] = family[chosen_blend], shifts[chosen_on_val(values["val"], shifts)]
        candidates = len(np.unique(rows.target_ids))
        for name in MODELS:
            metrics[name][split], values[split][name] = score(predict(models[name], rows.inputs), rows, bank,
                                                             data.texts, recall_at)
        trivial[split] = {f"recall@{k}": k >= candidates for k in recall_at}
        if any(trivial[split].values()):
            log.warning("evaluate: %s has %d candidates, so %s is 1 for every model (trivial)", split,
                        candidates, ", ".join(k for k, flag in trivial[split].items() if flag))
    best = {m: max(BASELINES, key=lambda b: metrics[b]["val"][m]) for m in HEADLINE}
    metrics["cube_vs_best_baseline"] = {
        split: {m: round(metrics["cube"][split][m] - metrics[best[m]][split][m], 4) for m in HEADLINE}
        for split in evaluated}
    scatter = {split: points(values[split], ["cube", *point_names]) for split in evaluated}
    metrics["frontier"] = {split: frontier_report({n: scatter[split][n] for n in point_names}, scatter[split]["cube"])
                           for split in evaluated}
    report = evaluated[-1]
    metrics["confidence"] = {"split": report, "level": LEVEL, "resamples": params.evaluate.bootstrap, "seed": seed,
                             **confidence(values[report], best, point_names, params.evaluate.bootstrap, seed)}
    fit_rows = corrupted_once(train, noise, seed) if noise else train
    metrics["anatomy"], anatomy_plot = anatomy(cube, fit_rows, {s: splits[s] for s in evaluated}, seed,
                                               params.evaluate.affine_r2_limit)
    if mode.views:
        metrics["views"] = score_views(cube, mode, data, split_dir, names, params)
    metrics["targets"] = seed_targets(metrics, mode, params.evaluate)
    metrics["setup"] = {"mode": mode.name, "cube_parameters": parameter_count(cube), **fitted,
                        "blend_weight": models["blend"].a, "shift_weight": models["shift"].b,
                        "best_baseline": best, "report_split": report,
                        "trivial_recall": trivial,
                        "answer_bank": len(bank.texts), **{f"{s}_rows": len(splits[s]) for s in names},
                        **split_fingerprints(split_dir, data.texts, evaluated)}
    log.info("evaluate (%s): %s", report, {n: metrics[n][report] for n in MODELS})
    return Evaluation(metrics,
                      cosine={n: values["val"][n]["cosine"] for n in MODELS},
                      recall={n: recall_curve(values["val"][n]["rank"]) for n in MODELS},
                      frontier={"split": report, "blend": list(family), "chosen": chosen_blend,
                                "shift": list(shifts), "points": scatter, **metrics["frontier"][report]},
                      anatomy=anatomy_plot)
