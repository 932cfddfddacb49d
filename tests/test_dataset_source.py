"""`data.source: dataset`: a Hugging Face dataset on this machine (cubecore.data.hfdataset),
read as the user's files are, and fingerprinted by content for the `check` stage."""
from __future__ import annotations

import json
import shutil

import pytest

datasets = pytest.importorskip("datasets")
import pyarrow  # noqa: E402  (installed with datasets)
import pyarrow.parquet  # noqa: E402

from cubecore.core.config import DataParams, DatasetParams, load_params  # noqa: E402
from cubecore.core.errors import CubecoreError  # noqa: E402
from cubecore.data.corpora import load_corpus  # noqa: E402
from cubecore.data.inputs import fingerprint_inputs  # noqa: E402

PAIRS = {
    "question": ["How are you today?", "What is your name?", None, "Do you like tea?", "How old are you?"],
    "answer": ["Fine, thank you.", "I am a chatbot.", "An answer to nothing", "Yes, with milk.", "   "],
    "topic": ["greeting", "identity", "none", "food", "age"],
}


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """load_dataset's Arrow copies go to this test's folder, not the user's ~/.cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def parquet_file(path, columns: dict):
    pyarrow.parquet.write_table(pyarrow.table(columns), path)
    return path


def data(path, **options) -> DataParams:
    return DataParams(source="dataset", max_pairs=None, dataset=DatasetParams(path=str(path), **options))


def test_parquet_pairs_and_rejects_by_row(tmp_path):
    corpus = load_corpus(data(parquet_file(tmp_path / "pairs.parquet", PAIRS)))
    assert [(p.question, p.answer) for p in corpus.pairs] == [
        ("How are you today?", "Fine, thank you."), ("What is your name?", "I am a chatbot."),
        ("Do you like tea?", "Yes, with milk.")]
    assert corpus.pairs[1].conversation == f"{tmp_path / 'pairs.parquet'}[1]"
    assert [(r["row"], r["reasons"]) for r in corpus.rejects] == [(2, ["missing question"]), (4, ["missing answer"])]
    assert corpus.rejects[0]["dataset"] == str(tmp_path / "pairs.parquet") and corpus.rejects[0]["split"] == "train"
    assert corpus.counts()["records_in"] == 5 and corpus.counts()["records_kept"] == 3


def test_numbers_are_rejected_unless_coerced(tmp_path):
    path = parquet_file(tmp_path / "numbers.parquet", {"question": ["What is six times seven?"], "answer": [42]})
    with pytest.raises(CubecoreError, match=r"all 1 records rejected, first .*numbers.parquet row 0: "
                                            r"answer is the number 42 \(set data.dataset.coerce_numbers"):
        load_corpus(data(path))
    assert load_corpus(data(path, coerce_numbers=True)).pairs[0].answer == "42"


def test_save_to_disk_folder_and_its_splits(tmp_path):
    train = datasets.Dataset.from_dict(PAIRS)
    test = datasets.Dataset.from_dict({"question": ["Is it raining?"], "answer": ["Not at the moment."],
                                       "topic": ["weather"]})
    train.save_to_disk(tmp_path / "one")
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(tmp_path / "both")
    assert len(load_corpus(data(tmp_path / "one")).pairs) == 3
    assert [p.answer for p in load_corpus(data(tmp_path / "both", split="test")).pairs] == ["Not at the moment."]
    with pytest.raises(CubecoreError, match=r"data.dataset.split: .*both has no split 'validation' "
                                            r"\(splits: train, test\)"):
        load_corpus(data(tmp_path / "both", split="validation"))
    with pytest.raises(CubecoreError, match=r"data.dataset.name: .*one has no configurations"):
        load_corpus(data(tmp_path / "one", name="default"))


def test_conversations_dataset(tmp_path):
    chats = datasets.Dataset.from_dict({"messages": [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there!"},
         {"role": "assistant", "content": "Hi, how can I help?"}, {"role": "user", "content": "Tell me a joke."},
         {"role": "assistant", "content": "Why did the cube roll? It was pushed."}],
        [{"role": "assistant", "content": "Nobody asked me."}],
    ]})
    chats.save_to_disk(tmp_path / "chats")
    corpus = load_corpus(data(tmp_path / "chats", format="conversations"))
    assert [(p.question, p.answer, p.turn) for p in corpus.pairs] == [
        ("Hello there!", "Hi, how can I help?", 0), ("Tell me a joke.", "Why did the cube roll? It was pushed.", 2)]
    assert [(r["row"], r["reasons"]) for r in corpus.rejects] == [(1, ["no exchange"])]


def test_json_lines_and_a_folder_of_parquet(tmp_path):
    lines = tmp_path / "pairs.jsonl"
    lines.write_text("".join(json.dumps({"q": q, "a": a}) + "\n" for q, a in zip(PAIRS["question"], PAIRS["answer"])))
    assert len(load_corpus(data(lines, question_column="q", answer_column="a")).pairs) == 3
    folder = tmp_path / "shards"
    folder.mkdir()
    parquet_file(folder / "train-00000.parquet", {k: v[:2] for k, v in PAIRS.items()})
    parquet_file(folder / "train-00001.parquet", {k: v[2:] for k, v in PAIRS.items()})
    corpus = load_corpus(data(folder))
    assert len(corpus.pairs) == 3 and corpus.records == 5


def test_configurations_and_splits_of_a_dataset_folder(tmp_path):
    """A dataset repository copied here: its README's configs, chosen by data.dataset.name."""
    for config, rows in (("qa", 1), ("chat", 3)):
        (tmp_path / "repo" / config).mkdir(parents=True)
        parquet_file(tmp_path / "repo" / config / "train.parquet", {k: v[:rows] for k, v in PAIRS.items()})
    (tmp_path / "repo" / "README.md").write_text("---\nconfigs:\n- config_name: qa\n  data_files: qa/*.parquet\n"
                                                 "- config_name: chat\n  data_files: chat/*.parquet\n---\n")
    assert len(load_corpus(data(tmp_path / "repo", name="chat")).pairs) == 2
    assert len(load_corpus(data(tmp_path / "repo", name="qa")).pairs) == 1
    with pytest.raises(CubecoreError, match=r"^data.dataset.name: .*'nope' not found. Available: \['qa', 'chat'\]$"):
        load_corpus(data(tmp_path / "repo", name="nope"))
    with pytest.raises(CubecoreError, match=r"^data.dataset.split: .*Unknown split \"test\". Should be one of "
                                            r"\['train'\]"):
        load_corpus(data(tmp_path / "repo", name="qa", split="test"))


