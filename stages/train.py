"""DVC stage `train`: fit the 3D Cubic Core on the split; per-epoch curves via DVCLive."""
from dvclive import Live

from cubecore.artifacts import write_json
from cubecore.stage import main_guard, stage_args
from cubecore.training import train


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, "data", "split", "pretrained", "model", "live", "metrics", "speed")
    with Live(args.live, dvcyaml=False, save_dvc_exp=False) as live:
        metrics, speed = train(params, args.data, args.split, args.model, live=live, pretrained_dir=args.pretrained)
    write_json(args.metrics, metrics)
    write_json(args.speed, speed)


if __name__ == "__main__":
    main()
