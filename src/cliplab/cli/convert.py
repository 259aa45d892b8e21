"""`cliplab convert SRC DST --to {cliplab,hf,onnx}`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a checkpoint to cliplab's safetensors file, a Hugging Face folder or ONNX graphs",
        description="Read any checkpoint cliplab reads (OpenAI's TorchScript files, OpenCLIP's files and tags, "
        "Hugging Face folders and Hub ids, cliplab's own) and write it as one safetensors file with its "
        "configuration inside; as a folder that transformers.CLIPModel and CLIPProcessor load (Vision "
        "Transformer models); or as image.onnx and text.onnx with onnx_config.json, for ONNX Runtime.",
    )
    parser.add_argument("src", help="checkpoint file or folder, released model name, or Hub id")
    parser.add_argument("dst", help="output file (--to cliplab) or folder (--to hf, --to onnx)")
    parser.add_argument(
        "--to", choices=("cliplab", "hf", "onnx"), default="cliplab", help="target format (default: cliplab)"
    )
    parser.add_argument(
        "--pretrained",
        metavar="TAG",
        help="OpenCLIP's pretrained tag when SRC is an architecture name, e.g. laion2b_s34b_b79k",
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="resize the positional embedding for this image size"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..export import save_onnx
    from ..extras import install_command
    from ..loading import convert, load_model

    if args.to != "onnx":
        out = convert(args.src, args.dst, to=args.to, image_size=args.image_size, pretrained=args.pretrained)
        print(f"wrote {out}")
        return 0
    export = save_onnx(load_model(args.src, image_size=args.image_size, pretrained=args.pretrained), args.dst)
    print(f"wrote {', '.join(export.files)} in {export.folder}")
    if export.image_difference is None:
        print(f"not checked against ONNX Runtime, which is not installed ({install_command('onnx')})")
    else:
        print(
            f"checked with ONNX Runtime: largest difference from cliplab {export.image_difference:.1e} (image "
            f"embeddings), {export.text_difference:.1e} (text embeddings)"
        )
    return 0
