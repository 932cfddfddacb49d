"""Progress that reads well both on a terminal and in a log file.

On a terminal (stderr is a TTY) a tqdm bar redraws in place. Anywhere else (``dvc repro``
piped into a file, CI, a queued experiment) a redrawn bar becomes one endless line, so a
plain log line is written instead, at most once per ``every`` seconds.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Sequence

from tqdm import tqdm

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0


def on_terminal() -> bool:
    return sys.stderr.isatty()


class LoggedProgress:
    """Iterates ``items``; every ``every`` seconds logs ``desc: done/total (percent), rate``."""

    def __init__(self, items: Sequence, desc: str, total: int, unit: str, every: float):
        self.items, self.desc, self.total, self.unit, self.every = items, desc, total, unit, every
        self.postfix = ""

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def __iter__(self) -> Iterator:
        started = last = time.perf_counter()
        for done, item in enumerate(self.items, start=1):
            yield item
            now = time.perf_counter()
            if now - last >= self.every and done < self.total:
                last = now
                rate = done / max(now - started, 1e-9)
                log.info("%s: %d/%d %s (%.0f%%), %.1f %s/s%s", self.desc, done, self.total, self.unit,
                         100 * done / self.total, rate, self.unit, f", {self.postfix}" if self.postfix else "")


def progress(items: Sequence, desc: str, unit: str = "batch", enabled: bool = True,
             every: float = LOG_EVERY_SECONDS):
    """``items`` with a bar (terminal), a periodic log line (elsewhere), or silent (not enabled)."""
    if enabled and on_terminal():
        return tqdm(items, desc=desc, unit=unit, leave=False)
    return LoggedProgress(items, desc, len(items), unit, every if enabled else float("inf"))
