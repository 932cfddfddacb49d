"""A person's door to a trained pipeline.

    python -m cubecore answer "How are you?" --top-k 5   # nearest training answers to the cube's output
    python -m cubecore info                              # what was trained, on what, how well
    python -m cubecore report --base main                # a Markdown review: params, metrics, frontier, plots
    python -m cubecore doctor                            # is this machine ready? one line per check
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cubecore import doctor, report
from cubecore.errors import CubecoreError
from cubecore.stage import main_guard


def answer(args: argparse.Namespace) -> None:
    import torch

    from cubecore import artifacts
    from cubecore.config import TeacherParams
    from cubecore.evaluation import AnswerBank
    from cubecore.modes import get_mode
    from cubecore.teacher import Teacher
    from cubecore.training import load_model

    model, info = load_model(args.model)
    identity = info["teacher"]
    teacher = Teacher(TeacherParams(model=identity["path"], pooling=identity["pooling"],
                                    max_length=identity["max_length"], normalize=identity["normalize"]))
    if teacher.fingerprint != identity["weights_sha256"]:
        raise CubecoreError(f"{identity['path']}: the teacher's weights changed since training; re-run `dvc repro`")
    data = artifacts.Dataset.load(args.data)
    train = artifacts.read_pairs(Path(args.split) / "train.tsv")
    bank = AnswerBank(get_mode(info["mode"]).pairing.ids(train, [])[1], data.embeddings, data.texts)
    with torch.no_grad():
        pred = model(torch.from_numpy(teacher.embed([args.text], progress=False)))
    scores, index = bank.nearest(pred, args.top_k)
    for rank, (score, i) in enumerate(zip(scores[0].tolist(), index[0].tolist()), start=1):
        print(f"{rank}. {score:.3f}  {bank.texts[i]}")


def info(args: argparse.Namespace) -> None:
    for path in ["models/cube/model.json", *sorted(Path("metrics").glob("*.json"))]:
        path = Path(path)
        if not path.exists():
            raise CubecoreError(f"{path}: not found (run `make repro` first)")
        content = json.loads(path.read_text(encoding="utf-8"))
        print(f"== {path}\n{json.dumps(content, indent=2)}")


@main_guard
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cubecore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("answer", help="answer a text with the trained cube (nearest training answers)")
    ask.add_argument("text")
    ask.add_argument("--top-k", type=int, default=5)
    ask.add_argument("--model", default="models/cube")
    ask.add_argument("--data", default="data/extract")
    ask.add_argument("--split", default="data/split")
    ask.set_defaults(run=answer)
    commands.add_parser("info", help="print the trained model's description and all metrics").set_defaults(run=info)
    report.add_command(commands)
    doctor.add_command(commands)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
