"""evaluate.require: the grammar (parsed and validated in params.yaml with a one-line error
naming the entry) and each requirement's pass and fail on hand-made eval.json contents."""
import copy

import pytest

from cubecore.core.config import load_params
from cubecore.core.errors import CubecoreError
from cubecore.core.gates import enforce, parse, shortfall
from cubecore.core.lineup import BASELINES


def scores(cosine, mrr):
    return {"test": {"cosine": cosine, "mrr": mrr, "recall@1": mrr - 0.1, "recall@5": round(min(1.0, mrr + 0.2), 4), "bleu": 0.1,
                     "rouge_l": 0.2, "cosine_median": cosine}}


def results(cube=(0.60, 0.70), ridge=(0.55, 0.75), frontier_low=0.01):
    """eval.json as `evaluate` writes it (the parts the gates read), test the report split:
    by default the cube beats ridge on cosine only, mlp on both, and is not dominated."""
    models = {"cube": cube, "identity": (0.5, 0.6), "mean": (0.2, 0.1), "ridge": ridge, "linear": (0.5, 0.6),
              "mlp": (0.58, 0.65), "blend": ridge, "shift": (0.52, 0.62)}
    dominated_by = [n for n, (c, m) in models.items()
                    if n != "cube" and c >= cube[0] and m >= cube[1] and (c, m) != cube]
    margin = min(max(cube[0] - c, cube[1] - m) for n, (c, m) in models.items() if n != "cube")
    best = {m: max(BASELINES, key=lambda b: scores(*models[b])["test"][m])
            for m in ("cosine", "mrr", "recall@1", "bleu", "rouge_l")}
    return {**{n: scores(*v) for n, v in models.items()},
            "frontier": {"test": {"cube": {"cosine": cube[0], "mrr": cube[1]},
                                  "dominated": bool(dominated_by), "dominated_by": dominated_by,
                                  "margin": round(margin, 4)}},
            "confidence": {"split": "test",
                           "cosine": {"baseline": best["cosine"], "value": 0.02, "low": 0.005, "high": 0.04},
                           "mrr": {"baseline": best["mrr"], "value": -0.05, "low": -0.09, "high": -0.01},
                           "recall@1": {"baseline": best["recall@1"], "value": -0.05, "low": -0.1, "high": 0.0},
                           "frontier_margin": {"value": round(margin, 4), "low": frontier_low, "high": 0.1}},
            "anatomy": {"alpha": 0.67, "affine_r2_limit": 0.9, "test": {"trivial": {"r2": 0.9986}}},
            "setup": {"report_split": "test", "best_baseline": best}}


def test_lattice_matters_fails_a_cube_its_trivial_fit_explains():
    res = results()
    assert check("lattice_matters", res) == ("alpha * x + c (alpha 0.6700, fitted on train) explains the cube's "
                                             "outputs with R² 0.9986 > evaluate.affine_r2_limit 0.9: the lattice "
                                             "adds next to nothing")
    res["anatomy"]["test"]["trivial"]["r2"] = 0.9  # at the limit: passes
    assert check("lattice_matters", res) is None
    res["anatomy"]["affine_r2_limit"] = 0.85
    assert check("lattice_matters", res) is not None


def check(text, res):
    return shortfall(parse(text, [1, 5]), res)


@pytest.mark.parametrize("text", ["not_dominated", "beats: mlp", "beats: ridge on cosine", "beats: frontier",
                                  "beats: frontier beyond noise", "beats: best on cosine beyond noise",
                                  "beats: identity on recall@5", "  beats:mlp  "])
def test_requirements_that_hold(text):
    assert check(text, results()) is None


@pytest.mark.parametrize("text, res, expected", [
    ("beats: ridge", results(), "the cube's mrr 0.7000 is not above ridge's 0.7500 (short by 0.0500)"),
    ("beats: ridge on mrr", results(), "the cube's mrr 0.7000 is not above ridge's 0.7500 (short by 0.0500)"),
    ("beats: best", results(), "the cube's mrr 0.7000 is not above ridge's 0.7500 (short by 0.0500)"),
    ("beats: mlp", results(cube=(0.58, 0.65)), ("the cube's cosine 0.5800 is not above mlp's 0.5800 "
                                                "(short by 0.0000); the cube's mrr 0.6500 is not above mlp's")),
    ("not_dominated", results(cube=(0.54, 0.70)),
     "the cube (cosine 0.5400, MRR 0.7000) is dominated by ridge, blend (margin -0.0100)"),
    ("beats: frontier", results(cube=(0.54, 0.70)), "the cube's frontier margin is -0.0100 (needs > 0)"),
    ("beats: frontier beyond noise", results(frontier_low=-0.002),
     "the frontier margin 0.0500 is not above 0 beyond noise (95 % interval -0.0020 to 0.1000)"),
    ("beats: best on mrr beyond noise", results(),
     "cube - ridge on mrr is -0.0500, 95 % interval -0.0900 to -0.0100 (not above 0)"),
    ("beats: best on recall@1 beyond noise", results(), "95 % interval -0.1000 to 0.0000 (not above 0)"),
])
def test_requirements_that_fail_say_by_how_much(text, res, expected):
    assert expected in check(text, res)


