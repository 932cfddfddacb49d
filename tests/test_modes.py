"""Training modes (cubecore.training.modes): one registry, each mode trains, its loss terms are as documented,
and evaluation scores its further views."""
import dataclasses
import logging
import re

import numpy as np
import pytest
import torch
from test_trainer import params, synthetic

from cubecore.cli.report import models
from cubecore.core import artifacts
from cubecore.core.config import (
    CHOICES,
    CubeParams,
    DualParams,
    EvaluateParams,
    Params,
    PretrainParams,
    TrainParams,
    load_params,
)
from cubecore.core.errors import CubecoreError
from cubecore.core.lineup import MODELS
from cubecore.evaluation.run import evaluate
from cubecore.evaluation.targets import seed_targets
from cubecore.training.loop import Trainer
from cubecore.training.losses import combined_loss, cosine_loss
from cubecore.training.modes import MODES, get_mode
from cubecore.training.modes.base import pairing_loss
from cubecore.training.modes.bidirectional import TwoCubes
from cubecore.training.modes.dual import dual_weights
from cubecore.training.pairings import AUTOENCODER, DIALOGUE
from cubecore.training.run import load_model, pretrain, train

CUBE = CubeParams(lattice=[4, 4, 4], channels=4, hidden=8, position_channels=2, steps=1)


def test_the_registry_is_the_list_of_valid_modes():
    assert tuple(MODES) == CHOICES["train.mode"]
    assert all(name == mode.name for name, mode in MODES.items())


@pytest.mark.parametrize("name", list(MODES))
def test_each_mode_trains(tmp_path, name):
    torch.manual_seed(0)
    mode = get_mode(name)
    trainer = Trainer(mode.build(CUBE, 64), params(tmp_path, mode=name, epochs=4), seed=0, key=name)
    trainer.fit(synthetic(128, 1), synthetic(32, 2), progress=False)
    history = trainer.state.history
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]


def scalar(value) -> float:
    return value.item() if isinstance(value, torch.Tensor) else float(value)


def a_cube():
    return get_mode("dialogue").build(CUBE, 64)


def batch(seed=3, n=8):
    data = synthetic(n, seed)
    return data.inputs, data.targets


def loss_of(mode_name, model, p, step=0, seed=7):
    x, y = batch()
    return get_mode(mode_name).batch_loss(model, x, y, p, torch.Generator().manual_seed(seed), step)


def test_dialogue_and_autoencoder_losses_are_train_loss_on_their_pairing(tmp_path):
    torch.manual_seed(0)
    model, p, (x, y) = a_cube(), params(tmp_path), batch()
    assert scalar(loss_of("dialogue", model, p)[0]) == pytest.approx(scalar(combined_loss(model(x), y, p.loss)[0]))
    noisy = x + p.autoencoder.noise * x.norm(dim=-1, keepdim=True) / 8 * torch.randn(
        x.shape, generator=torch.Generator().manual_seed(7))
    assert scalar(loss_of("autoencoder", model, p)[0]) == pytest.approx(
        scalar(combined_loss(model(noisy), y, p.loss)[0]), rel=1e-5)


def dual_terms(model, p, seed=7):
    """The two documented terms, computed on their own with the same noise draws."""
    x, y = batch()
    g = torch.Generator().manual_seed(seed)
    d = scalar(pairing_loss(model, DIALOGUE, x, y, p, g)[0])
    texts = torch.cat([x, y])
    a = scalar(pairing_loss(model, AUTOENCODER, texts, texts, p, g)[0])
    return d, a


def test_dual_fixed_is_the_weighted_sum(tmp_path):
    torch.manual_seed(0)
    model = a_cube()
    p = params(tmp_path, mode="dual", dual=DualParams(balancing="fixed", dialogue_weight=0.3, autoencoder_weight=2.0))
    d, a = dual_terms(model, p)
    total, terms = loss_of("dual", model, p)
    assert terms["dialogue"] == pytest.approx(d) and terms["autoencoder"] == pytest.approx(a, rel=1e-5)
    assert scalar(total) == pytest.approx(0.3 * d + 2.0 * a, rel=1e-5)


