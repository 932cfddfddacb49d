"""Dialogue sources as conversations (lists of turns), and their adjacent turn pairs.

- ``chatterbot``: the chatterbot-corpus YAML conversations, per language.
- ``chitchat``: the chitchat-dataset package; consecutive messages by one sender are one turn.
- ``files``: the user's JSON / JSONL / CSV: question/answer columns, or conversations as
  lists of ``{role, content}`` messages (user -> assistant pairs).
- ``dataset``: a Hugging Face dataset on this machine (``cubecore.data.hfdataset``), its rows
  read as the records of ``files`` are, with the same column options.

Line numbers are the user's: the 1-based line in the source file where a record (a CSV
row, a JSON object, a YAML conversation) starts. Conversation ids are ``<file>:<line>``
(chitchat keeps its own conversation ids), and so are the places named in errors and in
rejects; a dataset's rows are named by their index, ``<path>[<row>]``. A malformed file stops
with one ``<file>:<line>: ...`` error; a record that cannot give pairs (a missing, blank or
non-text value) is rejected with its reasons, so every record read is either kept or rejected.
"""
from __future__ import annotations

import bisect
import csv
import importlib.util
import io
import json
import logging
import re
from pathlib import Path

import yaml

from cubecore.core.config import DataParams, FilesParams
from cubecore.core.errors import CubecoreError, yaml_error
from cubecore.data.records import (
    Corpus,
    Record,
    Rejected,
    TurnPair,
    add_records,
    is_blank,
    require_columns,
    short,
)

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

log = logging.getLogger(__name__)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise CubecoreError(f"data.source: package {name!r} is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations)))


def adjacent_pairs(conversation: str, turns: list[str]) -> list[TurnPair]:
    """Every turn i -> turn i+1 of one conversation."""
    return [TurnPair(q, a, conversation, i) for i, (q, a) in enumerate(zip(turns, turns[1:]))]


# --- chatterbot ----------------------------------------------------------------------------

def _yaml_conversations(path: Path) -> list[yaml.Node]:
    """The nodes of a chatterbot file's ``conversations`` list (nodes keep their line)."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=SafeLoader)
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "conversations" and isinstance(value, yaml.SequenceNode):
                return value.value
    return []


def _yaml_turns(node: yaml.Node) -> list[str]:
    """A conversation node's turns as written (YAML scalars stay text: ``yes`` is not True)."""
    if not isinstance(node, yaml.SequenceNode):
        raise Rejected("not a list of turns", f"a conversation must be a list of turns, got {short(node.value)}")
    turns = []
    for number, turn in enumerate(node.value, start=1):
        if not isinstance(turn, yaml.ScalarNode):
            raise Rejected("turn not text", f"turn {number} (line {turn.start_mark.line + 1}) is a {turn.id}")
        if turn.tag.endswith(":null") or is_blank(turn.value):
            raise Rejected("missing turn", f"turn {number} (line {turn.start_mark.line + 1}) is empty")
        turns.append(turn.value)
    return turns


def chatterbot_corpus(languages: list[str]) -> Corpus:
    root = _package_dir("chatterbot_corpus") / "data"
    corpus = Corpus()
    for language in languages:
        directory = root / language
        if not directory.is_dir():
            available = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir()))
            raise CubecoreError(f"data.languages: no chatterbot corpus for {language!r} (available: {available})")
        for path in sorted(directory.glob("*.yml")):
            name = f"{language}/{path.name}"
            for node in _yaml_conversations(path):
                corpus.records += 1
                line = node.start_mark.line + 1
                try:
                    corpus.pairs += adjacent_pairs(f"{name}:{line}", _yaml_turns(node))
                except Rejected as rejected:
                    corpus.reject({"file": name, "line": line}, rejected.reason, rejected.detail)
    return corpus


def chitchat_corpus() -> Corpus:
    path = _package_dir("chitchat_dataset") / "dataset.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    corpus = Corpus(records=len(data))
    for conversation_id, conversation in data.items():
        turns = [" ".join(m["text"] for m in turn) for turn in conversation["messages"]]
        corpus.pairs += adjacent_pairs(conversation_id, turns)
    return corpus


# --- the user's files: records with their line ---------------------------------------------

FORMATS = (".json", ".jsonl", ".csv")


