"""`cliplab shards TABLE OUT_DIR`: a caption table as WebDataset tar shards."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("shards", help="write a caption table as WebDataset tar shards")
    parser.add_argument("table", help="caption table: .csv, .tsv, .jsonl or .parquet")
    parser.add_argument("out_dir", help="folder for 00000.tar, 00001.tar, ... and sizes.json")
    parser.add_argument("--samples-per-shard", type=int, default=1000, help="images per shard (default: 1000)")
    parser.add_argument("--split", help="only the rows whose split column has this value")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--caption-column", default="caption")
    parser.add_argument("--image-root", help="folder that relative image paths start from (default: the table's)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data import read_caption_table
    from ..data.shards import write_shards

    entries = read_caption_table(args.table, args.image_column, args.caption_column, args.image_root, args.split)
    report = write_shards(entries, args.out_dir, args.samples_per_shard)
    print(f"wrote {report.samples} samples in {len(report.shards)} shards to {args.out_dir}")
    if report.skipped:
        print(f"skipped: {dict(report.skipped)}")
    return 0
