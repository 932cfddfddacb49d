"""Fill the shared embedding cache with one shard of the texts the current params need.

    python -m cubecore embed --shard 1/3     # on machine 1; 2/3 and 3/3 on the two others
    dvc repro                                # afterwards, anywhere: extract finds every text cached

Run it from the repository root of each machine, all with the same params.yaml and a
``base.cache_dir`` on a filesystem they share. Shard i of n takes every n-th chunk of
texts, so the shards are disjoint and together complete; a text already cached is skipped,
so a shard run again (or after a kill) does only what is left. Machines may run at the same
time, into one cache: every shard file is written atomically under a unique name.
"""
from __future__ import annotations

import argparse

from cubecore.cli import positive_int


def shard_spec(value: str) -> tuple[int, int]:
    """``i/n`` with 1 <= i <= n."""
    index, slash, count = value.partition("/")
    if not (slash and index.isdigit() and count.isdigit()):
        raise argparse.ArgumentTypeError(f"expected i/n (e.g. 1/3), got {value!r}")
    index, count = int(index), int(count)
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"i/n needs 1 <= i <= n, got {value!r}")
    return index, count


def add_parser(commands) -> None:
    parser = commands.add_parser("embed", help="embed one shard of the texts into the shared cache (many machines)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shard", type=shard_spec, required=True, metavar="I/N",
                        help="which part this machine embeds: I of N (1-based)")
    parser.add_argument("--workers", type=positive_int, metavar="K",
                        help="processes on this machine (default: extract.workers in the params)")
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="params file (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import logging

    from cubecore.core.config import load_params
    from cubecore.data.extraction import embed_shard

    logging.getLogger("cubecore.data.extraction").setLevel(logging.INFO)  # a long run says how far it is
    params = load_params(args.params)
    index, count = args.shard
    done = embed_shard(params, index, count, args.workers or params.extract.workers)
    print(f"shard {index}/{count}: {done['shard_texts']} of {done['texts']} texts, {done['embedded']} embedded, "
          f"{done['shard_texts'] - done['embedded']} already cached, in {done['cache']}")
