"""Mutation run over the scoring code: do the tests notice when it is wrong? (not a test).

    .venv/bin/python bench/mutants.py               # every mutant, one at a time
    .venv/bin/python bench/mutants.py --jobs 2      # two at a time
    .venv/bin/python bench/mutants.py --only blend  # the mutants whose name contains "blend"
    .venv/bin/python bench/mutants.py --list        # names and targets only, nothing run
    .venv/bin/python bench/mutants.py --only bootstrap --tests tests/test_bootstrap.py  # one file's kills

Each mutant below is one small, named change to one of the modules that score models
(cubecore/evaluation/run.py, baselines.py, metrics.py, frontier.py, bootstrap.py, gates.py),
made by exact string replacement. The repository's files (``git ls-files``: tracked and
untracked but not ignored, so new tests count before they are committed) are copied into a
temporary directory once per worker; each mutant is applied there, the fast test files in
``TESTS`` run (``pytest -x -q -n 0``, with a timeout), and the file is restored. A mutant is
*killed* when the tests fail (or time out), *survived* when they pass.

Mutants marked ``equivalent`` are changes that cannot alter any output (the reason is given):
they are listed so the claim is checked on every run; one of them being killed, or any
other mutant surviving, is reported. Exit status: 2 if a mutant's target string is not
found exactly once in its file (the list must follow the code), 1 if the unmutated copy
fails its tests or a non-equivalent mutant survives, else 0.

docs/mutants.md records the kill rate and what each mutant is killed by.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# fast unit tests first: with -x a killed mutant usually stops within seconds
TESTS = ["tests/test_frontier.py", "tests/test_bootstrap.py", "tests/test_gates.py", "tests/test_metrics.py",
         "tests/test_baselines.py", "tests/test_evaluation.py"]
TIMEOUT = 600


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    equivalent: str = ""  # why it cannot change any output (expected to survive)


E, F, B, M, BL, G = (f"cubecore/{m}.py" for m in ("evaluation/run", "core/frontier", "evaluation/bootstrap",
                                                    "evaluation/scoring", "evaluation/baselines", "core/gates"))

MUTANTS = [
    # --- evaluation.py: what is chosen on val, the blend points, the paired bootstrap -----------------
    Mutant("best-baseline-chosen-on-report-split", E, 'key=lambda b: metrics[b]["val"][m])',
           'key=lambda b: metrics[b][evaluated[-1]][m])'),
    Mutant("best-baseline-is-the-worst", E, "best = {m: max(BASELINES", "best = {m: min(BASELINES"),
    Mutant("blend-weight-chosen-on-report-split", E,
           'chosen_blend = chosen_on_val(values["val"], family)',
           'chosen_blend = chosen_on_val(blend_rows(family, splits[evaluated[-1]]), family)'),
    Mutant("blend-weight-is-the-worst", E, "    return max(family, key=lambda n: values_val",
           "    return min(family, key=lambda n: values_val"),
    Mutant("blend-rows-a-and-1-minus-a-swapped", E, "(1 - blend.a) * unit_ridge + blend.a * unit_input",
           "blend.a * unit_ridge + (1 - blend.a) * unit_input"),
    Mutant("blend-ranks-weights-flipped", E, "[blend.a for blend in blends]", "[1 - blend.a for blend in blends]"),
    Mutant("blend-ranks-parts-swapped", E, "mixed_retrieval_ranks(unit_ridge, unit_input,",
           "mixed_retrieval_ranks(unit_input, unit_ridge,"),
    Mutant("bootstrap-best-baseline-unpaired", E, "low, high = interval(diff_means[:, i])",
           'low, high = interval(resample_means(values["cube"][m][:, None], resamples, seed)[:, 0]'
           ' - resample_means(values[best[m]][m][:, None], resamples, seed + 1)[:, 0])'),
    Mutant("bootstrap-columns-unpaired", E,
           "means = resample_means(np.concatenate([diffs, cos, mrr], axis=1), resamples, seed)",
           "means = np.stack([resample_means(column[:, None], resamples, seed + j)[:, 0]"
           " for j, column in enumerate(np.concatenate([diffs, cos, mrr], axis=1).T)], axis=1)"),
    Mutant("bootstrap-difference-reversed", E, 'values["cube"][m] - values[best[m]][m] for m in INTERVALS',
           'values[best[m]][m] - values["cube"][m] for m in INTERVALS'),
    Mutant("bootstrap-columns-split-off-by-one", E, "len(INTERVALS) + cos.shape[1]]",
           "len(INTERVALS) + cos.shape[1] - 1]"),
    Mutant("bootstrap-margin-counts-the-cube-as-a-baseline", E,
           "cos_means[:, 1:], mrr_means[:, 1:]", "cos_means[:, 0:], mrr_means[:, 0:]"),
    Mutant("cube-vs-best-reversed", E, 'metrics["cube"][split][m] - metrics[best[m]][split][m]',
           'metrics[best[m]][split][m] - metrics["cube"][split][m]'),
    Mutant("report-split-is-the-first", E, "report = evaluated[-1]", "report = evaluated[0]"),
    Mutant("trivial-recall-misses-k-equal-candidates", E, "k >= candidates for k", "k > candidates for k"),
    Mutant("trivial-recall-counts-rows-not-candidates", E, "candidates = len(np.unique(rows.target_ids))",
           "candidates = len(rows.target_ids)"),
    Mutant("candidates-metric-counts-rows", E, '"candidates": len(np.unique(rows.target_ids))',
           '"candidates": len(rows.target_ids)'),
    Mutant("row-recall-at-1-strict", E, '"recall@1": (ranks <= 1)', '"recall@1": (ranks < 1)'),
    Mutant("row-mrr-off-by-one", E, '"mrr": 1.0 / ranks', '"mrr": 1.0 / (ranks + 1)'),
    Mutant("frontier-points-axes-swapped", E,
           'float(values[n]["cosine"].mean()), float(values[n]["mrr"].mean())',
           'float(values[n]["mrr"].mean()), float(values[n]["cosine"].mean())'),
    # --- frontier.py ------------------------------------------------------------------------------
    Mutant("dominates-needs-more-cosine", F, "q[0] >= p[0]", "q[0] > p[0]"),
    Mutant("dominates-needs-more-mrr", F, "q[1] >= p[1]", "q[1] > p[1]"),
    Mutant("a-point-dominates-itself", F, " and tuple(q) != tuple(p)", ""),
    Mutant("front-sorted-backwards", F, "key=lambda n: (points[n][0], -points[n][1]))",
           "key=lambda n: (points[n][0], -points[n][1]), reverse=True)"),
    Mutant("front-tie-order", F, "(points[n][0], -points[n][1])", "(points[n][0], points[n][1])",
           equivalent="two frontier points with equal cosine are equal on MRR too (else one dominates the "
                      "other), so the second key never separates them; sorted() is stable either way"),
    Mutant("margin-min-of-the-two-metrics", F, "term = np.max(ahead, axis=0)", "term = np.min(ahead, axis=0)"),
    Mutant("margin-easiest-baseline", F, ".min(axis=-1)", ".max(axis=-1)"),
    Mutant("margin-sign", F, "-np.inf, cube - base))", "-np.inf, base - cube))"),
    Mutant("dominated-the-wrong-way-round", F, '"dominated": any(dominates(p, cube)',
           '"dominated": any(dominates(cube, p)'),
    # --- bootstrap.py -----------------------------------------------------------------------------
    Mutant("bootstrap-never-draws-the-last-row", B, "rng.integers(0, n, (r, n))", "rng.integers(0, n - 1, (r, n))"),
    Mutant("bootstrap-never-draws-the-first-row", B, "rng.integers(0, n, (r, n))", "rng.integers(1, n, (r, n))"),
    Mutant("bootstrap-resamples-share-bins", B, " + n * np.arange(r)[:, None]", ""),
    Mutant("bootstrap-mean-divides-by-n-1", B, "counts @ values / n", "counts @ values / (n - 1)"),
    Mutant("bootstrap-last-chunk-short", B, "r = min(chunk, resamples - start)", "r = min(chunk - 1, resamples - start)"),
    Mutant("interval-one-tail-too-wide", B, "tail = (1 - level) / 2 * 100", "tail = (1 - level) * 100"),
    Mutant("interval-asymmetric", B, "[tail, 100 - tail]", "[tail, 100 - tail / 2]"),
    Mutant("interval-level-90", B, "LEVEL = 0.95", "LEVEL = 0.9"),
    # --- metrics.py -------------------------------------------------------------------------------
    Mutant("ties-push-the-true-answer-down", M, "((ahead == 0).sum(1) + 1) / 2", "(ahead == 0).sum(1)"),
    Mutant("ties-favour-the-true-answer", M, "((ahead == 0).sum(1) + 1) / 2", "1"),
    Mutant("mixed-true-score-other-weight", M, ".sub_(torch.lerp(*true, a))", ".sub_(torch.lerp(*true, 1 - a))"),
    Mutant("mixed-scores-other-weight", M, "torch.lerp(*scores, a, out=mixed)", "torch.lerp(*scores, 1 - a, out=mixed)"),
    Mutant("recall-at-k-strict", M, "(ranks <= k).float().mean())", "(ranks < k).float().mean())"),
    Mutant("mrr-of-rank-plus-one", M, 'summary["mrr"] = float((1 / ranks).mean())',
           'summary["mrr"] = float((1 / (ranks + 1)).mean())'),
    Mutant("candidates-are-all-rows", M, "position), len(first_rows)", "position), len(position)"),
    Mutant("cosine-over-the-batch-axis", M, "F.cosine_similarity(pred, target, dim=-1)",
           "F.cosine_similarity(pred, target, dim=0)"),
    Mutant("rouge-reference-and-hypothesis-swapped", M, 'scorer.score(r, h)["rougeL"]', 'scorer.score(h, r)["rougeL"]',
           equivalent="ROUGE-L F1 = 2PR/(P+R) with P = LCS/len(h), R = LCS/len(r): swapping h and r swaps P "
                      "and R, and F1 is symmetric in them (both sides go through the same tokenizer)"),
    # --- baselines.py -----------------------------------------------------------------------------
    Mutant("blend-model-a-swapped", BL, "return (1 - self.a) * F.normalize(self.ridge(x), dim=-1) + self.a *",
           "return self.a * F.normalize(self.ridge(x), dim=-1) + (1 - self.a) *"),
    Mutant("blend-family-misses-a-1", BL, "for k in range(steps + 1)}", "for k in range(steps)}"),
    Mutant("ridge-picks-the-worst-alpha", BL, "best = max(alphas, key=held_cosine)", "best = min(alphas, key=held_cosine)"),
    Mutant("ridge-not-refitted-on-held-rows", BL, "return (fit + Moments.of(train.inputs, train.targets, held)).solve",
           "return (fit).solve"),
    Mutant("ridge-fit-skips-a-row", BL, "order[max(1, len(train) // 10):]", "order[max(1, len(train) // 10) + 1:]"),
    Mutant("ridge-gram-not-centred", BL, "gram = self.xx - self.n * torch.outer(x_mean, x_mean) +",
           "gram = self.xx +"),
    Mutant("ridge-bias-ignores-inputs", BL, "(y_mean - x_mean @ weight)", "(y_mean + 0 * x_mean @ weight)"),
    Mutant("mean-target-divides-by-n-1", BL, "(total / len(targets))", "(total / (len(targets) - 1))"),
    Mutant("mlp-hidden-ignores-the-output-bias", BL, "round((parameters - dim) / (2 * dim + 1))",
           "round(parameters / (2 * dim + 1))"),
    Mutant("mlp-hidden-may-be-zero", BL, "max(1, round(", "max(0, round("),
    Mutant("mlp-does-not-start-at-the-identity", BL, "nn.init.zeros_(self.down.weight)",
           "nn.init.normal_(self.down.weight)"),
    Mutant("ridge-no-denoiser", BL, "fit_ridge(corrupted_once(train, noise, seed) if noise else train,",
           "fit_ridge(train,"),
    # --- gates.py ---------------------------------------------------------------------------------
    Mutant("frontier-beyond-noise-accepts-low-0", G, 'if entry is not None and entry["low"] <= 0:',
           'if entry is not None and entry["low"] < 0:'),
    Mutant("frontier-accepts-margin-0", G, 'if entry is None and frontier["margin"] <= 0:',
           'if entry is None and frontier["margin"] < 0:'),
    Mutant("best-beyond-noise-accepts-low-0", G, '            if entry["low"] <= 0:', '            if entry["low"] < 0:'),
    Mutant("beats-accepts-a-tie", G, "if cube <= base:", "if cube < base:"),
    Mutant("not-dominated-inverted", G, 'if not frontier["dominated"]:', 'if frontier["dominated"]:'),
    Mutant("best-on-text-metrics-refused", G, 'metric and metric not in HEADLINE', 'metric and metric not in INTERVALS'),
    Mutant("beyond-noise-subset-strict", G, "set(metrics) <= set(INTERVALS)", "set(metrics) < set(INTERVALS)",
           equivalent="metrics has one or two names and INTERVALS three, so a subset of it is always a "
                      "proper subset"),
]


def workspace() -> Path:
    """A copy of the repository's files (tracked, and untracked but not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    root = Path(tempfile.mkdtemp(prefix="mutants-"))
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


