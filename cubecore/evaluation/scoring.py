"""Embedding metrics: cosine to the target and retrieval of the target among candidates;
text metrics (BLEU, ROUGE-L) with a tokenization that works for every script."""
from __future__ import annotations

import functools
import logging
import re
import sys
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F


def cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity ``[N]``."""
    return F.cosine_similarity(pred, target, dim=-1)


SCORES_BUDGET = 1 << 24  # score-matrix elements per chunk (64 MB of float32)


def retrieval_ranks(pred: torch.Tensor, candidates: torch.Tensor, true_index: torch.Tensor,
                    chunk: int | None = None) -> torch.Tensor:
    """Each row's rank of its true candidate by cosine with the prediction (1 = first).

    A tie counts at its expected rank: the true candidate tied with ``t`` others ranks
    (candidates scoring strictly higher) + 1 + t/2, so texts the teacher embeds alike (duplicate
    answers, or a script it reads as unknown tokens) cost every model rank instead of making
    it look perfect. Pass distinct candidates: a repeated answer then occupies one slot.
    Rows are scored ``chunk`` at a time; by default as many as keep a chunk's scores within
    ``SCORES_BUDGET`` elements, so memory does not grow with rows x candidates.
    """
    chunk = chunk or max(1, SCORES_BUDGET // max(1, len(candidates)))
    candidates = F.normalize(candidates.float(), dim=-1)
    ranks = []
    for start in range(0, len(pred), chunk):
        scores = F.normalize(pred[start:start + chunk].float(), dim=-1) @ candidates.T
        ranks.append(expected_rank(scores.sub_(scores.gather(1, true_index[start:start + chunk, None]))))
    return torch.cat(ranks) if ranks else torch.zeros(0)


def expected_rank(ahead: torch.Tensor) -> torch.Tensor:
    """Ranks from each candidate's score minus the true one's (``[rows, candidates]``, the true
    candidate's own 0 included): those above, plus 1, plus half of the others at 0."""
    return (ahead > 0).sum(1) + ((ahead == 0).sum(1) + 1) / 2


def mixed_retrieval_ranks(first: torch.Tensor, second: torch.Tensor, candidates: torch.Tensor,
                          true_index: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """``retrieval_ranks`` of the predictions ``(1 - a) * first + a * second`` for every ``a`` in
    ``weights``, ``[len(weights), N]``. A prediction's score against a candidate is the same mix of
    ``first``'s and ``second``'s scores, so two score matrices per chunk serve every weight
    (instead of one matrix product per weight); the three matrices stay within ``SCORES_BUDGET``."""
    chunk = max(1, SCORES_BUDGET // (3 * max(1, len(candidates))))
    candidates = F.normalize(candidates.float(), dim=-1)
    ranks = torch.empty((len(weights), len(first)))
    for start in range(0, len(first), chunk):
        index = true_index[start:start + chunk, None]
        scores = [part[start:start + chunk].float() @ candidates.T for part in (first, second)]
        true = [s.gather(1, index) for s in scores]
        mixed = torch.empty_like(scores[0])
        for i, a in enumerate(weights):
            torch.lerp(*scores, a, out=mixed).sub_(torch.lerp(*true, a))  # each candidate's lead on the true one
            ranks[i, start:start + chunk] = expected_rank(mixed)
    return ranks


def retrieval_summary(ranks: torch.Tensor, recall_at: list[int]) -> dict:
    """Recall@k and mean reciprocal rank from ranks."""
    ranks = ranks.float()
    summary = {f"recall@{k}": float((ranks <= k).float().mean()) for k in recall_at}
    summary["mrr"] = float((1 / ranks).mean())
    return summary


def prediction_scores(pred: torch.Tensor, targets: torch.Tensor, target_ids: np.ndarray,
                      recall_at=(1, 5, 10)) -> dict:
    """Cosine to the target and retrieval of the target among the rows' distinct targets."""
    ranks, candidates = target_ranks(pred, targets, target_ids)
    cos = cosine(pred, targets)
    return {"cosine": float(cos.mean()), "cosine_median": float(cos.median()),
            **retrieval_summary(ranks, list(recall_at)), "candidates": candidates}


def candidate_index(target_ids: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """For rows with these target ids: the first row of each distinct target (the candidate
    set) and each row's position in that set."""
    _, first_rows, position = np.unique(target_ids, return_index=True, return_inverse=True)
    return first_rows, torch.from_numpy(position.astype(np.int64))


def target_ranks(pred: torch.Tensor, targets: torch.Tensor, target_ids: np.ndarray) -> tuple[torch.Tensor, int]:
    """Each row's rank of its own target among the distinct targets of these rows, and the
    number of those candidates."""
    first_rows, position = candidate_index(target_ids)
    return retrieval_ranks(pred, targets[first_rows], position), len(first_rows)


# --- text metrics ----------------------------------------------------------------------------

# scripts written without spaces between words: each character is a token
UNSPACED = ("\u0e00-\u0eff"          # Thai, Lao
            "\u1000-\u109f"          # Myanmar
            "\u1780-\u17ff"          # Khmer
            "\u3040-\u30ff"          # Hiragana, Katakana
            "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
            "\U00020000-\U0003ffff")  # CJK extensions
UNSPACED_CHAR = re.compile(f"[{UNSPACED}]")


@functools.cache
def word_pattern() -> re.Pattern:
    """One character of an unspaced script, or a run of letters, digits and combining marks
    (Unicode categories Mn, Mc, Me: Devanagari vowel signs, Hebrew points ... belong to their
    word; ``\\w`` alone drops them). Marks of unspaced scripts stay tokens of their own."""
    marks = "".join(c for c in map(chr, range(sys.maxunicode + 1))
                    if unicodedata.category(c).startswith("M") and not UNSPACED_CHAR.match(c))
    return re.compile(f"[{UNSPACED}]|(?:[^\\W_{UNSPACED}]|[{marks}])+")


class UnicodeTokenizer:
    """ROUGE tokens for any script: lowercased runs of word characters with their combining marks
    (Cyrillic, Greek, Arabic, Devanagari, pointed Hebrew, accented Latin ... stay whole words),
    one token per character of unspaced scripts (Chinese, Japanese, Thai ...), punctuation
    dropped. ASCII words of more than 3 letters are Porter-stemmed, as rouge_score's default
    tokenizer does (which keeps only [a-z0-9] and so turns Russian or Chinese text into no
    tokens at all)."""

    def __init__(self):
        from nltk.stem import porter

        self.stem = functools.lru_cache(maxsize=1 << 17)(porter.PorterStemmer().stem)  # words repeat a lot

    def tokenize(self, text: str) -> list[str]:
        return [self.stem(t) if len(t) > 3 and t.isascii() and t.isalnum() else t
                for t in word_pattern().findall(text.lower())]


def spaced(text: str) -> str:
    """``text`` with every character of an unspaced script set apart by spaces (for BLEU)."""
    return UNSPACED_CHAR.sub(lambda m: f" {m.group()} ", text)


def text_scores(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU (sacrebleu, scaled to 0-1) and mean ROUGE-L F1, for text in any script.

    BLEU uses sacrebleu's ``intl`` tokenizer (Unicode punctuation and symbols split from
    words, so Russian guillemets or Chinese full stops are tokens of their own) on text whose
    unspaced-script characters were set apart: character tokens for Chinese or Japanese,
    words elsewhere. ``13a`` splits ASCII punctuation only, ``zh`` knows only Chinese and
    ``char`` turns every language's BLEU into character n-grams.
    """
    import sacrebleu
    from rouge_score import rouge_scorer

    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge_score logs once per scorer
    bleu = sacrebleu.corpus_bleu([spaced(h) for h in hypotheses], [[spaced(r) for r in references]],
                                 tokenize="intl").score / 100
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer())
    rouge = np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)])
    return {"bleu": round(float(bleu), 4), "rouge_l": round(float(rouge), 4)}
