"""What every DVC stage script shares: arguments, logging, one-line errors, and the speed file."""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import time

from cubecore.core.artifacts import write_json
from cubecore.core.config import Params, load_params
from cubecore.core.errors import CubecoreError
from cubecore.core.machine import peak_memory_mb
from cubecore.core.paths import output_path

STARTED = time.perf_counter()  # reset when a stage's main starts


def write_speed(path: str, speed: dict) -> None:
    """Write a stage's speed file, ``{stage: figures}``, adding the stage's wall time since its
    main started (``stage_seconds``) and its peak RSS, its worker processes' included
    (``peak_memory_mb``)."""
    (stage, figures), = speed.items()
    write_json(path, {stage: {**figures, "stage_seconds": round(time.perf_counter() - STARTED, 3),
                              "peak_memory_mb": round(peak_memory_mb(), 1)}})


def main_guard(main):
    """Run ``main``; a CubecoreError prints ``error: <message>`` on one line and exits 1. A reader
    that stops early (``| head``) ends the output quietly, as Unix tools do."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        global STARTED
        STARTED = time.perf_counter()
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        try:
            return main(*args, **kwargs)
        except CubecoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            sys.exit(0)

    return wrapper


def stage_args(description: str, *paths: str) -> tuple[argparse.Namespace, Params]:
    """Parse ``--params`` plus one required ``--<path>`` option per name in ``paths``.

    The paths have no defaults: dvc.yaml's ``cmd`` names every path a stage reads and writes.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml")
    for name in paths:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, metavar="PATH")
    parser.add_argument("--allow-outside", action="store_true", help="allow paths outside the project")
    args = parser.parse_args()
    for name in paths:  # no path option reaches outside the project by accident
        output_path(getattr(args, name), f"--{name.replace('_', '-')}", args.allow_outside)
    return args, load_params(args.params)


def steady_heap(threshold: int = 1 << 20) -> None:
    """Serve allocations of ``threshold`` bytes or more from their own memory maps, returned to
    the system when freed (glibc only; elsewhere a no-op).

    glibc raises this threshold each time such a block is freed, then serves later ones from a
    heap that fragments and does not shrink: ``evaluate``'s many score matrices of one size
    took its peak RSS from 0.8 to 2.4 GB on full chitchat. Not for training, whose per-step
    buffers would then be mapped (and zeroed) anew every step: ~2x slower (``bench/memory.py``).
    """
    libc = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(libc), "mallopt", None) if libc else None
    if mallopt is not None:
        mallopt(-3, threshold)  # M_MMAP_THRESHOLD; a fixed value also stops glibc adjusting it
