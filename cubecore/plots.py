"""Plots of the evaluation: PNGs (readable offline) and small CSVs for ``dvc plots``.

Every plot takes the models it is given (any names, any number) and draws the highlighted
one (``cube``) so it can be found at a glance: one strong colour, a thick line, drawn last
(on top) and listed first in the legend. Each function returns its (saved) figure.
"""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cubecore.artifacts import atomic_path  # noqa: E402
from cubecore.trainer import HIGHER_IS_BETTER  # noqa: E402

PANELS = {"loss": ("train_loss", "val_loss"), "cosine": ("val_cosine",), "retrieval": ("val_mrr", "val_recall@1")}
HIGHLIGHT = "cube"
HIGHLIGHT_COLOR = "#d62728"
# muted colours for everything else (tab10 without its red, which is the highlight's)
OTHER_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _save(fig, path: Path):
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return fig


def styles(names, highlight: str = HIGHLIGHT) -> dict[str, dict]:
    """Matplotlib keywords per model: the highlight bold and on top, the others thin and muted."""
    others = [n for n in names if n != highlight]
    style = {n: {"color": OTHER_COLORS[i % len(OTHER_COLORS)], "linewidth": 1.2, "alpha": 0.8, "zorder": 2}
             for i, n in enumerate(others)}
    if highlight in names:
        style[highlight] = {"color": HIGHLIGHT_COLOR, "linewidth": 2.8, "alpha": 1.0, "zorder": 5}
    return style


def drawing_order(names, highlight: str = HIGHLIGHT) -> list[str]:
    """The others first, the highlight last (so it is drawn on top)."""
    return [n for n in names if n != highlight] + [n for n in names if n == highlight]


def names_model(label: str, name: str) -> bool:
    """Whether a legend label (``name`` or ``name (mean 0.5)``) is that model's."""
    return label == name or label.startswith(f"{name} (")


def legend_first(ax, highlight: str = HIGHLIGHT, **kwargs) -> None:
    """A legend listing the highlighted model first, its label in bold."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: not names_model(labels[i], highlight))
    legend = ax.legend([handles[i] for i in order], [labels[i] for i in order], **kwargs)
    for text in legend.get_texts():
        if names_model(text.get_text(), highlight):
            text.set_fontweight("bold")


def read_tsv(path: Path) -> tuple[list[int], list[float]]:
    """DVCLive's ``step  <name>`` file."""
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    name = path.stem
    return [int(r["step"]) for r in rows], [float(r[name]) for r in rows]


def best_epoch(values: list[float], monitor: str) -> int:
    """The epoch (1-based) early stopping kept: the first best value of the monitor."""
    pick = np.argmax if HIGHER_IS_BETTER[monitor] else np.argmin
    return int(pick(values)) + 1


