"""DVC stage `ceiling`: the teacher fine-tuned as a dual encoder, beside the frozen one (opt-in)."""
from cubecore.core.artifacts import write_json
from cubecore.core.stage import main_guard, stage_args, write_speed
from cubecore.evaluation.ceiling import ceiling


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, "data", "split", "metrics", "speed")
    metrics, speed = ceiling(params, args.data, args.split)
    write_json(args.metrics, metrics)
    write_speed(args.speed, speed)


if __name__ == "__main__":
    main()
