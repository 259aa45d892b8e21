"""A built-in image-caption world: coloured shapes on backgrounds, drawn on the fly, with captions.

Deterministic for a seed, any count and resolution, no files. Some colour-shape pairs are held out:
they never appear in a training image or caption, so classifying them tests composition (a "red
star" when only red things and stars were seen apart), the way the paper tests zero-shot transfer.

    world = SyntheticWorld()
    scene = world.scene(7, seed=0)            # a Scene of one or two shapes
    image = world.render(scene, size=64)      # a PIL image
    text = world.caption(scene, random.Random(0))
"""

from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from ..tokenizer import BPETokenize
from .dataset import Sample, seeded_transform

COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (45, 80, 225),
    "yellow": (235, 215, 40),
    "purple": (140, 50, 180),
    "orange": (245, 140, 30),
    "pink": (245, 120, 190),
    "brown": (130, 80, 35),
    "cyan": (40, 200, 210),
    "navy": (25, 30, 110),
    "lime": (160, 225, 50),
    "magenta": (220, 40, 220),
    "teal": (0, 120, 120),
    "maroon": (110, 10, 20),
    "olive": (120, 120, 20),
}
SHAPES = ("circle", "square", "triangle", "star", "heart", "cross")
SIZES = {"small": 0.2, "large": 0.32}  # radius as a share of the image side
POSITIONS = {  # name: centre as shares of the image side
    "top left": (0.27, 0.27),
    "top": (0.5, 0.27),
    "top right": (0.73, 0.27),
    "left": (0.27, 0.5),
    "center": (0.5, 0.5),
    "right": (0.73, 0.5),
    "bottom left": (0.27, 0.73),
    "bottom": (0.5, 0.73),
    "bottom right": (0.73, 0.73),
}
BACKGROUNDS = {"grey": (128, 128, 128), "black": (20, 20, 20), "white": (240, 240, 240)}
PATTERNS = ("plain", "striped", "dotted")
# Unnamed variation of each thing (see Thing): largest offset from its position (share of the side),
# scale of its size, rotation (degrees either way) and brightness factor of its colour.
JITTER = {"offset": 0.05, "scale": (0.85, 1.12), "angle": 8.0, "brightness": (0.88, 1.1)}

ONE_OBJECT = (
    "a {size} {colour} {shape} in the {position}",
    "a {colour} {shape}",
    "a {colour} {shape} on a {background} background",
    "there is a {size} {colour} {shape} on a {pattern} {background} background",
    "a picture of a {colour} {shape} in the {position}",
    "a {size} {colour} {shape}",
    "one {colour} {shape}",
)
TWO_OBJECTS = (
    "a {colour} {shape} and a {colour2} {shape2}",
    "a {colour} {shape} to the {relation} of a {colour2} {shape2}",
    "two shapes: a {size} {colour} {shape} and a {size2} {colour2} {shape2}",
    "a {colour2} {shape2} next to a {colour} {shape} on a {background} background",
)
# Prompts for zero-shot classification of "{colour} {shape}" classes, in the captions' own style.
TEMPLATES = ("a {}", "a picture of a {}", "there is a {}", "one {}")


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    size: str
    position: str
    # Unnamed variation within what the caption says, so that a class is never a fixed pixel template:
    # an offset from the named position and a scale of the named size (shares of the image side),
    # a rotation in degrees and a brightness factor of the named colour.
    offset: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    angle: float = 0.0
    brightness: float = 1.0


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]
    background: str
    pattern: str


