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
    parser.add_argument(
        "checkpoint",
        help="a checkpoint file (cliplab, OpenAI, OpenCLIP), a Hugging Face folder, a released model's name or a "
        "Hub id (fetched, verified, when not in the caches)",
    )
    parser.add_argument(
        "--pretrained", metavar="TAG", help="an OpenCLIP pretrained tag for the CHECKPOINT architecture"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoints import read_checkpoint
    from ..models import CLIPConfig, infer_config
    from ..pretrained import locate
    from ..towers import is_towers_config

    located = locate(args.checkpoint, args.pretrained)
    contents = read_checkpoint(located.path)
    if is_towers_config(contents.config):  # its tokenizer (hundreds of kB of JSON) is summarised
        config = {
            **contents.config,
            "text": {
                **contents.config["text"],
                "tokenizer": f"<{len(contents.config['text']['tokenizer']):,} characters of tokenizer.json>",
            },
        }
    else:
        if contents.config:
            config = CLIPConfig.from_dict(contents.config).to_dict()
        else:
            config = (located.config or infer_config(contents.state_dict)).to_dict()
    parameters = sum(t.numel() for t in contents.state_dict.values())
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in contents.state_dict.values()})
    print(f"file:       {located.path}")
    print(f"format:     {contents.kind}")
    print(f"tensors:    {len(contents.state_dict)} ({parameters:,} values, {', '.join(dtypes)})")
    source = "stored" if contents.config else "from its name" if located.config else "inferred from tensor shapes"
    print(f"config ({source}):")
    print(json.dumps(config, indent=2))
    return 0
