"""End to end: real DVC on copies of this project in temp git repos, with tiny params."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import plain_path

from cubecore.evaluation.run import MODELS

REPO = Path(__file__).resolve().parents[1]
STAGES = ("extract", "filter", "split", "train", "evaluate")


def changed_stages(run) -> list[str]:
    """Stages `dvc status` lists, besides `check` (always changed: it fingerprints the inputs)."""
    status = json.loads(run("dvc", "status", "--json"))
    return sorted(set(status) - {"check"})


def stages_after_setting(root: Path, run, key: str, value) -> list[str]:
    """The stages `dvc status` lists with ``key`` set to ``value`` (params.yaml is put back)."""
    text = (root / "params.yaml").read_text()
    params = yaml.safe_load(text)
    *path, last = key.split(".")
    section = params
    for name in path:
        section = section[name]
    section[last] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        return changed_stages(run)
    finally:
        (root / "params.yaml").write_text(text)


def lock_md5(root: Path, stage: str, out: str) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == out)


def lock_outs(root: Path) -> dict:
    """Every output hash in dvc.lock."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}


def result_files(root: Path) -> dict:
    """The bytes of each tracked metrics file (the bf16 fidelity is kept with the cache, so a
    run served wholly by the cache records the same value)."""
    return {p.name: p.read_bytes() for p in sorted((root / "metrics").glob("*.json"))}


@pytest.fixture(scope="module")
def project(make_project):
    """A git + DVC project holding this repo's tracked code and a tiny params.yaml."""
    return make_project()


def test_every_stage_is_downstream_of_check(repo_root):  # code deps: tests/test_dvc_yaml.py
    stages = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    assert stages["check"]["always_changed"] and "data/inputs.json" in stages["extract"]["deps"]


@pytest.mark.slow
def test_make_repro_from_a_plain_shell_then_noop_force_and_review(project):
    root, run = project
    # no virtualenv on PATH: the Makefile must put .venv/bin first for DVC's `python -m stages.*`
    run("make", f"VENV={REPO / '.venv'}", "-o", f"{REPO / '.venv/.installed'}", "repro", path=plain_path())
    evaluation = json.loads((root / "metrics/eval.json").read_text())
    for model in MODELS:
        assert {"cosine", "mrr", "recall@1", "bleu", "rouge_l"} <= set(evaluation[model]["test"]), model
    assert evaluation["identity"]["val"]["cosine"] != evaluation["ridge"]["val"]["cosine"]
    assert isinstance(evaluation["frontier"]["test"]["dominated"], bool)
    for png in ("training_curves", "val_cosine_hist", "recall_at_k", "headline", "frontier"):
        assert (root / f"plots/{png}.png").stat().st_size > 10_000, png
    first = json.loads((root / "metrics/speed/extract.json").read_text())["extract"]
    # the tests' tiny projects share one embedding cache, so an earlier test may have filled it
    assert first["cache_misses"] + first["cache_hits"] > 0 and first["stage_seconds"] > 0
    assert "samples_per_second" in json.loads((root / "metrics/speed/train.json").read_text())["train"]
    for stage in ("extract", "filter", "split", "pretrain", "train", "evaluate"):  # wall time and memory of each
        speed = json.loads((root / f"metrics/speed/{stage}.json").read_text())[stage]
        assert speed["stage_seconds"] > 0 and speed["peak_memory_mb"] > 10, stage  # split: ~44 MB
    results = result_files(root)
    assert not any(word in results[name].decode() for word in ("seconds", "peak_memory", "cache_") for name in results)
    teacher = (root / "data/extract/teacher.json").read_text()
    assert str(REPO) not in teacher and "site-packages" not in teacher  # identity by content, not path

    for command in (["info"], ["info", "--json"], ["doctor"], ["answer", "How are you?", "--top-k", "2"]):
        # the README's commands on the real outputs (`report` below, once there is a revision to compare)
        out = run(sys.executable, "-m", "cubecore", *command)
        assert out.strip(), command
    assert "training  " in run(sys.executable, "-m", "cubecore", "info")  # metrics/train.json, not pretrain.json

    again = run("dvc", "repro")
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in again
    assert changed_stages(run) == []

    results, outs = result_files(root), lock_outs(root)
    run("dvc", "repro", "--force")
    assert result_files(root) == results  # speed figures live apart, results are reproducible
    assert lock_outs(root) == outs and len(outs) > 10
    cached = json.loads((root / "metrics/speed/extract.json").read_text())["extract"]
    assert cached["cache_misses"] == 0 and cached["cache_hits"] > 0

    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline run")
    for key, value, stale in (("evaluate.recall_at", [1, 3], ["ceiling", "evaluate"]), ("train.threads", 1, []),
                              ("train.target_cosine", 0.5, ["train"])):
        assert stages_after_setting(root, run, key, value) == stale, key
    curves = {Path(p).stem for p in json.loads(run("dvc", "plots", "show", "--json"))["data"]}
    assert {"train_loss", "val_loss", "val_cosine", "val_mrr", "val_recall@1", "lr"} <= curves
    run("gto", "register", "cube")
    run("dvc", "artifacts", "get", ".", "cube", "-o", str(root.parent / "artifact"))
    assert (root.parent / "artifact/model.safetensors").read_bytes() == (root / "models/cube/model.safetensors").read_bytes()
    run("dvc", "exp", "run", "-S", "train.lr=0.001")  # one param: DVC lists the headline, not eval.json's 250 figures
    shown = run("env", "COLUMNS=1000", "dvc", "exp", "show", "--only-changed", "--no-pager")  # as a wide terminal
    assert max(map(len, shown.splitlines())) <= 200 and "…" not in shown, shown
    assert "cube.mrr" in shown and "margin_low" in shown and "train.lr" in shown, shown
    output = run("dvc", "exp", "run", "-S", "data.max_pairs=250", "-S", "train.lr=0.002")
    assert "Running stage 'extract'" in output
    params_diff = run("dvc", "params", "diff", "--md")
    assert "data.max_pairs" in params_diff and "train.lr" in params_diff
    metrics_diff = run("dvc", "metrics", "diff", "--md")
    assert "cube.cosine" in metrics_diff and "margin" in metrics_diff and "extract.pairs" in metrics_diff
    table = run("dvc", "exp", "show", "--md", "--no-pager")
    assert "cube.mrr" in table and "0.002" in table
    run(sys.executable, "-m", "cubecore", "experiments", "--save-json", "docs/exps.json", "--out", "docs/experiments.md")
    generated = (root / "docs/experiments.md").read_text()
    assert run(sys.executable, "-m", "cubecore", "experiments", "--input", "docs/exps.json") == generated.replace(
        " --out docs/experiments.md", "")  # regenerated from the saved data alone
    evaluation = json.loads((root / "metrics/eval.json").read_text())
    row = next(line for line in generated.splitlines() if "train.lr=0.002" in line)
    assert "data.max_pairs=250" in row and f"| {evaluation['cube']['test']['mrr']:.4f} |" in row
    assert "(baseline " in generated
    run("git", "add", "-A")
    run("git", "commit", "-qm", "experiment kept")
    refused = run(sys.executable, "-m", "cubecore", "experiments", "--out", "docs/experiments.md", fails=True)
    assert "docs/experiments.md: tracked by git; pass --force" in refused  # a committed table is not overwritten
    run(sys.executable, "-m", "cubecore", "report", "--base", "HEAD~1")
    assert "data.max_pairs" in (root / "report.md").read_text()