def test_a_cube_on_the_frontier_does_not_beat_it():
    """Equal to ridge (and blend): margin exactly 0, not dominated, and not beyond the frontier."""
    res = results(cube=(0.55, 0.75))
    assert res["frontier"]["test"]["margin"] == 0 and check("not_dominated", res) is None
    assert check("beats: frontier", res) == "the cube's frontier margin is 0.0000 (needs > 0)"


def test_an_interval_reaching_down_to_0_is_not_beyond_noise():
    assert "(95 % interval 0.0000 to 0.1000)" in check("beats: frontier beyond noise", results(frontier_low=0.0))
    res = results()
    res["confidence"]["cosine"]["low"] = 0.0
    assert "95 % interval 0.0000 to 0.0400 (not above 0)" in check("beats: best on cosine beyond noise", res)


@pytest.mark.parametrize("metric", ["bleu", "rouge_l", "recall@1"])
def test_best_takes_any_headline_metric(metric):
    assert parse(f"beats: best on {metric}", [1, 5]).metrics == (metric,)


def test_enforce_names_every_failed_entry_and_the_split_on_one_line():
    res = results(cube=(0.54, 0.70))
    enforce([], [1], res)  # off by default
    enforce(["beats: mean"], [1], res)
    with pytest.raises(CubecoreError) as info:
        enforce(["beats: mean", "not_dominated", "beats: frontier"], [1], res)
    message = str(info.value)
    assert "\n" not in message and message.startswith("evaluate.require failed on test: ")
    assert '"not_dominated": the cube' in message and '"beats: frontier": the cube' in message
    assert "beats: mean" not in message
    res["setup"]["report_split"] = "val"
    for name in list(res):
        if isinstance(res[name], dict) and "test" in res[name]:
            res[name]["val"] = res[name].pop("test")
    with pytest.raises(CubecoreError, match="failed on val: "):
        enforce(["beats: ridge"], [1], copy.deepcopy(res))


@pytest.mark.parametrize("entry, message", [
    ('"beats ridge"', "'beats ridge' is not a requirement"),
    ('"beats: rigde"', "unknown target 'rigde' (frontier, best, identity, mean"),
    ('"beats: ridge on recall@3"', "unknown metric 'recall@3' (cosine, cosine_median, mrr, recall@1, recall@5"),
    ('"beats: frontier on mrr"', "drop 'on mrr'"),
    ('"beats: best on cosine_median"', "the best baseline is chosen per headline metric"),
    ('"beats: ridge beyond noise"', "'beyond noise' needs a bootstrap interval"),
    ('"beats: best on bleu beyond noise"', "'beyond noise' needs a bootstrap interval"),
    ("dominated", "'dominated' is not a requirement"),
])
def test_a_bad_entry_is_one_error_naming_it(tmp_path, entry, message):
    path = tmp_path / "params.yaml"
    path.write_text(f"evaluate:\n  recall_at: [1, 5]\n  require: [not_dominated, {entry}]\n")
    with pytest.raises(CubecoreError) as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}: evaluate.require[1]: ")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unquoted_yaml_mapping_is_read_as_the_entry(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("evaluate:\n  require:\n  - not_dominated\n  - beats: ridge\n  - beats: best on mrr\n")
    assert load_params(path).evaluate.require == ["not_dominated", "beats: ridge", "beats: best on mrr"]


def test_a_cube_dominated_by_a_whole_blend_family_is_named_in_one_range():
    res = results(cube=(0.54, 0.70))
    weights = [round(0.49 + 0.01 * i, 2) for i in range(40)]
    res["frontier"]["test"]["dominated_by"] = ["linear", "mlp", *(f"blend@{w:g}" for w in weights), "shift@0.1"]
    message = check("not_dominated", res)
    assert "dominated by linear, mlp, blend@0.49…0.88 (40 weights), shift@0.1 (margin" in message
    assert message.count("blend@") == 1
