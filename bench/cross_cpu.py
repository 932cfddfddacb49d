"""Benchmark: how much the teacher's embeddings move when the CPU's kernels change.

A recompute on another x86 CPU runs other kernels: another vector width, bf16 done natively
or emulated. This runs the packaged teacher on the first N distinct chitchat texts once per
kernel choice, each in a fresh process, with PyTorch's and oneDNN's own switches
(``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``) standing in for the other CPU, in fp32 and
in bf16, and prints each choice's largest change against this CPU's default kernels (max
|Δ| of any value, and the lowest cosine between a text's two vectors). The metrics are
written with 4 decimals: a change far below 1e-4 leaves them as they are.

Run:  python bench/cross_cpu.py --texts 2000   (writes bench/results/cross_cpu.json)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cubecore.core.artifacts import write_json

KERNELS = {  # name: environment of the process that embeds
    "this CPU (default kernels)": {},
    "AVX2 only (no AVX-512)": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "AVX-512 without bf16 units": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
}


def embed(texts: int, precision: str, out: Path) -> None:
    """The child process: embed the first ``texts`` distinct chitchat texts, save them to ``out``."""
    import torch

    from cubecore.core.config import TeacherParams
    from cubecore.data.corpora import chitchat_corpus
    from cubecore.data.extraction import index_texts
    from cubecore.data.teacher import Teacher

    torch.set_num_threads(1)
    distinct, _ = index_texts(chitchat_corpus().pairs)
    teacher = Teacher(TeacherParams(device="cpu", precision=precision))
    teacher.fidelity = 1.0  # the bf16 fidelity gate is not the question here: compare the raw vectors
    np.save(out, teacher.embed(distinct[:texts], progress=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000, help="distinct chitchat texts to embed (2000)")
    parser.add_argument("--child", nargs=2, metavar=("PRECISION", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        embed(args.texts, args.child[0], Path(args.child[1]))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            vectors = {}
            for name, env in KERNELS.items():
                out = Path(tmp) / f"{precision}-{len(vectors)}.npy"
                subprocess.run([sys.executable, __file__, "--texts", str(args.texts), "--child", precision, str(out)],
                               env={**os.environ, **env}, check=True)
                vectors[name] = np.load(out)
            base = vectors[next(iter(KERNELS))]
            for name, v in vectors.items():
                cos = (v * base).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(base, axis=1)
                results[f"{precision}, {name}"] = {"max_abs_change": float(np.abs(v - base).max()),
                                                   "min_cosine": float(cos.min())}
                print(f"{precision:5} {name:30} max |Δ| {np.abs(v - base).max():.2e}  min cosine {cos.min():.6f}")
    write_json(Path("bench/results/cross_cpu.json"), {"texts": args.texts, "kernels": KERNELS, "results": results})
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
