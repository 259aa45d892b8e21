"""`cliplab classify IMAGE... --labels "dog,cat,red envelope" [--checkpoint PATH]`: zero-shot labels for images.

Each label becomes one prompt per template, the prompts' embeddings are averaged per label (the
paper's prompt ensembling), and each image gets its top labels with probabilities. An image that
cannot be read is reported and skipped; the others are still classified.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="zero-shot classify images among labels you name",
        description="Zero-shot classification: the most likely of the given labels for each image.",
        epilog='example: cliplab classify cat.jpg --labels "cat,dog,car" --checkpoint ViT-B-32.pt',
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--labels", required=True, help="comma-separated class names, or @FILE with one per line")
    parser.add_argument(
        "--checkpoint",
        default="ViT-B/32",
        help="a checkpoint file or a model name found in the caches (default: ViT-B/32)",
    )
    parser.add_argument(
        "--template",
        action="append",
        dest="templates",
        metavar="TEXT",
        help='a prompt with "{}" for the label; repeat for an ensemble (default: "a photo of a {}.")',
    )
    parser.add_argument(
        "--templates",
        dest="template_set",
        metavar="FILE|SET",
        help="a file of templates (one per line, or a JSON list) or a built-in set: imagenet1k (OpenAI's 80), "
        "imagenet1k_7, cifar10, food101, pets, ...",
    )
    parser.add_argument("--top", type=int, default=5, help="labels to print per image (default: 5)")
    parser.set_defaults(run=run)


def _read_list(spec: str, what: str) -> list[str]:
    from ..errors import ConfigError
    from ..files import read_user_text

    items = read_user_text(spec[1:], f"--{what} file").splitlines() if spec.startswith("@") else spec.split(",")
    items = [item.strip() for item in items if item.strip()]
    if not items:
        raise ConfigError(f"no {what} given")
    return items


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data import BadSample, read_image
    from ..loading import load
    from ..zeroshot import build_classifier, check_templates, classify, get_templates

    labels = _read_list(args.labels, "labels")
    templates = list(args.templates or []) + (get_templates(args.template_set) if args.template_set else [])
    templates = check_templates(templates or list(DEFAULT_TEMPLATES), "--template")
    model, preprocess = load(args.checkpoint)
    weights = build_classifier(model, labels, templates)
    failed = 0
    for name in args.images:
        try:
            with read_image(Path(name)) as image:
                pixels = preprocess(image).unsqueeze(0)
        except BadSample as err:
            print(f"{name}: skipped: {err}", file=sys.stderr)
            failed += 1
            continue
        probs = classify(model, pixels, weights)[0]
        top = torch.topk(probs, min(args.top, len(labels)))
        print(name)
        for p, i in zip(top.values.tolist(), top.indices.tolist()):
            print(f"  {p:6.3f}  {labels[i]}")
    if failed:
        print(f"{failed} of {len(args.images)} images could not be read", file=sys.stderr)
    return 1 if failed == len(args.images) else 0
