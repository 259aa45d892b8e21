"""`cliplab models`: the built-in architectures."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the built-in architectures",
        description="The built-in architectures: the paper's nine under OpenAI's names, then small ones that "
        "train on a laptop CPU. Any of them is a `--checkpoint` name (its released weights looked up in the caches) "
        "and a `model=` for cliplab train.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..models import available_models, get_config

    print(f"{'name':<18} {'image tower':<26} {'size':>5} {'embed':>6}  text tower")
    for name in available_models():
        config = get_config(name)
        vision, text = config.vision, config.text
        if vision.is_resnet:
            tower = f"ResNet {'-'.join(map(str, vision.layers))} w{vision.width}"
        else:
            tower = f"ViT /{vision.patch_size} {vision.layers}x{vision.width}"
        print(
            f"{name:<18} {tower:<26} {vision.image_size:>5} {config.embed_dim:>6}  {text.layers}x{text.width}, ctx {text.context_length}"
        )
    return 0
