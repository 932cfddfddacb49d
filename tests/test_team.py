"""Working as a team (README): two clones of one project on this machine, a bare git repository
as ``origin`` and a local directory as the DVC remote; real git and DVC throughout."""
import json
import re
import sys

import pytest
from conftest import runner
from test_pipeline import changed_stages, lock_md5

# each clone keeps its own embedding cache and checkpoints, as two machines do; one short epoch
TEAM = {"base": {"cache_dir": ".cache/embeddings"}, "data": {"max_pairs": 120}, "split": {"test_fraction": 0.2},
        "train": {"checkpoint_dir": ".cache/checkpoints", "epochs": 1}}
STAGES = ("extract", "filter", "split", "pretrain", "train", "evaluate", "ceiling")


def experiment_names(shown: list) -> set[str]:
    """The names of the experiments `dvc exp show --json` lists."""
    return {rev["name"] for commit in shown for exp in commit.get("experiments") or [] for rev in exp["revs"]}


@pytest.mark.slow
def test_a_teammate_pulls_outputs_run_cache_and_experiments(make_project, tmp_path):
    alice, run_alice = make_project(TEAM)
    storage, origin, bob = tmp_path / "dvc-storage", tmp_path / "origin.git", tmp_path / "bob"
    run_alice("git", "init", "-q", "--bare", str(origin))
    run_alice("git", "remote", "add", "origin", str(origin))
    run_alice("dvc", "remote", "add", "-d", "storage", str(storage))
    run_alice("dvc", "repro")
    run_alice("git", "add", "-A")
    run_alice("git", "commit", "-qm", "baseline run")
    run_alice("dvc", "push", "--run-cache")
    run_alice("git", "push", "-q", "origin", "HEAD")
    run_alice("dvc", "exp", "run", "-n", "lr-fast", "-S", "train.lr=0.002")
    run_alice("dvc", "exp", "push", "--run-cache", "origin", "lr-fast")
    # `--run-cache` sends DVC's run records, not the files of their uncached outputs (metrics,
    # DVCLive's curves), without which no stage can be restored from them: `share` sends those too
    shared = run_alice(sys.executable, "-m", "cubecore", "share")
    pushed = re.fullmatch(r"share: (\d+) run records, (\d+) of the (\d+) objects they name pushed, \d+ already there\n",
                          shared)
    assert pushed and int(pushed[1]) > 0 and int(pushed[2]) > 0, shared

    run_alice("git", "clone", "-q", str(origin), str(bob))
    run_bob = runner(bob)
    run_bob("dvc", "pull")
    assert (bob / "models/cube/model.safetensors").exists() and (bob / "data/extract/embeddings.npy").exists()
    output = run_bob("dvc", "repro")
    assert "Running stage 'check'" in output
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in output, (stage, output)
    assert changed_stages(run_bob) == []

    # the experiment Alice ran: train comes out of the run-cache she shared, the cube is not trained again;
    # evaluate (not run-cached: README "Reverting an edit") re-scores it to the same bytes
    output = run_bob("dvc", "exp", "run", "--pull", "-S", "train.lr=0.002")
    assert "Stage 'train' is cached - skipping run, checking out outputs" in output, output
    assert "Running stage 'train'" not in output and "cube epoch" not in output
    assert lock_md5(bob, "train", "models/cube") == lock_md5(alice, "train", "models/cube")  # her lr-fast
    for name in ("train.json", "eval.json"):
        assert (bob / "metrics" / name).read_bytes() == (alice / "metrics" / name).read_bytes(), name
    assert (bob / "data/train/plots/metrics/val_mrr.tsv").read_bytes() == \
        (alice / "data/train/plots/metrics/val_mrr.tsv").read_bytes()

    # her experiment itself, through the git remote, reviewed here
    run_bob("dvc", "exp", "pull", "origin", "lr-fast")
    assert "lr-fast" in experiment_names(json.loads(run_bob("dvc", "exp", "show", "--json")))
    run_bob(sys.executable, "-m", "cubecore", "report", "--exp", "lr-fast")
    report = (bob / "report.md").read_text()
    assert "| train.lr | 0.0005 | 0.002 |" in report, report
    evaluation = json.loads((alice / "metrics/eval.json").read_text())
    assert f"→ {evaluation['cube']['test']['mrr']:.4f}" in report
    assert sorted(p.name for p in (bob / "report_plots").iterdir()) == sorted(
        p.name for p in (alice / "plots").glob("*.png"))
