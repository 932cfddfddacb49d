"""The bad-input corpus (tests/data/bad_inputs/): every file either stops with one clear
``<file>:<line>: ...`` error, or is read with records in = kept + rejected, each reject with
its reason and the 1-based line it starts on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cubecore.core.config import DataParams, FilesParams
from cubecore.core.errors import CubecoreError
from cubecore.data.corpora import _yaml_conversations, load_corpus

BAD = Path(__file__).parent / "data" / "bad_inputs"

# file -> the fragments its error must hold (after "<file>:<line>:" when a line is given)
ERRORS = {
    "malformed.jsonl": (3, "malformed JSON"),
    "malformed.json": (3, "malformed JSON"),
    "binary.csv": (3, "not UTF-8"),
    "nul.jsonl": (2, "NUL byte"),
    "unterminated.csv": (3, "malformed CSV"),
    "missing_column.csv": (None, "missing column 'answer'", "data.files.answer_column"),
    "whitespace_only.csv": (None, "file is empty"),
    "header_only.csv": (None, "no records"),
    "empty_array.json": (None, "no records"),
}
# file -> {line of each rejected record: reason}, and the lines of the kept records
READS = {
    "wrong_types.jsonl": ({1: "answer not text", 2: "question not text", 3: "answer not text",
                           4: "question not text", 5: "question not text", 6: "missing question",
                           7: "missing answer"}, [8]),
    "not_records.json": ({2: "not a record", 3: "not a record", 5: "not a record"}, [4]),
    "blank_cells.csv": ({2: "missing question", 3: "missing question", 4: "missing question",
                         5: "missing question", 6: "missing question", 7: "missing answer",
                         8: "missing answer", 10: "missing answer"}, [9]),
    "numbers.csv": ({2: "answer not text", 3: "question not text", 4: "answer not text"}, [5]),
    "unicode.jsonl": ({}, [1, 2, 3, 4, 5]),
    "multiline.csv": ({}, [2, 5, 6, 9]),
    "conversations.jsonl": ({1: "messages not a list", 2: "bad message", 3: "no exchange",
                             4: "missing content", 5: "missing messages"}, [6]),
}


def files_source(path: Path, **files) -> DataParams:
    if path.name.startswith("conversations"):
        files.setdefault("format", "conversations")
    return DataParams(source="files", files=FilesParams(paths=[str(path)], **files))


def test_the_corpus_is_covered():
    assert sorted(p.name for p in BAD.iterdir()) == sorted([*ERRORS, *READS, "malformed.yml"])


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_bad_file_stops_with_one_line_naming_file_and_line(name):
    line, *fragments = ERRORS[name]
    path = BAD / name
    with pytest.raises(CubecoreError) as info:
        load_corpus(files_source(path))
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: "), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("name", sorted(READS))
def test_bad_records_are_rejected_with_reasons_and_lines(name):
    rejected, kept_lines = READS[name]
    path = BAD / name
    corpus = load_corpus(files_source(path))
    counts = corpus.counts()
    assert counts["records_in"] == counts["records_kept"] + counts["records_rejected"]
    assert counts["records_in"] == len(rejected) + len(kept_lines)
    assert {r["line"]: r["reasons"][0] for r in corpus.rejects} == rejected
    assert all(r["file"] == str(path) and r["detail"] and "\n" not in r["detail"] for r in corpus.rejects)
    assert sorted({int(p.conversation.rsplit(":", 1)[1]) for p in corpus.pairs}) == kept_lines


def test_unicode_text_is_kept_exactly():
    path = BAD / "unicode.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    pairs = load_corpus(files_source(path)).pairs
    assert [(p.question, p.answer) for p in pairs] == [(r["question"], r["answer"]) for r in rows]


def test_csv_cells_keep_embedded_newlines_and_quotes():
    pairs = load_corpus(files_source(BAD / "multiline.csv")).pairs
    assert [(p.question, p.answer) for p in pairs] == [
        ("A question\nover two lines?", 'An answer with "quotes", commas, and\na newline.'),
        ("Plain question here?", "Plain answer here."),
        ('Quoted "inside" only?', "Line one\n\nline three, after a blank line."),
        ("Last question?", "Last answer."),
    ]


def test_coerce_numbers_reads_numbers_as_text():
    pairs = load_corpus(files_source(BAD / "numbers.csv", coerce_numbers=True)).pairs
    assert [(p.question, p.answer) for p in pairs] == [
        ("How old are you?", "42"), ("7", "Seven is a number."), ("What is pi?", "3.14159"),
        ("What is 6 times 7?", "It is 42 of course.")]
    corpus = load_corpus(files_source(BAD / "wrong_types.jsonl", coerce_numbers=True))
    assert [(p.question, p.answer) for p in corpus.pairs][:2] == [
        ("What is the answer to everything?", "42"), ("3.14", "That is pi, more or less.")]
    # a boolean, a list or an object is never text
    assert {r["line"] for r in corpus.rejects} == {3, 4, 5, 6, 7}


def test_malformed_yaml_names_file_and_line():
    path = BAD / "malformed.yml"
    with pytest.raises(CubecoreError) as info:
        _yaml_conversations(path)
    assert str(info.value).startswith(f"{path}:7: not valid YAML")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_5_mb_line_is_read_and_the_next_line_keeps_its_number(tmp_path, suffix):
    big = "word " * (1 << 20)  # 5 MiB of text in one cell
    path = tmp_path / f"big{suffix}"
    if suffix == ".jsonl":
        rows = [{"question": big, "answer": "A short answer."}, {"question": "Next?", "answer": "Next answer."}]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        lines = [1, 2]
    else:
        path.write_text(f"question,answer\n{big},A short answer.\nNext?,Next answer.\n", encoding="utf-8")
        lines = [2, 3]
    assert path.stat().st_size > 5_000_000
    pairs = load_corpus(files_source(path)).pairs
    assert [len(p.question) for p in pairs] == [len(big), 5]
    assert [p.conversation for p in pairs] == [f"{path}:{line}" for line in lines]


def test_yaml_turns_stay_text_and_an_empty_turn_is_rejected():
    import yaml

    from cubecore.data.corpora import _yaml_turns
    from cubecore.data.records import Rejected

    good, empty = yaml.compose("- - yes\n  - 42\n  - 2024-01-01\n- - Hello\n  -\n  - ~\n").value
    assert _yaml_turns(good) == ["yes", "42", "2024-01-01"]  # yaml.safe_load gives True, 42, a date
    with pytest.raises(Rejected) as info:
        _yaml_turns(empty)
    assert info.value.reason == "missing turn" and "line 5" in info.value.detail


def test_params_yaml_error_names_the_line(tmp_path):
    from cubecore.core.config import load_params

    path = tmp_path / "params.yaml"
    path.write_text("base:\n  seed: 1\ndata:\n  source: [files\n  max_pairs: 3\n", encoding="utf-8")
    with pytest.raises(CubecoreError) as info:
        load_params(path)
    assert str(info.value) == (f"{path}:5: not valid YAML (expected ',' or ']', but got ':'; "
                               f"while parsing a flow sequence at line 4)")


def test_extract_writes_the_records_it_rejected(tmp_path):
    """Through the extract and filter stages: records in = kept + rejected, and pairs in =
    kept + removed; every rejected record is in data/extract/rejects.jsonl."""
    from cubecore.core.config import Params, TeacherParams
    from cubecore.data.extraction import extract
    from cubecore.data.filtering import filter_pairs

    names = ["blank_cells.csv", "numbers.csv", "unicode.jsonl", "multiline.csv"]
    params = Params()
    params.base.cache_dir = str(tmp_path / "cache")
    params.data = files_source(BAD / names[0])
    params.data.files.paths = [str(BAD / name) for name in names]
    params.teacher = TeacherParams(device="cpu", precision="fp32", batch_size=8)
    metrics = extract(params, tmp_path / "extract", progress=False)[0]["extract"]
    expected = {name: load_corpus(files_source(BAD / name)).counts() for name in names}
    assert metrics["records_in"] == sum(c["records_in"] for c in expected.values()) == 22
    assert metrics["records_rejected"] == sum(c["records_rejected"] for c in expected.values()) == 11
    assert metrics["records_in"] == metrics["records_kept"] + metrics["records_rejected"]
    assert metrics["pairs"] == metrics["records_kept"]  # one pair per kept record in `pairs` format
    rejects = [json.loads(line) for line in (tmp_path / "extract" / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == metrics["records_rejected"]
    assert {(Path(r["file"]).name, r["line"]) for r in rejects} >= {("blank_cells.csv", 3), ("numbers.csv", 2)}
    filtered = filter_pairs(tmp_path / "extract", tmp_path / "filter", params.filter)["filter"]
    assert filtered["pairs_in"] == metrics["pairs"] == filtered["kept"] + filtered["removed"]


def test_crlf_line_endings_keep_the_same_lines(tmp_path):
    text = (BAD / "multiline.csv").read_text(encoding="utf-8")
    path = tmp_path / "windows.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))  # with a BOM, as Excel saves
    corpus = load_corpus(files_source(path))
    assert [p.conversation for p in corpus.pairs] == [f"{path}:{line}" for line in READS["multiline.csv"][1]]
    assert corpus.pairs[0].question == "A question\r\nover two lines?"
