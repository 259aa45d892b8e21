"""`cliplab models`: the built-in architectures."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the built-in architectures, or (--pretrained) the released weights cliplab loads by name",
        description="The built-in architectures: the paper's nine under OpenAI's names, then small ones that "
        "train on a laptop CPU. Any of them is a `--checkpoint` name (OpenAI's released weights, downloaded and "
        "verified when not in the caches) and a `model=` for cliplab train. With --pretrained: every released "
        "set of weights cliplab loads by name (`--checkpoint ARCH --pretrained TAG`), with its source, licence and "
        "the zero-shot ImageNet top-1 its authors report.",
    )
    parser.add_argument("--pretrained", action="store_true", help="list released weights: architecture, tag, ...")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        return _pretrained()
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


def _pretrained() -> int:
    from ..pretrained import pretrained_weights

    print(f"{'architecture':<18} {'tag':<30} {'act.':<5} {'IN top-1':>8}  {'licence':<26} source")
    for entry in pretrained_weights():
        top1 = f"{100 * entry.imagenet_top1:.1f}" if entry.imagenet_top1 is not None else "-"
        source = f"OpenAI ({entry.file})" if entry.source == "openai" else f"hf-hub:{entry.repo}"
        activation = "quick" if entry.activation == "quick_gelu" else "gelu"
        print(f"{entry.architecture:<18} {entry.tag:<30} {activation:<5} {top1:>8}  {entry.licence:<26} {source}")
    print(
        "\nload one with --checkpoint ARCH --pretrained TAG (cliplab.load(ARCH, pretrained=TAG)); OpenAI's need no "
        "tag (--checkpoint ViT-B/32). Hub weights need the hub extra. IN top-1: zero-shot ImageNet accuracy (%) as "
        "reported in OpenCLIP's results table."
    )
    return 0
