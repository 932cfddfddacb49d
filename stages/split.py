"""DVC stage `split`: train/val(/test), each group (question text or conversation) placed by a
hash of its content and the seed."""
from cubecore.core.artifacts import write_json
from cubecore.core.stage import main_guard, stage_args, write_speed
from cubecore.data.splitting import split_pairs


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, "data", "texts", "out", "metrics", "speed")
    write_json(args.metrics, split_pairs(args.data, args.texts, args.out, params.split, params.base.seed))
    write_speed(args.speed, {"split": {}})


if __name__ == "__main__":
    main()
