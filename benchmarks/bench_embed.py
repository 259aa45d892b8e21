"""Image and text embedding throughput: cliplab against open-clip-torch and transformers.

Same weights, same inputs, same process, runs alternating; prints medians and ratios, and for images
the GFLOP/s against a 2048 x 2048 matmul run in the same rounds.

    python benchmarks/bench_embed.py                 # ViT-B/32 and RN50, batch 32
    python benchmarks/bench_embed.py --models ViT-B/32 ViT-B/16 RN50 --no-texts --rounds 7   # images alone
    python benchmarks/bench_embed.py --models ViT-B/32 --no-images --text-batch 256   # text alone, batch 256
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cliplab  # noqa: E402
from cliplab.zeroshot import get_classnames  # noqa: E402
from common import captions, compare, machine, matmul_candidate, matmul_peak_gflops, report  # noqa: E402

OPENCLIP_NAMES = {
    "ViT-B/32": "ViT-B-32-quickgelu",
    "ViT-B/16": "ViT-B-16-quickgelu",
    "RN50": "RN50-quickgelu",
    "RN101": "RN101-quickgelu",
    "ViT-L/14": "ViT-L-14-quickgelu",
}


def flops_per_image(model: cliplab.CLIP) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.encode_image(torch.randn(1, 3, model.image_size, model.image_size))
    return counter.get_total_flops()


def reference_models(name: str, folder: Path):
    """open_clip's model with seeded random weights, cliplab's and (for ViTs) transformers' holding the same."""
    import open_clip
    import transformers

    torch.manual_seed(0)
    ref = open_clip.create_model(OPENCLIP_NAMES[name]).eval()
    ours = cliplab.build_model(ref.state_dict()).eval()
    models = {"cliplab": ours, "open_clip": ref}
    if not ours.config.vision.is_resnet:
        cliplab.save_hf_folder(ours, folder / "hf")
        models["transformers"] = transformers.CLIPModel.from_pretrained(folder / "hf").eval()
    return models


def bench_images(name: str, models: dict, batch: int, rounds: int) -> None:
    ours = models["cliplab"]
    images = torch.randn(batch, 3, ours.image_size, ours.image_size, generator=torch.Generator().manual_seed(0))
    fns = {"cliplab": lambda: ours.encode_image(images), "open_clip": lambda: models["open_clip"].encode_image(images)}
    if "transformers" in models:
        fns["transformers"] = lambda: models["transformers"].get_image_features(pixel_values=images)
    fns["matmul"], matmul_gflop = matmul_candidate()
    medians = compare(fns, rounds=rounds)
    peak = matmul_gflop / medians.pop("matmul")
    print(f"\nmatmul peak in the same rounds (2048 x 2048, median): {peak:.0f} GFLOP/s")
    report(f"{name} image embedding, batch {batch}", medians, batch, "images", flops_per_image(ours), peak)


def bench_texts(name: str, models: dict, label: str, texts: list[str], rounds: int) -> None:
    ids = cliplab.tokenize(texts, truncate=True)
    longest = int(ids.argmax(-1).max()) + 1
    fns = {
        "cliplab": lambda: models["cliplab"].encode_text(ids),
        "open_clip": lambda: models["open_clip"].encode_text(ids),
    }
    if "transformers" in models:  # transformers given the batch padded to its longest text
        fns["transformers"] = lambda: models["transformers"].get_text_features(input_ids=ids[:, :longest])
    report(
        f"{name} text embedding, {label} (longest {longest} tokens), batch {len(texts)}",
        compare(fns, rounds=rounds),
        len(texts),
        "texts",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ViT-B/32", "RN50"], choices=sorted(OPENCLIP_NAMES))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--text-batch", type=int, help="texts per batch (default: --batch)")
    parser.add_argument("--no-images", action="store_true", help="text embedding only")
    parser.add_argument("--no-texts", action="store_true", help="image embedding only")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    peak = matmul_peak_gflops()
    print(f"machine: {machine()}; float32 matmul peak {peak:.0f} GFLOP/s (best of 10 runs, at the start)")
    text_batch = args.text_batch or args.batch
    classes = get_classnames("imagenet1k")  # ImageNet's class names: prompts of 7 to about 16 tokens
    prompts = [f"a photo of a {c}." for c in classes[:: max(1, len(classes) // text_batch)]][:text_batch]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            models = reference_models(name, Path(tmp))
            if not args.no_images:
                bench_images(name, models, args.batch, args.rounds)
            if not args.no_texts:
                bench_texts(name, models, "Flickr8k-style captions", captions(text_batch), args.rounds)
                bench_texts(name, models, "ImageNet prompts", prompts, args.rounds)


if __name__ == "__main__":
    main()
