"""The cube's nearest answers to a question (`python -m cubecore answer "How are you?"`).

The question is embedded by the teacher the cube was trained with, mapped by the cube,
and the nearest answer texts of a split (the training answers by default) are printed
with their cosine to the cube's output.
"""
from __future__ import annotations

import argparse
import logging
import unicodedata
from pathlib import Path

from cubecore.cli import positive_int
from cubecore.core.errors import CubecoreError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def visible(text: str) -> str:
    """``text`` without format characters (Unicode category Cf: zero-width spaces and joiners,
    word joiners, byte-order marks, direction marks, ...) and surrounding whitespace."""
    return "".join(char for char in text if unicodedata.category(char) != "Cf").strip()


def question(value: str) -> str:
    if not visible(value):
        raise argparse.ArgumentTypeError("the question is empty; pass some text, e.g. \"How are you?\"")
    return value


def split_name(value: str) -> str:
    if value not in SPLITS:
        hint = "; the folder is --split-dir" if "/" in value or Path(value).is_dir() else ""
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(SPLITS)}, got {value!r}{hint}")
    return value


def add_parser(commands) -> None:
    parser = commands.add_parser("answer", help="answer a question with the trained cube (nearest answers)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", type=question, help="the question (or, for an autoencoder model, any text)")
    parser.add_argument("--top-k", type=positive_int, default=5, metavar="K",
                        help="how many answers to print, best first (default: %(default)s)")
    parser.add_argument("--split", type=split_name, default="train", metavar="{train,val,test}",
                        help="the split whose answers are the candidates (default: %(default)s)")
    parser.add_argument("--split-dir", default="data/split", metavar="DIR",
                        help="folder holding the split files <split>.tsv (default: %(default)s)")
    parser.add_argument("--model", default="models/cube", metavar="DIR",
                        help="folder of the trained model (default: %(default)s)")
    parser.add_argument("--data", default="data/extract", metavar="DIR",
                        help="folder of the extracted texts and embeddings (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import torch

    from cubecore.core import artifacts
    from cubecore.core.config import TeacherParams
    from cubecore.data.teacher import Teacher
    from cubecore.evaluation.run import AnswerBank
    from cubecore.training.modes import get_mode
    from cubecore.training.pairings import task_data
    from cubecore.training.run import load_model

    model, info = load_model(args.model)
    identity = info["teacher"]
    teacher = Teacher(TeacherParams(model=identity["model"], pooling=identity["pooling"],
                                    max_length=identity["max_length"], normalize=identity["normalize"]))
    if teacher.fingerprint != identity["weights_sha256"]:
        raise CubecoreError(f"teacher {identity['model']!r}: its weights changed since training; re-run `dvc repro`")
    data = artifacts.Dataset.load(args.data)
    path = Path(args.split_dir) / f"{args.split}.tsv"
    if args.split == "test" and not path.exists():
        raise CubecoreError(f"{path}: no test split (set split.test_fraction above 0 and re-run `dvc repro`)")
    pairs = artifacts.read_pairs(path)
    if len(pairs) == 0:
        raise CubecoreError(f"{path}: no pairs, so no answers to choose from")
    bank = AnswerBank(task_data(get_mode(info["mode"]).pairing, data.embeddings, pairs).target_ids, data.embeddings, data.texts)
    if args.top_k > len(bank.texts):
        log.warning("the %s split has %d distinct answers; printing all of them", args.split, len(bank.texts))
    unknown, words = teacher.unknown_tokens(args.text)
    if unknown and unknown * 2 >= words:  # half or more of it unreadable
        log.warning("%d of the question's %d tokens are unknown to the teacher's tokenizer (emoji or a script it "
                    "does not know?): the answers say little about it", unknown, words)
    tokens = teacher.token_count(args.text)
    if tokens > teacher.params.max_length:
        log.warning("the question is %d tokens long; only the first %d were used (the teacher's max_length)",
                    tokens, teacher.params.max_length)
    with torch.no_grad():
        pred = model(torch.from_numpy(teacher.embed([args.text], progress=False)))
    scores, index = bank.nearest(pred, args.top_k)
    for rank, (score, i) in enumerate(zip(scores[0].tolist(), index[0].tolist()), start=1):
        print(f"{rank}. {score:.3f}  {bank.texts[i]}")
