"""DVC stage `filter`: quality rules over pairs; removed pairs go to a rejects file."""
from cubecore.core.artifacts import write_json
from cubecore.core.stage import main_guard, stage_args, write_speed
from cubecore.data.filtering import filter_pairs


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, "data", "out", "metrics", "speed")
    write_json(args.metrics, filter_pairs(args.data, args.out, params.filter))
    write_speed(args.speed, {"filter": {}})


if __name__ == "__main__":
    main()
