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
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cubecore.core.config import DataParams, FilesParams, RecordParams
from cubecore.core.errors import CubecoreError, yaml_error

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

log = logging.getLogger(__name__)

# CSV cells that mean "no value" (pandas' defaults); CSV has no null of its own
CSV_MISSING = frozenset({"", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "None", "null", "NULL",
                         "#N/A", "#NA", "<NA>", "N/A N/A", "#N/A N/A", "1.#IND", "-1.#IND", "1.#QNAN", "-1.#QNAN"})
CSV_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})  # controls, zero-width / direction marks, spaces


@dataclass
class TurnPair:
    question: str
    answer: str
    conversation: str
    turn: int


@dataclass
class Corpus:
    """The pairs of a source and the records it rejected: ``records = kept + rejected``."""

    pairs: list[TurnPair] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    records: int = 0
    capped: int = 0  # pairs left out by data.max_pairs

    def reject(self, place: dict, reason: str, detail: str) -> None:
        """``place`` says where the record is: ``{"file", "line"}`` or ``{"dataset", "split", "row"}``."""
        self.rejects.append({**place, "reasons": [reason], "detail": detail})

    def counts(self) -> dict:
        return {"records_in": self.records, "records_kept": self.records - len(self.rejects),
                "records_rejected": len(self.rejects),
                "rejected_by_reason": dict(sorted(Counter(r["reasons"][0] for r in self.rejects).items())),
                "pairs_over_max_pairs": self.capped}


class Rejected(Exception):
    """A record that gives no pairs: ``reason`` is a short fixed phrase, ``detail`` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise CubecoreError(f"data.source: package {name!r} is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations)))


def adjacent_pairs(conversation: str, turns: list[str]) -> list[TurnPair]:
    """Every turn i -> turn i+1 of one conversation."""
    return [TurnPair(q, a, conversation, i) for i, (q, a) in enumerate(zip(turns, turns[1:]))]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def is_blank(text: str) -> bool:
    """True when nothing in ``text`` is visible (spaces, zero-width and direction marks only)."""
    return all(unicodedata.category(ch) in INVISIBLE for ch in text)


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
        raise Rejected("not a list of turns", f"a conversation must be a list of turns, got {_short(node.value)}")
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


@dataclass
class Record:
    """One record of the user's data: where it is (the line a file's record starts on, a dataset
    row's index) and its fields (or why it has none)."""

    position: int
    value: object        # a dict of fields; anything else is rejected as "not a record"
    csv: bool = False    # CSV cells are text that may spell a number or a missing value


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


def as_text(value, name: str, from_csv: bool, columns: RecordParams) -> str:
    """A field's value as text, or Rejected with why it is not usable text."""
    coerce = f"(set {columns.SECTION}.coerce_numbers: true to read numbers as text)"
    if from_csv:
        if value.strip() in CSV_MISSING:
            raise Rejected(f"missing {name}", f"{name} is {_short(value)}")
        if CSV_NUMBER.fullmatch(value.strip()) and not columns.coerce_numbers:
            raise Rejected(f"{name} not text", f"{name} is the number {value.strip()} {coerce}")
    elif value is None:
        raise Rejected(f"missing {name}", f"{name} is null")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not columns.coerce_numbers:
            raise Rejected(f"{name} not text", f"{name} is the number {value!r} {coerce}")
        value = str(value)
    elif not isinstance(value, str):
        raise Rejected(f"{name} not text", f"{name} is a {type(value).__name__}: {_short(value)}")
    if is_blank(value):
        raise Rejected(f"missing {name}", f"{name} is blank: {_short(value)}")
    return value


def _record_pairs(record: Record, where: str, columns: RecordParams) -> list[TurnPair]:
    fields = record.value
    if isinstance(fields, Rejected):
        raise fields
    if not isinstance(fields, dict):
        raise Rejected("not a record", f"expected an object with named fields, got {_short(fields)}")
    if columns.format == "pairs":
        values = []
        for name, column in (("question", columns.question_column), ("answer", columns.answer_column)):
            if column not in fields:
                raise Rejected(f"missing {name}", f"no {column!r} field")
            values.append(as_text(fields[column], name, record.csv, columns))
        return [TurnPair(values[0], values[1], where, 0)]
    if columns.messages_column not in fields:
        raise Rejected("missing messages", f"no {columns.messages_column!r} field")
    return _conversation_pairs(fields[columns.messages_column], where, columns)


def _conversation_pairs(messages, where: str, columns: RecordParams) -> list[TurnPair]:
    """Merge consecutive messages of one role into a turn (other roles are skipped);
    each user turn -> the next assistant turn."""
    if not isinstance(messages, list):
        raise Rejected("messages not a list", f"{columns.messages_column!r} must be a list of messages, "
                                              f"got {_short(messages)}")
    turns: list[tuple[str, str]] = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise Rejected("bad message", f"message {number} needs 'role' and 'content', got {_short(message)}")
        role = message["role"]
        if role not in (columns.user_role, columns.assistant_role):
            continue  # system prompts and tool messages are not dialogue turns
        content = as_text(message["content"], "content", False, columns)
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]} {content}")
        else:
            turns.append((role, content))
    pairs = [TurnPair(q, a, where, i) for i, ((q_role, q), (a_role, a)) in enumerate(zip(turns, turns[1:]))
             if q_role == columns.user_role and a_role == columns.assistant_role]
    if not pairs:
        raise Rejected("no exchange", f"no {columns.user_role!r} message followed by an {columns.assistant_role!r} one")
    return pairs


def record_columns(columns: RecordParams) -> list[tuple[str, str]]:
    """``(param, column)`` of each column a record's pairs come from."""
    if columns.format == "pairs":
        return [("question_column", columns.question_column), ("answer_column", columns.answer_column)]
    return [("messages_column", columns.messages_column)]


def require_columns(source: str, present: Iterable[str], columns: RecordParams) -> None:
    """A column absent from every record is a params mistake, not a bad record: stop naming
    the columns there are."""
    present = {str(name) for name in present}
    for param, column in record_columns(columns):
        if column not in present:
            raise CubecoreError(f"{source}: missing column {column!r} (columns: {', '.join(sorted(present))}); "
                                f"set {columns.SECTION}.{param}")


def add_records(corpus: Corpus, records: Iterable[Record], columns: RecordParams,
                where: Callable[[int], tuple[str, dict]]) -> None:
    """Each record's pairs into ``corpus``, or the record into its rejects; ``where(position)``
    gives a record's conversation id and its place in a reject."""
    for record in records:
        corpus.records += 1
        conversation, place = where(record.position)
        try:
            corpus.pairs += _record_pairs(record, conversation, columns)
        except Rejected as rejected:
            corpus.reject(place, rejected.reason, rejected.detail)


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
