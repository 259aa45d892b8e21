"""`cliplab search DIR "a dog running through snow"` or `--image query.jpg`: the nearest items (images, or
videos' segments with their times); `--videos` ranks whole videos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search an embedded collection by text or by an example image",
        description="Top-k items by cosine similarity, with the model that embedded the collection.",
    )
    parser.add_argument("folder", help="a folder written by cliplab embed")
    parser.add_argument("text", nargs="?", help="what to look for")
    parser.add_argument("--image", help="an example image to look for instead of text")
    parser.add_argument("-k", type=int, default=10, help="results (default: 10)")
    parser.add_argument("--fold-duplicates", action="store_true", help="list near-duplicates under one result")
    parser.add_argument(
        "--videos", action="store_true", help="rank whole videos (each by the mean of its frames) instead of segments"
    )
    options.checkpoint(
        parser, default=None, note="default: the one that embedded the collection; it must be the same weights"
    )
    options.device(parser)
    options.memory_map(parser)
    options.json_lines(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..data import BadSample, read_image
    from ..data.video import format_time
    from ..errors import ConfigError
    from ..search import Searcher

    if (args.text is None) == (args.image is None):
        raise ConfigError("give either a text query or --image FILE")
    if args.k < 1:
        raise ConfigError("-k must be at least 1")
    searcher = Searcher.open(args.folder, checkpoint=options.model_name(args), device=args.device, memory_map=args.mmap)
    if args.image:
        try:
            image = read_image(Path(args.image))
        except BadSample as err:
            raise BadSample(err.reason, args.image) from None
        with image:
            vector = searcher.image_vector(image)
    else:
        vector = searcher.text_vector(args.text)
    if args.videos:
        if args.fold_duplicates:
            raise ConfigError("--fold-duplicates folds segments or images; it does not apply to --videos")
        for rank, hit in enumerate(searcher.search_videos(vector, args.k), 1):
            video = searcher.collection.videos[hit.id]
            if args.json:
                print(json.dumps({"rank": rank, "score": round(hit.score, 4), **asdict(video)}))
            else:
                print(f"{rank:>3}. {hit.score:.4f}  {video.path}  ({format_time(video.duration)})")
        return 0
    for rank, hit in enumerate(searcher.search(vector, args.k, fold_duplicates=args.fold_duplicates), 1):
        item = searcher.collection.item(hit.id)
        if args.json:
            record = {"rank": rank, "score": round(hit.score, 4), **item.public(), "path": item.path}
            print(json.dumps({**record, "duplicates": hit.duplicates}))
            continue
        folded = f"  (+{len(hit.duplicates)} near-duplicates)" if hit.duplicates else ""
        caption = f"  {item.caption}" if item.caption else ""
        print(f"{rank:>3}. {hit.score:.4f}  {item.where()}{caption}{folded}")
    return 0
