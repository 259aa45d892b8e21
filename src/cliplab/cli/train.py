"""`cliplab train [--config run.yaml] [--option value ...] [key=value ...] [--resume PATH|latest|latest-good]`.

Every field of `cliplab.train.TrainConfig` is an option, spelled `--batch-size 64` or `batch_size=64`,
with its one-line help and default in `cliplab train --help`. A configuration file sets options first,
then `key=value` overrides, then `--options`. Under torchrun (`torchrun --nproc_per_node=N -m cliplab
train ...`) every process runs this same command; they find each other through the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..train.config import TrainConfig, option_docs, parse_value

    parser = subparsers.add_parser(
        "train",
        usage="cliplab train [--config FILE] [--OPTION VALUE ...] [key=value ...] [--resume PATH|latest|latest-good]",
        help="train a CLIP model with the contrastive loss",
        description="Train a CLIP model. Options come from a YAML or JSON file, key=value overrides and the "
        "--options below (in that order of precedence, last wins); every one is a field of cliplab.train.TrainConfig.",
        epilog="example: cliplab train --config run.yaml data=captions.tsv --batch-size 128 --epochs 2",
    )
    parser.add_argument("--config", help="YAML or JSON file of options")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="options that override the file's")
    parser.add_argument(
        "--resume",
        help="continue from a checkpoint folder, a run folder, 'latest' (the newest of this run) or 'latest-good' "
        "(the newest that reads, passing over damaged ones)",
    )
    fields = parser.add_argument_group("options (each also accepted as key=value)")
    docs = option_docs()
    for field in dataclasses.fields(TrainConfig):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        shown = "empty" if default in ("", None) else repr(default) if isinstance(default, str) else default
        doc = docs.get(field.name, "")
        help_text = doc if "default" in doc else f"{doc} (default: {shown})".lstrip()
        flag = "--" + field.name.replace("_", "-")
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(default, bool) else {"type": parse_value}
        fields.add_argument(flag, dest=field.name, default=argparse.SUPPRESS, help=help_text, **kind)
    parser.set_defaults(run=run, option_names=[field.name for field in dataclasses.fields(TrainConfig)])


def run(args: argparse.Namespace) -> int:
    from ..train import TrainingDiverged, load_config, train

    given = {name: getattr(args, name) for name in args.option_names if hasattr(args, name)}
    config = load_config(args.config, args.overrides, given)
    try:
        result = train(config, resume=args.resume)
    except TrainingDiverged as err:
        print(f"cliplab train: stopped: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("cliplab train: interrupted; continue with --resume latest", file=sys.stderr)
        return 130
    if result.model_path is not None:
        skipped = sum(result.skipped.values())
        steps = f"{result.steps} step{'s' if result.steps != 1 else ''}"
        print(f"trained {steps}; model: {result.model_path}; run folder: {result.out}")
        if skipped:
            print(f"skipped {skipped} bad samples: {dict(result.skipped)} (listed in {result.out / 'skipped.jsonl'})")
    return 0
