"""DVC stage `check`: validate all of params.yaml, fingerprint the data files and the teacher.

It runs first on every `dvc repro` / `dvc exp run` (always_changed) and imports no torch,
so a bad value stops the run here, before DVC deletes any other stage's outputs.
"""
from cubecore.core.artifacts import write_json
from cubecore.core.stage import main_guard, stage_args
from cubecore.data.inputs import fingerprint_inputs


@main_guard
def main() -> None:
    args, params = stage_args(__doc__, "out")
    write_json(args.out, fingerprint_inputs(params))


if __name__ == "__main__":
    main()
