"""What every dialogue source makes: records of the user's data (a file's or a dataset's rows),
turned into adjacent turn pairs by the columns of ``data.files`` / ``data.dataset``, or
rejected with their reasons."""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cubecore.core.config import RecordParams
from cubecore.core.errors import CubecoreError

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


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def is_blank(text: str) -> bool:
    """True when nothing in ``text`` is visible (spaces, zero-width and direction marks only)."""
    return all(unicodedata.category(ch) in INVISIBLE for ch in text)


@dataclass
class Record:
    """One record of the user's data: where it is (the line a file's record starts on, a dataset
    row's index) and its fields (or why it has none)."""

    position: int
    value: object        # a dict of fields; anything else is rejected as "not a record"
    csv: bool = False    # CSV cells are text that may spell a number or a missing value


def as_text(value, name: str, from_csv: bool, columns: RecordParams) -> str:
    """A field's value as text, or Rejected with why it is not usable text."""
    coerce = f"(set {columns.SECTION}.coerce_numbers: true to read numbers as text)"
    if from_csv:
        if value.strip() in CSV_MISSING:
            raise Rejected(f"missing {name}", f"{name} is {short(value)}")
        if CSV_NUMBER.fullmatch(value.strip()) and not columns.coerce_numbers:
            raise Rejected(f"{name} not text", f"{name} is the number {value.strip()} {coerce}")
    elif value is None:
        raise Rejected(f"missing {name}", f"{name} is null")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not columns.coerce_numbers:
            raise Rejected(f"{name} not text", f"{name} is the number {value!r} {coerce}")
        value = str(value)
    elif not isinstance(value, str):
        raise Rejected(f"{name} not text", f"{name} is a {type(value).__name__}: {short(value)}")
    if is_blank(value):
        raise Rejected(f"missing {name}", f"{name} is blank: {short(value)}")
    return value


def _record_pairs(record: Record, where: str, columns: RecordParams) -> list[TurnPair]:
    fields = record.value
    if isinstance(fields, Rejected):
        raise fields
    if not isinstance(fields, dict):
        raise Rejected("not a record", f"expected an object with named fields, got {short(fields)}")
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
                                              f"got {short(messages)}")
    turns: list[tuple[str, str]] = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise Rejected("bad message", f"message {number} needs 'role' and 'content', got {short(message)}")
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
