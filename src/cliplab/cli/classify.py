"""`cliplab classify IMAGE_OR_FOLDER... --labels "dog,cat,red envelope"`: zero-shot labels for images.

Each label becomes one prompt per template, the prompts' embeddings are averaged per label (the
paper's prompt ensembling), and each image gets its top labels with probabilities. A folder stands for
every image in it. An image that cannot be read is reported and skipped; the others are still classified.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="zero-shot classify images among labels you name",
        description="Zero-shot classification: the most likely of the given labels for each image.",
        epilog='example: cliplab classify cat.jpg photos/ --labels "cat,dog,car" --checkpoint ViT-B-32.pt',
    )
    options.images(parser)
    options.labels(parser, "comma-separated class names (at least two), or @FILE with one per line")
    options.templates(parser)
    parser.add_argument("--top", type=int, default=5, help="labels to print per image (default: 5)")
    options.checkpoint(parser)
    options.device(parser)
    options.batch_size(parser)
    options.workers(parser, default=0)
    options.json_lines(parser)
    options.progress(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..encode import embed_images
    from ..loading import load_model
    from ..zeroshot import build_classifier, check_labels, probabilities

    labels = options.read_list(args.labels, "labels")
    templates = options.read_templates(args)
    items = options.image_items(args.images)
    model = load_model(options.model_name(args), device=args.device)
    check_labels(labels, model, "--labels")
    bar = args.progress and len(items) > 32  # a bar for a few images is noise
    images = embed_images(model, items, args.batch_size, args.workers, progress=bar, desc="classify")
    scores = probabilities(model, images.features, build_classifier(model, labels, templates).cpu())
    top = scores.topk(min(args.top, len(labels)), dim=1)
    for index, values, columns in zip(images.kept.tolist(), top.values.tolist(), top.indices.tolist()):
        path = items[index].path
        if args.json:
            best = [{"label": labels[c], "probability": round(p, 6)} for p, c in zip(values, columns)]
            print(json.dumps({"image": path, "labels": best}))
            continue
        print(path)
        for p, c in zip(values, columns):
            print(f"  {p:6.3f}  {labels[c]}")
    for skipped in images.skipped:
        print(f"{items[skipped.index].path}: skipped: {skipped.message}", file=sys.stderr)
    if images.skipped:
        print(f"{len(images.skipped)} of {len(items)} images could not be read", file=sys.stderr)
    return 1 if not len(images.kept) else 0
