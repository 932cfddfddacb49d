"""docs/designs-default.md is generated from the committed study, docs/results/designs-default.json."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_designs_page_regenerates_from_its_data(tmp_path):
    out = tmp_path / "designs.md"
    subprocess.run([sys.executable, "bench/designs.py", "--from", "docs/results/designs-default.json",
                    "--markdown", str(out)], cwd=REPO, check=True)
    assert out.read_text(encoding="utf-8") == (REPO / "docs/designs-default.md").read_text(encoding="utf-8")
