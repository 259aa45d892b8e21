"""The options several commands share, defined once: one spelling, one meaning, one help text.

| option | meaning |
| --- | --- |
| `--checkpoint` | the model: a checkpoint file, a Hugging Face folder, a released model's name or a Hub id |
| `--pretrained` | an OpenCLIP pretrained tag for the `--checkpoint` architecture |
| `--device` | where the model runs: auto (a GPU when there is one), cpu, cuda, cuda:1, ... |
| `--batch-size` | images or texts encoded together |
| `--workers` | image-decoding processes |
| `--out` | the folder results go to |
| `--json` | print results as JSON lines |
| `--no-progress` | no progress bar |
"""

from __future__ import annotations

import argparse

DEFAULT_CHECKPOINT = "ViT-B/32"


def checkpoint(parser: argparse.ArgumentParser, default: str | None = DEFAULT_CHECKPOINT, note: str = "") -> None:
    where = f"default: {default}" if default else note
    parser.add_argument(
        "--checkpoint",
        default=default,
        metavar="CKPT",
        help="the model: a checkpoint file, a Hugging Face folder, a released model's name (OpenAI's, downloaded "
        "and verified when not in the caches), hf-hub:ORG/REPO (OpenCLIP) or ORG/REPO (transformers) "
        f"({where})",
    )
    parser.add_argument(
        "--pretrained",
        metavar="TAG",
        help="OpenCLIP's pretrained tag for the --checkpoint architecture, e.g. laion2b_s34b_b79k "
        "(cliplab models --pretrained lists them)",
    )


def model_name(args: argparse.Namespace) -> str | None:
    """--checkpoint and --pretrained as the one string cliplab.load_model reads ("ViT-B-32:laion2b_s34b_b79k")."""
    if getattr(args, "pretrained", None):
        if not args.checkpoint:
            from ..errors import ConfigError

            raise ConfigError("--pretrained needs --checkpoint ARCH, the architecture the tag belongs to")
        return f"{args.checkpoint}:{args.pretrained}"
    return args.checkpoint


def device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="where the model runs: auto (a GPU when there is one), cpu, cuda, cuda:1, ... (default: auto)",
    )


def batch_size(parser: argparse.ArgumentParser, default: int = 256) -> None:
    parser.add_argument(
        "--batch-size", type=int, default=default, help=f"images or texts encoded together (default: {default})"
    )


def workers(parser: argparse.ArgumentParser, default: int = 2) -> None:
    parser.add_argument("--workers", type=int, default=default, help=f"image-decoding processes (default: {default})")


def out(parser: argparse.ArgumentParser, what: str, default: str | None = None) -> None:
    if default is None:
        parser.add_argument("--out", required=True, help=f"the folder for {what}")
    else:
        parser.add_argument("--out", default=default, help=f"the folder for {what} (default: {default})")


def json_lines(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")


def progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def memory_map(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mmap",
        action="store_true",
        default=None,
        help="search the index memory-mapped, for collections larger than memory (default: when the index "
        "file is larger than half the memory available)",
    )


def labels(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--labels", required=True, help=help)


def templates(parser: argparse.ArgumentParser) -> None:
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


def read_list(spec: str, what: str) -> list[str]:
    """Comma-separated items, or the lines of the file `@FILE`."""
    from ..files import read_user_text

    items = read_user_text(spec[1:], f"--{what} file").splitlines() if spec.startswith("@") else spec.split(",")
    return [item.strip() for item in items if item.strip()]


def read_templates(args: argparse.Namespace) -> list[str]:
    """The --template prompts, then the --templates set's; the default when neither is given."""
    from ..zeroshot import DEFAULT_TEMPLATES, check_templates, get_templates

    given = list(args.templates or []) + (get_templates(args.template_set) if args.template_set else [])
    return check_templates(given or list(DEFAULT_TEMPLATES), "--template")


def images(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of images")


def image_items(names: list[str]) -> list:
    """The items of IMAGE arguments: a folder stands for the images in it; anything else is read as an image."""
    from pathlib import Path

    from ..data import FileItem, VideoItem, open_source
    from ..data.video import is_video

    items = []
    for name in names:
        if Path(name).is_dir():
            items += open_source(name).items
        else:  # a video is skipped, saying that `cliplab embed` reads videos
            items.append((VideoItem if is_video(name) else FileItem)(name, path=name))
    return items


def dense_method(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method",
        default="clearclip",
        choices=("clearclip", "sclip", "maskclip"),
        help="the last block's rule for the maps (default: clearclip)",
    )


def dense_background(parser: argparse.ArgumentParser, use: str) -> None:
    parser.add_argument(
        "--background",
        default="",
        help=f'comma-separated prompts (or @FILE) pooled into a "background" label: {use} (e.g. "sky,ground,wall")',
    )


def read_background(args: argparse.Namespace) -> list[str]:
    """The --background prompts; none when not given, an error when given and naming none."""
    from ..errors import ConfigError

    if not args.background:
        return []
    prompts = read_list(args.background, "background")
    if not prompts:
        raise ConfigError(f"--background {args.background!r} names no prompts")
    return prompts
