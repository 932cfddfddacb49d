"""The trainer: it learns, it is reproducible, it resumes after SIGKILL, it stops on NaN."""
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cubecore.core.config import CubeParams, LossParams, TrainParams
from cubecore.core.errors import CubecoreError
from cubecore.evaluation.scoring import prediction_scores
from cubecore.model.cube import CubicCore
from cubecore.model.inference import predict
from cubecore.training.loop import Trainer
from cubecore.training.pairings import TaskData

CUBE = CubeParams(lattice=[4, 4, 4], channels=6, hidden=8, position_channels=2, steps=2)
REPO = Path(__file__).resolve().parents[1]


def synthetic(n: int, seed: int, dim: int = 64) -> TaskData:
    """Targets are a fixed nonlinear map of the inputs plus a shared offset (+0.3): easy to make
    progress on (other test files train on these rows), but mostly the offset: ``x + b`` fits
    them about as well as the cube does (``neighbour_products`` is the task that tells)."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=torch.Generator().manual_seed(1234)) / dim ** 0.5
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)
    y = torch.nn.functional.normalize(torch.tanh(3 * x @ mixing) + 0.3, dim=-1)
    ids = np.arange(n) + seed * 10_000
    return TaskData(x, y, ids)


def neighbour(x: torch.Tensor) -> torch.Tensor:
    """Each dim's neighbour along z on the 4x4x4 lattice (the cube's reshape placement), 0 past the wall."""
    field = x.view(-1, 4, 4, 4)
    return torch.nn.functional.pad(field[..., 1:], (0, 1)).reshape(x.shape)


def neighbour_products(n: int, seed: int, dim: int = 64) -> TaskData:
    """Target dim i is ``tanh(8 x_i x_j)`` with j i's lattice neighbour: nonlinear (no linear map
    fits it, and ``x + b`` gets a cosine near 0), local (the cube's update rule can learn it)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)
    y = torch.nn.functional.normalize(torch.tanh(8 * x * neighbour(x)), dim=-1)
    return TaskData(x, y, np.arange(n) + seed * 10_000)


def params(tmp_path, **changes) -> TrainParams:
    base = TrainParams(epochs=4, batch_size=32, lr=0.01, patience=10, checkpoint_dir=str(tmp_path),
                       loss=LossParams(cosine=1.0, infonce=0.1, queue_size=96, learn_temperature=True))
    return dataclasses.replace(base, **changes)


def fit(tmp_path, key="run", data=synthetic, **changes):
    torch.manual_seed(0)
    model = CubicCore(CUBE, 64)
    trainer = Trainer(model, params(tmp_path, **changes), seed=0, key=key)
    summary = trainer.fit(data(256, 1), data(64, 2), progress=False)
    return model, trainer, summary


def best_shift_cosine(train: TaskData, val: TaskData) -> float:
    """Val cosine of ``x + b``, with ``b`` (64 parameters) fitted to the training rows' cosine."""
    b = torch.zeros(train.inputs.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam([b], lr=0.1)
    for _ in range(100):  # converged: the training cosine moves < 0.001 from step 50 on
        optimizer.zero_grad()
        (-torch.nn.functional.cosine_similarity(train.inputs + b, train.targets).mean()).backward()
        optimizer.step()
    with torch.no_grad():
        return float(torch.nn.functional.cosine_similarity(val.inputs + b, val.targets).mean())


def test_the_cube_learns_a_map_that_x_plus_b_cannot_fit(tmp_path):
    """Far beyond its start, the identity and the best ``x + b`` (all near 0 here). On
    ``synthetic``'s rows the best ``x + b`` reaches the cube's val cosine (0.64): they cannot tell."""
    train, val = neighbour_products(256, 1), neighbour_products(64, 2)
    torch.manual_seed(0)
    untrained = prediction_scores(predict(CubicCore(CUBE, 64), val.inputs), val.targets, val.target_ids)["cosine"]
    identity = prediction_scores(val.inputs, val.targets, val.target_ids)["cosine"]
    shift = best_shift_cosine(train, val)
    model, trainer, summary = fit(tmp_path, data=neighbour_products, epochs=8)
    assert summary["val_cosine"] > max(untrained, identity, shift) + 0.5
    assert trainer.state.history[-1]["train_loss"] < trainer.state.history[0]["train_loss"]


def test_same_seed_same_results(tmp_path):
    _, first, _ = fit(tmp_path / "a", epochs=2)
    _, second, _ = fit(tmp_path / "b", epochs=2)
    assert first.state.history == second.state.history


def test_warmup_then_cosine_decay(tmp_path):
    trainer = Trainer(CubicCore(CUBE, 64), params(tmp_path, warmup_fraction=0.1), seed=0, key="lr")
    lrs = [trainer.lr_at(step, 100) for step in range(100)]
    assert lrs[0] < lrs[5] < lrs[9] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.001


def test_early_stopping_on_a_flat_validation_loss(tmp_path):
    _, trainer, summary = fit(tmp_path, lr=1e-12, epochs=20, patience=2, monitor="val_loss")
    assert summary["stopped_early"]
    assert summary["epochs_run"] <= 4


class NanAfter(torch.nn.Module):
    """A cube that starts returning NaN after some calls (to provoke a diverged loss)."""

    def __init__(self, calls: int):
        super().__init__()
        self.cube = CubicCore(CUBE, 64)
        self.calls, self.left = 0, calls

    def forward(self, x):
        self.calls += 1
        out = self.cube(x)
        return out * float("nan") if self.calls > self.left else out


def test_nan_loss_stops_with_epoch_and_step_and_keeps_best(tmp_path):
    model = NanAfter(calls=12)  # 8 training batches + 1 validation pass per epoch
    trainer = Trainer(model, params(tmp_path), seed=0, key="nan")
    with pytest.raises(CubecoreError, match=r"epoch 2, step 12"):
        trainer.fit(synthetic(256, 1), synthetic(64, 2), progress=False)
    assert (trainer.directory / "best.safetensors").exists()


RESUMABLE = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    from test_trainer import CUBE, params, synthetic
    from pathlib import Path
    from cubecore.model.cube import CubicCore
    from cubecore.training.loop import Trainer

    class Slow(CubicCore):
        def forward(self, x):
            time.sleep(float(sys.argv[2]))
            return super().forward(x)

    torch.manual_seed(0)
    model = Slow(CUBE, 64)
    trainer = Trainer(model, params(Path(sys.argv[1]), epochs=4), seed=0, key="run")
    summary = trainer.fit(synthetic(256, 1), synthetic(64, 2), progress=False)
    print("resumed", summary["resumed"])
    print("history", trainer.state.history)
""")


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    script = tmp_path / "resumable.py"
    script.write_text(RESUMABLE.format(tests=str(Path(__file__).parent)))
    killed = tmp_path / "killed"
    directory = Trainer(CubicCore(CUBE, 64), params(killed), seed=0, key="run").directory
    process = subprocess.Popen([sys.executable, str(script), str(killed), "0.2"], cwd=REPO)
    state = directory / "last_state.pt"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert state.exists(), "no checkpoint was written"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    epochs_done = torch.load(state, weights_only=True)["trainer"]["epoch"]
    assert 1 <= epochs_done < 4
    rerun = subprocess.run([sys.executable, str(script), str(killed), "0"], cwd=REPO, check=True,
                           capture_output=True, text=True)
    assert "resumed True" in rerun.stdout

    assert not directory.exists()  # a finished run clears its checkpoints
    # the same run, never interrupted, in a process of its own (torch's thread count, which
    # changes float rounding, is then the same as the killed and resumed processes')
    straight = subprocess.run([sys.executable, str(script), str(tmp_path / "straight"), "0"], cwd=REPO, check=True,
                              capture_output=True, text=True)
    assert "resumed False" in straight.stdout
    assert rerun.stdout.strip().splitlines()[-1] == straight.stdout.strip().splitlines()[-1]