def training_curves(live_metrics_dir: Path, path: Path, title: str, monitor: str = "val_loss"):
    """The epochs' curves, with the best (early-stopping) epoch marked in every panel."""
    monitored = live_metrics_dir / f"{monitor}.tsv"
    best = best_epoch(read_tsv(monitored)[1], monitor) if monitored.exists() else None
    fig, axes = plt.subplots(1, len(PANELS), figsize=(13, 3.8))
    for ax, (label, names) in zip(axes, PANELS.items()):
        for name in names:
            tsv = live_metrics_dir / f"{name}.tsv"
            if tsv.exists():
                steps, values = read_tsv(tsv)
                epochs = [s + 1 for s in steps]
                ax.plot(epochs, values, marker=".", label=name)
                if name == monitor and best is not None:
                    ax.plot([best], [values[epochs.index(best)]], marker="*", markersize=14, color="black",
                            linestyle="none", zorder=5)
        if best is not None:
            ax.axvline(best, color="black", linestyle="--", linewidth=1,
                       label=f"best epoch {best} (by {monitor})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def cosine_histogram(cosines: dict[str, np.ndarray], path: Path, title: str, highlight: str = HIGHLIGHT):
    fig, ax = plt.subplots(figsize=(7, 4.2))
    bins = np.linspace(-0.2, 1.0, 49)
    style = styles(cosines, highlight)
    for name in drawing_order(cosines, highlight):
        values = cosines[name]
        label = f"{name} (mean {values.mean():.3f})"
        if name == highlight:  # filled under its outline, so it stands out from the outlines
            ax.hist(values, bins=bins, histtype="stepfilled", color=style[name]["color"], alpha=0.15,
                    zorder=style[name]["zorder"])
        ax.hist(values, bins=bins, histtype="step", label=label, **style[name])
    ax.set_xlabel("cosine(prediction, true target)")
    ax.set_ylabel("validation rows")
    ax.set_title(title)
    legend_first(ax, highlight, fontsize=8)
    return _save(fig, path)


def recall_at_k(recall: dict[str, np.ndarray], png: Path, csv_path: Path, title: str, highlight: str = HIGHLIGHT):
    ks = np.arange(1, len(next(iter(recall.values()))) + 1)
    with atomic_path(csv_path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["k", *recall])
        for i, k in enumerate(ks):
            writer.writerow([int(k), *(round(float(r[i]), 4) for r in recall.values())])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    style = styles(recall, highlight)
    for name in drawing_order(recall, highlight):
        ax.plot(ks, recall[name], label=name, **style[name])
    ax.set_xscale("log")
    ax.set_xlabel("k (log scale)")
    ax.set_ylabel("Recall@k (true target in top k)")
    ax.set_title(title)
    legend_first(ax, highlight, fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, png)


def headline_bars(metrics: dict, models, headline, path: Path, title: str, split: str = "val",
                  highlight: str = HIGHLIGHT):
    """One group of bars per metric, each bar labelled with its value; under each group, the
    highlighted model minus the best other model (green when it wins)."""
    fig, ax = plt.subplots(figsize=(max(9, 1.6 * len(headline) * len(models) / 4), 4.6))
    width = 0.8 / len(models)
    x = np.arange(len(headline))
    style = styles(models, highlight)
    for i, name in enumerate(models):
        values = [metrics[name][split][m] for m in headline]
        bold = name == highlight
        bars = ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name, color=style[name]["color"],
                      alpha=1.0 if bold else 0.75, edgecolor="black" if bold else "none", linewidth=1.2)
        ax.bar_label(bars, fmt="%.3f", rotation=90, padding=2, fontsize=7, fontweight="bold" if bold else None)
    others = [n for n in models if n != highlight]
    if highlight in models and others:
        gaps = [metrics[highlight][split][m] - max(metrics[n][split][m] for n in others) for m in headline]
        ax.set_xticks(x, [f"{m}\n{highlight} − best other: {g:+.4f}" for m, g in zip(headline, gaps)], fontsize=8)
        for label, gap in zip(ax.get_xticklabels(), gaps):
            label.set_color("#2ca02c" if gap > 0 else "black")
    else:
        ax.set_xticks(x, headline, fontsize=8)
    top = max(metrics[n][split][m] for n in models for m in headline)
    ax.set_ylim(0, top * 1.18 + 0.02)  # room for the value labels
    ax.set_ylabel(f"{split} score (higher is better)")
    ax.set_title(title)
    legend_first(ax, highlight, ncols=len(models), fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def frontier(report: dict, path: Path, csv_path: Path, title: str):
    """Cosine against MRR on the report split: every baseline, the blend curve, the frontier
    staircase, the cube; the points also go to ``csv_path`` (model, cosine, mrr, on_frontier).

    The axes frame the cube, the frontier and the blend curve; baselines far outside (e.g.
    ``mean``) are listed in a note instead of squeezing the interesting region."""
    pts = dict(report["points"][report["split"]])
    cube = pts.pop("cube")
    with atomic_path(csv_path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "cosine", "mrr", "on_frontier"])
        for name, (cos, mrr) in {"cube": cube, **pts}.items():
            writer.writerow([name, round(cos, 4), round(mrr, 4), name in report["frontier"]])
    blend = [n for n in report["blend"] if n in pts]
    framed = np.array([cube, *(pts[n] for n in report["frontier"]), *(pts[n] for n in blend)])
    low, high = framed.min(0), framed.max(0)
    pad = np.maximum(0.15 * (high - low), 0.01)
    low, high = low - pad, high + pad
    shown = {n: p for n, p in pts.items() if all(low <= p) and all(p <= high)}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.plot(*zip(*(pts[n] for n in blend)), ".-", color="tab:gray", alpha=0.6, label="blend (1−a)·ridge + a·input")
    xs, ys = zip(*(pts[n] for n in report["frontier"]))
    ax.step([low[0], *xs, xs[-1]], [ys[0], *ys, low[1]], where="pre", color="tab:red", linewidth=1.2,
             label="frontier of the baselines")
    singles = {p for n, p in pts.items() if n not in blend}
    for name, p in shown.items():  # blend@0 / blend@1 often sit exactly on ridge / identity
        if name not in blend or (name in report["frontier"] and p not in singles):
            ax.scatter(*p, s=30, color="tab:gray" if name in blend else "tab:blue", zorder=3)
            ax.annotate(name, p, textcoords="offset points", xytext=(4, 4), fontsize=8)
    verdict = "dominated" if report["dominated"] else "not dominated"
    ax.scatter(*cube, marker="*", s=220, color="tab:green", zorder=4,
               label=f"cube ({verdict}, margin {report['margin']:+.4f})")
    hidden = sorted(set(pts) - set(shown))
    if hidden:
        ax.text(0.99, 0.99, "off the chart: " + ", ".join(hidden), transform=ax.transAxes, ha="right",
                va="top", fontsize=8, color="tab:gray")
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xlabel("cosine to the true target (mean)")
    ax.set_ylabel("MRR of the true target")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")  # the dominated corner, usually empty
    ax.grid(alpha=0.3)
    return _save(fig, path)


