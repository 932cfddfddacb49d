"""Push DVC's run-cache to a DVC remote together with the files its runs recorded.

    python -m cubecore share              # to the default remote (`dvc remote add -d ...`)
    python -m cubecore share -r storage   # to a named one

`dvc push --run-cache` sends the run records (``.dvc/cache/runs``) but not the files of their
outputs that DVC does not cache (``cache: false``: metrics, plots, DVCLive's curves; those live
in git). DVC kept a copy of them in the local cache when the stage ran, and it needs that copy
to restore the stage: without it, a teammate's `dvc exp run --pull` of the same experiment finds
the record, logs "Some of the cache files do not exist neither locally nor on remote" and runs the
stage again. This command pushes every run record with every file it names that this cache holds.
Run it from the repository root, after `dvc push`.
"""
from __future__ import annotations

import argparse
import logging

from cubecore.core.errors import CubecoreError

log = logging.getLogger(__name__)


def add_parser(commands) -> None:
    parser = commands.add_parser("share", help="push DVC's run-cache with the files of its runs (what "
                                 "`dvc push --run-cache` leaves out)", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-r", "--remote", default=None, metavar="NAME",
                        help="DVC remote to push to (default: the repository's default remote)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(".") as repo:
            records = repo.stage_cache.push(args.remote)
            used = repo.stage_cache.get_used_objs(records)
            objects = {obj for objs in used.values() for obj in objs}
            result = repo.cloud.push(objects, remote=args.remote)
    except DvcException as exc:
        raise CubecoreError(f"share: {exc}") from None
    if result.failed:
        log.warning("share: %d object(s) named by the run-cache are missing from this cache (removed by "
                    "`dvc gc`?); their stages will run again elsewhere", len(result.failed))
    print(f"share: {len(records)} run records, {len(result.transferred)} of the {len(objects)} objects they name "
          f"pushed, {len(objects) - len(result.transferred) - len(result.failed)} already there")
