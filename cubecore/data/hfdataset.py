"""A Hugging Face dataset on this machine as a dialogue source (``data.source: dataset``).

``data.dataset.path`` is one of:

- a folder written by ``save_to_disk``: one dataset (``state.json``) or several splits
  (``dataset_dict.json``, the split chosen by ``data.dataset.split``), read by ``load_from_disk``;
- a Parquet, Arrow, JSON, JSONL or CSV file, read by ``load_dataset(<builder>, data_files=...)``;
- a folder of such files (a dataset repository copied here, its configurations chosen by
  ``data.dataset.name``), read by ``load_dataset(<folder>)``.

Nothing is downloaded: a hub name is refused with what to do instead. The rows are read in
batches from memory-mapped Arrow, only the columns the pairs need, so memory stays flat however
large the dataset; each row is one record, as in a user file, with the same column options.
Locating the data needs no ``datasets`` import, so the ``check`` stage stays cheap.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cubecore.core.config import DatasetParams
from cubecore.core.errors import CubecoreError
from cubecore.data.records import (
    Corpus,
    Record,
    add_records,
    record_columns,
    require_columns,
)

log = logging.getLogger(__name__)

BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json", ".csv": "csv"}
BATCH_ROWS = 4096  # rows converted to Python per step: memory is this batch, not the dataset


@dataclass
class Located:
    """Where a dataset's rows are and how to read them; ``files`` hold its content."""

    saved: Path | None       # a save_to_disk folder of one split (load_from_disk)
    builder: str | None      # else load_dataset(builder, data_files=files), or of the folder when None
    files: list[Path]


def _data_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` but hidden ones (``.git``, caches), in a fixed order."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _saved_json(path: Path) -> dict:
    """A save_to_disk folder's ``state.json`` or ``dataset_dict.json``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CubecoreError(f"{path}: not the JSON save_to_disk writes ({exc}); save the dataset again") from None


def _saved_files(folder: Path) -> list[Path]:
    """A save_to_disk folder's Arrow files as its ``state.json`` lists them, with that state and
    ``dataset_info.json``: not the cache files a ``map`` may have left beside them."""
    state = _saved_json(folder / "state.json")
    named = [folder / "state.json", folder / "dataset_info.json",
             *(folder / f["filename"] for f in state.get("_data_files", []))]
    return [path for path in named if path.exists()]


def locate(dataset: DatasetParams) -> Located:
    """Which folder or files ``data.dataset.path`` names, checked without reading the rows."""
    path = Path(dataset.path).expanduser()
    if not path.exists():
        config = f", {dataset.name!r}" if dataset.name else ""
        raise CubecoreError(
            f"data.dataset.path: {dataset.path!r} is not a file or folder here. Datasets are never downloaded at "
            f"run time (this machine is offline): if it is a hub dataset, run `python -c \"import datasets; "
            f"datasets.load_dataset({dataset.path!r}{config}, split={dataset.split!r}).save_to_disk('my-dataset')\"` "
            f"where there is a network, copy the folder my-dataset here and set data.dataset.path to it")
    saved = (path / "state.json").exists() or (path / "dataset_dict.json").exists()
    if dataset.name and (saved or path.is_file()):
        raise CubecoreError(f"data.dataset.name: {dataset.path} has no configurations ({dataset.name!r} given); "
                            f"leave data.dataset.name empty")
    if (path / "dataset_dict.json").exists():
        splits = _saved_json(path / "dataset_dict.json").get("splits", [])
        if dataset.split not in splits:
            raise CubecoreError(f"data.dataset.split: {dataset.path} has no split {dataset.split!r} "
                                f"(splits: {', '.join(splits)})")
        path = path / dataset.split
    if (path / "state.json").exists():
        return Located(path, None, _saved_files(path))
    if path.is_file():
        if path.suffix.lower() not in BUILDERS:
            raise CubecoreError(f"data.dataset.path: {dataset.path}: unsupported file type {path.suffix!r} "
                                f"(use {', '.join(BUILDERS)}, or a save_to_disk folder)")
        return Located(None, BUILDERS[path.suffix.lower()], [path])
    files = _data_files(path)
    if not any(p.suffix.lower() in BUILDERS for p in files):
        raise CubecoreError(f"data.dataset.path: {dataset.path} holds no save_to_disk dataset (state.json or "
                            f"dataset_dict.json) and no {' / '.join(BUILDERS)} files")
    return Located(None, None, files)


def _check_parquet(files: list[Path]) -> None:
    """A Parquet file whose footer cannot be read stops naming that file (datasets would not)."""
    import pyarrow
    import pyarrow.parquet

    for path in files:
        if path.suffix.lower() == ".parquet":
            try:
                pyarrow.parquet.ParquetFile(path).close()
            except (pyarrow.ArrowException, OSError) as exc:
                raise CubecoreError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None


def open_dataset(dataset: DatasetParams):
    """The configured split as a memory-mapped ``datasets.Dataset``, or a one-line CubecoreError."""
    import datasets
    import pyarrow

    located = locate(dataset)
    datasets.disable_progress_bars()  # "Generating train split" bars: noise in logs
    _check_parquet(located.files)
    try:
        if located.saved is not None:
            found = datasets.load_from_disk(str(located.saved))
            if found.split is not None and str(found.split) != dataset.split:
                raise CubecoreError(f"data.dataset.split: {dataset.path} holds the split {str(found.split)!r} only, "
                                    f"not {dataset.split!r}")
            return found
        if located.builder is not None:
            return datasets.load_dataset(located.builder, data_files=[str(p) for p in located.files],
                                         split=dataset.split)
        return datasets.load_dataset(str(Path(dataset.path).expanduser()), dataset.name, split=dataset.split)
    except ValueError as exc:
        said = " ".join(str(exc).split())
        param = "split" if "split" in said.lower() else "name" if "config" in said.lower() else "path"
        raise CubecoreError(f"data.dataset.{param}: {dataset.path}: {said}") from None
    except (datasets.exceptions.DatasetGenerationError, pyarrow.ArrowException, OSError) as exc:
        cause = exc.__cause__ or exc
        raise CubecoreError(f"data.dataset.path: cannot read {dataset.path}: "
                            f"{type(cause).__name__}: {' '.join(str(cause).split())}") from None


def dataset_records(rows, columns: list[str]) -> Iterator[Record]:
    """The rows of ``rows`` (a Dataset) as records, their position the row index, ``BATCH_ROWS`` at a time."""
    index = 0
    for batch in rows.select_columns(columns).iter(batch_size=BATCH_ROWS):
        for values in zip(*(batch[c] for c in columns)):
            yield Record(index, dict(zip(columns, values)))
            index += 1


def dataset_corpus(dataset: DatasetParams) -> Corpus:
    rows = open_dataset(dataset)
    require_columns(dataset.path, rows.column_names, dataset)
    log.info("%s: %d rows (split %s)", dataset.path, rows.num_rows, dataset.split)
    corpus = Corpus()
    path, split = dataset.path, dataset.split
    columns = [column for _, column in record_columns(dataset)]
    add_records(corpus, dataset_records(rows, columns), dataset,
                lambda row: (f"{path}[{row}]", {"dataset": path, "split": split, "row": row}))
    return corpus

