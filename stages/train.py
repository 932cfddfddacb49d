"""DVC stage `train`: fit the 3D Cubic Core on the split; per-epoch curves via DVCLive, drawn
into one PNG (--curves) with the best epoch marked.

With train.distributed.processes > 1 the stage re-runs itself under torchrun; rank 0 writes
every output (cubecore/training/distributed.py)."""
import contextlib
from pathlib import Path

from dvclive import Live

from cubecore.core.artifacts import write_json
from cubecore.core.stage import main_guard, stage_args, write_speed
from cubecore.evaluation import plots
from cubecore.training import distributed
from cubecore.training.run import train


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, "data", "split", "pretrained", "model", "live", "curves", "metrics",
                              "speed")
    distributed.relaunch(params.train.distributed.processes)
    with distributed.process_group(params.train.distributed.processes) as group:
        with Live(args.live, dvcyaml=False, save_dvc_exp=False) if group.main else contextlib.nullcontext() as live:
            metrics, speed = train(params, args.data, args.split, args.model, live=live,
                                   pretrained_dir=args.pretrained, group=group)
    if group.main:
        write_json(args.metrics, metrics)
        plots.training_curves(Path(args.live) / "plots" / "metrics", Path(args.curves),
                              f"Cube training ({params.train.mode})", monitor=params.train.monitor)
        write_speed(args.speed, speed)


if __name__ == "__main__":
    main()
