"""`cliplab locate IMAGE... --labels "red star,blue heart"`: where in each image each label is."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from . import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "locate",
        help="show where in each image each label is (similarity maps and a segmentation)",
        description="Training-free dense zero-shot maps from any CLIP: the last block's rule (ClearCLIP by "
        "default, or SCLIP, MaskCLIP) gives every patch an embedding in the text's space. Writes, per image, "
        "NAME.maps.png (one panel per label, with its peak score), NAME.segmentation.png (pixel values are "
        "label indices) and NAME.json.",
        epilog='example: cliplab locate street.jpg --labels "car,bicycle,person" --checkpoint ViT-B-16 --out located/',
    )
    options.images(parser)
    options.labels(parser, "comma-separated things to look for, or @FILE with one per line")
    options.templates(parser)
    options.dense_method(parser)
    options.dense_background(parser, "the segmentation's pixels that match none of the labels")
    parser.add_argument(
        "--threshold", type=float, help="pixels whose best score is below this are background in the segmentation"
    )
    parser.add_argument(
        "--crops",
        action="store_true",
        help="with --background or --threshold: label each connected region of the foreground by zero-shot "
        "classification of its crop (twice its size) instead of each pixel by its own best label",
    )
    options.out(parser, "the pictures and JSON", default="locate")
    options.checkpoint(parser)
    options.device(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data import BadSample
    from ..dense import label_regions, render, segment, similarity_maps
    from ..dense.maps import background_index
    from ..errors import ConfigError
    from ..files import write_json
    from ..loading import load_model
    from ..zeroshot import PromptCache, build_classifier

    labels = options.read_list(args.labels, "labels")
    templates = options.read_templates(args)
    background = options.read_background(args)
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise ConfigError(f"--threshold must be a number, not {args.threshold}")
    if args.crops and not background and args.threshold is None:
        raise ConfigError("--crops labels the regions of the foreground: give --background or --threshold too")
    items = options.image_items(args.images)
    model = load_model(options.model_name(args), device=args.device)
    cache = PromptCache()
    classifier = build_classifier(model, labels, templates, cache=cache) if args.crops else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    done, failed = 0, 0
    for item in items:
        try:
            image = item.open_image()
        except BadSample as err:
            print(f"{item.path}: skipped: {err.reason}", file=sys.stderr)
            failed += 1
            continue
        maps = similarity_maps(model, image, labels, templates, args.method, background, cache=cache)
        seg = segment(maps, args.threshold)
        if classifier is not None:
            seg = label_regions(model, image.convert("RGB"), seg, background_index(maps), classifier)
        stem = unique_stem(Path(item.path).stem, used)
        render.map_panels(image, maps).save(out / f"{stem}.maps.png")
        render.segmentation_image(seg, maps.labels).save(out / f"{stem}.segmentation.png")
        found = []
        for i, label in enumerate(maps.labels):
            peak, (x, y) = maps.peak(i)
            found.append({"label": label, "peak": round(peak, 5), "peak_xy": [x, y], "area": float((seg == i).mean())})
        record = {
            "image": item.path,
            "size": [image.width, image.height],
            "method": maps.method,
            "grid": list(maps.grid),
            "labels": found,
            "legend": render.legend(maps.labels),
            "maps": f"{stem}.maps.png",
            "segmentation": f"{stem}.segmentation.png",
            "regions_labelled_by": "crops" if args.crops else "pixels",
        }
        write_json(out / f"{stem}.json", record)
        best = max(found[: len(labels)], key=lambda f: f["peak"])
        print(f"{item.path}: {best['label']} peaks at {tuple(best['peak_xy'])} ({best['peak']:.3f}) -> {out / stem}.*")
        done += 1
    if failed:
        print(f"{failed} of {len(items)} images could not be read", file=sys.stderr)
    print(f"{done} image(s) located in {out}/")
    return 1 if not done else 0


def unique_stem(stem: str, used: set[str]) -> str:
    """The stem, or stem-2, stem-3, ... if an earlier image had it."""
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name
