"""`cliplab train --config run.yaml [key=value ...] [--resume PATH|latest]`.

Under torchrun (`torchrun --nproc_per_node=N -m cliplab train ...`) every process runs this same
command; they find each other through the environment torchrun sets.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a CLIP model with the contrastive loss",
        description="Train a CLIP model. Options come from a YAML or JSON file and key=value overrides; "
        "every option is listed in cliplab.train.TrainConfig.",
        epilog="example: cliplab train --config run.yaml data=captions.tsv batch_size=128 epochs=2",
    )
    parser.add_argument("--config", help="YAML or JSON file of options")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="options that override the file's")
    parser.add_argument(
        "--resume", help="continue from a checkpoint folder, a run folder, or 'latest' (the newest of this run)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..train import TrainingDiverged, load_config, train

    config = load_config(args.config, args.overrides)
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
        print(f"trained {result.steps} steps; model: {result.model_path}; run folder: {result.out}")
        if skipped:
            print(f"skipped {skipped} bad samples: {dict(result.skipped)} (listed in {result.out / 'skipped.jsonl'})")
    return 0
