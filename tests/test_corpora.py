"""Dialogue sources -> adjacent turn pairs (cubecore.data.corpora)."""
from __future__ import annotations

import csv
import importlib.util
import json
from collections import defaultdict
from pathlib import Path

import pytest

from cubecore.core.config import DataParams, FilesParams, load_params
from cubecore.core.errors import CubecoreError
from cubecore.data.corpora import chatterbot_corpus, load_corpus


def files_source(*paths, **files) -> DataParams:
    return DataParams(source="files", files=FilesParams(paths=[str(p) for p in paths], **files))


def chatterbot_corpus_dir() -> str:
    return next(iter(importlib.util.find_spec("chatterbot_corpus").submodule_search_locations)) + "/data"


def load_pairs(data: DataParams):
    return load_corpus(data).pairs


def by_conversation(pairs):
    groups = defaultdict(list)
    for pair in pairs:
        groups[pair.conversation].append(pair)
    return groups


# --- chatterbot ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chatterbot_english():
    return load_pairs(DataParams(source="chatterbot", languages=["english"]))


def test_chatterbot_english_pairs_have_ids_and_turns(chatterbot_english):
    pairs = chatterbot_english
    assert len(pairs) > 500
    assert all(p.conversation.startswith("english/") and ".yml:" in p.conversation for p in pairs)
    groups = by_conversation(pairs)
    assert len(groups) > 100
    assert any(len(g) > 1 for g in groups.values())  # some conversations run past one exchange
    for conversation, group in groups.items():
        assert [p.turn for p in group] == list(range(len(group))), conversation
        for first, second in zip(group, group[1:]):  # adjacent: turn i's answer is turn i+1's question
            assert first.answer == second.question, conversation


def test_chatterbot_matches_the_corpus_file(chatterbot_english):
    # english/greetings.yml opens with the conversations [Hello, Hi] (line 4) and [Hi, Hello]
    # (line 6); a conversation is named by the file and the 1-based line it starts on
    lines = (Path(chatterbot_corpus_dir()) / "english" / "greetings.yml").read_text(encoding="utf-8").splitlines()
    assert lines[3:7] == ["- - Hello", "  - Hi", "- - Hi", "  - Hello"]
    first = [p for p in chatterbot_english if p.conversation == "english/greetings.yml:4"]
    second = [p for p in chatterbot_english if p.conversation == "english/greetings.yml:6"]
    assert [(p.question, p.answer, p.turn) for p in first] == [("Hello", "Hi", 0)]
    assert [(p.question, p.answer, p.turn) for p in second] == [("Hi", "Hello", 0)]


def test_chatterbot_unknown_language_names_the_param():
    with pytest.raises(CubecoreError, match="data.languages") as info:
        chatterbot_corpus(["klingon"])
    assert "english" in str(info.value)  # lists what is available


def test_max_pairs_caps_chatterbot():
    assert len(load_pairs(DataParams(source="chatterbot", max_pairs=7))) == 7


# --- chitchat ------------------------------------------------------------------------------

def test_chitchat_capped_load_merges_a_senders_messages():
    pairs = load_pairs(DataParams(source="chitchat", max_pairs=5))
    assert len(pairs) == 5
    # the package's dataset.json (chitchat-dataset 0.9.0) opens with this conversation; its first
    # turn is two messages by one sender, the second three by the other
    conversation = "a07edb12-6b91-4138-b11e-02421888d699"
    assert all(p.conversation == conversation for p in pairs)
    assert [p.turn for p in pairs] == [0, 1, 2, 3, 4]
    assert pairs[0].question == "Hello How are you doing today?"
    assert pairs[0].answer == "whats up MD im doing good how are you doing?"
    assert pairs[1].question == pairs[0].answer
    assert pairs[1].answer.startswith("Im alright, I just took a nap.")
    assert pairs[2].answer == "oh wow haha so you still feel tired huh?"


# --- the user's files ----------------------------------------------------------------------

