"""Benchmark: how fast the cube trains, and how close it runs to the machine's matmul speed.

In one run on this machine: the cube's training throughput (samples/s, forward + backward +
AdamW step) with the params in params.yaml, its achieved FLOP/s (3 x forward FLOPs per
sample), a dense square matmul doing the same FLOPs per call as one training step, and the
equal-size MLP baseline's throughput for scale. Prints the ratios.

    .venv/bin/python bench/train.py [--batches 30] [--out bench/results/train.json]
"""
from __future__ import annotations

import argparse
import logging
import resource
import time

import torch

from cubecore.artifacts import write_json
from cubecore.baselines import ResidualMLP
from cubecore.config import load_params
from cubecore.cube import CubicCore
from cubecore.losses import combined_loss

log = logging.getLogger("bench.train")


def train_throughput(model: torch.nn.Module, batch: int, dim: int, batches: int, loss_weights) -> float:
    """Samples per second of full training steps on random unit vectors."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.nn.functional.normalize(torch.randn(batch, dim), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(batch, dim), dim=-1)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss, _ = combined_loss(model(x), y, loss_weights)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(batches):
        step()
    return batches * batch / (time.perf_counter() - started)


def matmul_flops(flops_per_call: float, repeats: int = 20) -> tuple[float, int]:
    """FLOP/s of a square float32 matmul doing about ``flops_per_call`` FLOPs."""
    n = max(64, round((flops_per_call / 2) ** (1 / 3)))
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * n ** 3 / (time.perf_counter() - started), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dim", type=int, default=384, help="teacher dimension (384 = MiniLM)")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--out", default="bench/results/train.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = load_params(args.params)
    torch.manual_seed(params.base.seed)
    batch = params.train.batch_size
    cube = CubicCore(params.cube, args.dim)
    log.info("cube: %d parameters, %.1f MFLOP per sample forward", cube.parameter_count(),
             cube.flops_per_sample() / 1e6)
    cube_rate = train_throughput(cube, batch, args.dim, args.batches, params.train.loss)
    cube_flops = cube_rate * 3 * cube.flops_per_sample()
    dense, n = matmul_flops(3 * cube.flops_per_sample() * batch)
    mlp = ResidualMLP(args.dim, ResidualMLP.hidden_for(args.dim, cube.parameter_count()))
    mlp_rate = train_throughput(mlp, batch, args.dim, args.batches, params.train.loss)
    results = {
        "threads": torch.get_num_threads(), "batch_size": batch, "cube_parameters": cube.parameter_count(),
        "cube_samples_per_second": round(cube_rate, 1), "cube_gflops": round(cube_flops / 1e9, 2),
        "dense_matmul_n": n, "dense_matmul_gflops": round(dense / 1e9, 2),
        "cube_vs_dense_flops": round(cube_flops / dense, 3),
        "mlp_samples_per_second": round(mlp_rate, 1),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    write_json(args.out, results)
    print(f"cube training      {cube_rate:10.1f} samples/s   {cube_flops / 1e9:6.2f} GFLOP/s")
    print(f"dense matmul n={n:<4d}                      {dense / 1e9:6.2f} GFLOP/s")
    print(f"cube / dense FLOP/s = {cube_flops / dense:.1%} (target >= 30%)")
    print(f"equal-size MLP     {mlp_rate:10.1f} samples/s  (cube is {mlp_rate / cube_rate:.1f}x slower per sample)")
    print(f"peak memory {results['peak_memory_mb']:.0f} MB")


if __name__ == "__main__":
    main()
