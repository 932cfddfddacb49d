"""The person-facing commands of ``python -m cubecore``, one module per command.

Each module has ``add_parser(commands)`` (its arguments, every one with help) and
``run(args)``. Bad input ends in one line, ``error: ...``, never a traceback: exit code 2
for a bad argument (before anything loads), 1 for a problem found while running.
"""
from __future__ import annotations

import argparse
import logging
import sys


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage block first)."""

    def error(self, message: str):
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def quiet_logging() -> None:
    """Warnings as ``warning: ...`` lines on stderr; progress and INFO chatter off."""
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number
