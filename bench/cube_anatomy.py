"""How much of a trained reshape-placement cube is its read-out bias? (not a test)

    .venv/bin/python bench/cube_anatomy.py [--root .] [--split test]

On a pipeline's ``data/extract``, ``data/split`` and ``models/cube``: cosine and MRR of the
cube, of the input plus a multiple of the mean training answer (``x + b·mean``, b on a grid),
and of the input plus the cube's own learned read-out bias alone (no lattice). If the last is
close to the cube, the lattice's dynamics add little beyond a constant offset.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from cubecore.evaluation import per_row
from cubecore.modes import get_mode
from cubecore.trainer import predict
from cubecore.training import load_model, load_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="project directory with data/ and models/cube")
    parser.add_argument("--split", default="test", help="split to score (test)")
    args = parser.parse_args()
    root = Path(args.root)
    torch.set_num_threads(1)
    cube, info = load_model(root / "models/cube")
    if info["cube"]["placement"] != "reshape":
        raise SystemExit("error: only a reshape-placement cube has a per-dimension read-out bias")
    _, splits = load_split(root / "data/extract", root / "data/split", get_mode(info["mode"]).pairing, 0.0, 0,
                          ("train", args.split))
    rows, mean = splits[args.split], splits["train"].targets[:].mean(0)
    candidates = {f"x + {b:g}·mean answer": rows.inputs + b * mean for b in (0.0, 0.25, 0.5, 1.0, 1.5)}
    candidates["x + the cube's read-out bias"] = rows.inputs + cube.placement.bias.detach()
    candidates["cube"] = predict(cube, rows.inputs)
    print(f"| predictor ({args.split}, {len(rows)} rows) | cosine | MRR |\n|---|---|---|")
    for name, pred in candidates.items():
        values = per_row(pred, rows)
        print(f"| {name} | {values['cosine'].mean():.4f} | {values['mrr'].mean():.4f} |")


if __name__ == "__main__":
    main()