class SyntheticWorld:
    """The vocabulary of the world and which colour-shape pairs are held out of training.

    By default two pairs of each of the first six colours are held out (colour i with shapes i + 1 and
    i + 3), so every colour and every shape is still seen in training, only never together in those
    pairs, and among the held-out classes neither the colour nor the shape alone names the class (each
    narrows it to two): classifying them needs both, composed. The other nine colours are seen with
    every shape; without them each shape is seen in only four colours, and an image encoder learns
    "star" as "a star in one of its four colours" and cannot name a star of a fifth.
    """

    def __init__(self, colours=tuple(COLOURS), shapes=SHAPES, held_out: tuple[tuple[str, str], ...] | None = None):
        self.colours, self.shapes = tuple(colours), tuple(shapes)
        if held_out is None:
            n = len(self.shapes)
            held_out = tuple((c, self.shapes[(i + k) % n]) for i, c in enumerate(self.colours[:n]) for k in (1, 3))
        self.held_out = tuple(held_out)
        held = set(self.held_out)
        self.seen = tuple((c, s) for c in self.colours for s in self.shapes if (c, s) not in held)

    def scene(self, index: int, seed: int = 0, split: str = "train", objects: int | None = None) -> Scene:
        """Scene `index` of a split: "train" uses only seen pairs; "heldout" one thing of a held-out pair;
        "seen" one thing of a seen pair (to compare against)."""
        rng = random.Random(f"synthetic/{seed}/{split}/{index}")
        pairs = self.held_out if split == "heldout" else self.seen
        count = objects or (1 if split != "train" else rng.choice((1, 1, 2)))
        positions = rng.sample(["left", "right"] if count == 2 else list(POSITIONS), count)
        things = []
        for position in positions:
            colour, shape = rng.choice(pairs)
            size = "small" if count == 2 else rng.choice(tuple(SIZES))
            jitter = dict(
                offset=(
                    rng.uniform(-JITTER["offset"], JITTER["offset"]),
                    rng.uniform(-JITTER["offset"], JITTER["offset"]),
                ),
                scale=rng.uniform(*JITTER["scale"]),
                angle=rng.uniform(-JITTER["angle"], JITTER["angle"]),
                brightness=rng.uniform(*JITTER["brightness"]),
            )
            things.append(Thing(shape, colour, size, position, **jitter))
        return Scene(tuple(things), rng.choice(tuple(BACKGROUNDS)), rng.choice(PATTERNS))

    def caption(self, scene: Scene, rng: random.Random) -> str:
        first = scene.things[0]
        values = {
            "shape": first.shape,
            "colour": first.colour,
            "size": first.size,
            "position": first.position,
            "background": scene.background,
            "pattern": scene.pattern,
        }
        if len(scene.things) == 1:
            return _articles(rng.choice(ONE_OBJECT).format(**values))
        second = scene.things[1]
        values.update(shape2=second.shape, colour2=second.colour, size2=second.size, relation=first.position)
        return _articles(rng.choice(TWO_OBJECTS).format(**values))

    def describe(self, scene: Scene) -> str:
        """The one most specific caption of a scene, naming every attribute (for retrieval tests)."""
        things = [f"{t.size} {t.colour} {t.shape}" for t in scene.things]
        if len(things) == 1:
            where = f"a {things[0]} in the {scene.things[0].position}"
        else:
            where = f"a {things[0]} to the {scene.things[0].position} of a {things[1]}"
        return _articles(f"{where} on a {scene.pattern} {scene.background} background")

    def relation_captions(self, scene: Scene) -> tuple[str, str]:
        """(true, false) captions of a two-thing scene that differ only in "left" and "right"."""
        if len(scene.things) != 2:
            raise ValueError("a relation needs a scene of two things")
        first, second = scene.things
        wrong = {"left": "right", "right": "left"}[first.position]
        return tuple(
            _articles(f"a {first.colour} {first.shape} to the {side} of a {second.colour} {second.shape}")
            for side in (first.position, wrong)
        )

    def render(self, scene: Scene, size: int = 64) -> Image.Image:
        scale = 4  # draw large, then downsample: smooth edges at any size
        side = size * scale
        image = _background(scene.background, scene.pattern, side).copy()
        draw = ImageDraw.Draw(image)
        for thing in scene.things:
            cx, cy = POSITIONS[thing.position]
            x, y = (cx + thing.offset[0]) * side, (cy + thing.offset[1]) * side
            colour = tuple(min(255, round(c * thing.brightness)) for c in COLOURS[thing.colour])
            points = _outline(thing.shape, thing.angle)
            radius = SIZES[thing.size] * thing.scale * side
            draw.polygon([(x + px * radius, y + py * radius) for px, py in points], fill=colour)
        return image.resize((size, size), Image.Resampling.LANCZOS)


