"""The built-in world: deterministic, held-out pairs never trained on, and learnable in seconds."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cliplab
from cliplab.data import CaptionDataset, open_source
from cliplab.data.synthetic import COLOURS, JITTER, SHAPES, Scene, SyntheticWorld, Thing
from cliplab.tokenizer import BPETokenize
from cliplab.train import TrainConfig, train
from cliplab.transforms import image_transform
from cliplab.zeroshot import build_classifier, classify


def test_the_same_seed_gives_the_same_scenes_images_and_captions():
    world = SyntheticWorld()
    for index in range(20):
        a, b = world.scene(index, seed=3), world.scene(index, seed=3)
        assert a == b
        assert np.array_equal(np.asarray(world.render(a, 48)), np.asarray(world.render(b, 48)))
        assert world.caption(a, random.Random(index)) == world.caption(b, random.Random(index))
    assert [world.scene(i, seed=3) for i in range(20)] != [world.scene(i, seed=4) for i in range(20)]
    scenes = open_source("synthetic", count=8, seed=1, image_size=32)
    assert len(scenes.items) == 8 and scenes.items[5].scene == world.scene(5, seed=1) and not scenes.allows_crops
    dataset = CaptionDataset(scenes.items, image_transform(32), tokenizer=BPETokenize(32), seed=1)
    assert torch.equal(dataset[5].image, dataset[5].image) and torch.equal(dataset[5].text, dataset[5].text)


def test_held_out_pairs_never_appear_in_training_scenes_or_captions():
    world = SyntheticWorld()
    # Each of the first six colours and each shape is in exactly two held-out pairs: neither alone names
    # a held-out class. The other colours are seen with every shape.
    assert len(world.held_out) == 2 * len(SHAPES) == 12 and len(COLOURS) > len(SHAPES)
    assert Counter(c for c, _ in world.held_out) == Counter({c: 2 for c in list(COLOURS)[: len(SHAPES)]})
    assert Counter(s for _, s in world.held_out) == Counter({s: 2 for s in SHAPES})
    held = set(world.held_out)
    seen_colours, seen_shapes = set(), set()
    for index in range(3000):
        scene = world.scene(index, seed=0)
        for thing in scene.things:
            assert (thing.colour, thing.shape) not in held
            seen_colours.add(thing.colour)
            seen_shapes.add(thing.shape)
        caption = world.caption(scene, random.Random(index))
        assert not any(f"{c} {s}" in caption for c, s in held), caption
    assert seen_colours == set(COLOURS) and seen_shapes == set(SHAPES)
    heldout = open_source("synthetic:heldout", count=60, seed=0, image_size=32)
    names, labels = heldout.classes, {item.label for item in heldout.items}
    assert set(names) == {f"{c} {s}" for c, s in world.held_out} and len(labels) == len(names)


def test_the_rendered_thing_has_its_colour():
    heldout = open_source("synthetic:heldout", count=12, seed=0, image_size=64)
    names = heldout.classes
    for image, label in ((item.open_image(), item.label) for item in heldout.items):
        colour = np.array(COLOURS[names[label].split()[0]], dtype=float)
        pixels = np.asarray(image, dtype=float).reshape(-1, 3)
        # Things vary in brightness (clipped at 255): compare with the best such scaling of the named colour
        brightness = np.clip(pixels @ colour / (colour @ colour), *JITTER["brightness"])[:, None]
        near = np.abs(pixels - np.minimum(brightness * colour, 255)).max(axis=1) < 12
        assert near.mean() > 0.01  # at least 1% of the image


def test_describe_names_every_attribute_and_relations_differ_only_in_the_side():
    world = SyntheticWorld()
    scene = Scene((Thing("star", "red", "small", "top left"),), "grey", "striped")
    assert world.describe(scene) == "a small red star in the top left on a striped grey background"
    two = Scene((Thing("heart", "orange", "small", "right"), Thing("cross", "blue", "small", "left")), "white", "plain")
    assert world.describe(two) == "a small orange heart to the right of a small blue cross on a plain white background"
    assert world.relation_captions(two) == (
        "an orange heart to the right of a blue cross",
        "an orange heart to the left of a blue cross",
    )
    with pytest.raises(ValueError, match="two things"):
        world.relation_captions(scene)


def test_prompt_ensembling_is_the_normalised_mean_of_normalised_embeddings():
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@64px").eval()
    names, templates = ["red star", "blue circle", "green heart"], ["a {}", "a picture of a {}", "one {}."]
    weights = build_classifier(model, names, templates, batch_size=4)  # batches cut across classes
    for c, name in enumerate(names):
        prompts = cliplab.tokenize([t.format(name) for t in templates], model.context_length)
        expected = F.normalize(model.encode_text(prompts, normalize=True).mean(dim=0), dim=-1)
        torch.testing.assert_close(weights[:, c], expected, atol=1e-6, rtol=0)
    probs = classify(model, torch.randn(2, 3, 64, 64), weights)
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(-1), torch.ones(2))


def test_a_prompt_cache_gives_the_same_classifier_and_encodes_each_prompt_once():
    from cliplab.zeroshot import PromptCache

    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@64px").eval()
    templates = ["a {}", "a blurry photo of a very small {} far away.", "itap of a {}."]
    encoded = []
    encode_text = model.encode_text
    model.encode_text = lambda tokens, **kw: encoded.append(len(tokens)) or encode_text(tokens, **kw)
    plain = build_classifier(model, ["star", "circle"], templates)
    cache = PromptCache(max_bytes=10_400)  # eight of these prompts with their 128 floats (~1,290 bytes each), not nine
    first = build_classifier(model, ["star", "circle"], templates, cache=cache, batch_size=4)
    again = build_classifier(model, ["circle", "heart"], templates, cache=cache)
    assert encoded == [6, 4, 2, 3]  # plain; cached in batches of 4; then only heart's three prompts
    torch.testing.assert_close(first, plain, atol=1e-6, rtol=0)
    torch.testing.assert_close(again[:, 0], plain[:, 1], atol=1e-6, rtol=0)
    assert len(cache) == 8 and "a star" not in cache  # the least recently used went first
    assert cache.nbytes <= 10_400


def test_a_short_run_on_the_synthetic_world_drives_the_loss_well_below_chance(tmp_path):
    batch = 64
    train(
        TrainConfig(
            data="synthetic",
            samples_per_epoch=batch * 64,
            batch_size=batch,
            lr=1e-3,
            warmup_steps=20,
            workers=0,
            out=str(tmp_path / "run"),
            progress=False,
            tensorboard=False,
            plots=False,
            log_every=8,
        )
    )
    import json

    losses = [json.loads(line)["train/loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses[0] > math.log(batch) - 0.1  # it starts at (or above) chance, ln(batch size)
    assert losses[-1] < math.log(batch) - 1.0, losses
