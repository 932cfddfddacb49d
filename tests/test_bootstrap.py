"""The paired bootstrap: every row can be drawn, all columns are resampled with the same rows,
and ``evaluate``'s intervals (``confidence``) pair the cube with the best baseline and with every
frontier point row by row (tests/test_evaluation.py has its coverage and width checks)."""
import numpy as np
import pytest

from cubecore.core.frontier import margin
from cubecore.evaluation.bootstrap import resample_means
from cubecore.evaluation.run import confidence


@pytest.mark.parametrize("row", [0, 4])
def test_the_first_and_the_last_row_are_drawn(row):
    values = np.zeros((5, 1))
    values[row] = 1.0
    means = resample_means(values, 2000, seed=0)[:, 0]
    assert means.max() > 0
    assert means.mean() == pytest.approx(1 / 5, abs=0.02)


def test_every_column_is_resampled_with_the_same_rows():
    v = np.random.default_rng(0).normal(size=50)
    means = resample_means(np.stack([v, 2 * v, -v], axis=1), 300, seed=3)
    assert np.allclose(means[:, 1], 2 * means[:, 0], rtol=1e-12, atol=1e-15)
    assert np.allclose(means[:, 2], -means[:, 0], rtol=1e-12, atol=1e-15)
    assert means[:, 0].std() > 0.05  # and the resamples do differ


N = 400


def rows(offset: float = 0.03) -> dict:
    """Per-row values of a cube exactly ``offset`` ahead of ridge on every row's cosine and
    MRR, rows that differ a lot from one another (so anything unpaired is wide), and a mean
    baseline ahead on cosine, far behind on MRR (a frontier point the cube does not dominate,
    0.48 away). On recall@1 both hit rows 0-199, both miss 200-359, and only the
    cube hits 360-399."""
    rng = np.random.default_rng(7)
    cos, mrr = 0.5 + 0.25 * rng.normal(size=N), 0.5 + 0.25 * rng.normal(size=N)
    hit = (np.arange(N) < 200).astype(float)
    return {"cube": {"cosine": cos + offset, "mrr": mrr + offset, "recall@1": hit + (np.arange(N) >= 360)},
            "ridge": {"cosine": cos, "mrr": mrr, "recall@1": hit},
            "mean": {"cosine": 0.8 + 0.01 * rng.normal(size=N), "mrr": np.full(N, 0.05), "recall@1": np.zeros(N)}}


BEST = {"cosine": "ridge", "mrr": "ridge", "recall@1": "ridge"}


def test_a_cube_ahead_by_the_same_amount_on_every_row_has_a_point_interval():
    """Paired: every resample's difference is exactly the offset. Resampling the cube's rows
    apart from the baseline's would give an interval about +-0.035 wide."""
    report = confidence(rows(), BEST, ["ridge", "mean"], 1000, seed=0)
    for m in ("cosine", "mrr"):
        assert report[m] == {"baseline": "ridge", "value": 0.03, "low": 0.03, "high": 0.03}


def test_the_frontier_margin_interval_pairs_the_cube_with_every_baseline():
    """The margin is 0.03 (ahead of ridge by 0.03 on both) in every resample when cube and
    baselines are resampled with the same rows; the point estimate is the margin of the means."""
    values = rows()
    report = confidence(values, BEST, ["ridge", "mean"], 1000, seed=0)["frontier_margin"]
    point = margin(values["cube"]["cosine"].mean(), values["cube"]["mrr"].mean(),
                   np.array([values[n]["cosine"].mean() for n in ("ridge", "mean")]),
                   np.array([values[n]["mrr"].mean() for n in ("ridge", "mean")]))
    assert report == {"value": round(float(point), 4), "low": 0.03, "high": 0.03}


def test_the_recall_interval_has_the_width_of_the_paired_difference():
    """The cube hits 40 more rows of 400 (difference 0.1): paired, the interval is
    +-1.96 * sqrt(0.1 * 0.9 / 400) = +-0.029; unpaired it would be +-0.069."""
    report = confidence(rows(), BEST, ["ridge", "mean"], 2000, seed=0)["recall@1"]
    assert report["value"] == pytest.approx(0.1)
    assert (report["high"] - report["low"]) / 2 == pytest.approx(1.96 * np.sqrt(0.1 * 0.9 / N), rel=0.2)


def test_a_cube_behind_gets_a_negative_difference_and_margin():
    report = confidence(rows(offset=-0.02), BEST, ["ridge", "mean"], 200, seed=0)
    assert report["cosine"]["value"] == report["cosine"]["high"] == -0.02
    assert report["frontier_margin"]["value"] == report["frontier_margin"]["high"] == -0.02
