"""DVC stage `evaluate`: the cube beside baselines on the same rows; every metric (--metrics),
the few a reviewer compares (--headline) and plots, then the opt-in gates of
`evaluate.require` (a miss exits 1 after everything is written)."""
from pathlib import Path

from cubecore.core import gates
from cubecore.core.artifacts import write_json
from cubecore.core.stage import main_guard, stage_args, steady_heap, write_speed
from cubecore.evaluation import plots
from cubecore.evaluation.run import HEADLINE, MODELS, evaluate, headline


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, "data", "split", "model", "plots", "metrics", "headline", "speed")
    steady_heap()
    result = evaluate(params, args.data, args.split, args.model)
    write_json(args.metrics, result.metrics)
    write_json(args.headline, headline(result.metrics))
    out, mode = Path(args.plots), result.mode
    plots.cosine_histogram(result.cosine, out / "val_cosine_hist.png", f"Validation cosine per row ({mode})")
    plots.recall_at_k(result.recall, out / "recall_at_k.png", out / "recall_at_k.csv",
                      f"Retrieval of the true target among validation targets ({mode})")
    plots.headline_bars(result.metrics, MODELS, HEADLINE, out / "headline.png", f"Validation metrics per model ({mode})")
    plots.frontier(result.frontier, out / "frontier.png", out / "frontier.csv",
                   f"Cube against the baselines' frontier ({result.frontier['split']}, {mode})")
    plots.anatomy(result.anatomy, out / "anatomy.png", f"What the cube computes ({mode})")
    write_speed(args.speed, {"evaluate": {}})
    gates.enforce(params.evaluate.require, params.evaluate.recall_at, result.metrics)


if __name__ == "__main__":
    main()
