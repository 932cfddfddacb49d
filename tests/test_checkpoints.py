"""Run directories: one owner at a time, orphaned state never crashes a run, clear messages."""
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_trainer import CUBE, NanAfter, fit, params, synthetic

from cubecore.core.config import BaseParams, Params
from cubecore.core.errors import CubecoreError
from cubecore.data.extraction import extract
from cubecore.model.cube import CubicCore
from cubecore.training.loop import Trainer

REPO = Path(__file__).resolve().parents[1]

RUN = textwrap.dedent("""
    import logging, sys, time, torch
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from test_trainer import CUBE, params, synthetic
    from cubecore.model.cube import CubicCore
    from cubecore.training.loop import Trainer

    logging.basicConfig(level=logging.INFO)

    class Held(CubicCore):
        checkpoint = None

        def forward(self, x):  # once it has a checkpoint, waits while the hold file exists
            while Path(sys.argv[2]).exists() and self.checkpoint.exists():
                time.sleep(0.05)
            return super().forward(x)

    torch.manual_seed(0)
    model = Held(CUBE, 64)
    trainer = Trainer(model, params(Path(sys.argv[1]), epochs=3), seed=0, key="run")
    model.checkpoint = trainer.directory / "last_state.pt"
    summary = trainer.fit(synthetic(256, 1), synthetic(64, 2), progress=False)
    print("resumed", summary["resumed"])
    print("history", trainer.state.history)
""")