def test_jsonl_pairs_with_custom_columns(tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [{"prompt": "What is DVC?", "response": "A data version control tool.", "extra": 1},
            {"prompt": "Is it free?", "response": "Yes, it is open source.", "extra": 2}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pairs = load_pairs(files_source(path, question_column="prompt", answer_column="response"))
    assert [(p.question, p.answer) for p in pairs] == [(r["prompt"], r["response"]) for r in rows]
    assert [p.conversation for p in pairs] == [f"{path}:1", f"{path}:2"]
    assert [p.turn for p in pairs] == [0, 0]


def test_csv_pairs(tmp_path):
    path = tmp_path / "faq.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["question", "answer"])
        writer.writerow(["Hello, how are you?", "Fine, thanks; and you?"])
        writer.writerow(["Where is the café?", "Round the corner."])
    pairs = load_pairs(files_source(path))
    assert [(p.question, p.answer) for p in pairs] == [
        ("Hello, how are you?", "Fine, thanks; and you?"), ("Where is the café?", "Round the corner.")]
    assert [p.conversation for p in pairs] == [f"{path}:2", f"{path}:3"]  # line 1 is the header


def test_json_conversations_user_to_assistant_only(tmp_path):
    path = tmp_path / "convs.json"
    conversations = [
        {"messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": "there"},
            {"role": "assistant", "content": "Hello"},
            {"role": "assistant", "content": "friend"},
            {"role": "user", "content": "Bye"},
        ]},
        {"messages": [
            {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"},
        ]},
    ]
    path.write_text("[\n" + ",\n".join(json.dumps(c) for c in conversations) + "\n]\n", encoding="utf-8")
    pairs = load_pairs(files_source(path, format="conversations"))
    assert [(p.question, p.answer, p.conversation) for p in pairs] == [
        ("Hi there", "Hello friend", f"{path}:2"),  # merged; system skipped; assistant -> user dropped
        ("q1", "a1", f"{path}:3"),  # line 1 is the opening '['
        ("q2", "a2", f"{path}:3"),
    ]
    texts = {p.question for p in pairs} | {p.answer for p in pairs}
    assert not any("helpful" in t for t in texts)


def test_conversations_with_custom_roles_and_column(tmp_path):
    path = tmp_path / "convs.jsonl"
    row = {"turns": [{"role": "human", "content": "ping"}, {"role": "bot", "content": "pong"}]}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    pairs = load_pairs(files_source(path, format="conversations", messages_column="turns",
                                    user_role="human", assistant_role="bot"))
    assert [(p.question, p.answer) for p in pairs] == [("ping", "pong")]


# --- bad input: file (and line) named ------------------------------------------------------

def raises_naming(data: DataParams, *fragments: str) -> str:
    with pytest.raises(CubecoreError) as info:
        load_pairs(data)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "\n" not in message
    return message


def test_malformed_jsonl_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "answer": "b"}\n'
                    '{"question": "c", "answer": "d"}\n'
                    '{"question": "e", "answer": \n'
                    '{"question": "g", "answer": "h"}\n', encoding="utf-8")
    raises_naming(files_source(path), f"{path}:3:", "malformed JSON")


def test_missing_column_names_column_and_param(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"q": "a", "answer": "b"}\n', encoding="utf-8")
    raises_naming(files_source(path), str(path), "'question'", "data.files.question_column")


def test_missing_messages_column_names_param(tmp_path):
    path = tmp_path / "convs.jsonl"
    path.write_text('{"question": "a", "answer": "b"}\n', encoding="utf-8")
    raises_naming(files_source(path, format="conversations"), str(path), "'messages'",
                  "data.files.messages_column")


def test_undecodable_bytes_line_is_named(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"question,answer\n\xff\xfe,hello\n")
    raises_naming(files_source(path), f"{path}:2:", "UTF-8")


def test_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    raises_naming(files_source(path), str(path), "empty")


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "absent.jsonl"
    raises_naming(files_source(path), str(path), "not found")


def test_unsupported_extension_is_named(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text("question\tanswer\n", encoding="utf-8")
    raises_naming(files_source(path), str(path), "'.txt'")


def test_unknown_source_through_load_params(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  source: web\n", encoding="utf-8")
    with pytest.raises(CubecoreError, match="data.source"):
        load_params(path)


def test_chatterbot_conversation_that_is_not_a_list_is_rejected_with_its_line():
    # english/trivia.yml line 35 is one string where a list of turns belongs; it used to be
    # read as a list of characters (87 one-letter "pairs")
    corpus = load_corpus(DataParams(source="chatterbot", languages=["english"]))
    assert corpus.rejects == [{"file": "english/trivia.yml", "line": 35, "reasons": ["not a list of turns"],
                               "detail": corpus.rejects[0]["detail"]}]
    assert "In a game of bingo" in corpus.rejects[0]["detail"]
    assert not any(len(p.question) == 1 for p in corpus.pairs)
    counts = corpus.counts()
    assert counts["records_in"] == counts["records_kept"] + 1
