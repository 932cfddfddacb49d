"""DVC stage `pretrain`: the cube trained as a denoising autoencoder (for `train.init: pretrain`)."""
from dvclive import Live

from cubecore.artifacts import write_json
from cubecore.stage import main_guard, stage_args
from cubecore.training import pretrain


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, data="data/extract", split="data/split", model="models/pretrain",
                              live="plots/pretrain", metrics="metrics/pretrain.json")
    with Live(args.live, dvcyaml=False, save_dvc_exp=False) as live:
        metrics = pretrain(params, args.data, args.split, args.model, live=live)
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    main()