@pytest.mark.slow
def test_an_identical_run_waits_for_the_first_then_both_finish(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUN.format(tests=str(Path(__file__).parent)))
    shared = tmp_path / "checkpoints"
    directory = Trainer(CubicCore(CUBE, 64), params(shared), seed=0, key="run").directory
    hold = tmp_path / "hold"
    hold.touch()  # the first run will wait inside its second epoch, holding the run directory
    first = subprocess.Popen([sys.executable, str(script), str(shared), str(hold)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (directory / "last_state.pt").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.1)
    assert (directory / "last_state.pt").exists(), "the first run wrote no checkpoint"
    second = subprocess.Popen([sys.executable, str(script), str(shared), str(tmp_path / "no-hold")], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    while not any("in use by an identical run" in line for line in seen):
        line = second.stderr.readline()
        assert line, "the second run ended without waiting for the first"
        seen.append(line)
    hold.unlink()  # let the first run finish; the second then gets the directory
    second_out, second_err = second.communicate(timeout=600)
    second = subprocess.CompletedProcess(second.args, second.returncode, second_out, "".join(seen) + second_err)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"in use by an identical run (process {first.pid})" in second.stderr
    assert first.poll() is not None  # the second run started training only after the first ended
    # the second did not pick up the first's live state: it ran the whole run itself
    assert "resumed False" in second.stdout
    assert second.stdout.strip().splitlines()[-1] == out.strip().splitlines()[-1]
    assert not directory.exists() and not directory.with_name(directory.name + ".lock").exists()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The two-epoch run, never interrupted."""
    return fit(tmp_path_factory.mktemp("straight"), epochs=2)[1]


def killed_after_one_epoch(checkpoints: Path) -> Path:
    """The run directory a process killed right after its first epoch leaves behind."""
    torch.manual_seed(0)
    trainer = Trainer(CubicCore(CUBE, 64), params(checkpoints, epochs=2), seed=0, key="run")
    end_epoch = trainer._end_epoch

    def end_then_die(row):
        end_epoch(row)
        raise KeyboardInterrupt

    trainer._end_epoch = end_then_die
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(synthetic(256, 1), synthetic(64, 2), progress=False)
    assert (trainer.directory / "last_state.pt").exists()
    return trainer.directory


@pytest.mark.parametrize("damage", ["truncated_state", "no_best", "garbled_best", "stray_temp"])
def test_orphaned_partial_state_never_crashes_a_run(tmp_path, straight, damage, caplog):
    directory = killed_after_one_epoch(tmp_path / "orphan")
    state, best, stray = directory / "last_state.pt", directory / "best.safetensors", directory / ".best.x.tmp"
    if damage == "truncated_state":
        state.write_bytes(state.read_bytes()[:state.stat().st_size // 2])
    elif damage == "no_best":  # the old code's orphan: a concurrent identical run removed its files
        best.unlink()
    elif damage == "garbled_best":
        best.write_bytes(b"\x00garbage" * 10)
    else:  # a write cut off by the kill: harmless, the run resumes
        stray.write_bytes(b"half a file")

    with caplog.at_level(logging.WARNING):
        _, again, summary = fit(tmp_path / "orphan", epochs=2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if damage == "stray_temp":
        assert summary["resumed"] and not warnings and not stray.exists()
    else:
        assert not summary["resumed"]
        assert len(warnings) == 1 and str(directory) in warnings[0] and "starting afresh" in warnings[0]
    assert again.state.history == straight.state.history  # resumed or restarted, the same run
    assert not directory.exists()


def test_an_unusable_checkpoint_dir_is_named_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for path in (blocker, blocker / "sub"):
        with pytest.raises(CubecoreError, match=rf"^train.checkpoint_dir: cannot use {path} as a writable directory"):
            Trainer(CubicCore(CUBE, 64), params(path), seed=0, key="run")


def test_an_unusable_cache_dir_is_named_before_embedding(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(CubecoreError, match=rf"^base.cache_dir: cannot use {blocker / 'embeddings'} as a writable"):
        extract(Params(base=BaseParams(cache_dir=str(blocker / "embeddings"))), tmp_path / "out", progress=False)


def test_nan_loss_names_the_term_the_cause_and_an_existing_checkpoint(tmp_path):
    trainer = Trainer(NanAfter(calls=12), params(tmp_path), seed=0, key="nan")  # NaN in epoch 2
    with pytest.raises(CubecoreError) as raised:
        trainer.fit(synthetic(256, 1), synthetic(64, 2), progress=False)
    message = str(raised.value)
    assert "epoch 2, step 12" in message and "non-finite term: cosine, infonce" in message
    assert "inputs and targets are finite" in message and "train.lr (now 0.01)" in message
    best = trainer.directory / "best.safetensors"
    assert f"best checkpoint (epoch 1) is kept in {best}" in message and best.exists()


def test_nan_loss_in_the_first_epoch_names_no_checkpoint(tmp_path):
    trainer = Trainer(NanAfter(calls=2), params(tmp_path), seed=0, key="nan")
    with pytest.raises(CubecoreError) as raised:
        trainer.fit(synthetic(256, 1), synthetic(64, 2), progress=False)
    message = str(raised.value)
    assert "epoch 1, step 3" in message and "no checkpoint was saved" in message
    assert str(tmp_path) not in message


def test_nan_inputs_are_blamed_not_the_learning_rate(tmp_path):
    data = synthetic(256, 1)
    data.inputs[100] = float("nan")
    trainer = Trainer(CubicCore(CUBE, 64), params(tmp_path), seed=0, key="nan-input")
    with pytest.raises(CubecoreError, match="inputs or targets hold NaN/inf") as raised:
        trainer.fit(data, synthetic(64, 2), progress=False)
    assert "train.lr" not in str(raised.value)


def test_an_unwritable_teacher_folder_in_the_cache_is_named_before_embedding(tmp_path, monkeypatch):
    """base.cache_dir is writable but the per-teacher folder inside it (where shards go) is not:
    one error naming that folder, before the teacher embeds anything."""
    import errno
    import os

    from cubecore.core.config import DataParams
    from cubecore.data.teacher import Teacher

    params = Params(base=BaseParams(cache_dir=str(tmp_path / "cache")),
                    data=DataParams(source="chatterbot", max_pairs=20))
    folder = tmp_path / "cache" / Teacher(params.teacher).cache_namespace()
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root ignores mode bits: refuse writes there as the kernel would for a user
        real_open = os.open

        def open_as_a_user(path, flags, *args, **kwargs):
            writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writes and Path(os.path.realpath(os.fsdecode(path))).is_relative_to(folder):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_as_a_user)

    def embed(self, texts, progress=True):
        raise AssertionError(f"embedded {len(texts)} texts before finding the cache unwritable")

    monkeypatch.setattr(Teacher, "embed", embed)
    try:
        with pytest.raises(CubecoreError) as raised:
            extract(params, tmp_path / "out", progress=False)
    finally:
        folder.chmod(0o755)
    assert str(raised.value) == f"base.cache_dir: cannot use {folder} as a writable directory: Permission denied"
    assert not (tmp_path / "out").exists()
