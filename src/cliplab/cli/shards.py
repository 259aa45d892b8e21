"""`cliplab shards TABLE OUT_DIR`: a caption table as WebDataset tar shards."""

from __future__ import annotations

import argparse

from . import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shards",
        help="write a table of images as WebDataset tar shards",
        description="Copy a table's images, byte for byte, with their captions (.txt, .json) and labels (.cls) into "
        "tar shards of a fixed size, as img2dataset lays them out, and write sizes.json beside them. Training "
        "streams shards; evaluation and embedding read them in place.",
    )
    parser.add_argument("table", help="a table of images with captions (or labels): .csv, .tsv, .jsonl or .parquet")
    parser.add_argument("out_dir", help="folder for 00000.tar, 00001.tar, ... and sizes.json")
    parser.add_argument("--samples-per-shard", type=int, default=1000, help="images per shard (default: 1000)")
    parser.add_argument("--split", help="only the rows whose split column has this value")
    parser.add_argument("--image-column", default="image", help="the table's column of image paths (default: image)")
    parser.add_argument("--caption-column", default="caption", help="the table's column of captions (default: caption)")
    parser.add_argument("--image-root", help="folder that relative image paths start from (default: the table's)")
    options.progress(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data import open_source, write_shards
    from ..errors import SourceError

    source = open_source(
        args.table,
        split=args.split,
        image_column=args.image_column,
        caption_column=args.caption_column,
        image_root=args.image_root,
    )
    if source.kind != "table":
        raise SourceError(f"{args.table}: not a table ({source.kind}); cliplab shards writes a table's images")
    report = write_shards(source.items, args.out_dir, args.samples_per_shard, progress=args.progress)
    print(f"wrote {report.samples} samples in {len(report.shards)} shards to {args.out_dir}")
    if report.skipped:
        print(f"skipped: {dict(report.skipped)}")
    return 0