@functools.lru_cache(maxsize=64)
def _background(name: str, pattern: str, side: int) -> Image.Image:
    base = BACKGROUNDS[name]
    image = Image.new("RGB", (side, side), base)
    draw = ImageDraw.Draw(image)
    shade = tuple(min(255, c + 40) if sum(base) < 384 else max(0, c - 40) for c in base)
    if pattern == "striped":
        for x in range(0, side, side // 8):
            draw.rectangle((x, 0, x + side // 16, side), fill=shade)
    elif pattern == "dotted":
        step = side // 8
        for x in range(step // 2, side, step):
            for y in range(step // 2, side, step):
                draw.ellipse((x - step // 8, y - step // 8, x + step // 8, y + step // 8), fill=shade)
    return image


@functools.lru_cache(maxsize=8192)
def _tokens(caption: str, tokenizer) -> torch.Tensor:
    # Captions repeat (a few thousand are common): tokenizing each once takes a fifth off loading.
    return tokenizer(caption)[0]


def _articles(text: str) -> str:
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def _outline(shape: str, angle: float) -> list[tuple[float, float]]:
    """The shape as a polygon inside the unit circle (y down), rotated by `angle` degrees."""
    if shape == "circle":
        points = [(math.cos(2 * math.pi * k / 48), math.sin(2 * math.pi * k / 48)) for k in range(48)]
    elif shape == "square":
        points = [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]
    elif shape == "triangle":
        points = [(0, -1), (0.95, 0.8), (-0.95, 0.8)]
    elif shape == "star":
        points = [(math.sin(k * math.pi / 5) * (1 if k % 2 == 0 else 0.45),
                   -math.cos(k * math.pi / 5) * (1 if k % 2 == 0 else 0.45)) for k in range(10)]  # fmt: skip
    elif shape == "heart":  # the classic parametric heart, scaled into the unit circle
        ts = [2 * math.pi * k / 64 for k in range(64)]
        points = [(16 * math.sin(t) ** 3 / 17,
                   -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 17 - 0.1)
                  for t in ts]  # fmt: skip
    elif shape == "cross":
        points = [(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1), (-0.3, 1),
                  (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)]  # fmt: skip
    else:
        raise ValueError(f"unknown shape {shape!r}")
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(px * cos - py * sin, px * sin + py * cos) for px, py in points]


class SyntheticCaptions(Dataset):
    """`count` training scenes as (image, caption) samples for the trainer; a caption is drawn per visit."""

    def __init__(self, count: int, transform, tokenizer=None, seed: int = 0, image_size: int = 64,
                 world: SyntheticWorld | None = None):  # fmt: skip
        self.world = world or SyntheticWorld()
        self.count, self.transform, self.tokenizer = count, transform, tokenizer or BPETokenize()
        self.seed, self.image_size, self.epoch = seed, image_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample:
        scene = self.world.scene(index, self.seed)
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
        text = _tokens(self.world.caption(scene, rng), self.tokenizer)
        pixels = seeded_transform(self.transform, self.world.render(scene, self.image_size), rng.getrandbits(63))
        return Sample(pixels, text, [])


def heldout_classification(world: SyntheticWorld, count: int, seed: int = 0, image_size: int = 64, split="heldout"):
    """(images, labels, class names) of single-thing scenes; classes are the split's "colour shape" pairs."""
    pairs = world.held_out if split == "heldout" else world.seen
    names = [f"{colour} {shape}" for colour, shape in pairs]
    images, labels = [], []
    for index in range(count):
        scene = world.scene(index, seed, split, objects=1)
        thing = scene.things[0]
        images.append(world.render(scene, image_size))
        labels.append(pairs.index((thing.colour, thing.shape)))
    return images, torch.tensor(labels), names