def run_tests(root: Path, timeout: int, tests: list[str]) -> tuple[bool, str]:
    """Whether the tests pass in ``root``, and the last line they printed (or 'timeout')."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}  # no stale .pyc
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider",
                               "-m", "not slow", *[t for t in tests if (root / t).exists()]], cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timeout"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return done.returncode == 0, (failed[0] if failed else lines[-1] if lines else done.stderr[-300:])


def check_targets(mutants: list[Mutant]) -> list[str]:
    problems = []
    for m in mutants:
        count = (REPO / m.path).read_text(encoding="utf-8").count(m.old)
        if count != 1:
            problems.append(f"{m.name}: {m.old!r} occurs {count} times in {m.path} (needs exactly 1)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", default="", help="run the mutants whose name contains this")
    parser.add_argument("--timeout", type=int, default=TIMEOUT, help="seconds per mutant's test run")
    parser.add_argument("--tests", nargs="+", default=TESTS, help="test files to run (default: %(default)s)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if args.only in m.name]
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names)), "mutant names repeat"
    problems = check_targets(MUTANTS)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.list:
        for m in mutants:
            print(f"{m.name}\t{m.path}\t{m.old!r} -> {m.new!r}{'  (equivalent)' if m.equivalent else ''}")
        return 0
    start = time.time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still remove the copies when stopped
    roots = [workspace() for _ in range(max(1, args.jobs))]
    try:
        ok, last = run_tests(roots[0], args.timeout, args.tests)
        if not ok:
            print(f"the unmutated copy fails its tests ({last}): fix that first", file=sys.stderr)
            return 1
        free = list(roots)

        def attempt(m: Mutant) -> tuple[Mutant, bool, str, float]:
            root = free.pop()
            target = root / m.path
            original = target.read_text(encoding="utf-8")
            began = time.time()
            try:
                target.write_text(original.replace(m.old, m.new), encoding="utf-8")
                passed, last = run_tests(root, args.timeout, args.tests)
            finally:
                target.write_text(original, encoding="utf-8")
                free.append(root)
            return m, not passed, last, time.time() - began

        results = []
        with ThreadPoolExecutor(len(roots)) as pool:
            for m, killed, last, seconds in pool.map(attempt, mutants):
                verdict = "killed" if killed else "survived"
                note = f"  [equivalent: {m.equivalent}]" if m.equivalent else ""
                print(f"{verdict:8} {m.name:48} {seconds:5.1f}s  {last}{note}", flush=True)
                results.append((m, killed))
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
    killed = sum(k for _, k in results)
    real = [(m, k) for m, k in results if not m.equivalent]
    real_killed = sum(k for _, k in real)
    print(f"\nkilled {killed} of {len(results)} mutants ({killed / max(1, len(results)):.0%}); "
          f"of the {len(real)} not marked equivalent: {real_killed} ({real_killed / max(1, len(real)):.0%}); "
          f"{time.time() - start:.0f}s")
    surprises = [m.name for m, k in results if k == bool(m.equivalent)]
    if surprises:
        print("not as expected (a non-equivalent survivor, or an 'equivalent' one killed): " + ", ".join(surprises))
    return 1 if any(not k and not m.equivalent for m, k in results) else 0


if __name__ == "__main__":
    sys.exit(main())