def _decoded(path: Path) -> str:
    """The file's text; undecodable or NUL bytes stop with the line they are on."""
    if not path.exists():
        raise CubecoreError(f"{path}: file not found (data.files.paths)")
    if path.suffix.lower() not in FORMATS:
        raise CubecoreError(f"{path}: unsupported file type {path.suffix!r} (use .json, .jsonl or .csv)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise CubecoreError(f"{path}:{line}: undecodable bytes (not UTF-8) at column {column}") from None
    if "\0" in text:
        raise CubecoreError(f"{path}:{text.count(chr(10), 0, text.index(chr(0))) + 1}: NUL byte (a binary file?)")
    if is_blank(text):
        raise CubecoreError(f"{path}: file is empty")
    return text


def _json_line_records(path: Path, text: str) -> list[Record]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(Record(number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise CubecoreError(f"{path}:{number}: malformed JSON ({exc.msg}, column {exc.colno})") from None
    return records


def _json_records(path: Path, text: str) -> list[Record]:
    """A JSON array of records (each with the line it starts on), one object, or JSON lines."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and not text.lstrip().startswith("["):  # JSON lines saved as .json
            return _json_line_records(path, text)
        raise CubecoreError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg}, column {exc.colno})") from None
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    whitespace = re.compile(r"[ \t\r\n]*")
    position = whitespace.match(text).end()
    if not isinstance(value, list):
        return [Record(bisect.bisect_right(starts, position), value)]
    decoder, records = json.JSONDecoder(), []
    position = whitespace.match(text, position + 1).end()  # past '['
    for item in value:
        records.append(Record(bisect.bisect_right(starts, position), item))
        _, end = decoder.raw_decode(text, position)
        position = whitespace.match(text, end).end()
        position = whitespace.match(text, position + 1).end()  # past ',' or ']'
    return records


def _csv_records(path: Path, text: str) -> list[Record]:
    """CSV rows as ``{column: cell}`` with the line each starts on (cells may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # one cell may be the whole file
    records, header, previous = [], None, 0
    try:
        for row in reader:
            start, previous = previous + 1, reader.line_num
            if not row:
                continue
            if header is None:
                header = row
            elif len(row) > len(header):
                records.append(Record(start, Rejected("bad row", f"{len(row)} cells, the header has {len(header)}")))
            else:
                records.append(Record(start, dict(zip(header, row)), csv=True))
    except csv.Error as exc:
        raise CubecoreError(f"{path}:{previous + 1}: malformed CSV ({exc})") from None
    return records


def read_records(path: Path) -> list[Record]:
    """Every record of a JSON / JSONL / CSV file, with the line it starts on."""
    text = _decoded(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_records(path, text)
    return _json_line_records(path, text) if suffix == ".jsonl" else _json_records(path, text)


def files_corpus(files: FilesParams) -> Corpus:
    corpus = Corpus()
    for name in files.paths:
        path = Path(name)
        records = read_records(path)
        if not records:
            raise CubecoreError(f"{path}: no records")
        fields = [r.value for r in records if isinstance(r.value, dict)]
        if fields:
            require_columns(str(path), {key for f in fields for key in f}, files)
        add_records(corpus, records, files, lambda line, name=name: (f"{name}:{line}", {"file": name, "line": line}))
    return corpus


def reject_place(reject: dict) -> str:
    """Where a rejected record is, as a reader would look for it."""
    if "row" in reject:
        return f"{reject['dataset']} row {reject['row']}"
    return f"{reject['file']}:{reject['line']}"


def load_corpus(data: DataParams) -> Corpus:
    """All adjacent turn pairs of the configured source (capped at ``data.max_pairs``) and
    the records rejected on the way."""
    if data.source == "chatterbot":
        corpus = chatterbot_corpus(data.languages)
    elif data.source == "chitchat":
        corpus = chitchat_corpus()
    elif data.source == "dataset":
        from cubecore.data.hfdataset import (
            dataset_corpus,  # imports `datasets` only for this source
        )

        corpus = dataset_corpus(data.dataset)
    else:
        corpus = files_corpus(data.files)
    if not corpus.pairs:
        first = corpus.rejects[0] if corpus.rejects else None
        why = (f"; all {corpus.records} records rejected, first {reject_place(first)}: "
               f"{first['detail']}" if first else "")
        raise CubecoreError(f"data.source: {data.source!r} produced no turn pairs{why}")
    log.info("%s: %d adjacent turn pairs, %d records rejected", data.source, len(corpus.pairs),
             len(corpus.rejects))
    if data.max_pairs and len(corpus.pairs) > data.max_pairs:
        corpus.capped = len(corpus.pairs) - data.max_pairs
        corpus.pairs = corpus.pairs[: data.max_pairs]
    return corpus
