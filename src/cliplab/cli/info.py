"""`cliplab info CHECKPOINT`: what a checkpoint holds, read without running anything in it."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="describe a checkpoint file or Hugging Face folder",
        description="What a checkpoint holds: its format, its tensors, and its model configuration (stored, or read "
        "off the tensor shapes). Nothing in the file is run.",
    )
    parser.add_argument("checkpoint", help="a checkpoint file (cliplab, OpenAI, OpenCLIP) or a Hugging Face folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoints import read_checkpoint
    from ..models import CLIPConfig, infer_config
    from ..towers import is_towers_config

    contents = read_checkpoint(args.checkpoint)
    if is_towers_config(contents.config):  # its tokenizer (hundreds of kB of JSON) is summarised
        config = {
            **contents.config,
            "text": {
                **contents.config["text"],
                "tokenizer": f"<{len(contents.config['text']['tokenizer']):,} characters of tokenizer.json>",
            },
        }
    else:
        config = (
            CLIPConfig.from_dict(contents.config) if contents.config else infer_config(contents.state_dict)
        ).to_dict()
    parameters = sum(t.numel() for t in contents.state_dict.values())
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in contents.state_dict.values()})
    print(f"format:     {contents.kind}")
    print(f"tensors:    {len(contents.state_dict)} ({parameters:,} values, {', '.join(dtypes)})")
    source = "stored" if contents.config else "inferred from tensor shapes"
    print(f"config ({source}):")
    print(json.dumps(config, indent=2))
    return 0
