"""Atomic writes: files and directories get the modes the umask asks for."""
import os
import stat

import numpy as np
import pytest

from cubecore import artifacts


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
