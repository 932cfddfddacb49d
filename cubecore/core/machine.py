"""Facts of the running process that stages report (no torch)."""
from __future__ import annotations

import resource


def peak_memory_mb() -> float:
    """Peak resident memory of this process or of its largest finished child (a DDP worker, an
    extraction worker), whichever is higher."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
