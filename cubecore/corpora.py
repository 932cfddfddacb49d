"""Dialogue sources as conversations (lists of turns), and their adjacent turn pairs.

- ``chatterbot``: the chatterbot-corpus YAML conversations, per language.
- ``chitchat``: the chitchat-dataset package; consecutive messages by one sender are one turn.
- ``files``: the user's JSON / JSONL / CSV, read with ``datasets``: question/answer columns,
  or conversations as lists of ``{role, content}`` messages (user -> assistant pairs).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from cubecore.config import DataParams, FilesParams
from cubecore.errors import CubecoreError

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

log = logging.getLogger(__name__)


@dataclass
class TurnPair:
    question: str
    answer: str
    conversation: str
    turn: int


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise CubecoreError(f"data.source: package {name!r} is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations)))


def adjacent_pairs(conversation: str, turns: list[str]) -> list[TurnPair]:
    """Every turn i -> turn i+1 of one conversation."""
    return [TurnPair(q, a, conversation, i) for i, (q, a) in enumerate(zip(turns, turns[1:]))]


def chatterbot_pairs(languages: list[str]) -> list[TurnPair]:
    root = _package_dir("chatterbot_corpus") / "data"
    pairs = []
    for language in languages:
        directory = root / language
        if not directory.is_dir():
            available = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir()))
            raise CubecoreError(f"data.languages: no chatterbot corpus for {language!r} (available: {available})")
        for path in sorted(directory.glob("*.yml")):
            document = yaml.load(path.read_text(encoding="utf-8"), Loader=SafeLoader) or {}
            for index, turns in enumerate(document.get("conversations") or []):
                turns = ["" if t is None else str(t) for t in turns]
                pairs += adjacent_pairs(f"{language}/{path.stem}:{index}", turns)
    return pairs


def chitchat_pairs() -> list[TurnPair]:
    path = _package_dir("chitchat_dataset") / "dataset.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    pairs = []
    for conversation_id, conversation in data.items():
        turns = [" ".join(m["text"] for m in turn) for turn in conversation["messages"]]
        pairs += adjacent_pairs(conversation_id, turns)
    return pairs


# --- the user's files -------------------------------------------------------------------

LOADERS = {".json": "json", ".jsonl": "json", ".csv": "csv"}


def _check_file(path: Path) -> None:
    """Fail with file:line for what ``datasets`` would report vaguely."""
    if not path.exists():
        raise CubecoreError(f"{path}: file not found (data.files.paths)")
    if path.suffix.lower() not in LOADERS:
        raise CubecoreError(f"{path}: unsupported file type {path.suffix!r} (use .json, .jsonl or .csv)")
    raw = path.read_bytes()
    if not raw.strip():
        raise CubecoreError(f"{path}: file is empty")
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CubecoreError(f"{path}:{number}: undecodable bytes (not UTF-8) at column {exc.start + 1}") from None
        if path.suffix.lower() == ".jsonl" and text.strip():
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                raise CubecoreError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
    if path.suffix.lower() == ".json":
        try:
            json.loads(raw)
        except json.JSONDecodeError as exc:
            text = raw.decode("utf-8")
            if exc.msg == "Extra data":  # JSON lines saved as .json: check each line
                for number, line in enumerate(text.splitlines(), start=1):
                    try:
                        line.strip() and json.loads(line)
                    except json.JSONDecodeError as line_exc:
                        raise CubecoreError(f"{path}:{number}: malformed JSON ({line_exc.msg})") from None
            else:
                raise CubecoreError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None


def _load_table(path: Path):
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as cache:
        try:
            return datasets.load_dataset(LOADERS[path.suffix.lower()], data_files=str(path), split="train",
                                         cache_dir=cache, keep_in_memory=True)
        except Exception as exc:  # datasets wraps parser errors in many types
            raise CubecoreError(f"{path}: cannot read ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def _require_column(path: Path, table, column: str, param: str) -> None:
    if column not in table.column_names:
        raise CubecoreError(f"{path}: missing column {column!r} (columns: {', '.join(table.column_names)}); "
                            f"set data.files.{param}")


def _text(value) -> str:
    return "" if value is None else str(value)


def file_pairs(files: FilesParams) -> list[TurnPair]:
    pairs = []
    for name in files.paths:
        path = Path(name)
        _check_file(path)
        table = _load_table(path)
        if files.format == "pairs":
            _require_column(path, table, files.question_column, "question_column")
            _require_column(path, table, files.answer_column, "answer_column")
            for row, (q, a) in enumerate(zip(table[files.question_column], table[files.answer_column])):
                pairs.append(TurnPair(_text(q), _text(a), f"{path.name}:{row}", 0))
            continue
        _require_column(path, table, files.messages_column, "messages_column")
        for row, messages in enumerate(table[files.messages_column]):
            pairs += _conversation_pairs(path, row, messages, files)
    return pairs


def _conversation_pairs(path: Path, row: int, messages, files: FilesParams) -> list[TurnPair]:
    """Merge consecutive messages of one role into a turn (other roles are skipped);
    each user turn -> the next assistant turn."""
    if not isinstance(messages, list):
        raise CubecoreError(f"{path}: row {row + 1}: {files.messages_column!r} must be a list of messages")
    turns: list[tuple[str, str]] = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise CubecoreError(f"{path}: row {row + 1}: each message needs 'role' and 'content'")
        role, content = message["role"], _text(message["content"])
        if role not in (files.user_role, files.assistant_role):
            continue  # system prompts and tool messages are not dialogue turns
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]} {content}")
        else:
            turns.append((role, content))
    return [TurnPair(q, a, f"{path.name}:{row}", i)
            for i, ((q_role, q), (a_role, a)) in enumerate(zip(turns, turns[1:]))
            if q_role == files.user_role and a_role == files.assistant_role]


def load_pairs(data: DataParams) -> list[TurnPair]:
    """All adjacent turn pairs of the configured source, capped at ``data.max_pairs``."""
    if data.source == "chatterbot":
        pairs = chatterbot_pairs(data.languages)
    elif data.source == "chitchat":
        pairs = chitchat_pairs()
    else:
        pairs = file_pairs(data.files)
    if not pairs:
        raise CubecoreError(f"data.source: {data.source!r} produced no turn pairs")
    log.info("%s: %d adjacent turn pairs", data.source, len(pairs))
    return pairs[: data.max_pairs] if data.max_pairs else pairs
