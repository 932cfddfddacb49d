"""What is generated from the params schema in ``cubecore.core.config``: the JSON Schema
committed as ``params.schema.json`` (editors complete and check params.yaml with it) and
README's params reference table."""
from __future__ import annotations

import json

from cubecore.core.config import SCHEMA, leaf_fields
from cubecore.core.errors import CubecoreError

TABLE_START = "<!-- params table: generated from cubecore/core/config.py by `python -m cubecore schema --readme` -->"
TABLE_END = "<!-- end of the generated params table -->"


def json_schema() -> str:
    """The JSON Schema of params.yaml, as the text of ``params.schema.json``."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **SCHEMA.json_schema()}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def default_cell(value) -> str:
    """A default as README writes it: ``null``, ``true``, ``42``, ``0.00002``, `` `[8, 8, 6]` ``."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        digits = f"{value:.10f}".rstrip("0")
        return digits + "0" if digits.endswith(".") else digits
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return f"`[{', '.join(default_cell(v).strip('`') for v in value)}]`"
    return f"`{value}`"


def params_table() -> str:
    """README's params reference: one row per param, its default and description."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, info in leaf_fields():
        rows.append(f"| `{key}` | {default_cell(info.get_default(call_default_factory=True))} | {info.description} |")
    return "\n".join([TABLE_START, *rows, TABLE_END])


def with_params_table(readme: str) -> str:
    """``readme`` with the text between the table markers replaced by :func:`params_table`."""
    if readme.count(TABLE_START) != 1 or readme.count(TABLE_END) != 1:
        raise CubecoreError(f"README must hold the params table markers once each: {TABLE_START} … {TABLE_END}")
    before, rest = readme.split(TABLE_START)
    return before + params_table() + rest.split(TABLE_END)[1]