def test_dual_alternate_switches_every_n_steps(tmp_path):
    torch.manual_seed(0)
    model = a_cube()
    p = params(tmp_path, mode="dual", dual=DualParams(balancing="alternate", switch_every=50))
    d, _ = dual_terms(model, p)
    x, y = batch()
    texts = torch.cat([x, y])
    a = scalar(pairing_loss(model, AUTOENCODER, texts, texts, p, torch.Generator().manual_seed(7))[0])
    for step, expected in [(0, {"dialogue": d}), (49, {"dialogue": d}), (50, {"autoencoder": a}),
                           (99, {"autoencoder": a}), (100, {"dialogue": d})]:
        total, terms = loss_of("dual", model, p, step=step)
        (name, value), = expected.items()
        assert set(terms) == {name, f"{name}_weight"}, step
        assert scalar(total) == pytest.approx(value, rel=1e-5), step


def test_dual_adaptive_weights_follow_the_loss_ratio(tmp_path):
    torch.manual_seed(0)
    model = a_cube()
    p = params(tmp_path, mode="dual", dual=DualParams(balancing="adaptive"))
    d, a = dual_terms(model, p)
    total, terms = loss_of("dual", model, p)
    assert terms["dialogue_weight"] == pytest.approx(2 * d / (d + a), rel=1e-5)
    assert terms["autoencoder_weight"] == pytest.approx(2 * a / (d + a), rel=1e-5)
    assert scalar(total) == pytest.approx((2 * d * d + 2 * a * a) / (d + a), rel=1e-5)


def test_bidirectional_loss_is_both_directions_plus_the_weighted_cycle(tmp_path):
    torch.manual_seed(0)
    model = get_mode("bidirectional").build(CUBE, 64)
    assert isinstance(model, TwoCubes)
    p = params(tmp_path, mode="bidirectional")
    p = dataclasses.replace(p, bidirectional=dataclasses.replace(p.bidirectional, cycle=0.25))
    x, y = batch()
    f, b = model.forward_cube, model.backward_cube
    expected = (combined_loss(f(x), y, p.loss)[0] + combined_loss(b(y), x, p.loss)[0]
                + 0.25 * (cosine_loss(b(f(x)), x) + cosine_loss(f(b(y)), y)))
    total, terms = loss_of("bidirectional", model, p)
    assert scalar(total) == pytest.approx(scalar(expected), rel=1e-5)
    assert terms["cycle"] == pytest.approx(scalar(cosine_loss(b(f(x)), x) + cosine_loss(f(b(y)), y)), rel=1e-5)
    assert torch.equal(model(x), f(x))


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """A tiny extracted + split dataset on disk: question i -> answer N + i, learnable."""
    root = tmp_path_factory.mktemp("modes-data")
    n = 60
    questions = synthetic(n, 1)
    embeddings = torch.cat([questions.inputs, questions.targets]).numpy()
    data, split = root / "extract", root / "split"
    data.mkdir(), split.mkdir()
    artifacts.write_texts(data / "texts.jsonl", [f"text {i}" for i in range(2 * n)])
    artifacts.write_embeddings(data / "embeddings.npy", embeddings)
    artifacts.write_json(data / "teacher.json", {"path": "synthetic"})
    ids = np.arange(n)
    for name, rows in (("train", ids[:40]), ("val", ids[40:50]), ("test", ids[50:])):
        artifacts.write_pairs(split / f"{name}.tsv", artifacts.Pairs(rows, rows + n, ["c"] * len(rows), rows * 0))
    return root


