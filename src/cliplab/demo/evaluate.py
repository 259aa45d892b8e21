"""What the demo measures on the synthetic world, each on scenes no training step drew.

- zero-shot classification of the held-out colour-shape pairs (never in a training image or caption),
  with the world's prompt templates ensembled; the same on seen pairs for comparison, and the held-out
  images against every class, seen ones included (where a model that never composes picks a seen pair);
- image<->text retrieval with each scene's most specific caption;
- left/right: a two-thing scene against its caption and the same caption with "left" and "right"
  swapped. CLIP is known to be weak at spatial relations; this says how weak, against 50% chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from ..data.synthetic import TEMPLATES, Scene, SyntheticWorld, scene_item
from ..encode import embed_images, embed_texts
from ..evaluate import ClassificationReport, classification_report, retrieval_metrics
from ..models import Model
from ..zeroshot import build_classifier, probabilities

# Scenes for evaluation come from their own seeds, apart from the training scenes' seed.
EVAL_SEED_OFFSET = 1_000_003


@dataclass
class DemoEvaluation:
    heldout: ClassificationReport
    seen: ClassificationReport
    heldout_among_all: ClassificationReport
    retrieval: dict[str, float]
    retrieval_count: int
    left_right: float  # share of the pairs told right
    left_right_count: int
    examples: list[tuple[Image.Image, str, list[tuple[str, float]]]]  # image, truth, top-3 (class, probability)

    def to_dict(self) -> dict:
        return {
            "zero_shot_heldout": self.heldout.to_dict(),
            "zero_shot_seen": _summary(self.seen),
            "zero_shot_heldout_among_all_classes": _summary(self.heldout_among_all),
            "retrieval": {"scenes": self.retrieval_count, **self.retrieval},
            "left_right": {"pairs": self.left_right_count, "accuracy": self.left_right, "chance": 0.5},
        }


def _summary(report: ClassificationReport) -> dict:
    keys = ("count", "top1", "top5", "mean_per_class_recall", "chance")
    return {"classes": len(report.classes), **{k: v for k, v in report.to_dict().items() if k in keys}}


@torch.no_grad()
def evaluate_world(
    model: Model, world: SyntheticWorld, seed: int, images_per_task: int = 600, batch_size: int = 256
) -> DemoEvaluation:
    size, eval_seed = model.image_size, seed + EVAL_SEED_OFFSET

    def embed_scenes(scenes: list[Scene]) -> torch.Tensor:
        items = [scene_item(world, scene, size, f"scene {i}") for i, scene in enumerate(scenes)]
        return embed_images(model, items, batch_size, workers=0).features

    def single_things(split: str) -> tuple[list[Scene], list[str]]:
        scenes = [world.scene(i, eval_seed, split, objects=1) for i in range(images_per_task)]
        return scenes, [f"{s.things[0].colour} {s.things[0].shape}" for s in scenes]

    def zero_shot(features: torch.Tensor, truths: list[str], classes: list[str]):
        probs = probabilities(model, features, build_classifier(model, classes, TEMPLATES).cpu())
        labels = torch.tensor([classes.index(t) for t in truths])
        return classification_report(probs, labels, classes), probs

    all_classes = [f"{c} {s}" for c in world.colours for s in world.shapes]
    heldout_classes = [f"{c} {s}" for c, s in world.held_out]
    seen_classes = [f"{c} {s}" for c, s in world.seen]

    heldout_scenes, heldout_truths = single_things("heldout")
    heldout_features = embed_scenes(heldout_scenes)
    heldout, probs = zero_shot(heldout_features, heldout_truths, heldout_classes)
    heldout_among_all, _ = zero_shot(heldout_features, heldout_truths, all_classes)
    seen_scenes, seen_truths = single_things("seen")
    seen, _ = zero_shot(embed_scenes(seen_scenes), seen_truths, seen_classes)

    top = probs.topk(3, dim=1)
    examples = [
        (
            world.render(heldout_scenes[i], size),
            heldout_truths[i],
            [(heldout_classes[c], p) for c, p in zip(top.indices[i].tolist(), top.values[i].tolist())],
        )
        for i in range(16)
    ]

    # Retrieval: a third of the scenes hold two things.
    scenes = [world.scene(i, eval_seed, "seen", objects=1 + (i % 3 == 2)) for i in range(images_per_task)]
    retrieval = retrieval_metrics(
        embed_scenes(scenes),
        embed_texts(model, [world.describe(s) for s in scenes], batch_size),
        torch.arange(len(scenes)),
    )

    pairs = [world.scene(i, eval_seed + 1, "seen", objects=2) for i in range(images_per_task // 2)]
    image_features = embed_scenes(pairs)
    true_false = [world.relation_captions(s) for s in pairs]
    true_features = embed_texts(model, [t for t, _ in true_false], batch_size)
    false_features = embed_texts(model, [f for _, f in true_false], batch_size)
    right = ((image_features * true_features).sum(-1) > (image_features * false_features).sum(-1)).double()

    return DemoEvaluation(
        heldout=heldout,
        seen=seen,
        heldout_among_all=heldout_among_all,
        retrieval=retrieval,
        retrieval_count=len(scenes),
        left_right=right.mean().item(),
        left_right_count=len(pairs),
        examples=examples,
    )
