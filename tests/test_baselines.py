"""Baselines: ridge recovers a known map and picks the right regulariser; mean is the mean;
the trained linear map starts at the identity and learns; the blend mixes unit vectors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cubecore.core.config import LossParams, TrainParams
from cubecore.evaluation.baselines import (
    Blend,
    LinearMap,
    MeanTarget,
    Moments,
    ResidualMLP,
    blend_family,
    fit_baselines,
    fit_ridge,
)
from cubecore.training.pairings import TaskData

DIM = 8


def linear_data(n: int, seed: int, noise: float = 0.0) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(7))
    x = torch.randn(n, DIM, generator=g)
    y = x @ weight + 0.5 + noise * torch.randn(n, DIM, generator=g)
    return TaskData(x, y, np.arange(n) + seed * 10_000)


def test_ridge_recovers_a_known_map():
    data = linear_data(200, 0)
    model = Moments.of(data.inputs, data.targets).solve(1e-6)
    weight = torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(model.weight, weight, atol=1e-3)
    assert torch.allclose(model.bias, torch.full((DIM,), 0.5), atol=1e-3)


def test_ridge_picks_the_best_regulariser_on_held_out_rows():
    # a clean linear map: a huge penalty flattens it, the small one is right
    assert fit_ridge(linear_data(300, 1), [1e-3, 1e6], seed=0)[1] == 1e-3
    # targets that are noise around a fixed direction, unrelated to the inputs: only the
    # heavily regularised map (the mean target) generalises
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, DIM, generator=g)
    y = 1.0 + 2 * torch.randn(40, DIM, generator=g)
    assert fit_ridge(TaskData(x, y, np.arange(40)), [1e-3, 1e6], seed=0)[1] == 1e6


def test_the_chosen_ridge_is_refitted_on_every_training_row():
    """The held-out tenth only picks alpha: the returned map is the fit of all rows (noisy
    rows, few of them, so leaving any out moves the weights)."""
    data = linear_data(50, 3, noise=0.5)
    model, alpha = fit_ridge(data, [0.1, 10.0], seed=0)
    full = Moments.of(data.inputs, data.targets).solve(alpha)
    assert torch.allclose(model.weight, full.weight, atol=1e-5)
    assert torch.allclose(model.bias, full.bias, atol=1e-5)


def test_mean_baseline_is_the_mean_target():
    targets = torch.randn(10, DIM) + 3
    assert torch.allclose(MeanTarget(targets)(torch.randn(4, DIM)), targets.mean(0).expand(4, -1))


def test_blend_mixes_unit_vectors():
    ridge = Moments.of(*(lambda d: (d.inputs, d.targets))(linear_data(100, 2))).solve(1.0)
    x = torch.randn(5, DIM) * 7
    assert torch.allclose(Blend(ridge, 1.0)(x), F.normalize(x, dim=-1))
    assert torch.allclose(Blend(ridge, 0.0)(x), F.normalize(ridge(x), dim=-1), atol=1e-6)
    mid = Blend(ridge, 0.3)(x)
    assert torch.allclose(mid, 0.7 * F.normalize(ridge(x), dim=-1) + 0.3 * F.normalize(x, dim=-1))
    assert list(blend_family(ridge, 2)) == ["blend@0", "blend@0.5", "blend@1"]


def test_linear_map_starts_at_the_identity():
    x = torch.randn(3, DIM)
    assert torch.equal(LinearMap(DIM)(x), x)


def test_the_mlp_starts_as_the_identity():
    x = torch.randn(3, DIM)
    assert torch.equal(ResidualMLP(DIM, 5)(x), x)


@pytest.mark.parametrize("budget", [5, 200, 1000, 5233])
def test_the_mlp_width_gives_the_parameter_count_closest_to_the_budget(budget):
    """The mlp is the cube's size (its parameter count is 2 * dim * h + h + dim); at least one
    hidden unit even when the budget is below that of one."""
    def count(hidden: int) -> int:
        return sum(p.numel() for p in ResidualMLP(DIM, hidden).parameters())

    hidden = ResidualMLP.hidden_for(DIM, budget)
    assert hidden >= 1
    assert all(abs(count(hidden) - budget) <= abs(count(h) - budget) for h in range(1, hidden + 20))


def test_trained_baselines_learn_beyond_the_identity(tmp_path):
    train, val = linear_data(256, 4, noise=0.1), linear_data(64, 5, noise=0.1)
    params = TrainParams(epochs=6, batch_size=32, lr=0.01, patience=10, checkpoint_dir=str(tmp_path),
                         loss=LossParams(cosine=1.0, infonce=0.1))
    models, info = fit_baselines(train, val, params, [0.1, 1.0], seed=0, cube_parameters=200)
    assert set(models) == {"identity", "mean", "ridge", "linear", "mlp"}
    assert info["linear_parameters"] == DIM * DIM + DIM

    def val_cosine(model):
        return float(F.cosine_similarity(model(val.inputs), val.targets).mean())

    with torch.no_grad():
        assert val_cosine(models["linear"]) > val_cosine(models["identity"]) + 0.1
        assert val_cosine(models["ridge"]) > 0.9


def test_trained_baselines_are_cached_by_what_defines_them(tmp_path, caplog):
    """Same data and params: loaded, same weights. Another lr: trained again. A garbled cache
    file: one warning, trained again, replaced."""
    import dataclasses
    import logging

    from cubecore.core.artifacts import umask

    train, val = linear_data(128, 4, noise=0.1), linear_data(32, 5, noise=0.1)
    params = TrainParams(epochs=2, batch_size=32, lr=0.01, patience=10, checkpoint_dir=str(tmp_path))

    def fit(p):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            models, _ = fit_baselines(train, val, p, [1.0], seed=0, cube_parameters=200)
        epochs = sum(" epoch " in r.getMessage() for r in caplog.records)
        return models, epochs, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    first, epochs, _ = fit(params)
    assert epochs == 4  # mlp and linear, 2 epochs each
    again, epochs, _ = fit(params)
    assert epochs == 0
    for name in ("mlp", "linear"):
        for (k, a), b in zip(first[name].state_dict().items(), again[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k}"
    _, epochs, _ = fit(dataclasses.replace(params, lr=0.02))
    assert epochs == 4
    files = sorted((tmp_path / "baselines").glob("linear-*.safetensors"))
    assert len(files) == 2
    assert {f.stat().st_mode & 0o777 for f in files} == {0o666 & ~umask()}  # like any file this user writes
    for path in files:
        path.write_bytes(path.read_bytes()[:50])
    _, epochs, warnings = fit(params)
    assert epochs == 2 and len(warnings) == 1 and "unusable cached baseline" in warnings[0]
    _, epochs, _ = fit(params)
    assert epochs == 0


def test_ridge_of_a_noisy_pairing_is_a_denoiser(tmp_path):
    """Autoencoder rows hold clean inputs (the trainer corrupts each batch): with ``noise`` the
    ridge is fitted on corrupted inputs and projects the noise away; without, it learns the identity."""
    from cubecore.training.pairings import corrupt

    basis = torch.randn(2, DIM, generator=torch.Generator().manual_seed(3))  # texts near a 2-d plane

    def texts(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 2, generator=g) @ basis + 0.05 * torch.randn(n, DIM, generator=g)
        return TaskData(x, x, np.arange(n) + seed * 10_000)

    train, val = texts(512, 1), texts(128, 2)
    noisy_val = corrupt(val.inputs, 0.5, torch.Generator().manual_seed(9))
    params = TrainParams(epochs=1, batch_size=64, checkpoint_dir=str(tmp_path))

    def ridge_cosine(noise):
        models, _ = fit_baselines(train, val, params, [0.1, 1.0], seed=0, cube_parameters=200,
                                  noise=noise)
        return float(F.cosine_similarity(models["ridge"](noisy_val), val.targets).mean())

    as_is = float(F.cosine_similarity(noisy_val, val.targets).mean())
    assert ridge_cosine(0.0) < as_is + 0.01  # fitted on clean inputs: the identity, noise kept
    assert ridge_cosine(0.5) > as_is + 0.05
