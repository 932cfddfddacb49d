"""Logs people can read: no progress bars in a non-terminal log, one named line per epoch."""
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from cubecore.core.progress import progress

REPO = Path(__file__).resolve().parents[1]

TRAIN = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from cubecore.evaluation.baselines import ResidualMLP, fit_trained
    from cubecore.core.config import CubeParams, LossParams, TrainParams
    from cubecore.model.cube import CubicCore
    from cubecore.core.stage import main_guard
    from cubecore.training.pairings import TaskData
    from cubecore.training.loop import Trainer

    def rows(n, seed):
        x = torch.nn.functional.normalize(torch.randn(n, 64, generator=torch.Generator().manual_seed(seed)), dim=-1)
        return TaskData(x, torch.roll(x, 1, dims=1), np.arange(n) + seed * 10_000)

    @main_guard
    def main():
        torch.set_num_threads(1)
        params = TrainParams(epochs=2, batch_size=32, lr=0.01, patience=5, checkpoint_dir=sys.argv[1],
                             loss=LossParams(cosine=1.0, infonce=0.0))
        cube = CubicCore(CubeParams(lattice=[4, 4, 4], channels=4, hidden=8, position_channels=2, steps=1), 64)
        Trainer(cube, params, 0, "cube-run", name="cube").fit(rows(64, 1), rows(32, 2))
        params.batch_size = 2  # 1024 steps per epoch: a bar would redraw hundreds of times
        mlp = ResidualMLP(64, ResidualMLP.hidden_for(64, 500))
        fit_trained(mlp, rows(2048, 1), rows(32, 2), params, 0, "mlp")

    main()
""")

EMBED = textwrap.dedent("""
    from cubecore.core.config import TeacherParams
    from cubecore.core.stage import main_guard
    from cubecore.data.teacher import Teacher

    @main_guard
    def main():
        teacher = Teacher(TeacherParams(batch_size=1, device="cpu", precision="fp32"))
        teacher.embed([f"sentence number {i}" for i in range(30)])

    main()
""")


def run_logged(tmp_path, script: str, *args) -> str:
    """Run ``script`` with stderr redirected to a file (not a terminal); return that log."""
    log = tmp_path / "stderr.log"
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, stderr=fh, timeout=300)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    return text


def assert_readable(text: str) -> None:
    lines = text.split("\n")  # a redrawn bar is one line of carriage returns
    assert "\r" not in text and "%|" not in text  # no tqdm bar, redrawn or not
    assert max(map(len, lines)) < 300, max(lines, key=len)[:300]
    assert len(text) < 4000, len(text)


def test_training_log_has_one_named_line_per_epoch(tmp_path):
    text = run_logged(tmp_path, TRAIN, str(tmp_path / "checkpoints"))
    assert_readable(text)
    epochs = re.findall(r"cubecore\.training\.loop: (\w+) epoch (\d+)/2: train_loss [0-9.]+, val_loss", text)
    assert epochs == [("cube", "1"), ("cube", "2"), ("mlp", "1"), ("mlp", "2")], text


def test_embedding_log_has_no_bar(tmp_path):
    assert_readable(run_logged(tmp_path, EMBED))


def test_progress_off_a_terminal_logs_plain_lines(caplog):
    caplog.set_level(logging.INFO, logger="cubecore.core.progress")
    bar = progress(range(4), "teacher", every=0)
    for _ in bar:
        bar.set_postfix(loss="0.5")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages  # not after the last item: the caller reports the end
    for done, message in enumerate(messages, start=1):
        assert message.startswith(f"teacher: {done}/4 batch ({25 * done}%), ") and message.endswith(", loss 0.5")


def test_progress_when_disabled_is_silent(caplog):
    caplog.set_level(logging.INFO, logger="cubecore.core.progress")
    assert list(progress(range(3), "x", enabled=False, every=0)) == [0, 1, 2]
    assert caplog.records == []
