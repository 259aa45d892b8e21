"""A built-in image-caption world: coloured shapes on backgrounds, drawn on the fly, with captions.

Deterministic for a seed, any count and resolution, no files. Some colour-shape pairs are held out:
they never appear in a training image or caption, so classifying them tests composition (a "red
star" when only red things and stars were seen apart), the way the paper tests zero-shot transfer.

    world = SyntheticWorld()
    scene = world.scene(7, seed=0)            # a Scene of one or two shapes
    image = world.render(scene, size=64)      # a PIL image
    text = world.caption(scene, random.Random(0))

As a source (`cliplab.data.open_source`): `synthetic` is training scenes with captions,
`synthetic:heldout` and `synthetic:seen` single-thing scenes labelled with their colour-shape pair.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..errors import SourceError
from .decode import MAX_PIXELS
from .items import Item

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
            colour = tuple(min(255, round(c * thing.brightness)) for c in COLOURS[thing.colour])
            draw.polygon(_polygon(thing, side), fill=colour)
        return image.resize((size, size), Image.Resampling.LANCZOS)

    def masks(self, scene: Scene, size: int = 64) -> np.ndarray:
        """(things, size, size) booleans: the pixels where each thing shows (a later thing covers an
        earlier one, as `render` paints them); a pixel belongs to a thing when most of it is covered."""
        scale = 4
        side = size * scale
        label = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(label)
        for i, thing in enumerate(scene.things):
            draw.polygon(_polygon(thing, side), fill=i + 1)
        cells = np.asarray(label).reshape(size, scale, size, scale)
        share = np.stack([(cells == i + 1).mean(axis=(1, 3)) for i in range(len(scene.things))])
        return share > 0.5

    def boxes(self, scene: Scene, size: int = 64) -> list[tuple[int, int, int, int]]:
        """(x0, y0, x1, y1), exclusive ends, of each thing's visible pixels (an empty box for a hidden one)."""
        out = []
        for mask in self.masks(scene, size):
            rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
            out.append(
                (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1) if len(rows) else (0, 0, 0, 0)
            )
        return out


def _polygon(thing: Thing, side: int) -> list[tuple[float, float]]:
    """The thing's outline in pixels of a `side`-wide image."""
    cx, cy = POSITIONS[thing.position]
    x, y = (cx + thing.offset[0]) * side, (cy + thing.offset[1]) * side
    radius = SIZES[thing.size] * thing.scale * side
    return [(x + px * radius, y + py * radius) for px, py in _outline(thing.shape, thing.angle)]


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
        points = [
            (
                math.sin(k * math.pi / 5) * (1 if k % 2 == 0 else 0.45),
                -math.cos(k * math.pi / 5) * (1 if k % 2 == 0 else 0.45),
            )
            for k in range(10)
        ]
    elif shape == "heart":  # the classic parametric heart, scaled into the unit circle
        ts = [2 * math.pi * k / 64 for k in range(64)]
        points = [
            (
                16 * math.sin(t) ** 3 / 17,
                -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 17 - 0.1,
            )
            for t in ts
        ]
    elif shape == "cross":
        points = [
            (-0.3, -1),
            (0.3, -1),
            (0.3, -0.3),
            (1, -0.3),
            (1, 0.3),
            (0.3, 0.3),
            (0.3, 1),
            (-0.3, 1),
            (-0.3, 0.3),
            (-1, 0.3),
            (-1, -0.3),
            (-0.3, -0.3),
        ]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(px * cos - py * sin, px * sin + py * cos) for px, py in points]


@dataclass(frozen=True, kw_only=True, eq=False)
class SceneItem(Item):
    """A generated scene: its image is drawn at `size` when opened; its captions are drawn from the world."""

    world: SyntheticWorld
    scene: Scene
    size: int

    def open_image(self, max_pixels: int = MAX_PIXELS) -> Image.Image:
        return self.world.render(self.scene, self.size)

    def draw_caption(self, rng: random.Random) -> str:
        return self.world.caption(self.scene, rng)


def scene_item(world: SyntheticWorld, scene: Scene, size: int, key: str, label: int | None = None) -> SceneItem:
    """`scene` as an item, captioned with its most specific description."""
    return SceneItem(key, (world.describe(scene),), label, world=world, scene=scene, size=size)


class SceneItems(Sequence):
    """Items of scenes 0 .. count - 1 of a split, made when asked for (training reads tens of thousands).

    "train" scenes hold one or two things; "heldout" and "seen" scenes one thing, labelled with the
    index of its colour-shape pair among the split's pairs.
    """

    def __init__(self, world: SyntheticWorld, split: str, count: int, seed: int, size: int):
        self.world, self.split, self.count, self.seed, self.size = world, split, count, seed, size
        self.pairs = world.held_out if split == "heldout" else world.seen

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if not -self.count <= index < self.count:
            raise IndexError(index)
        index %= self.count
        if self.split == "train":
            return scene_item(self.world, self.world.scene(index, self.seed), self.size, f"synthetic:train:{index}")
        scene = self.world.scene(index, self.seed, self.split, objects=1)
        label = self.pairs.index((scene.things[0].colour, scene.things[0].shape))
        return scene_item(self.world, scene, self.size, f"synthetic:{self.split}:{index}", label)


# split -> (default count, default seed); evaluation scenes come from their own seed, apart from training's
SPLITS = {"train": (20_000, 0), "heldout": (600, 1_000_003), "seen": (600, 1_000_003)}


def synthetic_items(
    split: str, count: int | None = None, seed: int | None = None, size: int | None = None
) -> tuple[SceneItems, list[str] | None, str]:
    """(the items of `split`, their class names (labelled splits), a fingerprint of the world and the options)."""
    if split not in SPLITS:
        raise SourceError(f"synthetic:{split}: choose synthetic (training scenes), synthetic:heldout or synthetic:seen")
    count = SPLITS[split][0] if count is None else count
    seed = SPLITS[split][1] if seed is None else seed
    size = 64 if size is None else size
    if count < 1:
        raise SourceError(f"synthetic:{split}: the number of scenes must be positive, got {count}")
    world = SyntheticWorld()
    items = SceneItems(world, split, count, seed, size)
    classes = None if split == "train" else [f"{c} {s}" for c, s in items.pairs]
    # the world's definition is part of the key: a release that changes it must not reuse cached features
    definition = (split, count, seed, size, COLOURS, SHAPES, JITTER, world.held_out)
    return items, classes, hashlib.sha256(repr(definition).encode()).hexdigest()[:16]