@pytest.mark.slow
def test_a_bad_param_fails_first_and_leaves_the_workspace_intact(project):
    root, run = project
    run("dvc", "repro")  # a no-op after the test above
    run("git", "add", "-A")
    run("git", "commit", "--allow-empty", "-qm", "workspace before the bad run")
    params = (root / "params.yaml").read_bytes()
    output = run("dvc", "exp", "run", "-S", "filter.min_qa_similarity=2", fails=True)
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert errors == ["error: params.yaml: filter.min_qa_similarity must be in [-1, 1], got 2.0"], output
    assert "Traceback" not in output and "Running stage 'extract'" not in output
    (root / "params.yaml").write_bytes(params)  # what the README recipe does (tests/test_recovery.py runs it)
    assert run("git", "status", "--porcelain") == ""
    assert changed_stages(run) == []
    assert (root / "models/cube/model.safetensors").exists() and (root / "data/extract/embeddings.npy").exists()


@pytest.mark.slow
def test_answer_command_uses_the_trained_pipeline(project):
    root, run = project
    if not (root / "models/cube/model.safetensors").exists():
        run("dvc", "repro")
    output = run(sys.executable, "-m", "cubecore", "answer", "How are you?", "--top-k", "3")
    lines = output.strip().splitlines()
    assert [line.split(".")[0] for line in lines] == ["1", "2", "3"], output
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)


def user_pairs(count: int, start: int = 0) -> str:
    return "".join(json.dumps({"question": f"What is {i} plus {i}?", "answer": f"{i} plus {i} makes {2 * i}."}) + "\n"
                   for i in range(start, start + count))


FILES = {"data": {"source": "files", "max_pairs": None, "files": {"paths": ["dialogues.jsonl"]}},
         "split": {"val_fraction": 0.25}, "evaluate": {"recall_at": [1, 5]}}


@pytest.mark.slow
def test_user_data_is_a_dependency_and_outputs_do_not_depend_on_location(make_project):
    """The same project in two directories gives the same output hashes; editing the user's
    file re-runs extract, an untouched file re-runs nothing."""
    roots = []
    for _ in range(2):
        root, run = make_project(FILES)
        (root / "dialogues.jsonl").write_text(user_pairs(80), encoding="utf-8")
        run("dvc", "repro", "train")
        roots.append((root, run))
    (one, run), (two, _) = roots
    for stage, out in (("extract", "data/extract"), ("train", "models/cube")):
        assert lock_md5(one, stage, out) == lock_md5(two, stage, out), out

    assert "Stage 'extract' didn't change, skipping" in run("dvc", "repro", "extract")
    with open(one / "dialogues.jsonl", "a", encoding="utf-8") as fh:
        fh.write(user_pairs(10, start=80))
    assert "Running stage 'extract'" in run("dvc", "repro", "extract")
    pairs = (one / "data/extract/pairs.tsv").read_text().splitlines()
    assert len(pairs) == 1 + 90
    assert {"filter", "train"} <= set(changed_stages(run))  # downstream of the new data


def test_answer_command_before_the_pipeline_ran(tmp_path):
    done = subprocess.run([sys.executable, "-m", "cubecore", "answer", "Hi"], cwd=tmp_path,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: models/cube: no trained model")
