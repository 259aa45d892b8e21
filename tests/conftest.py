"""Shared fixtures: everything the tests need is made here; nothing is read from ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cliplab

CAPTIONS = [
    "a photo of a dog.",
    "Two children play on a red slide in the park, while their parents watch from a bench nearby.",
    "a",
    "an émigré's café at 3 o'clock 😀",
]


def natural_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB array: smooth gradients, a few blobs and sensor noise (not flat colour)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [
        np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y + rng.uniform())) for _ in range(3)
    ]
    image = np.stack(channels, axis=-1) * 0.35 + 0.5
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r**2))[..., None]
        image = image * (1 - blob) + blob * rng.uniform(0, 1, size=3)
    image = image + rng.normal(0, 0.03, size=image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No test reaches the network: a model name never starts a download (tests/test_pretrained.py
    turns this off for its loopback server). Subprocesses inherit it. Nor does a test write into the
    user's cache: cached features go to a folder of the test session."""
    monkeypatch.setenv("CLIPLAB_OFFLINE", "1")
    monkeypatch.setenv("CLIPLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cliplab-cache"))


def saved_model(tmp_path_factory, architecture: str, name: str = "tiny.safetensors") -> Path:
    """A checkpoint of `architecture` with seed-0 random weights, in a fresh temporary folder."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / name
    cliplab.save_checkpoint(cliplab.create_model(architecture), path)
    return path


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> list:
    """Real JPEG and PNG files in many modes and sizes, written by PIL."""
    folder = tmp_path_factory.mktemp("images")
    rgb = natural_image(180, 260, seed=1)
    files = []

    def save(name: str, image: Image.Image, **kwargs) -> None:
        path = folder / name
        image.save(path, **kwargs)
        files.append(path)

    save("landscape.jpg", Image.fromarray(rgb), quality=90)
    save("portrait.jpg", Image.fromarray(natural_image(333, 150, seed=2)), quality=75)
    save("small.png", Image.fromarray(natural_image(40, 57, seed=3)))
    save("large.jpg", Image.fromarray(natural_image(600, 800, seed=4)), quality=95)
    save("gray.jpg", Image.fromarray(rgb).convert("L"))
    save("gray_alpha.png", Image.fromarray(rgb).convert("LA"))
    rgba = Image.fromarray(rgb).convert("RGBA")
    alpha = np.zeros(rgb.shape[:2], dtype=np.uint8)
    alpha[20:150, 30:200] = 255
    rgba.putalpha(Image.fromarray(alpha))
    save("transparent.png", rgba)
    save("palette.png", Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    save("bilevel.png", Image.fromarray(rgb).convert("1"))
    return files


COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 50, 220), "yellow": (230, 220, 30)}


def write_caption_table(folder, count: int, size: int = 40, name: str = "captions.tsv"):
    """`count` small JPEGs, each tinted by one colour, with two captions that name it, and their TSV table."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    names = list(COLOURS)
    rows = ["image\tcaption"]
    for i in range(count):
        colour = names[i % len(names)]
        pixels = natural_image(size, size, seed=i).astype(np.float32) * 0.4 + np.array(COLOURS[colour]) * 0.6
        Image.fromarray(pixels.astype(np.uint8)).save(folder / "images" / f"{i:04d}.jpg", quality=90)
        rows += [f"{i:04d}.jpg\ta {colour} picture number {i}", f"{i:04d}.jpg\tsomething {colour}"]
    table = folder / name
    table.write_text("\n".join(rows) + "\n")
    return table
