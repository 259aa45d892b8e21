"""`cliplab embed SOURCE --checkpoint CKPT --out DIR`: embeddings of a whole collection, resumable."""

from __future__ import annotations

import argparse

from . import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed an image or video folder, caption table or shards for search",
        description="Write L2-normalised float16 image (and caption) embeddings in shards, with Parquet metadata "
        "and a manifest naming the model. Videos are sampled at --fps and consecutive near-identical frames "
        "folded into one segment (a result with a start and an end). Run the same command again to resume an "
        "interrupted run.",
        epilog="example: cliplab embed photos/ --checkpoint ViT-B-32.pt --out photos.emb && cliplab index photos.emb",
    )
    parser.add_argument(
        "source",
        help="a folder of images and/or videos (.mp4/.webm/.mkv/.mov/.avi), one video, a table of images "
        "(.csv/.tsv/.jsonl/.json/.parquet) or WebDataset shards",
    )
    options.checkpoint(parser)
    options.out(parser, "the embeddings (resumed if it holds an earlier run of the same model and source)")
    parser.add_argument("--split", help="tables: only the rows of this split")
    parser.add_argument("--shard-size", type=int, default=10_000, help="images per output shard (default: 10000)")
    parser.add_argument("--fps", type=float, default=1.0, help="videos: frames sampled per second (default: 1)")
    parser.add_argument(
        "--fold",
        type=float,
        default=0.95,
        help="videos: consecutive frames at least this similar (cosine) to a segment's first become one segment; "
        "1 keeps every sampled frame (default: 0.95)",
    )
    options.device(parser)
    options.batch_size(parser)
    options.workers(parser)
    options.progress(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from .. import distributed
    from ..data import VideoItem, open_source
    from ..encode.videos import check_video_options
    from ..loading import load_model
    from ..search import embed_collection

    # under torchrun: one process per GPU (or CPU share), each embedding every N-th shard; rank 0 speaks
    place = distributed.setup(args.device, timeout=timedelta(days=7))  # ranks wait at the end for the slowest
    say = print if place.is_main else (lambda *_: None)
    try:
        check_video_options(args.fps, args.fold)
        source = open_source(args.source, split=args.split, videos=True)
        videos = sum(isinstance(item, VideoItem) for item in source.items) if source.has_videos else 0
        images = len(source.items) - videos
        count = " and ".join(
            f"{n:,} {what}{'s' if n != 1 else ''}"
            for n, what in ((images, "image"), (videos, "video"))
            if n or not videos
        )
        say(
            f"{args.source}: {count} ({source.kind}"
            f"{', with captions' if source.has_captions else ''})"
            + (f"; shards split over {place.world} processes" if place.world > 1 else "")
        )
        for what, why in source.problems[:10]:
            say(f"  left out: {what}: {why}")
        if len(source.problems) > 10:
            say(f"  ... and {len(source.problems) - 10} more left out (all listed in skipped.jsonl)")
        model = load_model(options.model_name(args), device=place.device)
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
            fps=args.fps,
            fold=args.fold,
        )
    finally:
        distributed.teardown()
    resumed = f"; {report.resumed_shards} shard(s) were already done" if report.resumed_shards else ""
    what = f"{report.rows:,} items" if report.videos else f"{report.rows:,} images"
    if report.videos:
        videos = f"{report.videos:,} video{'s' if report.videos != 1 else ''}"
        what += f" (among them segments of {videos}, {format_seconds(report.video_seconds)} of video)"
    say(
        f"{what} embedded in {report.shards} shard(s) in {report.out}; "
        f"{report.skipped} skipped (listed in skipped.jsonl){resumed}"
    )
    if report.embedded_now:
        who = "rank 0: " if place.world > 1 else ""
        say(
            f"throughput: {who}{report.images_per_second:.1f} {'items' if report.videos else 'images'}/s "
            f"({report.embedded_now:,} in {report.seconds:.1f} s)"
            + (
                f"; {report.video_seconds / report.seconds:.1f} s of video a second"
                if report.videos and not report.resumed_shards
                else ""
            )
        )
    say(f"next: cliplab index {report.out}")
    return 0


def format_seconds(seconds: float) -> str:
    return (
        f"{seconds / 3600:.1f} h"
        if seconds >= 3600
        else f"{seconds / 60:.1f} min"
        if seconds >= 60
        else f"{seconds:.0f} s"
    )