def test_train_warns_when_its_peak_passes_the_memory_limit(tmp_path, on_disk, caplog):
    limit_gb = 0.01  # 10 MB: below what any Python process with torch holds
    p = Params(cube=dataclasses.replace(CUBE, lattice=[4, 4, 4]),
               train=TrainParams(epochs=1, batch_size=16, memory_limit_gb=limit_gb, checkpoint_dir=str(tmp_path / "ck")))
    with caplog.at_level(logging.WARNING, logger="cubecore.training.run"):
        metrics, speed = train(p, on_disk / "extract", on_disk / "split", tmp_path / "model", progress=False)
    assert metrics["train"]["within_memory_limit"] is False
    peak = speed["train"]["peak_memory_mb"]
    assert caplog.messages == [f"train: peak RSS {peak:.0f} MB is above train.memory_limit_gb 0.01 (10 MB)"]


@pytest.mark.parametrize("name, view", [("dual", "reconstruction"), ("bidirectional", "backward")])
def test_train_and_evaluate_report_the_modes_views(tmp_path, on_disk, name, view):
    p = Params(cube=dataclasses.replace(CUBE, lattice=[4, 4, 4]),
               train=TrainParams(mode=name, epochs=1, batch_size=16, lr=0.01, checkpoint_dir=str(tmp_path / "ck")))
    p.evaluate.ridge_alphas = [1.0]
    metrics, speed = train(p, on_disk / "extract", on_disk / "split", tmp_path / "model", progress=False)
    assert metrics["train"]["mode"] == name
    assert metrics["train"]["within_memory_limit"] is (speed["train"]["peak_memory_mb"] <= 8 * 1024)
    model, info = load_model(tmp_path / "model")
    assert info["mode"] == name and type(model) is type(get_mode(name).build(CUBE, 64))
    scores = evaluate(p, on_disk / "extract", on_disk / "split", tmp_path / "model").metrics
    assert scores["setup"]["mode"] == name
    assert models(scores) == list(MODELS)  # the review report's model list
    assert set(scores["views"][view]) == {"cube", "identity", "ridge"}
    assert {"cosine", "mrr", "recall@1"} <= set(scores["views"][view]["cube"]["val"])
    if name == "dual":  # reconstruction rows are validation texts, none of them a training text
        assert scores["views"][view]["cube"]["val"]["candidates"] == 20
        assert set(scores["targets"]) == {"bleu", "reconstruction_cosine"}
        assert scores["targets"]["reconstruction_cosine"]["val"]["value"] == scores["views"][view]["cube"]["val"]["cosine"]
    else:               # the backward cube answers a -> q on the 10 validation pairs
        assert scores["views"][view]["cube"]["val"]["candidates"] == 10
        assert set(scores["targets"]) == {"bleu"}


@pytest.mark.parametrize("name, expected", [("dialogue", {"bleu"}), ("autoencoder", {"bleu", "reconstruction_cosine"}),
                                            ("dual", {"bleu", "reconstruction_cosine"})])
def test_seed_thresholds_are_reported_pass_or_fail(name, expected):
    metrics = {"cube": {"val": {"bleu": 0.41, "cosine": 0.9}},
               "views": {"reconstruction": {"cube": {"val": {"bleu": 0.0, "cosine": 0.96}}}}}
    targets = seed_targets(metrics, get_mode(name), EvaluateParams(bleu_target=0.4, reconstruction_target=0.95))
    assert set(targets) == expected
    assert targets["bleu"]["val"] == {"target": 0.4, "value": 0.41, "passed": True}
    if "reconstruction_cosine" in targets:
        value = 0.9 if name == "autoencoder" else 0.96
        assert targets["reconstruction_cosine"]["val"] == {"target": 0.95, "value": value, "passed": value >= 0.95}


