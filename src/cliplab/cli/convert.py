"""`cliplab convert SRC DST --to {cliplab,hf}`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a checkpoint to cliplab's safetensors file or a Hugging Face CLIPModel folder",
        description="Read any checkpoint cliplab reads (OpenAI's TorchScript files, OpenCLIP's files, Hugging Face "
        "folders, cliplab's own) and write it as one safetensors file with its configuration inside, or as a "
        "folder that transformers.CLIPModel.from_pretrained loads (Vision Transformer models).",
    )
    parser.add_argument("src", help="checkpoint file (cliplab, OpenAI, OpenCLIP) or Hugging Face folder")
    parser.add_argument("dst", help="output file (--to cliplab) or folder (--to hf)")
    parser.add_argument("--to", choices=("cliplab", "hf"), default="cliplab", help="target format (default: cliplab)")
    parser.add_argument(
        "--image-size", type=int, default=None, help="resize the positional embedding for this image size"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..loading import convert

    out = convert(args.src, args.dst, to=args.to, image_size=args.image_size)
    print(f"wrote {out}")
    return 0
