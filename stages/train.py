"""DVC stage `train`: fit the 3D Cubic Core on the split; per-epoch curves via DVCLive."""
from dvclive import Live

from cubecore.artifacts import write_json
from cubecore.stage import main_guard, stage_args
from cubecore.training import train


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, data="data/extract", split="data/split", model="models/cube",
                              live="plots/train", metrics="metrics/train.json", pretrained="models/pretrain")
    with Live(args.live, dvcyaml=False, save_dvc_exp=False) as live:
        metrics = train(params, args.data, args.split, args.model, live=live, pretrained_dir=args.pretrained)
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    main()
