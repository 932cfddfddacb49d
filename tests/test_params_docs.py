"""One list, one place: params.yaml, the dataclass defaults of cubecore.core.config, CHOICES and
README's params table must agree, so a new option cannot be added to some of them only."""
from __future__ import annotations

import re

import pytest
import yaml

from cubecore.core.config import CHOICES, Params, as_dict, load_params

ROW = re.compile(r"^\| (`[^|]+) \| ([^|]+) \| (.+) \|$")


def leaves(tree: dict, prefix: str = "") -> dict:
    """Dotted key -> value for every non-mapping value of ``tree``."""
    out = {}
    for key, value in tree.items():
        out.update(leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def readme_rows(readme: str) -> dict[str, tuple[str, str]]:
    """Key -> (default cell, whole row) of README's params table. A row may document siblings:
    ``| `filter.question_min_chars` / `question_max_chars` | 5 / 512 | ... |`` (a key without a
    dot shares the first key's parent; the default cell then has one value per key, same order)."""
    table = readme.split("## Params reference", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        match = ROW.match(line)
        if not match or match[1].startswith("`key"):
            continue
        names = re.findall(r"`([^`]+)`", match[1])
        parent = names[0].rpartition(".")[0]
        keys = [names[0], *(f"{parent}.{n}" for n in names[1:])]
        defaults = re.split(r" / |, ", match[2].strip()) if len(keys) > 1 else [match[2].strip()]
        assert len(defaults) == len(keys), f"README row {line!r}: one default per key"
        for key, default in zip(keys, defaults):
            assert key not in rows, f"README documents {key} twice"
            rows[key] = (default, line)
    return rows


@pytest.fixture(scope="module")
def documented(repo_root):
    return readme_rows((repo_root / "README.md").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def params_yaml(repo_root):
    return leaves(yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8")))


def test_params_yaml_names_every_param(repo_root, params_yaml):
    """The committed params.yaml lists every param of the schema (so `dvc exp run -S` and
    `dvc params diff` see them all) and is valid; its values are the user's to tune: a promoted
    experiment (`dvc exp apply` + commit) must leave the tests green."""
    assert set(params_yaml) == set(leaves(as_dict(Params())))
    load_params(repo_root / "params.yaml")


def test_every_param_has_one_readme_row_and_every_row_a_param(params_yaml, documented):
    missing, unknown = sorted(set(params_yaml) - set(documented)), sorted(set(documented) - set(params_yaml))
    assert not missing and not unknown, f"README params table: add rows for {missing}, remove {unknown}"


def test_readme_defaults_are_the_defaults(documented):
    """The default column, read as YAML (backticks and a trailing remark dropped); an elided
    list (``[0, 0.1, …, 1]``) is checked by its ends."""
    defaults = leaves(as_dict(Params()))
    for key, (cell, _) in documented.items():
        text = re.sub(r"\s*\(.*\)$", "", cell).strip("`")
        if "…" in text:
            ends = yaml.safe_load(text.replace("…, ", ""))
            assert [defaults[key][0], defaults[key][1], defaults[key][-1]] == ends, key
        else:
            assert yaml.safe_load(text) == defaults[key], f"README says {key} defaults to {cell}"


def test_every_choice_is_documented(documented):
    for name, allowed in CHOICES.items():
        row = documented[name][1].split(" | ", 2)[2]
        for value in allowed:
            assert re.search(rf"(?<![\w.]){re.escape(str(value))}(?![\w.])", row), \
                f"README row of {name} does not mention the choice {value}"
