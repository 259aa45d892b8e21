"""`cliplab embed SOURCE --checkpoint CKPT --out DIR`: embeddings of a whole collection, resumable."""

from __future__ import annotations

import argparse

from . import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed an image folder, caption table or shards for search",
        description="Write L2-normalised float16 image (and caption) embeddings in shards, with Parquet metadata "
        "and a manifest naming the model. Run the same command again to resume an interrupted run.",
        epilog="example: cliplab embed photos/ --checkpoint ViT-B-32.pt --out photos.emb && cliplab index photos.emb",
    )
    parser.add_argument(
        "source", help="an image folder, a table of images (.csv/.tsv/.jsonl/.json/.parquet) or WebDataset shards"
    )
    options.checkpoint(parser)
    options.out(parser, "the embeddings (resumed if it holds an earlier run of the same model and source)")
    parser.add_argument("--split", help="tables: only the rows of this split")
    parser.add_argument("--shard-size", type=int, default=10_000, help="images per output shard (default: 10000)")
    options.device(parser)
    options.batch_size(parser)
    options.workers(parser)
    options.progress(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data import open_source
    from ..loading import load_model
    from ..search import embed_collection

    source = open_source(args.source, split=args.split)
    print(
        f"{args.source}: {len(source.items):,} images ({source.kind}{', with captions' if source.has_captions else ''})"
    )
    for what, why in source.problems[:10]:
        print(f"  left out: {what}: {why}")
    if len(source.problems) > 10:
        print(f"  ... and {len(source.problems) - 10} more left out (all listed in skipped.jsonl)")
    model = load_model(options.model_name(args), device=args.device)
    report = embed_collection(
        source,
        args.out,
        model,
        options.model_name(args),
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        workers=args.workers,
        split=args.split,
        progress=args.progress,
    )
    resumed = f"; {report.resumed_shards} shard(s) were already done" if report.resumed_shards else ""
    print(
        f"{report.rows:,} images embedded in {report.shards} shard(s) in {report.out}; "
        f"{report.skipped} skipped (listed in skipped.jsonl){resumed}"
    )
    if report.embedded_now:
        print(
            f"throughput: {report.images_per_second:.1f} images/s ({report.embedded_now:,} in {report.seconds:.1f} s)"
        )
    print(f"next: cliplab index {report.out}")
    return 0
