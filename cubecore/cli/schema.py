"""The params schema as JSON Schema, and README's params table regenerated from it.

    python -m cubecore schema                            # JSON Schema of params.yaml to stdout
    python -m cubecore schema --out params.schema.json   # ... to a file (what is committed)
    python -m cubecore schema --readme README.md         # rewrite the params table between its markers

Every param is declared once, in ``cubecore/core/config.py``: edit its description or
default there, then regenerate both (a test fails while either is stale).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cubecore.core.artifacts import atomic_path
from cubecore.core.errors import CubecoreError
from cubecore.core.schema import json_schema, with_params_table

log = logging.getLogger(__name__)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("schema: wrote %s", path)


def run(args: argparse.Namespace) -> None:
    if args.readme:
        readme = Path(args.readme)
        if not readme.is_file():
            raise CubecoreError(f"{readme}: no such file (--readme takes the README to rewrite)")
        write_text(readme, with_params_table(readme.read_text(encoding="utf-8")))
    if args.out:
        write_text(Path(args.out), json_schema())
    elif not args.readme:
        sys.stdout.write(json_schema())


def add_parser(commands) -> None:
    parser = commands.add_parser("schema", help="print the JSON Schema of params.yaml, or regenerate README's "
                                                "params table from it")
    parser.add_argument("--out", help="write the JSON Schema to this file (params.schema.json) instead of stdout")
    parser.add_argument("--readme", nargs="?", const="README.md", metavar="README",
                        help="rewrite the params table between its markers in this file (README.md)")
    parser.set_defaults(run=run)
