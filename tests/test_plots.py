"""Plots that answer the question: labelled bars, the cube easy to find, the best epoch marked,
the frontier's named points labelled without overlaps."""
import numpy as np
import pytest
from dvclive import Live
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from cubecore.core.frontier import frontier_report
from cubecore.evaluation import plots
from cubecore.training.loop import log_epoch

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
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "5", "10", "20", "50"]  # k readable

    cosines = {n: rng.uniform(-0.1, 0.9 - 0.1 * i, 200) for i, n in enumerate(MODELS)}
    fig = plots.cosine_histogram(cosines, tmp_path / "hist.png", "t")
    ax = fig.axes[0]
    outlines = [p for p in ax.patches if p.get_label() and not p.get_label().startswith("_")]
    assert outlines[-1].get_label().startswith("cube (mean ")
    assert legend_labels(ax)[0] == f"cube (mean {cosines['cube'].mean():.3f})"
    rivals = sorted((n for n in MODELS if n != "cube"), key=lambda n: -cosines[n].mean())[:2]
    assert [label.split()[0] for label in legend_labels(ax)] == ["cube", *rivals]  # the best two, not all four
    assert ax.get_title().endswith("cube against the 2 of 4 others with the highest mean cosine")


def frontier_curves(cube=(0.345, 0.155), mean=(0.30, 0.002), shift=False) -> dict:
    """``curves["frontier"]`` as evaluate builds it: 101 blends on an arc from ridge to identity,
    linear and mlp near ridge, and (``shift``) x + b·mean answer from identity down towards mean."""
    a = np.linspace(0, 1, 101)
    arc = zip(0.37 - 0.09 * a + 0.03 * np.sin(np.pi * a), 0.07 + 0.07 * a + 0.05 * np.sin(np.pi * a))
    points = {"identity": (0.28, 0.14), "mean": mean, "ridge": (0.37, 0.07), "linear": (0.362, 0.078),
              "mlp": (0.366, 0.074), **{f"blend@{w:g}": (float(c), float(m)) for w, (c, m) in zip(a, arc)}}
    b = np.arange(13) / 4
    shifted = {f"shift@{w:g}": (0.28 + 0.04 * np.sin(0.8 * np.pi * w / 3), 0.14 - 0.035 * w) for w in b}
    points.update(shifted if shift else {})
    return {"split": "test", "blend": [n for n in points if n.startswith("blend@")], "chosen": "blend@0.42",
            "points": {"test": {"cube": cube, **points}}, **({"shift": list(shifted)} if shift else {}),
            **frontier_report(points, cube)}


def render_frontier(curves, tmp_path):
    """The axes, each text's own extent (not its leader line) and the renderer, after drawing."""
    fig = plots.frontier(curves, tmp_path / "frontier.png", tmp_path / "frontier.csv", "t")
    canvas = FigureCanvasAgg(fig)  # the saved figure is closed: draw it again as it was saved
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    return ax, [(t, Text.get_window_extent(t, renderer)) for t in ax.texts], renderer


def markers_at(ax, renderer, points) -> list[Bbox]:
    """The display boxes of the scatter markers drawn at any of ``points``."""
    boxes = []
    for markers in ax.collections:
        half = renderer.points_to_pixels(np.sqrt(markers.get_sizes()) / 2)
        for xy, h in zip(markers.get_offsets(), np.broadcast_to(half, len(markers.get_offsets()))):
            if any(np.allclose(xy, p) for p in points):
                x, y = ax.transData.transform(xy)
                boxes.append(Bbox.from_extents(x - h, y - h, x + h, y + h))
    return boxes


FRONTIER_CASES = {
    "dominated by ten blends": {},
    "outside the frontier": {"cube": (0.36, 0.16)},
    "mean in the frame": {"mean": (0.33, 0.10)},
    "with the shift family": {"shift": True},
}


def framed_baselines(ax, points) -> set[str]:
    """The baselines inside the axes' limits (``mean`` usually is not)."""
    low, high = np.array([ax.get_xlim(), ax.get_ylim()]).T
    return {n for n in ("identity", "mean", "ridge", "linear", "mlp") if all((low <= points[n]) & (points[n] <= high))}


@pytest.mark.parametrize("case", FRONTIER_CASES)
def test_frontier_no_label_overlaps_another_or_a_named_points_marker(tmp_path, case):
    curves = frontier_curves(**FRONTIER_CASES[case])
    ax, texts, renderer = render_frontier(curves, tmp_path)
    for i, (text, box) in enumerate(texts):
        others = [o.get_text() for o, b in texts[i + 1:] if box.overlaps(b)]
        assert not others, f"{text.get_text()!r} overlaps {others}"
    points = curves["points"]["test"]
    named = markers_at(ax, renderer, [points[n] for n in [*framed_baselines(ax, points), "blend@0.42", "cube"]])
    for text, box in texts:
        assert box.count_overlaps(named) == 0, f"{text.get_text()!r} overlaps a named point's marker"


@pytest.mark.parametrize("case", FRONTIER_CASES)
def test_frontier_labels_and_marks_every_named_point_but_not_each_blend(tmp_path, case):
    curves = frontier_curves(**FRONTIER_CASES[case])
    ax, texts, renderer = render_frontier(curves, tmp_path)
    points = curves["points"]["test"]
    framed = framed_baselines(ax, points)
    assert framed >= {"identity", "ridge", "linear", "mlp"} and ("mean" in framed) == (case == "mean in the frame")
    named = {*framed, "blend@0.42", "cube"}
    labelled = {n for n in named for t, _ in texts if t.get_text().startswith(n) and getattr(t, "xy", 0) == points[n]}
    assert labelled == named
    assert len(markers_at(ax, renderer, [points[n] for n in named])) >= len(named)
    if curves["dominated_by"]:
        assert any(t.get_text() == "blend@0.5…0.59 (10 weights)" for t, _ in texts)
    else:
        assert sum(t.get_text().endswith("(nearest)") for t, _ in texts) == 1
    assert sum(t.get_text().startswith("blend@") for t, _ in texts) == 2  # the chosen, and the range or the nearest
    assert len(texts) <= 16  # the named points, a few family ticks and the note: not 101 blends


def test_frontier_draws_the_shift_family_only_when_the_report_has_it(tmp_path):
    ax, texts, _ = render_frontier(frontier_curves(shift=True), tmp_path)
    lines = {line.get_label(): line for line in ax.get_lines()}
    blend, shift = lines["blend (1−a)·ridge + a·input"], lines["x + b·mean answer"]
    assert (shift.get_color(), shift.get_linestyle()) != (blend.get_color(), blend.get_linestyle())
    assert "x + b·mean answer" in legend_labels(ax)
    assert any(t.get_text().startswith("b=") for t, _ in texts) and any(t.get_text().startswith("a=") for t, _ in texts)

    old = frontier_curves()
    del old["chosen"]  # a report from before evaluate named the chosen blend still renders
    ax, texts, _ = render_frontier(old, tmp_path)
    assert "x + b·mean answer" not in legend_labels(ax) + [line.get_label() for line in ax.get_lines()]
    assert not any(t.get_text().startswith(("b=", "shift@")) or "chosen" in t.get_text() for t, _ in texts)
    rows = (tmp_path / "frontier.csv").read_text().splitlines()
    assert rows[0] == "model,cosine,mrr,on_frontier" and rows[1].startswith("cube,") and len(rows) == 1 + 1 + 5 + 101