def test_wrong_column_names_the_columns_there_are(tmp_path):
    path = parquet_file(tmp_path / "pairs.parquet", PAIRS)
    with pytest.raises(CubecoreError) as info:
        load_corpus(data(path, question_column="prompt"))
    assert str(info.value) == (f"{path}: missing column 'prompt' (columns: answer, question, topic); "
                               f"set data.dataset.question_column")


def test_corrupt_parquet_is_named(tmp_path):
    good = parquet_file(tmp_path / "good.parquet", PAIRS).read_bytes()
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(good)
    (folder / "b.parquet").write_bytes(good[: len(good) // 2])  # cut short: no footer
    with pytest.raises(CubecoreError) as info:
        load_corpus(data(folder))
    message = str(info.value)
    assert message.startswith(f"{folder / 'b.parquet'}: not a readable Parquet file") and "\n" not in message



def test_corrupt_data_pages_stop_in_one_line(tmp_path):
    """Footer intact, data pages overwritten: datasets fails while converting, one line naming the path."""
    path = parquet_file(tmp_path / "pages.parquet", {"question": [f"question {i} " * 5 for i in range(2000)],
                                                     "answer": [f"answer {i} " * 5 for i in range(2000)]})
    raw = bytearray(path.read_bytes())
    raw[200: len(raw) // 2] = b"\xab" * (len(raw) // 2 - 200)
    path.write_bytes(bytes(raw))
    with pytest.raises(CubecoreError) as info:
        load_corpus(data(path))
    message = str(info.value)
    assert message.startswith(f"data.dataset.path: cannot read {path}: ") and "\n" not in message


def test_damaged_save_to_disk_state_stops_in_one_line(tmp_path):
    datasets.Dataset.from_dict(PAIRS).save_to_disk(tmp_path / "saved")
    (tmp_path / "saved" / "state.json").write_text('{"_data_files": [', encoding="utf-8")
    with pytest.raises(CubecoreError, match=r"saved/state.json: not the JSON save_to_disk writes \(.*\); save the "
                                            r"dataset again$"):
        fingerprint_inputs(dataset_params(tmp_path, tmp_path / "saved"))


def test_hub_name_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(CubecoreError) as info:
        load_corpus(data("HuggingFaceH4/no_robots", split="train"))
    message = str(info.value)
    assert message.startswith("data.dataset.path: 'HuggingFaceH4/no_robots' is not a file or folder here")
    assert "never downloaded" in message and ".save_to_disk(" in message and "\n" not in message


def test_source_needs_a_path(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  source: dataset\n", encoding="utf-8")
    with pytest.raises(CubecoreError, match="data.dataset.path is empty but data.source is 'dataset'"):
        load_params(params)


def dataset_params(tmp_path, path):
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  source: dataset\n  dataset:\n    path: {json.dumps(str(path))}\n", encoding="utf-8")
    return load_params(params)


def test_fingerprint_follows_a_parquet_file_by_content(tmp_path):
    path = parquet_file(tmp_path / "pairs.parquet", PAIRS)
    params = dataset_params(tmp_path, path)
    first = fingerprint_inputs(params)
    assert first["data"]["content"] == [{"path": str(path), "bytes": path.stat().st_size,
                                         "sha256": first["data"]["content"][0]["sha256"]}]
    path.touch()  # a new modification time, the same bytes
    assert fingerprint_inputs(params) == first
    parquet_file(path, {k: [*v, v[0]] for k, v in PAIRS.items()})  # one row more
    assert fingerprint_inputs(params)["data"] != first["data"]


def test_fingerprint_follows_the_saved_split_read_and_nothing_else(tmp_path):
    folder = tmp_path / "saved"
    train, test = datasets.Dataset.from_dict(PAIRS), datasets.Dataset.from_dict(
        {"question": ["Is it late?"], "answer": ["Quite late, yes."], "topic": ["time"]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(folder)
    params = dataset_params(tmp_path, folder)
    first = fingerprint_inputs(params)
    assert sorted(entry["path"] for entry in first["data"]["content"]) == sorted(
        f"{folder}/train/{name}" for name in ("data-00000-of-00001.arrow", "dataset_info.json", "state.json"))
    assert fingerprint_inputs(params) == first
    (folder / "train" / "cache-0123456789abcdef.arrow").write_bytes(b"a map's cache, not the data")
    assert fingerprint_inputs(params) == first
    shutil.rmtree(folder / "train")  # the same rows saved again: the same bytes
    train.save_to_disk(folder / "train")
    assert fingerprint_inputs(params) == first
    shutil.rmtree(folder / "test")  # another split, not read, is edited
    test.add_item({"question": "And now?", "answer": "Later still.", "topic": "time"}).save_to_disk(folder / "test")
    assert fingerprint_inputs(params) == first
    shutil.rmtree(folder / "train")  # the split read loses a row
    train.select(range(4)).save_to_disk(folder / "train")
    assert fingerprint_inputs(params)["data"] != first["data"]


@pytest.mark.slow
def test_dvc_reruns_extract_when_the_dataset_changes_and_only_then(make_project):
    """Through real `dvc repro`: the same rows saved again re-run nothing, one row more re-runs extract."""
    questions = [f"What is {i} plus {i}?" for i in range(40)]
    rows = {"question": questions, "answer": [f"{i} plus {i} makes {2 * i}." for i in range(40)]}
    root, run = make_project({"data": {"source": "dataset", "max_pairs": None, "dataset": {"path": "my-dataset"}}})
    datasets.Dataset.from_dict(rows).save_to_disk(root / "my-dataset")
    run("dvc", "repro", "extract")
    assert "Stage 'extract' didn't change, skipping" in run("dvc", "repro", "extract")
    shutil.rmtree(root / "my-dataset")
    datasets.Dataset.from_dict(rows).save_to_disk(root / "my-dataset")
    assert "Stage 'extract' didn't change, skipping" in run("dvc", "repro", "extract")
    shutil.rmtree(root / "my-dataset")
    datasets.Dataset.from_dict({k: [*v, v[0]] for k, v in rows.items()}).save_to_disk(root / "my-dataset")
    assert "Running stage 'extract'" in run("dvc", "repro", "extract")
    rejects = [json.loads(line) for line in (root / "data/extract/rejects.jsonl").read_text().splitlines()]
    assert rejects == [] and len((root / "data/extract/pairs.tsv").read_text().splitlines()) == 1 + 41
