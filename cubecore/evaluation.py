"""The ``evaluate`` stage: the cube beside simple baselines on the same rows.

For each evaluated split (val, and test when configured) and each model (``cube`` and the
baselines ``identity``, ``mean``, ``ridge``, ``mlp``): cosine to the target (mean, median),
retrieval of the target among the split's distinct targets (Recall@k, MRR), and decoding to
text through an answer bank (the nearest training target text), scored with BLEU and
ROUGE-L against the reference text. ``cube_vs_best_baseline`` holds cube minus the best
baseline per headline metric, so a positive number means the cube wins.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cubecore import artifacts
from cubecore.baselines import Identity, fit_baselines, fit_ridge
from cubecore.config import Params, as_dict
from cubecore.metrics import candidate_index, retrieval_ranks, text_scores
from cubecore.modes import get_mode
from cubecore.targets import seed_targets
from cubecore.tasks import TaskData, corrupt, split_tasks
from cubecore.trainer import evaluate_predictions, predict, run_key
from cubecore.training import load_model, load_split

log = logging.getLogger(__name__)

HEADLINE = ("cosine", "mrr", "recall@1", "bleu", "rouge_l")
MODELS = ("cube", "identity", "mean", "ridge", "mlp")


class AnswerBank:
    """Distinct texts with their embeddings; ``decode`` returns the nearest text per vector."""

    def __init__(self, ids: np.ndarray, embeddings: np.ndarray, texts: list[str]):
        self.ids = np.unique(ids)
        self.vectors = F.normalize(torch.from_numpy(np.asarray(embeddings[self.ids], dtype=np.float32)), dim=-1)
        self.texts = [texts[i] for i in self.ids]

    def nearest(self, pred: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and bank positions of the ``k`` nearest texts per row."""
        scores = F.normalize(pred.float(), dim=-1) @ self.vectors.T
        return scores.topk(min(k, len(self.texts)), dim=1)

    def decode(self, pred: torch.Tensor) -> list[str]:
        _, index = self.nearest(pred)
        return [self.texts[i] for i in index[:, 0].tolist()]


def score_model(pred: torch.Tensor, rows: TaskData, bank: AnswerBank, texts: list[str],
                recall_at: list[int]) -> tuple[dict, torch.Tensor]:
    """All metrics of one model on one split, and the per-row cosine (for plots)."""
    scores = evaluate_predictions(pred, rows, recall_at)
    references = [texts[i] for i in rows.target_ids]
    scores.update(text_scores(bank.decode(pred), references))
    scores = {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}
    return scores, F.cosine_similarity(pred, rows.targets, dim=-1)


def recall_curve(pred: torch.Tensor, rows: TaskData, max_k: int = 50) -> np.ndarray:
    """Recall@k for k = 1..max_k."""
    first_rows, position = candidate_index(rows.target_ids)
    ranks = retrieval_ranks(pred, rows.targets[first_rows], position).numpy()
    return np.array([(ranks <= k).mean() for k in range(1, max_k + 1)])


def score_views(model, mode, data, split_dir: str | Path, names: list[str], params: Params) -> dict:
    """The mode's further views (e.g. ``dual``'s reconstruction): per view name, the model,
    ``identity`` (the input itself) and ``ridge`` (fitted on the view's training rows, on noisy
    inputs where the view is noisy) per evaluated split, answers decoded through the view's own
    training targets."""
    parts = {name: artifacts.read_pairs(Path(split_dir) / f"{name}.tsv") for name in names}
    out = {}
    for view in mode.views:
        noise, seed = params.train.autoencoder.noise, params.base.seed
        rows = split_tasks(view.pairing, data.embeddings, parts, noise, seed)
        train = rows["train"]
        if view.pairing.noisy:  # a ridge *denoiser*: fitted on noisy inputs, as the cube was trained
            train = TaskData(corrupt(train.inputs, noise, torch.Generator().manual_seed(seed)), train.targets,
                             train.target_ids)
        bank = AnswerBank(train.target_ids, data.embeddings, data.texts)
        models = {"cube": view.module(model), "identity": Identity(),
                  "ridge": fit_ridge(train, params.evaluate.ridge_alphas, seed)[0]}
        out[view.name] = {
            name: {split: score_model(predict(module, rows[split].inputs), rows[split], bank, data.texts,
                                      params.evaluate.recall_at)[0] for split in names[1:]}
            for name, module in models.items()}
    return out


def evaluate(params: Params, data_dir: str | Path, split_dir: str | Path, model_dir: str | Path) -> tuple[dict, dict]:
    """Metrics per model and split, and what the plots need (per-row cosine, recall curves)."""
    cube, info = load_model(model_dir)
    mode, seed = get_mode(info["mode"]), params.base.seed
    names = ["train", "val"] + (["test"] if params.split.test_fraction > 0 else [])
    data, splits = load_split(data_dir, split_dir, mode.pairing, params.train.autoencoder.noise, seed, names)
    train = splits["train"]
    key = run_key("mlp-baseline", as_dict(params.train), seed, cube.parameter_count(),
                  train.inputs, splits["val"].targets)
    models, fitted = fit_baselines(train, splits["val"], params.train, params.evaluate.ridge_alphas,
                                   seed, cube.parameter_count(), key)
    models = {"cube": cube, **models}
    bank = AnswerBank(train.target_ids, data.embeddings, data.texts)
    metrics: dict = {name: {} for name in MODELS}
    curves: dict = {"cosine": {}, "recall": {}}
    for split in names[1:]:
        rows = splits[split]
        for name in MODELS:
            pred = predict(models[name], rows.inputs)
            metrics[name][split], cosines = score_model(pred, rows, bank, data.texts, params.evaluate.recall_at)
            if split == "val":
                curves["cosine"][name] = cosines.numpy()
                curves["recall"][name] = recall_curve(pred, rows)
    metrics["cube_vs_best_baseline"] = {
        split: {m: round(metrics["cube"][split][m] - max(metrics[b][split][m] for b in MODELS[1:]), 4)
                for m in HEADLINE} for split in names[1:]}
    if mode.views:
        metrics["views"] = score_views(cube, mode, data, split_dir, names, params)
    metrics["targets"] = seed_targets(metrics, mode, params.evaluate)
    metrics["setup"] = {"mode": mode.name, "cube_parameters": cube.parameter_count(), **fitted,
                        "answer_bank": len(bank.texts), **{f"{s}_rows": len(splits[s]) for s in names}}
    log.info("evaluate: %s", {n: metrics[n]["val"] for n in MODELS})
    return metrics, curves
