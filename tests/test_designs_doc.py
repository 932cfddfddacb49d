"""docs/designs-<data>.md is generated from its committed study, docs/results/designs-<data>.json."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("data", ["default", "full"])
def test_the_designs_page_regenerates_from_its_data(tmp_path, data):
    out = tmp_path / "designs.md"
    subprocess.run([sys.executable, "bench/designs.py", "--from", f"docs/results/designs-{data}.json",
                    "--markdown", str(out)], cwd=REPO, check=True)
    assert out.read_text(encoding="utf-8") == (REPO / f"docs/designs-{data}.md").read_text(encoding="utf-8")
