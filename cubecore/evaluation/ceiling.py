"""The ``ceiling`` stage: how much of the answer is predictable at all.

The cube and every baseline map *frozen* teacher embeddings. Here the teacher itself is
fine-tuned, as a dual encoder (one encoder shared by questions and answers), on the train
pairs with the in-batch negatives loss of sentence-transformers' MultipleNegativesRankingLoss,
then scored like the cube: each question of the report split (test, or val without one)
ranks the split's distinct answers (``cubecore.evaluation.scoring``). Beside it, the same encoder before
fine-tuning: the frozen teacher's own question -> answer retrieval on the same rows, which is
``evaluate``'s ``identity`` baseline. The gap between the two is the headroom the
frozen-embedding setup leaves; the cube sits somewhere below the fine-tuned figure.

Opt-in (``ceiling.enabled``): disabled, nothing is imported beyond numpy and the stage only
records that it skipped. Plain torch + transformers (sentence-transformers is a dev
dependency only); the model directory is resolved as the teacher's, never fetched from a hub,
and no remote code runs. The fine-tuned weights are discarded: only the figures are kept.
torch and transformers are imported inside the functions, so a skipped run costs ~nothing.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from cubecore.core import artifacts
from cubecore.core.config import CeilingParams, Params, TeacherParams
from cubecore.core.errors import CubecoreError

log = logging.getLogger(__name__)

SCALE = 20.0           # MultipleNegativesRankingLoss's default: logits are 20 x cosine
WARMUP_FRACTION = 0.1  # of all steps, linear warm-up; then linear decay to 0
WEIGHT_DECAY = 0.01    # AdamW, not on biases and LayerNorm weights (as sentence-transformers trains)
GRAD_CLIP = 1.0
MIN_AGREEMENT = 0.99   # worst cosine allowed between the frozen encoder and data/extract's embeddings


def in_batch_loss(questions, answers, scale: float = SCALE, answer_ids=None):
    """MultipleNegativesRankingLoss: the mean cross-entropy of each question ``i`` over
    ``scale * cos(q_i, a_j)`` for every answer ``j`` of the batch, its own answer ``i`` the
    target (the diagonal). With ``answer_ids`` (``[B]``), an answer text repeated in the batch
    is not a negative of the rows it is the true answer of (it would be pushed away from itself)."""
    import torch
    import torch.nn.functional as F

    scores = scale * F.normalize(questions, dim=-1) @ F.normalize(answers, dim=-1).T
    if answer_ids is not None:
        ids = torch.as_tensor(answer_ids, device=scores.device)
        same = ids[:, None] == ids[None, :]
        same.fill_diagonal_(False)
        scores = scores.masked_fill(same, float("-inf"))
    return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))


class DualEncoder:
    """The teacher's tokenizer and weights (fp32) as one trainable encoder for both sides,
    pooled as ``teacher.pooling``, truncated at ``teacher.max_length``."""

    def __init__(self, teacher: TeacherParams):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from cubecore.data.modeldir import resolve_model_dir
        from cubecore.data.teacher import pick_device

        model_dir = resolve_model_dir(teacher.model)
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self.model = AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise CubecoreError(f"teacher.model: cannot load {model_dir}: {str(exc).splitlines()[0]}") from None
        if self.tokenizer.pad_token is None:  # decoder-only tokenizers often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.device = pick_device(teacher.device)
        self.model.float().to(self.device)
        self.pooling, self.max_length = teacher.pooling, teacher.max_length

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]

    def __call__(self, ids: list[list[int]]):
        """Pooled (not normalised) vectors ``[B, hidden]`` of tokenised texts, with gradients
        when the model is in training mode."""
        from cubecore.data.teacher import pool

        padded = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        padded = {k: v.to(self.device) for k, v in padded.items()}
        return pool(self.model(**padded).last_hidden_state, padded["attention_mask"], self.pooling)

    def embed(self, texts: list[str], batch_size: int, progress: bool = True):
        """Unit vectors ``[len(texts), hidden]`` (float32, CPU) in eval mode, longest texts first."""
        import torch
        import torch.nn.functional as F

        from cubecore.core.progress import progress as progress_bar

        self.model.eval()
        ids = self.token_ids(texts)
        order = np.argsort([len(i) for i in ids], kind="stable")[::-1]
        out = torch.zeros((len(texts), self.model.config.hidden_size))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        with torch.inference_mode():
            for batch in progress_bar(batches, "ceiling: embed", enabled=progress):
                out[torch.from_numpy(batch.copy())] = F.normalize(self([ids[i] for i in batch]).float(), dim=-1).cpu()
        return out


def fine_tune(encoder: DualEncoder, questions: list[str], answers: list[str], answer_ids: np.ndarray,
              c: CeilingParams, seed: int, progress: bool = True) -> list[float]:
    """Train ``encoder`` on the pairs ``questions[i] -> answers[i]`` with ``in_batch_loss``:
    AdamW, ``c.lr`` after a linear warm-up over the first 10 % of steps, then a linear decay to
    0, gradient norm clipped at 1, dropout on. Batches are drawn in a seeded order (a last
    batch of one pair, which has no negative, is dropped). Returns each epoch's mean loss."""
    import torch

    from cubecore.core.progress import progress as progress_bar

    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    q_ids, a_ids = encoder.token_ids(questions), encoder.token_ids(answers)
    size = min(c.batch_size, len(q_ids))
    steps_per_epoch = sum(1 for start in range(0, len(q_ids), size) if len(q_ids) - start >= 2)
    total = c.epochs * steps_per_epoch
    warmup = max(1, round(WARMUP_FRACTION * total))
    named = list(encoder.model.named_parameters())
    no_decay = [p for n, p in named if n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n]
    decay = [p for n, p in named if not any(p is q for q in no_decay)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=c.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))))
    losses = []
    for epoch in range(1, c.epochs + 1):
        encoder.model.train()
        perm = torch.randperm(len(q_ids), generator=order).numpy()
        batches = [b for b in (perm[i:i + size] for i in range(0, len(perm), size)) if len(b) >= 2]
        bar = progress_bar(batches, f"ceiling: epoch {epoch}/{c.epochs}", enabled=progress)
        running = 0.0
        for step, batch in enumerate(bar, start=1):
            loss = in_batch_loss(encoder([q_ids[i] for i in batch]), encoder([a_ids[i] for i in batch]),
                                 SCALE, answer_ids[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(encoder.model.parameters(), GRAD_CLIP)
            optimizer.step()
            schedule.step()
            running += loss.item()
            bar.set_postfix(loss=f"{running / step:.4f}")
        losses.append(running / max(1, len(batches)))
        log.info("ceiling: epoch %d/%d, mean in-batch loss %.4f", epoch, c.epochs, losses[-1])
    encoder.model.eval()
    return losses


def retrieval(encoder: DualEncoder, texts: list[str], pairs: artifacts.Pairs, recall_at: list[int],
              batch_size: int, progress: bool = True):
    """Each pair's question embedded by ``encoder`` ranks the pairs' distinct answers (as
    ``evaluate`` ranks them): MRR, Recall@k, candidates and rows; and the unit vectors of the
    distinct texts with their ids."""
    import torch

    from cubecore.evaluation.scoring import retrieval_summary, target_ranks

    ids = np.unique(np.concatenate([pairs.question_id, pairs.answer_id]))
    vectors = encoder.embed([texts[i] for i in ids], batch_size, progress)
    row = lambda text_ids: torch.from_numpy(np.searchsorted(ids, text_ids))  # noqa: E731
    ranks, candidates = target_ranks(vectors[row(pairs.question_id)], vectors[row(pairs.answer_id)], pairs.answer_id)
    summary = retrieval_summary(ranks, recall_at)
    scores = {"mrr": summary.pop("mrr"), **summary}
    return {**{k: round(v, 4) for k, v in scores.items()}, "candidates": candidates, "rows": len(pairs)}, ids, vectors


def check_agreement(data_dir: Path, ids: np.ndarray, vectors) -> float:
    """The worst cosine between the frozen encoder's vectors and ``data_dir``'s embeddings of the
    same texts; below ``MIN_AGREEMENT`` the teacher is not the one that made ``data_dir``."""
    stored = artifacts.read_embeddings(data_dir / "embeddings.npy")[ids].astype(np.float32)
    stored /= np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-12)
    worst = float((stored * vectors.numpy()).sum(1).min())
    if worst < MIN_AGREEMENT:
        raise CubecoreError(f"{data_dir}: its embeddings are not this teacher's (worst cosine {worst:.4f} < "
                            f"{MIN_AGREEMENT}): teacher.* changed since `extract` ran? (`dvc repro`)")
    return worst


def ceiling(params: Params, data_dir: str | Path, split_dir: str | Path, progress: bool = True) -> tuple[dict, dict]:
    """The ``ceiling`` stage: metrics ``{"ceiling": ...}`` and, apart, its speed.

    Disabled: ``{"ceiling": {"skipped": true}}``. Enabled: the report split's retrieval by the
    teacher fine-tuned on the train pairs (a seeded sample of ``ceiling.max_train_pairs`` of
    them if set) and by the frozen teacher, ``base.seed`` for the sample, the initialisation of
    nothing (all weights are the teacher's) and the batch order, ``train.threads`` threads."""
    c = params.ceiling
    if not c.enabled:
        return {"ceiling": {"skipped": True}}, {"ceiling": {}}
    import torch

    from cubecore.training.runtime import use_threads  # torch only when enabled

    started = time.perf_counter()
    use_threads(params.train.threads)
    data_dir, split_dir = Path(data_dir), Path(split_dir)
    texts = artifacts.read_texts(data_dir / "texts.jsonl")
    report = "test" if params.split.test_fraction > 0 else "val"
    train, rows = (artifacts.read_pairs(split_dir / f"{name}.tsv") for name in ("train", report))
    if c.max_train_pairs is not None and c.max_train_pairs < len(train):
        keep = np.random.default_rng(params.base.seed).choice(len(train), size=c.max_train_pairs, replace=False)
        train = train.take(np.sort(keep))
    if len(train) < 2 or len(rows) < 2:
        raise CubecoreError(f"ceiling: {len(train)} train and {len(rows)} {report} pairs; at least 2 of each are needed")
    recall_at = params.evaluate.recall_at
    encoder = DualEncoder(params.teacher)
    frozen, ids, vectors = retrieval(encoder, texts, rows, recall_at, c.batch_size, progress)
    agreement = check_agreement(data_dir, ids, vectors)
    log.info("ceiling: frozen teacher on %s (worst cosine to data/extract %.6f): %s", report, agreement, frozen)
    tuning = time.perf_counter()
    losses = fine_tune(encoder, [texts[i] for i in train.question_id], [texts[i] for i in train.answer_id],
                       train.answer_id, c, params.base.seed, progress)
    tuned_seconds = time.perf_counter() - tuning
    tuned = retrieval(encoder, texts, rows, recall_at, c.batch_size, progress)[0]
    log.info("ceiling: fine-tuned teacher on %s: %s", report, tuned)
    metrics = {report: tuned, "frozen_teacher": frozen, "split": report, "train_pairs": len(train),
               "epochs": c.epochs, "train_loss": [round(v, 4) for v in losses]}
    speed = {"seconds": round(time.perf_counter() - started, 1), "fine_tune_seconds": round(tuned_seconds, 1),
             "pairs_per_second": round(c.epochs * len(train) / max(tuned_seconds, 1e-9), 1),
             "threads": torch.get_num_threads(), "device": str(encoder.device)}
    return {"ceiling": metrics}, {"ceiling": speed}
