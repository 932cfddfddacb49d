"""The cube's anatomy: affine fits fitted on train and scored elsewhere, R², the lattice switched
off and each step's share, on an exactly affine cube and on a hand-built non-affine one."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cubecore.core.config import CubeParams
from cubecore.evaluation.anatomy import (
    anatomy,
    fit_general,
    fit_trivial,
    lattice_steps,
    r_squared,
)
from cubecore.model.cube import CubicCore
from cubecore.training.pairings import TaskData

DIM = 48
PARAMS = CubeParams(lattice=[4, 4, 3], channels=4, hidden=8, position_channels=2, steps=3)


def rows(n: int, seed: int, shift: float = 0.0) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, DIM, generator=g) + shift, dim=-1)
    y = F.normalize(x + 0.5 * torch.randn(n, DIM, generator=g), dim=-1)
    return TaskData(x, y, np.arange(n))


def affine_cube(alpha: float = 0.7) -> CubicCore:
    """A cube whose steps change nothing: ``alpha * x + bias``, exactly."""
    torch.manual_seed(0)
    cube = CubicCore(PARAMS, DIM)
    with torch.no_grad():
        cube.rule.update_out.weight.zero_()
        cube.read_out.weight[0, 0] = alpha
        cube.placement.bias.copy_(torch.linspace(-0.1, 0.1, DIM))
    return cube


def nonlinear_cube() -> CubicCore:
    """A cube whose steps make large, input-dependent changes (big update weights)."""
    torch.manual_seed(1)
    cube = CubicCore(PARAMS, DIM)
    with torch.no_grad():
        cube.rule.update_out.weight.normal_(0, 1.0)
        cube.rule.update_in.weight.mul_(3)
    return cube


def test_an_exactly_affine_cube_is_explained_by_its_trivial_fit():
    cube = affine_cube()
    report, _ = anatomy(cube, rows(400, 0), {"val": rows(200, 1), "test": rows(200, 2)}, seed=0, r2_limit=0.9)
    assert report["alpha"] == pytest.approx(0.7, abs=1e-4)
    for split in ("val", "test"):
        entry = report[split]
        assert entry["trivial"]["r2"] == pytest.approx(1.0, abs=1e-4)
        assert entry["general"]["r2"] == pytest.approx(1.0, abs=1e-4)
        assert entry["trivial"]["cosine_to_cube"] == pytest.approx(1.0, abs=1e-4)
        assert entry["lattice_off"] == entry["cube"]  # the steps do nothing
        assert entry["trivial"]["cosine"] == pytest.approx(entry["cube"]["cosine"], abs=1e-4)
        assert entry["step_share"] == [0.0, 0.0, 0.0]


def test_a_nonlinear_cube_is_not_explained_and_its_lattice_matters():
    cube = nonlinear_cube()
    report, _ = anatomy(cube, rows(600, 0), {"val": rows(300, 1), "test": rows(300, 2)}, seed=0, r2_limit=0.9)
    for split in ("val", "test"):
        entry = report[split]
        assert entry["trivial"]["r2"] < 0.9
        assert entry["trivial"]["r2"] <= entry["general"]["r2"] + 0.05  # more freedom fits at least about as well
        assert entry["general"]["r2"] < 0.99
        assert entry["lattice_off"] != entry["cube"]
        assert sum(entry["step_share"]) == pytest.approx(1.0, abs=1e-3) and min(entry["step_share"]) > 0


def test_the_fits_come_from_train_rows_never_from_the_scored_split():
    """Train and test inputs from different regions: a fit on test would explain test better."""
    cube = nonlinear_cube()
    train, test = rows(600, 0, shift=0.0), rows(300, 1, shift=0.8)
    report, _ = anatomy(cube, train, {"test": test}, seed=0, r2_limit=0.9)
    with torch.no_grad():
        out_train, out_test = cube(train.inputs), cube(test.inputs)
    on_train = r_squared(fit_trivial(train.inputs, out_train)(test.inputs), out_test)
    on_test = r_squared(fit_trivial(test.inputs, out_test)(test.inputs), out_test)
    assert abs(on_train - on_test) > 0.01  # the two fits differ: the test can tell them apart
    assert report["test"]["trivial"]["r2"] == pytest.approx(on_train, abs=1e-4)
    general = fit_general(train.inputs, out_train)(test.inputs)
    assert report["test"]["general"]["r2"] == pytest.approx(r_squared(general, out_test), abs=1e-4)


def test_r_squared_against_its_definition():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(50, 6, generator=g)
    assert r_squared(out, out) == 1.0
    assert r_squared(out.mean(0).expand_as(out), out) == pytest.approx(0.0, abs=1e-12)
    fit = out + 0.5 * torch.randn(50, 6, generator=g)
    expected = 1 - ((out - fit) ** 2).sum() / ((out - out.mean(0)) ** 2).sum()
    assert r_squared(fit, out) == pytest.approx(float(expected), rel=1e-6)  # expected in float32


def test_the_trivial_fit_recovers_a_known_scale_and_offset():
    x = F.normalize(torch.randn(300, DIM, generator=torch.Generator().manual_seed(3)), dim=-1)
    offset = torch.linspace(0, 1, DIM)
    fit = fit_trivial(x, 0.35 * x + offset)
    assert fit.alpha == pytest.approx(0.35, abs=1e-6)
    assert torch.allclose(fit.offset, offset, atol=1e-5)


def test_lattice_off_is_the_trained_cube_with_zero_steps_and_the_steps_come_back():
    cube = nonlinear_cube()
    x = rows(20, 5).inputs
    twin = CubicCore(dataclasses.replace(PARAMS, steps=0), DIM)
    twin.load_state_dict(cube.state_dict())
    with torch.no_grad(), lattice_steps(cube, 0):
        off = cube(x)
    with torch.no_grad():
        assert torch.equal(off, twin(x))
        assert not torch.allclose(cube(x), off)  # the steps are back
    assert cube.params.steps == 3
