"""A cliplab model, `cliplab.tokenize` and `cliplab.image_transform` used unchanged by CLIP_benchmark,
which must then give the numbers `cliplab eval` gives."""

from __future__ import annotations

import pytest
import torch
from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval
from torch.utils.data import DataLoader, Dataset

import cliplab
from cliplab.data import open_source
from cliplab.data.synthetic import SyntheticWorld
from cliplab.evaluate import FeatureOptions, classification_report, retrieval_metrics, zero_shot_classification
from cliplab.zeroshot import build_classifier


class _Labelled(Dataset):
    def __init__(self, data, transform):
        self.items, self.transform, self.classes = data.items, transform, data.classes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.transform(self.items[i].open_image()), self.items[i].label


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return cliplab.create_model("tiny-RN@32px").eval()


def test_zero_shot_classification_through_clip_benchmark(model, tmp_path):
    data = open_source("synthetic:heldout").subset(range(120))
    loader = DataLoader(_Labelled(data, cliplab.image_transform(model.image_size)), batch_size=32)
    templates = ["a {c}", "one {c}"]  # CLIP_benchmark's spelling; cliplab reads it too
    # Their classifier and classification loop, called as their `evaluate` calls them. (`evaluate` itself
    # ends in float() of a one-element array, which numpy 2.4 refuses; its metrics are recomputed here.)
    classifier = zeroshot_classification.zero_shot_classifier(
        model, cliplab.tokenize, data.classes, templates, "cpu", amp=False
    )
    logits, target = zeroshot_classification.run_classification(model, classifier, loader, "cpu", amp=False)
    theirs = classification_report(logits, target, data.classes)
    options = FeatureOptions(workers=0, cache_dir=tmp_path, progress=False)
    ours = zero_shot_classification(model, data, templates, options=options).report
    torch.testing.assert_close(classifier.float(), build_classifier(model, data.classes, templates), atol=1e-6, rtol=0)
    assert theirs.top1 == pytest.approx(ours.top1) and theirs.top5 == pytest.approx(ours.top5)
    assert theirs.mean_per_class_recall == pytest.approx(ours.mean_per_class_recall)
    assert torch.equal(theirs.confusion, ours.confusion)


def test_retrieval_through_clip_benchmark(model):
    world = SyntheticWorld()
    scenes = [world.scene(i, seed=5, split="seen", objects=1) for i in range(40)]
    captions = [[world.describe(s), f"a {s.things[0].colour} {s.things[0].shape}"] for s in scenes]
    transform = cliplab.image_transform(model.image_size)
    images = [transform(world.render(s, 64)) for s in scenes]

    def collate(batch):
        return torch.stack([b[0] for b in batch]), [b[1] for b in batch]

    loader = DataLoader(list(zip(images, captions)), batch_size=16, collate_fn=collate)
    theirs = zeroshot_retrieval.evaluate(model, loader, cliplab.tokenize, "cpu", amp=False, recall_k_list=[1, 5])
    with torch.no_grad():
        image_features = model.encode_image(torch.stack(images), normalize=True)
        text_features = model.encode_text(cliplab.tokenize([c for pair in captions for c in pair]), normalize=True)
    ours = retrieval_metrics(image_features, text_features, torch.arange(40).repeat_interleave(2), ks=(1, 5))
    assert theirs["image_retrieval_recall@1"] == pytest.approx(ours["text_to_image_R@1"])
    assert theirs["image_retrieval_recall@5"] == pytest.approx(ours["text_to_image_R@5"])
    assert theirs["text_retrieval_recall@5"] == pytest.approx(ours["image_to_text_R@5"])
