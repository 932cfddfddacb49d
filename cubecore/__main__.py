"""A person's door to a trained pipeline.

    python -m cubecore answer "How are you?" --top-k 5   # the cube's nearest training answers
    python -m cubecore info                              # what was trained, on what, how well
    python -m cubecore info --json                       # the same as one JSON object
    python -m cubecore report --base main                # a Markdown review: params, metrics, frontier, plots
    python -m cubecore doctor                            # is this machine ready? one line per check
    python -m cubecore experiments                       # docs/experiments.md: every DVC experiment vs the frontier
    python -m cubecore embed --shard 1/3                 # embed a third of the texts into the shared cache
    python -m cubecore schema --out params.schema.json   # the params schema as JSON Schema (--readme: its table)
    python -m cubecore share                             # push DVC's run-cache with its runs' files (teams)
    python -m cubecore plots-page                        # .dvc/plots_page.html: `dvc plots show` draws offline
"""
from __future__ import annotations

import argparse

from cubecore.cli import (
    Parser,
    answer,
    doctor,
    embed,
    experiments,
    info,
    plots_page,
    quiet_logging,
    report,
    schema,
    share,
)
from cubecore.core.stage import main_guard


def build_parser() -> Parser:
    parser = Parser(prog="python -m cubecore", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in (answer, info, report, experiments, doctor, embed, schema, share, plots_page):
        command.add_parser(commands)
    return parser


@main_guard
def main(argv: list[str] | None = None) -> None:
    quiet_logging()
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
