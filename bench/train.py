"""Benchmark: how fast the cube trains, before and after the fast kernel, against the machine's matmul speed.

In one run, in interleaved rounds (the machine is shared, so each figure is the best of its
rounds and the ratios compare figures measured minutes apart, under the same load):
- the cube's training throughput (samples/s of forward + backward + AdamW step, params.yaml's
  cube and batch size) with the original conv formulation (bench/reference_cube.py, "before")
  and with the fast kernel in cubecore/model/cube.py ("after"), the latter also under bf16 autocast;
- achieved FLOP/s, counting useful FLOPs only: 3 x ``flops_per_sample`` (the matmuls the fast
  kernel runs; the same count for "before", whose 27-tap convolution does more work than that);
- a dense square matmul doing the FLOPs of one training step, in fp32 and bf16;
- the equal-size MLP baseline's throughput, for scale.

    .venv/bin/python bench/train.py [--rounds 3] [--batches 20] [--compile] [--out bench/results/train.json]

``--compile`` adds the fast kernel under ``torch.compile`` (inductor), in fp32 and under bf16
autocast; compilation time (the warm-up steps) is logged, not counted in samples/s.
"""
from __future__ import annotations

import argparse
import copy
import logging
import resource
import time

import torch
from reference_cube import ReferenceCube

from cubecore.core.artifacts import write_json
from cubecore.core.config import load_params
from cubecore.evaluation.baselines import ResidualMLP
from cubecore.model.cube import CubicCore
from cubecore.model.inference import parameter_count
from cubecore.training.losses import combined_loss

log = logging.getLogger("bench.train")


def training_step(model: torch.nn.Module, batch: int, dim: int, loss_weights, bf16: bool = False):
    """A closure running one full training step on fixed random unit vectors."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.nn.functional.normalize(torch.randn(batch, dim), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(batch, dim), dim=-1)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model(x)
        loss, _ = combined_loss(pred.float(), y, loss_weights)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up
        step()
    return step


def rate(step, calls: int) -> float:
    """Calls per second of ``step``."""
    started = time.perf_counter()
    for _ in range(calls):
        step()
    return calls / (time.perf_counter() - started)


def dense_matmul(flops_per_call: float, dtype: torch.dtype):
    """A square matmul of about ``flops_per_call`` FLOPs, and its exact FLOPs."""
    n = max(64, round((flops_per_call / 2) ** (1 / 3)))
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return (lambda: a @ b), 2 * n ** 3, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dim", type=int, default=384, help="teacher dimension (384 = MiniLM)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each figure is its best")
    parser.add_argument("--batches", type=int, default=20, help="training steps timed per model and round")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--compile", action="store_true", help="also time the fast kernel under torch.compile")
    parser.add_argument("--out", default="bench/results/train.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    torch.manual_seed(params.base.seed)
    batch, loss = params.train.batch_size, params.train.loss
    cube = CubicCore(params.cube, args.dim)
    flops = cube.flops_per_sample()
    log.info("cube: %d parameters, %.2f MFLOP per sample forward (useful), batch %d, %d threads",
             parameter_count(cube), flops / 1e6, batch, torch.get_num_threads())
    mlp = ResidualMLP(args.dim, ResidualMLP.hidden_for(args.dim, parameter_count(cube)))
    steps = {
        "before": training_step(ReferenceCube(copy.deepcopy(cube)), batch, args.dim, loss),
        "after": training_step(copy.deepcopy(cube), batch, args.dim, loss),
        "after_bf16": training_step(copy.deepcopy(cube), batch, args.dim, loss, bf16=True),
        "mlp": training_step(mlp, batch, args.dim, loss),
    }
    if args.compile:
        started = time.perf_counter()
        steps["after_compiled"] = training_step(torch.compile(copy.deepcopy(cube)), batch, args.dim, loss)
        steps["after_compiled_bf16"] = training_step(torch.compile(copy.deepcopy(cube)), batch, args.dim, loss,
                                                     bf16=True)
        log.info("torch.compile: %.1f s for the warm-up steps of both (compilation)", time.perf_counter() - started)
    dense = {name: dense_matmul(3 * flops * batch, dtype)
             for name, dtype in (("dense_fp32", torch.float32), ("dense_bf16", torch.bfloat16))}
    best = dict.fromkeys([*steps, *dense], 0.0)
    for round_ in range(args.rounds):
        for name, step in steps.items():
            best[name] = max(best[name], rate(step, args.batches) * batch)  # samples/s
        for name, (call, call_flops, _) in dense.items():
            best[name] = max(best[name], rate(call, args.batches) * call_flops)  # FLOP/s
        log.info("round %d: %s", round_ + 1, {k: round(v) for k, v in best.items()})

    def cube_row(name: str, dense_name: str) -> dict:
        flop_rate = best[name] * 3 * flops
        return {"samples_per_second": round(best[name], 1), "gflops": round(flop_rate / 1e9, 2),
                "of_dense": round(flop_rate / best[dense_name], 3), "dense": dense_name,
                "speedup_vs_before": round(best[name] / best["before"], 2)}

    results = {
        "threads": torch.get_num_threads(), "batch_size": batch, "rounds": args.rounds,
        "cube_parameters": parameter_count(cube), "cube_flops_per_sample": flops,
        "before": cube_row("before", "dense_fp32"), "after": cube_row("after", "dense_fp32"),
        "after_bf16": cube_row("after_bf16", "dense_bf16"),
        **({"after_compiled": cube_row("after_compiled", "dense_fp32"),
            "after_compiled_bf16": cube_row("after_compiled_bf16", "dense_bf16")} if args.compile else {}),
        "dense_matmul_n": dense["dense_fp32"][2],
        "dense_fp32_gflops": round(best["dense_fp32"] / 1e9, 2),
        "dense_bf16_gflops": round(best["dense_bf16"] / 1e9, 2),
        "mlp_samples_per_second": round(best["mlp"], 1),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    write_json(args.out, results)
    print(f"{'cube training':22s} {'samples/s':>10s} {'GFLOP/s':>8s} {'% of dense':>11s} {'vs before':>10s}")
    for name, label in (("before", "before (27-tap conv)"), ("after", "after (fp32)"), ("after_bf16", "after (bf16 autocast)"),
                        ("after_compiled", "after (torch.compile)"), ("after_compiled_bf16", "after (compile, bf16)")):
        if name not in results:
            continue
        row = results[name]
        print(f"{label:22s} {row['samples_per_second']:10.1f} {row['gflops']:8.2f} "
              f"{row['of_dense']:10.1%}  {row['speedup_vs_before']:9.2f}x   (vs {row['dense']})")
    print(f"dense matmul n={results['dense_matmul_n']}: fp32 {results['dense_fp32_gflops']:.2f} GFLOP/s, "
          f"bf16 {results['dense_bf16_gflops']:.2f} GFLOP/s")
    print(f"equal-size MLP {best['mlp']:10.1f} samples/s  ({best['mlp'] / best['after']:.1f}x the fast cube per sample)")
    print(f"peak memory {results['peak_memory_mb']:.0f} MB")


if __name__ == "__main__":
    main()
