"""Benchmark: ``data.source: dataset`` on a large Parquet dataset, against reading it whole.

Builds a Parquet file of ``--rows`` question/answer rows (written in row groups, in a temp
folder that is deleted afterwards, with the datasets Arrow cache beside it), then times, each
in a fresh process so that its peak RSS (``ru_maxrss`` from ``os.wait4``) is its own, split into
its peak anonymous memory and resident file pages (``/proc/self/status``, sampled every 10 ms):

- ``source, cold``: ``load_corpus`` as ``extract`` runs it, the first time (``load_dataset``
  converts the Parquet to its memory-mapped Arrow cache), keeping every pair;
- ``source, warm``: the same again (the Arrow cache is there);
- ``rows only``: the source's records (``hfdataset.dataset_records``) counted, nothing kept:
  the memory of reading itself: its anonymous memory stays flat however many rows there are,
  the rest is file pages of the mapped Arrow cache, which the kernel drops under pressure;
- ``read whole``: what one would otherwise write, ``pyarrow.parquet.read_table(...).to_pylist()``
  and a loop over the rows: the whole table in memory at once.

    .venv/bin/python bench/dataset_source.py [--rows 1000000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the cubecore next to this script

GROUP_ROWS = 100_000


def build(path: Path, rows: int) -> None:
    """``rows`` distinct question/answer pairs of chat-like length, one row group per 100,000."""
    import pyarrow
    import pyarrow.parquet

    schema = pyarrow.schema([("question", pyarrow.string()), ("answer", pyarrow.string())])
    with pyarrow.parquet.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, GROUP_ROWS):
            index = range(start, min(rows, start + GROUP_ROWS))
            writer.write_table(pyarrow.table({
                "question": [f"What would you say about topic number {i} if I asked you twice?" for i in index],
                "answer": [f"About topic {i} I would say the same thing both times, and mean it." for i in index],
            }, schema=schema))


def resident_mb() -> dict:
    """This process's resident anonymous memory and file pages now (Linux /proc), in MB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(status[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile")}


class Peaks(threading.Thread):
    """The highest resident anonymous memory and file pages seen, sampled every 10 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = resident_mb(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = {key: max(value, self.peak[key]) for key, value in resident_mb().items()}


def phase(name: str, path: Path, cache: Path) -> dict:
    """One measured read of ``path``; runs in its own process."""
    import datasets

    datasets.config.HF_DATASETS_CACHE = cache
    peaks = Peaks()
    peaks.start()
    started = time.perf_counter()
    if name == "read whole":
        import pyarrow.parquet

        rows = sum(1 for row in pyarrow.parquet.read_table(path, columns=["question", "answer"]).to_pylist()
                   if row["question"])
    elif name == "rows only":
        from cubecore.core.config import DatasetParams
        from cubecore.data.hfdataset import dataset_records, open_dataset

        rows = sum(1 for _ in dataset_records(open_dataset(DatasetParams(path=str(path))), ["question", "answer"]))
    else:
        from cubecore.core.config import DataParams, DatasetParams
        from cubecore.data.corpora import load_corpus

        corpus = load_corpus(DataParams(source="dataset", max_pairs=None, dataset=DatasetParams(path=str(path))))
        rows = len(corpus.pairs)
    seconds = time.perf_counter() - started
    peaks.done.set()
    peaks.join()
    return {"rows": rows, "seconds": seconds, "anonymous_mb": peaks.peak["RssAnon"], "file_mb": peaks.peak["RssFile"]}


def measured(name: str, path: Path, cache: Path) -> dict:
    """``phase`` in a fresh process: its figures and its peak RSS in MB."""
    proc = subprocess.Popen([sys.executable, __file__, "--phase", name, "--data", str(path), "--cache", str(cache)],
                            stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"phase {name!r} failed")
    return {**json.loads(out.decode().strip().splitlines()[-1]), "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the Parquet dataset (default %(default)s)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, Path(args.data), Path(args.cache))))
        return
    with tempfile.TemporaryDirectory() as folder:
        path, cache = Path(folder) / "pairs.parquet", Path(folder) / "hf-cache"
        build(path, args.rows)
        print(f"{args.rows:,} rows, Parquet {path.stat().st_size / 2**20:.1f} MB; load average "
              f"{os.getloadavg()[0]:.2f}; peak RSS in MB (2^20 bytes)")
        results = {}
        for name in ("source, cold", "source, warm", "rows only", "read whole"):
            result = results[name] = measured(name, path, cache)
            print(f"{name:<13} {result['rows']:>10,} rows in {result['seconds']:7.2f} s  "
                  f"{result['rows'] / result['seconds']:>10,.0f} rows/s  peak RSS {result['peak_rss_mb']:7.1f}  "
                  f"(anonymous {result['anonymous_mb']:6.1f}, file pages {result['file_mb']:6.1f})")
        ours, whole = results["rows only"], results["read whole"]
        print(f"rows only vs read whole: rows/s x{whole['seconds'] / ours['seconds']:.2f}, "
              f"peak RSS x{ours['peak_rss_mb'] / whole['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
