"""`cliplab embed SOURCE --checkpoint CKPT --out DIR`: embeddings of a whole collection, resumable."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed an image folder, caption table or shards for search",
        description="Write L2-normalised float16 image (and caption) embeddings in shards, with Parquet metadata "
        "and a manifest naming the model. Run the same command again to resume an interrupted run.",
        epilog="example: cliplab embed photos/ --checkpoint ViT-B-32.pt --out photos.emb && cliplab index photos.emb",
    )
    parser.add_argument("source", help="an image folder, a caption table (.csv/.tsv/.jsonl/.parquet) or .tar shards")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file or a model name found in the caches")
    parser.add_argument("--out", required=True, help="folder for the embeddings (resumed if it holds an earlier run)")
    parser.add_argument("--split", help="caption tables: only rows of this split")
    parser.add_argument("--shard-size", type=int, default=10_000, help="images per output shard (default: 10000)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="image-decoding processes (default: 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data import open_source
    from ..loading import load_model
    from ..search import embed_collection

    source = open_source(args.source, split=args.split)
    print(
        f"{args.source}: {len(source.items):,} images ({source.kind}{', with captions' if source.has_captions else ''})"
    )
    for what, why in source.problems:
        print(f"  warning: {what}: {why}")
    model = load_model(args.checkpoint, device=args.device)
    report = embed_collection(
        source,
        args.out,
        model,
        args.checkpoint,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        workers=args.workers,
        split=args.split,
        progress=not args.no_progress,
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