def anatomy(data: dict, path: Path, title: str, sample: int = 20_000, seed: int = 0):
    """What the cube computes, on the report split. Left: the cube's output values against its
    trivial affine fit ``alpha * x + c`` (a seeded sample of values; on the diagonal when the
    fit explains the cube). Right: cosine and MRR of the cube beside its fits and its lattice
    switched off (0 steps), scored on the same rows."""
    report = data["report"]
    cube, trivial = data["cube"].numpy().ravel(), data["trivial"].numpy().ravel()
    pick = np.random.default_rng(seed).choice(len(cube), min(sample, len(cube)), replace=False)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    left.scatter(trivial[pick], cube[pick], s=2, alpha=0.3, color="tab:gray", rasterized=True)
    low, high = np.percentile(np.concatenate([cube[pick], trivial[pick]]), [0.1, 99.9])
    left.plot([low, high], [low, high], color=HIGHLIGHT_COLOR, linewidth=1.2, label="cube = fit")
    left.set_xlim(low, high)
    left.set_ylim(low, high)
    left.set_xlabel("α·x + c (fitted on train), one value per dim and row")
    left.set_ylabel("cube output")
    left.set_title(f"R² α·x + c {report['trivial']['r2']:.4f}, W·x + c {report['general']['r2']:.4f}", fontsize=10)
    left.legend(fontsize=8, loc="upper left")
    left.grid(alpha=0.3)
    names = {"cube": "cube", "general": "W·x + c", "trivial": "α·x + c", "lattice_off": "lattice off"}
    x = np.arange(2)
    width = 0.8 / len(names)
    for i, (key, label) in enumerate(names.items()):
        values = [report[key]["cosine"], report[key]["mrr"]]
        bars = right.bar(x + i * width - 0.4 + width / 2, values, width, label=label,
                         color=HIGHLIGHT_COLOR if key == "cube" else OTHER_COLORS[i % len(OTHER_COLORS)])
        right.bar_label(bars, fmt="%.3f", rotation=90, padding=2, fontsize=7)
    right.set_xticks(x, ["cosine", "MRR"])
    right.set_ylim(0, max(report[k][m] for k in names for m in ("cosine", "mrr")) * 1.25 + 0.02)
    shares = ", ".join(f"{s:.0%}" for s in report["step_share"])
    right.set_title(f"{data['split']}: each step's share of the change: {shares or 'no steps'}", fontsize=10)
    right.legend(fontsize=8, ncols=2, loc="upper right")
    right.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)
