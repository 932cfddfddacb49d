"""Plots of the evaluation: PNGs (readable offline) and small CSVs for ``dvc plots``."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cubecore.artifacts import atomic_path  # noqa: E402

PANELS = {"loss": ("train_loss", "val_loss"), "cosine": ("val_cosine",), "retrieval": ("val_mrr", "val_recall@1")}


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def read_tsv(path: Path) -> tuple[list[int], list[float]]:
    """DVCLive's ``step  <name>`` file."""
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    name = path.stem
    return [int(r["step"]) for r in rows], [float(r[name]) for r in rows]


def training_curves(live_metrics_dir: Path, path: Path, title: str) -> None:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(13, 3.8))
    for ax, (label, names) in zip(axes, PANELS.items()):
        for name in names:
            tsv = live_metrics_dir / f"{name}.tsv"
            if tsv.exists():
                steps, values = read_tsv(tsv)
                ax.plot([s + 1 for s in steps], values, marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _save(fig, path)


def cosine_histogram(cosines: dict[str, np.ndarray], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    bins = np.linspace(-0.2, 1.0, 49)
    for name, values in cosines.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=1.6, label=f"{name} (mean {values.mean():.3f})")
    ax.set_xlabel("cosine(prediction, true target)")
    ax.set_ylabel("validation rows")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def recall_at_k(recall: dict[str, np.ndarray], png: Path, csv_path: Path, title: str) -> None:
    ks = np.arange(1, len(next(iter(recall.values()))) + 1)
    with atomic_path(csv_path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["k", *recall])
        for i, k in enumerate(ks):
            writer.writerow([int(k), *(round(float(r[i]), 4) for r in recall.values())])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, values in recall.items():
        ax.plot(ks, values, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k (log scale)")
    ax.set_ylabel("Recall@k (true target in top k)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, png)


def headline_bars(metrics: dict, models: tuple[str, ...], headline: tuple[str, ...], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / len(models)
    x = np.arange(len(headline))
    for i, name in enumerate(models):
        values = [metrics[name]["val"][m] for m in headline]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name)
    ax.set_xticks(x, headline)
    ax.set_ylabel("validation score (higher is better)")
    ax.set_title(title)
    ax.legend(ncols=len(models), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def frontier(report: dict, path: Path, title: str) -> None:
    """Cosine against MRR: every baseline, the blend curve, the frontier staircase, the cube.

    The axes frame the cube, the frontier and the blend curve; baselines far outside (e.g.
    ``mean``) are listed in a note instead of squeezing the interesting region."""
    pts = {n: (p["cosine"], p["mrr"]) for n, p in report["points"].items()}
    cube = (report["cube"]["cosine"], report["cube"]["mrr"])
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
    _save(fig, path)