@pytest.mark.parametrize("name", ["dialogue", "bidirectional"])
def test_train_starts_from_the_pretrained_autoencoder(tmp_path, on_disk, name):
    base = Params(cube=CUBE, train=TrainParams(epochs=1, batch_size=16, checkpoint_dir=str(tmp_path / "ck")))
    base.train.pretrain, base.train.init = PretrainParams(epochs=1, lr=0.01), "pretrain"
    summary, _ = pretrain(base, on_disk / "extract", on_disk / "split", tmp_path / "pre", progress=False)
    assert summary["pretrain"]["mode"] == "autoencoder" and summary["pretrain"]["epochs_run"] == 1
    cube, _ = load_model(tmp_path / "pre")
    p = dataclasses.replace(base, train=dataclasses.replace(base.train, mode=name, init="pretrain", lr=1e-12))
    metrics, _ = train(p, on_disk / "extract", on_disk / "split", tmp_path / "model", progress=False,
                       pretrained_dir=tmp_path / "pre")
    assert metrics["train"]["init"] == "pretrain"
    model, _ = load_model(tmp_path / "model")
    cubes = [model] if name == "dialogue" else [model.forward_cube, model.backward_cube]
    for trained in cubes:  # lr ~ 0: the weights are still the pretrained ones
        for key, value in cube.state_dict().items():
            assert torch.allclose(trained.state_dict()[key], value, atol=1e-6), key


def test_pretrain_is_a_cheap_no_op_for_a_cube_trained_from_scratch(tmp_path, on_disk):
    base = Params(cube=CUBE, train=TrainParams(epochs=1, batch_size=16, checkpoint_dir=str(tmp_path / "ck")))
    summary, _ = pretrain(base, on_disk / "extract", on_disk / "split", tmp_path / "pre", progress=False)
    assert summary == {"pretrain": {"skipped": True}}
    assert not (tmp_path / "pre" / "model.safetensors").exists() and (tmp_path / "pre" / "model.json").exists()


def test_a_pretrained_cube_of_another_shape_is_refused(tmp_path, on_disk):
    base = Params(cube=CUBE, train=TrainParams(epochs=1, batch_size=16, checkpoint_dir=str(tmp_path / "ck")))
    base.train.pretrain, base.train.init = PretrainParams(epochs=1), "pretrain"
    pretrain(base, on_disk / "extract", on_disk / "split", tmp_path / "pre", progress=False)
    other = dataclasses.replace(base, cube=dataclasses.replace(CUBE, channels=5),
                                train=dataclasses.replace(base.train, init="pretrain"))
    with pytest.raises(CubecoreError, match="train.init: pretrain needs the same"):
        train(other, on_disk / "extract", on_disk / "split", tmp_path / "model", progress=False,
              pretrained_dir=tmp_path / "pre")


@pytest.mark.parametrize("setting, message", [
    ("mode: triple", "train.mode must be one of dialogue | autoencoder | dual | bidirectional, got 'triple'"),
    ("dual: {balancing: random}", "train.dual.balancing must be one of fixed | alternate | adaptive"),
    ("curriculum: {schedule: linear, start_fraction: 0}", "train.curriculum.start_fraction must be in (0, 1], got 0.0"),
    ("loss: {distill_temperature: 0}", "train.loss.distill_temperature must be > 0, got 0"),
    ("init: warm", "train.init must be one of scratch | pretrain"),
])
def test_a_bad_mode_setting_names_its_param(tmp_path, setting, message):
    (tmp_path / "params.yaml").write_text(f"train: {{{setting}}}\n")
    with pytest.raises(CubecoreError, match=re.escape(message)):
        load_params(tmp_path / "params.yaml")


def test_adaptive_weights_fall_back_to_fixed_when_both_losses_are_zero():
    d = DualParams(balancing="adaptive", dialogue_weight=0.5, autoencoder_weight=2.0)
    assert dual_weights(d, {"dialogue": 0.0, "autoencoder": 0.0}) == {"dialogue": 0.5, "autoencoder": 2.0}
    assert dual_weights(d, {"dialogue": 3.0, "autoencoder": 1.0}) == {"dialogue": 0.75, "autoencoder": 1.0}
