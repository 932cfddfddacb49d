"""params.yaml parsing and validation (cubecore.core.config)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import yaml
from pydantic import ValidationError

from cubecore.core.config import (
    CHOICES,
    Params,
    as_dict,
    bounds,
    leaf_fields,
    load_params,
    value_type,
)
from cubecore.core.errors import CubecoreError


def write_params(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repo_params_yaml_loads(repo_root):
    params = load_params(repo_root / "params.yaml")
    assert isinstance(params, Params)
    # every key the repo's file sets is known and well typed, so each section is the dataclass
    raw = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    assert set(raw) <= {f.name for f in dataclasses.fields(Params)}
    for section, values in raw.items():
        loaded = as_dict(getattr(params, section))
        for key, value in values.items():
            if not isinstance(value, dict):
                assert loaded[key] == value, f"{section}.{key}"
    for name, allowed in CHOICES.items():
        section, *rest = name.split(".")
        value = getattr(params, section)
        for part in rest:
            value = getattr(value, part)
        assert value in allowed, name


def test_missing_sections_and_keys_take_defaults(tmp_path):
    assert load_params(write_params(tmp_path, "")) == Params()
    params = load_params(write_params(tmp_path, "teacher:\n  pooling: cls\n"))
    assert params.teacher.pooling == "cls"
    assert params.teacher.max_length == Params().teacher.max_length
    assert params.filter == Params().filter


def test_int_accepted_for_float(tmp_path):
    params = load_params(write_params(tmp_path, "filter:\n  min_qa_similarity: 1\ntrain:\n  lr: 1\n"))
    assert params.filter.min_qa_similarity == 1.0 and isinstance(params.filter.min_qa_similarity, float)
    assert isinstance(params.train.lr, float)
    assert params.evaluate.ridge_alphas == [0.1, 1.0, 10.0, 100.0]


def test_optional_float_accepts_null(tmp_path):
    assert load_params(write_params(tmp_path, "filter:\n  min_qa_similarity: null\n")).filter.min_qa_similarity is None


@pytest.mark.parametrize("text, name", [
    ("filter:\n  bogus: 1\n", "filter.bogus"),
    ("bogus_section:\n  x: 1\n", "bogus_section"),
    ("data:\n  files:\n    colum: q\n", "data.files.colum"),
])
def test_unknown_key_is_named(tmp_path, text, name):
    with pytest.raises(CubecoreError, match="unknown parameter") as info:
        load_params(write_params(tmp_path, text))
    assert name in str(info.value)


@pytest.mark.parametrize("text, name", [
    ("teacher:\n  max_length: long\n", "teacher.max_length"),
    ("teacher:\n  max_length: 12.5\n", "teacher.max_length"),
    ("teacher:\n  normalize: 1\n", "teacher.normalize"),
    ("teacher:\n  batch_size: true\n", "teacher.batch_size"),
    ("filter:\n  min_qa_similarity: high\n", "filter.min_qa_similarity"),
    ("data:\n  languages: english\n", "data.languages"),
    ("data:\n  languages: [english, 3]\n", "data.languages[1]"),
    ("teacher: 5\n", "teacher"),
])
def test_wrong_type_is_named(tmp_path, text, name):
    with pytest.raises(CubecoreError) as info:
        load_params(write_params(tmp_path, text))
    assert name in str(info.value)


@pytest.mark.parametrize("text, name", [
    ("teacher:\n  pooling: max\n", "teacher.pooling"),
    ("data:\n  source: web\n", "data.source"),
    ("split:\n  group_by: speaker\n", "split.group_by"),
    ("data:\n  files:\n    format: parquet\n", "data.files.format"),
])
def test_value_out_of_choices_is_named(tmp_path, text, name):
    with pytest.raises(CubecoreError, match="must be one of") as info:
        load_params(write_params(tmp_path, text))
    assert name in str(info.value)
    assert repr(text.split(": ")[-1].strip()) in str(info.value)  # the offending value is shown


@pytest.mark.parametrize("text, name", [
    ("split:\n  val_fraction: 0\n", "split.val_fraction"),
    ("split:\n  val_fraction: 0.6\n  test_fraction: 0.5\n", "split.val_fraction + split.test_fraction"),
    ("data:\n  max_pairs: 0\n", "data.max_pairs"),
    ("teacher:\n  batch_size: 0\n", "teacher.batch_size"),
    ("data:\n  source: files\n", "data.files.paths"),
])
def test_value_out_of_range_is_named(tmp_path, text, name):
    with pytest.raises(CubecoreError) as info:
        load_params(write_params(tmp_path, text))
    assert name in str(info.value)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere" / "params.yaml"
    with pytest.raises(CubecoreError, match="not found") as info:
        load_params(path)
    assert str(path) in str(info.value)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("teacher:\n  pooling: [mean\n", encoding="utf-8")
    with pytest.raises(CubecoreError, match="not valid YAML") as info:
        load_params(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("filter:\n  min_qa_similarity: 2\n", "filter.min_qa_similarity must be in [-1, 1], got 2.0"),
    ("split:\n  test_fraction: 1\n", "split.test_fraction must be in [0, 1), got 1.0"),
    ("train:\n  lr: -0.1\n", "train.lr must be > 0, got -0.1"),
    ("train:\n  lr: .inf\n", "train.lr must be a finite number > 0, got inf"),
    ("train:\n  weight_decay: .nan\n", "train.weight_decay must be a finite number >= 0, got nan"),
    ("train:\n  batch_size: 1\n", "train.batch_size must be >= 2, got 1"),
    ("train:\n  target_cosine: 1.5\n", "train.target_cosine must be in [-1, 1], got 1.5"),
    ("train:\n  threads: -1\n", "train.threads must be >= 0, got -1"),
    ("extract:\n  workers: 0\n", "extract.workers must be >= 1, got 0"),
    ("cube:\n  lattice: [8, 0, 6]\n", "cube.lattice[1] must be >= 1, got 0"),
    ("cube:\n  lattice: [8, 8]\n", "cube.lattice must have exactly 3 items, got [8, 8]"),
    ("evaluate:\n  ridge_alphas: [1, 0]\n", "evaluate.ridge_alphas[1] must be > 0, got 0.0"),
    ("evaluate:\n  recall_at: []\n", "evaluate.recall_at must not be empty"),
    ("base:\n  seed: -1\n", "base.seed must be in [0, 4294967295], got -1"),
    ("filter:\n  answer_min_chars: 2000\n", "filter.answer_min_chars (2000) must be <= filter.answer_max_chars (1024)"),
    ("train:\n  loss:\n    cosine: 0\n    infonce: 0\n", "train.loss: at least one of cosine, mse, infonce, distill must be > 0"),
])
def test_range_errors_name_the_value_and_the_allowed_range(tmp_path, text, message):
    with pytest.raises(CubecoreError) as info:
        load_params(write_params(tmp_path, text))
    assert str(info.value) == f"{tmp_path / 'params.yaml'}: {message}"


@pytest.mark.parametrize("text, message", [
    ("teacher:\n  batch_size: true\n", "teacher.batch_size must be int, got True"),
    ("teacher:\n  max_length: '5'\n", "teacher.max_length must be int, got '5'"),
    ("train:\n  lr: fast\n", "train.lr must be float, got 'fast'"),
    ("data:\n  max_pairs: all\n", "data.max_pairs must be int or null, got 'all'"),
    ("teacher:\n  normalize: 1\n", "teacher.normalize must be bool, got 1"),
    ("data:\n  languages: english\n", "data.languages must be a list, got 'english'"),
    ("teacher: 5\n", "teacher must be a mapping, got 5"),
    ("cube:\n  neighbourhood: 8\n", "cube.neighbourhood must be one of 6 | 26, got 8"),
    ("filter:\n  bogus: 1\n", "unknown parameter filter.bogus (known: answer_max_chars, answer_min_chars, "
                             "drop_duplicates, drop_identical, min_qa_similarity, question_max_chars, question_min_chars)"),
    ("evaluate:\n  require: [beats nothing]\n", "evaluate.require[0]: 'beats nothing' is not a requirement"),
])
def test_type_errors_name_the_key_the_type_and_the_value(tmp_path, text, message):
    with pytest.raises(CubecoreError) as info:
        load_params(write_params(tmp_path, text))
    assert str(info.value).startswith(f"{tmp_path / 'params.yaml'}: {message}")
    assert "\n" not in str(info.value)


def test_an_empty_section_takes_its_defaults(tmp_path):
    assert load_params(write_params(tmp_path, "teacher:\ntrain:\n  loss:\n")) == Params()


def test_every_numeric_param_is_range_checked():
    """A new int/float param declared without bounds fails here (a choice needs none)."""
    unbounded = [key for key, info in leaf_fields() if value_type(info) in (int, float) and -math.inf in bounds(info)]
    assert not unbounded, f"declare ge/gt (and le/lt) for {unbounded}"


def test_a_changed_copy_is_checked_too():
    """``dataclasses.replace`` builds through the schema, so a copy cannot hold a value a file could not."""
    with pytest.raises(ValidationError):
        dataclasses.replace(Params().train, lr=0)
    with pytest.raises(ValidationError, match="split.val_fraction"):
        dataclasses.replace(Params(), split=dataclasses.replace(Params().split, val_fraction=0.5, test_fraction=0.5))


def test_params_yaml_is_in_the_style_dvc_writes(repo_root, tmp_path):
    """`dvc exp run -S` rewrites params.yaml through this function: one changed value must be a
    one-line diff (inline lists and `null` would be rewritten on every experiment)."""
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    copy.write_bytes((repo_root / "params.yaml").read_bytes())
    lr = 2 * load_params(copy).train.lr  # a value the file does not hold, whatever it was tuned to
    apply_overrides(copy, [f"train.lr={lr}"])
    before = (repo_root / "params.yaml").read_text().splitlines()
    after = copy.read_text().splitlines()
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert [b.split("#")[0].strip() for _, b in changed] == [f"lr: {lr}"]
