"""bench/mutants.py follows the code: every named mutant's line is in its file exactly once, so a
move or an edit of the scoring code cannot leave the mutation run pointing at nothing."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import mutants  # noqa: E402


def test_every_mutant_targets_one_line_of_existing_code():
    stale = {m.name: (REPO / m.path).read_text(encoding="utf-8").count(m.old) if (REPO / m.path).exists() else "no file"
             for m in mutants.MUTANTS}
    assert {name: n for name, n in stale.items() if n != 1} == {}
