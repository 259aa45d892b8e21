"""Where in the picture, measured on the synthetic world's held-out scenes.

    python benchmarks/bench_dense.py table --checkpoint SYNTHETIC.safetensors     # the README's table
    python benchmarks/bench_dense.py bound --checkpoint SYNTHETIC.safetensors     # what the maps' regions allow
    python benchmarks/bench_dense.py context --checkpoint SYNTHETIC.safetensors   # choosing the crops' size

- table: for each last-block rule, `dense_segmentation` on the 600 held-out scenes (pointing game, mean IoU
  by pixels and by region crops, the whole-image baseline) and `dense_detection` on the first 200 drawn with
  one and with two things (AP@0.5), all with the prompt "a photo of a {}.".
- bound: the mean IoU of the segmentation's own foreground regions if each were given the true label of
  most of its pixels (ClearCLIP and SCLIP, 200 scenes): what region labelling, by crops or otherwise, can
  reach with these maps' edges and background.
- context: detection AP@0.5 and segmentation-by-crops mean IoU for crops 1.25 to 2 times a region's size,
  on 150-200 held-out scenes drawn with another seed (1) than the evaluation's, so the choice is not made
  on the scenes it is reported on.

A model suited to it: `cliplab train data=synthetic model=tiny-ViT/8@64px ...` (README, "Where in the picture").
"""

from __future__ import annotations

import argparse
import functools
import json

import numpy as np

import cliplab
from cliplab.data import open_source
from cliplab.dense import METHODS, label_regions, segment, similarity_maps
from cliplab.dense.detect import detect
from cliplab.dense.maps import components
from cliplab.evaluate import dense as evaluation

TEMPLATES = ["a photo of a {}."]


def table(model, methods) -> list[dict]:
    rows = []
    for method in methods:
        seg = evaluation.dense_segmentation(model, open_source("synthetic:heldout"), TEMPLATES, method, progress=True)
        row = {"method": method, **{k: round(v, 4) for k, v in seg.metrics().items()}}
        for things in (1, 2):
            source = open_source("synthetic:heldout", count=200)
            boxes = evaluation.dense_detection(model, source, TEMPLATES, method, things, progress=True)
            row[f"ap50_{things}"] = round(boxes.ap50, 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def bound(model, methods, scenes: int = 200) -> dict[str, float]:
    source = open_source("synthetic:heldout", count=scenes)
    classes = list(source.classes)
    found = {}
    for method in methods:
        iou = evaluation._IoU(len(classes) + 1)
        for item in evaluation.scene_items(source):
            masks = item.world.masks(item.scene, item.size)
            truth = np.full(masks.shape[1:], len(classes))
            for mask, thing in zip(masks, item.scene.things):
                truth[mask] = classes.index(f"{thing.colour} {thing.shape}")
            maps = similarity_maps(
                model, item.open_image(), classes, TEMPLATES, method, evaluation.background_prompts()
            )
            predicted = segment(maps)
            numbers, count = components(predicted != len(classes))
            for region in range(1, count + 1):
                inside = numbers == region
                predicted[inside] = np.bincount(truth[inside], minlength=len(classes) + 1)[:-1].argmax()
                if not np.isin(truth[inside], range(len(classes))).any():
                    predicted[inside] = len(classes)  # a region of background pixels only: no label is right
            iou.add(truth, predicted)
        found[method] = round(iou.mean(), 4)
        print(f"{method}: mean IoU with every foreground region given its true label {found[method]:.3f}", flush=True)
    return found


def context(model, method: str = "sclip", sizes=(1.25, 1.5, 1.75, 2.0)) -> list[dict]:
    rows = []
    for size in sizes:
        row = {"context": size}
        for things in (1, 2):
            source = open_source("synthetic:heldout", count=150, seed=1)
            with _patched(evaluation, "detect", functools.partial(detect, context=size), module="cliplab.dense.detect"):
                row[f"ap50_{things}"] = round(
                    evaluation.dense_detection(model, source, TEMPLATES, method, things).ap50, 4
                )
        with _patched(evaluation, "label_regions", functools.partial(label_regions, context=size)):
            seg = evaluation.dense_segmentation(
                model, open_source("synthetic:heldout", count=200, seed=1), TEMPLATES, method
            )
        row["miou_crops"] = round(seg.miou_crops, 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


class _patched:
    """Replace a name in a module for the duration of a block (`module`: where the name is looked up)."""

    def __init__(self, owner, name: str, value, module: str | None = None):
        import importlib

        self.owner = importlib.import_module(module) if module else owner
        self.name, self.value = name, value

    def __enter__(self):
        self.saved = getattr(self.owner, self.name)
        setattr(self.owner, self.name, self.value)

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("table", "bound", "context"))
    parser.add_argument("--checkpoint", required=True, help="a model trained on the synthetic world")
    parser.add_argument("--methods", default=",".join(reversed(METHODS)), help="last-block rules, comma-separated")
    args = parser.parse_args()
    model = cliplab.load_model(args.checkpoint)
    methods = args.methods.split(",")
    if args.what == "table":
        table(model, methods)
    elif args.what == "bound":
        bound(model, [m for m in methods if m != "maskclip"])
    else:
        context(model)


if __name__ == "__main__":
    main()
