"""The page `dvc plots show` writes with the project's template: Vega inline, no remote script,
and the curves drawn by a headless Chromium with its networking off (real DVC, real browser)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from cubecore.cli import plots_page

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
DVC_YAML = """\
plots:
  - Recall at k:
      template: linear
      x: k
      y:
        curve.csv: [cube, ridge]
"""


@pytest.fixture(scope="module")
def shown(tmp_path_factory) -> Path:
    """``dvc plots show`` in a DVC repository with this project's .dvc/config and page template."""
    root = tmp_path_factory.mktemp("plots")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(root.parent / "dvc-site")}
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "-q", "--no-scm"], cwd=root, env=env, check=True)
    for name in ("config", Path(plots_page.PAGE).name):
        shutil.copy(REPO / ".dvc" / name, root / ".dvc" / name)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "curve.csv").write_text("k,cube,ridge\n" + "".join(f"{k},{1 - 0.8 / k:.3f},{0.4 - 0.3 / k:.3f}\n"
                                                              for k in range(1, 21)))  # two curves far apart
    subprocess.run([dvc, "plots", "show", "-o", "shown"], cwd=root, env=env, check=True, capture_output=True)
    return root / "shown" / "index.html"


def test_the_committed_page_is_the_generated_one_and_dvc_uses_it():
    from dvc.config import Config

    assert (REPO / plots_page.PAGE).read_text(encoding="utf-8") == plots_page.page()
    configured = Config(dvc_dir=str(REPO / ".dvc"), validate=False)["plots"]["html_template"]
    assert (REPO / ".dvc" / configured).resolve() == (REPO / plots_page.PAGE).resolve()


def test_the_shown_page_loads_no_remote_script(shown):
    html = shown.read_text(encoding="utf-8")
    assert "vegaEmbed('#" in html and "window.vegaEmbed=" in html  # the plot, and the library inline
    assert not [tag for tag in re.findall(r"<script\b[^>]*>", html) if "src" in tag]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)


def chromium(*flags: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", "--virtual-time-budget=20000", *flags],
                          capture_output=True, text=True, timeout=180, check=True)


def curves_across(mask: np.ndarray) -> int:
    """How many separate lines of ``mask``'s pixels cross the right third of its widest
    horizontal run (the plot area; the legend's symbols stand apart to its right)."""
    columns = np.flatnonzero(mask.any(axis=0))
    if not len(columns):
        return 0
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 5) + 1)
    plot = max(runs, key=len)
    right = mask[:, plot[0] + 2 * len(plot) // 3:plot[-1] + 1]
    rows = np.flatnonzero(right.any(axis=1))
    return 1 + int((np.diff(rows) > 20).sum())


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)")
def test_chromium_draws_both_curves_offline(shown, tmp_path):
    from dvc_render.vega import OPTIONAL_ANCHOR_RANGES

    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=900,700", shown.as_uri(), profile=tmp_path / "profile")
    pixels = np.round(imread(shot)[..., :3] * 255).astype(int)
    first = OPTIONAL_ANCHOR_RANGES["color"][0]  # DVC's colour of the first revision, the workspace
    colour = np.array([int(first[i:i + 2], 16) for i in (1, 3, 5)])
    drawn = np.abs(pixels - colour).max(axis=-1) <= 40
    assert drawn.sum() > 300 and curves_across(drawn) == 2, f"{drawn.sum()} pixels of {first}"
    dom = chromium("--dump-dom", shown.as_uri(), profile=tmp_path / "profile").stdout
    assert re.search(r'<(canvas|svg)[^>]*class="marks"', dom), dom[-2000:]
