"""What a from-scratch CLIP learns from Flickr8k in a fixed CPU budget: the recipe and its ablations.

Each variant is `examples/flickr8k.yaml` with some options changed, trained by `cliplab train` in a
process of its own (timed from start to saved model, validation included), then scored:

- Flickr8k dev retrieval (1,000 photos, 5,000 captions): recall@1/5/10 both ways, from the run's last
  validation, and their mean R@10;
- Imagenette zero-shot (the 500-photo sample, 10 classes): OpenAI's 80 templates, with OpenAI's
  curated ImageNet names for the classes and with the table's raw labels.

Results are appended to OUT/results.jsonl (one line per run) and every run there is printed as a
markdown table at the end, so variants can be run a few at a time. Flickr8k and Imagenette are for
research use; `examples/flickr8k_table.py` says where to get them.

    python benchmarks/recipe_flickr8k.py --out /tmp/recipe recipe                # the recipe, seed 0
    python benchmarks/recipe_flickr8k.py --out /tmp/recipe recipe --seeds 0 1 2  # three seeds
    python benchmarks/recipe_flickr8k.py --out /tmp/recipe no-ema crops-0.9 ...   # ablations
    python benchmarks/recipe_flickr8k.py --out /tmp/recipe --table               # print what is there
    python benchmarks/recipe_flickr8k.py --out /tmp/recipe recipe --procs 2      # on 2 processes (torchrun)
    python benchmarks/recipe_flickr8k.py --out /tmp/recipe --curves              # 1 vs 2 processes' losses
    python benchmarks/recipe_flickr8k.py --list                                  # the variants
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cliplab  # noqa: E402
from cliplab.data import open_source  # noqa: E402
from cliplab.evaluate import zero_shot_classification  # noqa: E402
from cliplab.evaluate.features import FeatureOptions  # noqa: E402
from cliplab.train import load_config  # noqa: E402
from cliplab.zeroshot import get_classnames, get_templates  # noqa: E402
from common import IMAGENETTE, SHARED, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "examples" / "flickr8k.yaml"

# name -> (what it changes from the recipe, the options). "all-captions" reads a table written here in
# which each of an image's five captions is a row of its own image, so an epoch visits all five.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "recipe": ("examples/flickr8k.yaml as it is", []),
    "before": (
        "the recipe before this work: lr 1e-3, exp(t) from 1/0.07, all patches, crops 0.9-1, 10 epochs, no average, float32",
        ["patch_dropout=0.0", "crop_scale=[0.9,1.0]", "epochs=10", "ema=0.0", "temperature_init=null", "lr=1e-3"]
        + ["val_every=0", "precision=fp32"],
    ),
    "no-patch-dropout": ("all patches, half the epochs (the same time)", ["patch_dropout=0.0", "epochs=@half"]),
    "crops-0.9": ("weak crops, 0.9-1 of the area", ["crop_scale=[0.9,1.0]"]),
    "crops-0.25": ("strong crops, 0.25-1 of the area", ["crop_scale=[0.25,1.0]"]),
    "no-ema": ("no moving average of the weights", ["ema=0.0"]),
    "ema-0.999": ("a slower average", ["ema=0.999"]),
    "temperature-14": ("exp(t) starts at 1/0.07 (the paper's)", ["temperature_init=null"]),
    "temperature-50": ("exp(t) starts at 50", ["temperature_init=50"]),
    "siglip": ("SigLIP's sigmoid loss (t = log 10, b = -10)", ["loss=siglip", "temperature_init=null"]),
    "lr-2e-3": ("peak learning rate 2e-3", ["lr=2e-3"]),
    "lr-1e-3": ("peak learning rate 1e-3", ["lr=1e-3"]),
    "lr-5e-4": ("peak learning rate 5e-4", ["lr=5e-4"]),
    "lr-2.5e-4": ("peak learning rate 2.5e-4", ["lr=2.5e-4"]),
    "wd-0.05": ("weight decay 0.05", ["weight_decay=0.05"]),
    "wd-0.5": ("weight decay 0.5", ["weight_decay=0.5"]),
    "batch-256": ("batch 256, half the steps", ["batch_size=256"]),
    "batch-64": ("batch 64, twice the steps", ["batch_size=64"]),
    "32px": ("32-px images (16 patches), the same time", ["model=tiny-ViT/8@32px", "epochs=@time32"]),
    "all-captions": ("all five captions per epoch (epochs / 5)", ["data=@all", "epochs=@fifth"]),
    "bf16": ("bfloat16 autocast on the CPU", ["precision=bf16"]),
    "96px": ("96-px images, three quarters of the 144 patches dropped", ["image_size=96", "patch_dropout=0.75"]),
}


def recipe_epochs() -> int:
    return load_config(RECIPE).epochs


def all_captions_table(captions: Path, out: Path) -> Path:
    """The caption table with each training caption a row of its own image (the same file, a path of its
    own), so that an epoch visits every caption; the dev rows are unchanged."""
    table = out / "all-captions.tsv"
    root = captions.parent / "images" if (captions.parent / "images").is_dir() else captions.parent
    with open(captions, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    seen: dict[str, int] = {}
    with open(table, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["image", "split", "caption"])
        for row in rows:
            copies = 0
            if row["split"] == "train":
                copies = seen[row["image"]] = seen.get(row["image"], -1) + 1
            path = f"{root}{'/.' * copies}/{row['image']}"  # (pathlib would fold the "/." away)
            writer.writerow([path, row["split"], row["caption"]])
    return table


def options_for(name: str, captions: Path, out: Path, epochs: int | None = None) -> list[str]:
    """The variant's options, its epochs in proportion to `epochs` (default: the recipe's)."""
    base = epochs or recipe_epochs()
    resolved = [f"epochs={base}"] if epochs else []
    for option in VARIANTS[name][1]:
        key, value = option.split("=", 1)
        value = {
            "@half": str(max(1, base // 2)),
            "@fifth": str(max(1, base // 5)),
            "@time32": str(base * 2),  # a 32-px step costs about half a 64-px one with half the patches
            "@all": str(all_captions_table(captions, out)) if value == "@all" else value,
        }.get(value, value)
        resolved.append(f"{key}={value}")
    return resolved


def imagenette_zero_shot(checkpoint: Path, labels: Path) -> dict[str, float]:
    model = cliplab.load_model(checkpoint)
    photos = open_source(str(labels))
    curated = [get_classnames("imagenet1k")[IMAGENETTE[name]] for name in photos.classes]
    templates = get_templates("imagenet1k")
    options = FeatureOptions(progress=False, cache=False)
    scores = {}
    for kind, names in (("curated", curated), ("labels", photos.classes)):
        with torch.inference_mode():
            result = zero_shot_classification(model, photos, templates, names, options=options)
        scores[kind] = result.report.top1
    return scores


def run(
    name: str, seed: int, captions: Path, labels: Path, out: Path, epochs: int | None, extra: list[str], procs: int = 1
) -> dict:
    tag = f"{name}-seed{seed}" + (f"-{procs}procs" if procs > 1 else "")
    folder = out / tag
    overrides = [f"data={captions}", *options_for(name, captions, out, epochs), f"seed={seed}", f"out={folder}"]
    overrides += ["progress=false", "tensorboard=false", "plots=false", *extra]
    launcher = [sys.executable]
    if procs > 1:  # torchrun: one thread each (OMP_NUM_THREADS=1), gloo
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    command = [*launcher, "-m", "cliplab", "train", "--config", str(RECIPE), *overrides]
    print(f"== {name}, seed {seed}, {procs} process(es): {' '.join(command[len(launcher) + 2 :])}", flush=True)
    began = time.perf_counter()
    with open(out / f"{tag}.log", "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"{name} failed (exit {done.returncode}); see {out / f'{tag}.log'}")
    summary = json.loads((folder / "summary.json").read_text())
    metrics = summary["metrics"]
    row = {
        "name": name,
        "seed": seed,
        "changes": VARIANTS[name][0],
        "options": overrides[1:],
        "epochs": load_config(folder / "config.yaml").epochs,
        "processes": procs,
        "folder": str(folder),
        "steps": summary["steps"],
        "wall_seconds": seconds,
        "retrieval": {k.removeprefix("val/"): v for k, v in metrics.items() if "R@" in k},
        "val_loss": metrics.get("val/loss"),
        "train_loss": metrics.get("train/loss"),
        "temperature": metrics.get("train/logit_scale"),
        "imagenette": imagenette_zero_shot(folder / "model.safetensors", labels),
        "machine": machine(),
    }
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def mean_r10(row: dict) -> float:
    return (row["retrieval"]["image_to_text_R@10"] + row["retrieval"]["text_to_image_R@10"]) / 2


def results(out: Path) -> list[dict]:
    """OUT/results.jsonl's rows (none where nothing has run)."""
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def table(out: Path) -> str:
    rows = results(out)
    by_name: dict[tuple, list[dict]] = {}
    for row in rows:
        by_name.setdefault((row["name"], row["epochs"], row["steps"], row.get("processes", 1)), []).append(row)
    lines = [
        "| variant | what changes | epochs (steps) | seeds | Flickr8k dev R@10 i->t / t->i | mean R@10 | Imagenette (curated / labels) "
        "| final exp(t) | wall |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def spread(values: list[float], scale: float = 100, digits: int = 1) -> str:
        if len(values) == 1:
            return f"{values[0] * scale:.{digits}f}"
        return f"{statistics.mean(values) * scale:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"

    for (name, epochs, steps, procs), runs in by_name.items():
        name = name if procs == 1 else f"{name}, {procs} processes"
        r = [run["retrieval"] for run in runs]
        lines.append(
            f"| {name} | {runs[0]['changes']} | {epochs} ({steps}) | {len(runs)} "
            f"| {spread([x['image_to_text_R@10'] for x in r])} / {spread([x['text_to_image_R@10'] for x in r])} "
            f"| **{spread([mean_r10(run) for run in runs])}** "
            f"| {spread([run['imagenette']['curated'] for run in runs])} / "
            f"{spread([run['imagenette']['labels'] for run in runs])} "
            f"| {spread([run['temperature'] for run in runs], 1)} "
            f"| {spread([run['wall_seconds'] / 60 for run in runs], 1)} min |"
        )
    return "\n".join(lines)


def loss_curve(folder: Path, window: int = 50) -> dict[int, float]:
    """The training loss averaged over windows of `window` steps: {window's last step: mean loss}."""
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    windows: dict[int, dict[int, float]] = {}
    for record in records:
        if "train/loss" in record:
            windows.setdefault((record["step"] - 1) // window, {})[record["step"]] = record["train/loss"]
    return {max(losses): statistics.mean(losses.values()) for _, losses in sorted(windows.items())}


def curves(out: Path) -> str:
    """Each variant and seed run on one process and on several: their training losses side by side (in
    windows of 50 steps), the largest gap, and OUT/curves.png with both curves."""
    runs: dict[tuple, dict[int, Path]] = {}
    for row in results(out):
        if "folder" in row:
            runs.setdefault((row["name"], row["seed"], row["epochs"]), {})[row.get("processes", 1)] = Path(
                row["folder"]
            )
    pairs = {key: procs for key, procs in runs.items() if 1 in procs and len(procs) > 1}
    if not pairs:
        return f"no variant and seed in {out} was run on both one process and several (--procs 2)"
    lines, drawn = [], []
    for (name, seed, _), procs in pairs.items():
        one = loss_curve(procs[1])
        for count, folder in sorted(procs.items()):
            if count == 1:
                continue
            other = loss_curve(folder)
            common = [step for step in one if step in other]
            gaps = [abs(one[step] - other[step]) for step in common]
            lines.append(
                f"{name}, seed {seed}: 1 vs {count} processes over {common[-1]} steps: training loss "
                f"{one[common[-1]]:.3f} vs {other[common[-1]]:.3f} at the end; largest gap between 50-step means "
                f"{max(gaps):.3f}, mean gap {statistics.mean(gaps):.3f}"
            )
            drawn.append((f"{name} seed {seed}", one, other, count))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "\n".join(lines + ["(matplotlib is not installed: no picture)"])
    figure, axes = plt.subplots(1, len(drawn), figsize=(5 * len(drawn), 3.5), squeeze=False)
    for ax, (title, one, other, count) in zip(axes[0], drawn):
        ax.plot(list(one), list(one.values()), label="1 process")
        ax.plot(list(other), list(other.values()), "--", label=f"{count} processes (torchrun, gloo)")
        ax.set(title=title, xlabel="step", ylabel="training loss (50-step mean)")
        ax.legend()
    figure.tight_layout()
    figure.savefig(out / "curves.png", dpi=100)
    return "\n".join(lines + [f"curves drawn in {out / 'curves.png'}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", help="variants to run, in order (--list names them)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, help="a shorter (or longer) schedule for every variant")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="more options for every run")
    parser.add_argument("--procs", type=int, default=1, help="train on this many processes (torchrun, gloo)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/recipe-flickr8k"))
    parser.add_argument("--captions", type=Path, default=SHARED / "flickr8k" / "captions.tsv")
    parser.add_argument("--imagenette", type=Path, default=SHARED / "imagenette_mini" / "labels.tsv")
    parser.add_argument("--table", action="store_true", help="only print the table of OUT's results")
    parser.add_argument("--list", action="store_true", help="list the variants")
    parser.add_argument("--curves", action="store_true", help="only compare OUT's 1- and 2-process loss curves")
    args = parser.parse_args()
    if args.list:
        for name, (changes, options) in VARIANTS.items():
            print(f"{name:18} {changes}: {' '.join(options) or '-'}")
        return
    if args.curves:
        print(curves(args.out))
        return
    if args.procs < 1:
        parser.error(f"--procs must be at least 1, got {args.procs}")
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; --list names them")
    for path in [] if args.table else [args.captions, args.imagenette]:
        if not path.exists():
            parser.error(f"{path} does not exist (examples/flickr8k_table.py says where the data comes from)")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{machine()}; results in {args.out}", flush=True)
    for name in [] if args.table else args.variants:
        for seed in args.seeds:
            row = run(name, seed, args.captions, args.imagenette, args.out, args.epochs, args.set, args.procs)
            print(
                f"   {row['steps']} steps, {row['wall_seconds'] / 60:.1f} min: mean R@10 {mean_r10(row):.1%}, "
                f"Imagenette {row['imagenette']['curated']:.1%} / {row['imagenette']['labels']:.1%}",
                flush=True,
            )
    print(table(args.out))


if __name__ == "__main__":
    main()
