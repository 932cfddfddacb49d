"""Plots that answer the question: labelled bars, the cube easy to find, the best epoch marked."""
import numpy as np
import pytest
from dvclive import Live
from matplotlib.container import BarContainer

from cubecore import plots
from cubecore.trainer import log_epoch

# any names, any number: the plots must not assume the pipeline's current model list
MODELS = ("baseline_a", "cube", "baseline_b", "linear", "blend")
HEADLINE = ("cosine", "mrr")


def legend_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.fixture
def live_dir(tmp_path):
    """Real DVCLive files of five epochs whose val_loss is best at epoch 3."""
    rows = [{"train_loss": 1.0 - 0.1 * e, "val_loss": v, "val_cosine": 0.5 + 0.01 * e, "val_mrr": 0.3,
             "val_recall@1": 0.2} for e, v in enumerate([0.9, 0.8, 0.7, 0.75, 0.72])]
    with Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False) as live:
        for row in rows:
            log_epoch(live, row)
    return tmp_path / "live" / "plots" / "metrics"


@pytest.mark.parametrize("monitor, best", [("val_loss", 3), ("val_cosine", 5)])
def test_training_curves_mark_the_best_epoch_with_integer_ticks(live_dir, tmp_path, monitor, best):
    fig = plots.training_curves(live_dir, tmp_path / "curves.png", "t", monitor=monitor)
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    for ax in fig.axes:
        marker = [line for line in ax.get_lines() if line.get_label().startswith("best epoch")]
        assert len(marker) == 1 and marker[0].get_label() == f"best epoch {best} (by {monitor})"
        assert list(marker[0].get_xdata()) == [best, best]
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_headline_bars_label_every_bar_and_set_the_cube_apart(tmp_path):
    rng = np.random.default_rng(0)
    metrics = {name: {"val": {m: float(rng.uniform(0.3, 0.6)) for m in HEADLINE}} for name in MODELS}
    metrics["cube"]["val"]["mrr"] = max(metrics[n]["val"]["mrr"] for n in MODELS) + 0.01  # a 0.01 win
    fig = plots.headline_bars(metrics, MODELS, HEADLINE, tmp_path / "headline.png", "t")
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [b.get_label() for b in bars] == list(MODELS)
    labels = [t.get_text() for t in ax.texts]
    expected = [f"{metrics[n]['val'][m]:.3f}" for n in MODELS for m in HEADLINE]
    assert labels == expected
    cube = bars[MODELS.index("cube")]
    assert all(p.get_edgecolor()[:3] == (0, 0, 0) for p in cube.patches)
    assert all(p.get_edgecolor()[3] == 0 for b in bars if b is not cube for p in b.patches)  # no outline
    assert legend_labels(ax)[0] == "cube"
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    others = [n for n in MODELS if n != "cube"]
    for tick, m in zip(ticks, HEADLINE):
        gap = metrics["cube"]["val"][m] - max(metrics[n]["val"][m] for n in others)
        assert tick == f"{m}\ncube − best other: {gap:+.4f}"
    assert ticks[1].endswith("+0.0100")


def test_recall_and_histogram_draw_the_cube_last_and_list_it_first(tmp_path):
    rng = np.random.default_rng(1)
    recall = {n: np.sort(rng.uniform(0, 1, 50)) for n in MODELS}
    fig = plots.recall_at_k(recall, tmp_path / "recall.png", tmp_path / "recall.csv", "t")
    ax = fig.axes[0]
    assert ax.get_lines()[-1].get_label() == "cube"
    assert ax.get_lines()[-1].get_linewidth() > max(line.get_linewidth() for line in ax.get_lines()[:-1])
    assert legend_labels(ax)[0] == "cube" and sorted(legend_labels(ax)) == sorted(MODELS)
    assert (tmp_path / "recall.csv").read_text().splitlines()[0] == ",".join(["k", *MODELS])

    cosines = {n: rng.uniform(-0.1, 0.9, 200) for n in MODELS}
    fig = plots.cosine_histogram(cosines, tmp_path / "hist.png", "t")
    ax = fig.axes[0]
    outlines = [p for p in ax.patches if p.get_label() and not p.get_label().startswith("_")]
    assert outlines[-1].get_label().startswith("cube (mean ")
    assert legend_labels(ax)[0] == f"cube (mean {cosines['cube'].mean():.3f})"
    assert len(legend_labels(ax)) == len(MODELS)
