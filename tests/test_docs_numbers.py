"""Result numbers in prose come from committed files: every figure with 4 decimals in a README or
docs section that names its sources (an HTML comment ``<!-- numbers from: a.json b.json -->``)
must be a value of one of those files (rounded to 4 decimals), or a difference of two of them,
and every count written with a thousands separator (``18,316``) must be one of their values."""
import itertools
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = re.compile(r"<!-- numbers from: (?P<files>[^>]+?) -->(?P<body>.*?)(?=\n#+ |\Z)", re.S)
FIGURE = re.compile(r"(?<![\w.])[-+−]?\d+\.\d{4}(?!\d)")
COUNT = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?![\d,])")


def numbers(tree) -> set[float]:
    """Every number in a JSON tree, rounded to 4 decimals."""
    if isinstance(tree, dict):
        return set().union(*map(numbers, tree.values())) if tree else set()
    if isinstance(tree, list):
        return set().union(*map(numbers, tree)) if tree else set()
    return {round(float(tree), 4)} if isinstance(tree, (int, float)) and not isinstance(tree, bool) else set()


def sections():
    for doc in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for match in SOURCES.finditer(doc.read_text(encoding="utf-8")):
            yield pytest.param(doc, match["files"].split(), match["body"], id=f"{doc.name}:{match['files']}")


@pytest.mark.parametrize("doc, files, body", list(sections()))
def test_every_figure_comes_from_its_sources(doc, files, body):
    known = set().union(*(numbers(json.loads((REPO / f).read_text(encoding="utf-8"))) for f in files))
    differences = {round(a - b, 4) for a, b in itertools.permutations(known, 2)} if len(known) < 3000 else set()
    missing = [f for f in FIGURE.findall(body)
               if round(abs(float(f.replace("−", "-"))), 4) not in known | {abs(d) for d in differences}
               and round(float(f.replace("−", "-")), 4) not in known]
    missing += [c for c in COUNT.findall(body) if int(c.replace(",", "")) not in known]
    assert not missing, f"{doc.name}: figures not in {files}: {missing}"


def test_the_readme_cites_its_sources():
    assert any(doc.name == "README.md" for doc, *_ in (p.values for p in sections()))
