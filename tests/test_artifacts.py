"""Atomic writes: files and directories get the modes the umask asks for."""
import os
import stat

import numpy as np
import pytest

from cubecore.core import artifacts


@pytest.fixture(params=[0o022, 0o027])
def mask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_respect_the_umask(tmp_path, mask):
    artifacts.write_json(tmp_path / "m.json", {"a": 1})
    artifacts.write_embeddings(tmp_path / "e.npy", np.zeros((2, 3)))
    with artifacts.atomic_dir(tmp_path / "out") as tmp:
        artifacts.write_texts(tmp / "texts.jsonl", ["a", "b"])
    plain = tmp_path / "plain"
    plain.write_text("x")  # what open() gives under this umask
    plain_dir = tmp_path / "plain_dir"
    plain_dir.mkdir()
    assert mode(plain) == 0o666 & ~mask
    for path in ("m.json", "e.npy", "out/texts.jsonl"):
        assert mode(tmp_path / path) == mode(plain), path
    assert mode(tmp_path / "out") == mode(plain_dir) == 0o777 & ~mask


def test_the_trained_model_gets_the_usual_mode(tmp_path, mask):
    """safetensors creates its files 0600; models/cube/model.safetensors must be readable as
    any file this user writes (0666 minus the umask), like model.json beside it."""
    import torch
    from test_trainer import synthetic

    from cubecore.core.config import CubeParams, Params, TrainParams
    from cubecore.training.run import train

    n, data, split = 40, tmp_path / "extract", tmp_path / "split"
    rows = synthetic(n, 1)
    with artifacts.atomic_dir(data) as tmp:
        artifacts.write_texts(tmp / "texts.jsonl", [f"text {i}" for i in range(2 * n)])
        artifacts.write_embeddings(tmp / "embeddings.npy", torch.cat([rows.inputs, rows.targets]).numpy())
        artifacts.write_json(tmp / "teacher.json", {"path": "synthetic"})
    ids = np.arange(n)
    with artifacts.atomic_dir(split) as tmp:
        for name, part in (("train", ids[:30]), ("val", ids[30:])):
            artifacts.write_pairs(tmp / f"{name}.tsv", artifacts.Pairs(part, part + n, ["c"] * len(part), part * 0))
    p = Params(cube=CubeParams(lattice=[4, 4, 4], channels=4, hidden=8, position_channels=2, steps=1),
               train=TrainParams(epochs=1, batch_size=16, checkpoint_dir=str(tmp_path / "ck")))
    train(p, data, split, tmp_path / "model", progress=False)
    assert mode(tmp_path / "model/model.safetensors") == mode(tmp_path / "model/model.json") == 0o666 & ~mask
