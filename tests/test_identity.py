"""One run identity for the cube's checkpoints and the baselines' cache: it changes with
everything that changes the result and with nothing else (the run settings)."""
import dataclasses

from test_trainer import CUBE, params, synthetic

from cubecore.core.config import RUN_SETTINGS
from cubecore.evaluation.baselines import LinearMap
from cubecore.model.cube import CubicCore
from cubecore.training.identity import TRAIN_RUN_SETTINGS, run_key

TRAIN, VAL = synthetic(64, 1), synthetic(32, 2)


def key(tmp_path, model=None, name="cube", train=TRAIN, val=VAL, **changes):
    return run_key(name, model or CubicCore(CUBE, 64), params(tmp_path, **changes), 0, train, val)


def test_run_settings_leave_the_identity_unchanged(tmp_path):
    assert TRAIN_RUN_SETTINGS == {"threads", "resume", "checkpoint_dir"}
    assert {f"train.{name}" for name in TRAIN_RUN_SETTINGS} <= set(RUN_SETTINGS)
    base = key(tmp_path)
    assert key(tmp_path, threads=1) == base  # a killed train restarted with other threads resumes
    assert key(tmp_path, resume=False) == base
    assert key(tmp_path / "elsewhere", checkpoint_dir=str(tmp_path / "elsewhere")) == base


def test_what_defines_the_result_changes_the_identity(tmp_path):
    base = key(tmp_path)
    changed = {
        "lr": key(tmp_path, lr=0.02),
        "loss": key(tmp_path, loss=dataclasses.replace(params(tmp_path).loss, cosine=0.5)),
        "name": key(tmp_path, name="mlp"),
        "model": key(tmp_path, model=LinearMap(64)),
        "train inputs": key(tmp_path, train=dataclasses.replace(TRAIN, inputs=TRAIN.inputs.flip(0))),
        "train targets": key(tmp_path, train=dataclasses.replace(TRAIN, targets=TRAIN.targets.flip(0))),
        "val inputs": key(tmp_path, val=dataclasses.replace(VAL, inputs=VAL.inputs.flip(0))),
        "val targets": key(tmp_path, val=dataclasses.replace(VAL, targets=VAL.targets.flip(0))),
        "seed": run_key("cube", CubicCore(CUBE, 64), params(tmp_path), 1, TRAIN, VAL),
        "definition": run_key("cube", CubicCore(CUBE, 64), params(tmp_path), 0, TRAIN, VAL, {"steps": 3}),
    }
    assert all(value != base for value in changed.values()), [k for k, v in changed.items() if v == base]
    assert len(set(changed.values())) == len(changed)
