"""One declaration, one place: every param is declared in cubecore.core.config's schema;
params.yaml lists each one, README's params table and params.schema.json are generated from the
schema (``python -m cubecore schema``), so none can drift from it."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from cubecore.core.config import CHOICES, Params, as_dict, leaf_fields, load_params
from cubecore.core.schema import (
    TABLE_END,
    TABLE_START,
    json_schema,
    params_table,
    with_params_table,
)

SCHEMA_LINE = "# yaml-language-server: $schema=params.schema.json"


def leaves(tree: dict, prefix: str = "") -> dict:
    """Dotted key -> value for every non-mapping value of ``tree``."""
    out = {}
    for key, value in tree.items():
        out.update(leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.fixture(scope="module")
def params_yaml(repo_root):
    return leaves(yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8")))


def test_params_yaml_names_every_param(repo_root, params_yaml):
    """The committed params.yaml lists every param of the schema (so `dvc exp run -S` and
    `dvc params diff` see them all) and is valid; its values are the user's to tune: a promoted
    experiment (`dvc exp apply` + commit) must leave the tests green."""
    assert set(params_yaml) == {key for key, _ in leaf_fields()}
    load_params(repo_root / "params.yaml")


def test_params_yaml_points_editors_to_the_committed_schema(repo_root):
    assert (repo_root / "params.yaml").read_text(encoding="utf-8").splitlines()[0] == SCHEMA_LINE
    committed = (repo_root / "params.schema.json").read_text(encoding="utf-8")
    assert committed == json_schema(), "params.schema.json is stale: python -m cubecore schema --out params.schema.json"


def test_readme_table_is_the_generated_one(repo_root):
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    assert params_table() in readme, "README's params table is stale: python -m cubecore schema --readme"
    assert with_params_table(readme) == readme


def test_every_param_has_a_description_that_names_its_choices():
    for key, info in leaf_fields():
        assert info.description and "|" not in info.description and "\n" not in info.description, key
        for value in CHOICES.get(key, ()):
            assert re.search(rf"(?<![\w.]){re.escape(str(value))}(?![\w.])", info.description), \
                f"the description of {key} does not mention the choice {value}"


def schema_defaults(schema: dict, node: dict, prefix: str = "") -> dict:
    """Dotted key -> the ``default`` the JSON Schema states for each param under ``node``."""
    out = {}
    for name, prop in node["properties"].items():
        ref = prop.get("$ref")
        if ref:
            out.update(schema_defaults(schema, schema["$defs"][ref.rsplit("/", 1)[1]], f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = prop.get("default")
    return out


def test_the_json_schema_states_every_default_and_bound():
    """What an editor shows is what `load_params` applies: each default, and each range."""
    schema = json.loads(json_schema())
    assert schema_defaults(schema, schema) == leaves(as_dict(Params()))
    seed = schema["$defs"]["BaseParams"]["properties"]["seed"]
    assert (seed["minimum"], seed["maximum"], seed["type"]) == (0, 2**32 - 1, "integer")
    assert schema["$defs"]["TeacherParams"]["properties"]["pooling"]["enum"] == list(CHOICES["teacher.pooling"])
    assert schema["$defs"]["CubeParams"]["properties"]["lattice"]["minItems"] == 3
    assert schema["additionalProperties"] is False


def test_the_command_writes_the_schema_and_rewrites_only_the_table(repo_root, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{TABLE_START}\n| stale |\n{TABLE_END}\n\nafter\n", encoding="utf-8")
    out = tmp_path / "params.schema.json"
    done = subprocess.run([sys.executable, "-m", "cubecore", "schema", "--readme", str(readme), "--out", str(out)],
                          cwd=repo_root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert readme.read_text(encoding="utf-8") == f"# intro\n\n{params_table()}\n\nafter\n"
    assert out.read_text(encoding="utf-8") == json_schema()
    readme.write_text("# no markers\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "cubecore", "schema", "--readme", str(readme)],
                          cwd=repo_root, capture_output=True, text=True)
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "params table markers" in done.stderr
    assert readme.read_text(encoding="utf-8") == "# no markers\n"
