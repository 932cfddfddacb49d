"""DVC stage `extract`: dialogue source -> distinct texts -> teacher embeddings."""
from cubecore.core.artifacts import write_json
from cubecore.core.stage import main_guard, stage_args, write_speed
from cubecore.data.extraction import extract


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, "out", "metrics", "speed")
    metrics, speed = extract(params, args.out)
    write_json(args.metrics, metrics)
    write_speed(args.speed, speed)


if __name__ == "__main__":
    main()
