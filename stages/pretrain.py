"""DVC stage `pretrain`: the cube trained as a denoising autoencoder (for `train.init: pretrain`)."""
from dvclive import Live

from cubecore.core.artifacts import write_json
from cubecore.core.stage import main_guard, stage_args, write_speed
from cubecore.training.run import pretrain


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, "data", "split", "model", "live", "metrics", "speed")
    with Live(args.live, dvcyaml=False, save_dvc_exp=False) as live:
        metrics, speed = pretrain(params, args.data, args.split, args.model, live=live)
    write_json(args.metrics, metrics)
    write_speed(args.speed, speed)


if __name__ == "__main__":
    main()
