"""`cliplab detect IMAGE... --labels "red star,blue heart"`: boxes for any words, from any CLIP."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import options
from .locate import unique_stem


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="find boxes of the things you name in images (open-vocabulary, training-free)",
        description="Candidate boxes from the dense similarity maps and sliding windows (and, with --background, "
        "the foreground's regions), each judged by zero-shot classification of a crop 1.5 times its size, then "
        "non-maximum suppression. Writes, per image, NAME.boxes.png and "
        "NAME.json (COCO-style [x, y, width, height] boxes).",
        epilog='example: cliplab detect street.jpg --labels "car,bicycle,person" --checkpoint ViT-B-16',
    )
    options.images(parser)
    options.labels(parser, "comma-separated things to look for, or @FILE with one per line")
    options.templates(parser)
    options.dense_method(parser)
    options.dense_background(
        parser, "adds the foreground's regions to the candidates and scores each box by how well it frames them"
    )
    parser.add_argument("--min-score", type=float, default=0.3, help="boxes scoring less are left out (default: 0.3)")
    parser.add_argument("--max-boxes", type=int, default=10, help="at most this many boxes an image (default: 10)")
    options.out(parser, "the pictures and JSON", default="detect")
    options.checkpoint(parser)
    options.device(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from PIL import ImageDraw

    from ..data import BadSample
    from ..dense.detect import detect
    from ..dense.render import PALETTE
    from ..errors import ConfigError
    from ..files import write_json
    from ..loading import load_model
    from ..zeroshot import PromptCache

    if args.max_boxes < 1 or not 0 <= args.min_score <= 1:
        raise ConfigError("--max-boxes must be at least 1 and --min-score within 0..1")
    labels = options.read_list(args.labels, "labels")
    templates = options.read_templates(args)
    background = options.read_background(args)
    items = options.image_items(args.images)
    model = load_model(options.model_name(args), device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache, used, done, failed = PromptCache(), set(), 0, 0
    for item in items:
        try:
            image = item.open_image().convert("RGB")
        except BadSample as err:
            print(f"{item.path}: skipped: {err.reason}", file=sys.stderr)
            failed += 1
            continue
        boxes = detect(
            model,
            image,
            labels,
            templates,
            args.method,
            args.min_score,
            args.max_boxes,
            cache=cache,
            background=background,
        )
        stem = unique_stem(Path(item.path).stem, used)
        drawn = image.copy()
        draw = ImageDraw.Draw(drawn)
        for box in boxes:
            colour = PALETTE[labels.index(box.label) % len(PALETTE)]
            draw.rectangle(box.box, outline=colour, width=max(1, image.width // 200))
            draw.text((box.box[0] + 2, box.box[1] + 1), f"{box.label} {box.score:.2f}", fill=colour)
        drawn.save(out / f"{stem}.boxes.png")
        write_json(
            out / f"{stem}.json",
            {
                "image": item.path,
                "size": [image.width, image.height],
                "method": args.method,
                "categories": [{"id": i, "name": label} for i, label in enumerate(labels)],
                "annotations": [
                    {
                        "category_id": labels.index(b.label),
                        "label": b.label,
                        "bbox": b.coco(),
                        "score": round(b.score, 5),
                    }
                    for b in boxes
                ],
            },
        )
        said = ", ".join(f"{b.label} {b.score:.2f} at {list(b.box)}" for b in boxes[:3]) or "nothing above --min-score"
        print(f"{item.path}: {said} -> {out / stem}.*")
        done += 1
    if failed:
        print(f"{failed} of {len(items)} images could not be read", file=sys.stderr)
    print(f"{done} image(s) searched for boxes; results in {out}/")
    return 1 if not done else 0
