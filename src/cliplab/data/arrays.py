"""Image sets that come as arrays: MNIST-style IDX files (MNIST, Fashion-MNIST) and scikit-learn's digits."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from ..errors import SourceError
from ..extras import require
from .items import ArrayItem

IDX_PREFIXES = {"train": "train", "test": "t10k"}


def idx_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    """(images, labels) IDX files of `split` ("train" or "test", i.e. `t10k-*`) in `folder`, if both are there."""
    prefix = IDX_PREFIXES.get(split)
    if prefix is None:
        raise SourceError(f"split must be 'train' or 'test' for IDX files, got {split!r}")
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        matches = [folder / f"{prefix}-{kind}{ext}" for ext in ("", ".gz")]
        found.append(next((m for m in matches if m.is_file()), None))
    return (found[0], found[1]) if all(found) else None


def has_idx_files(folder: Path) -> bool:
    return any(idx_files(folder, split) is not None for split in IDX_PREFIXES)


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST file format): a magic number giving the type and rank, then the sizes."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise SourceError(f"{path}: not an IDX file of unsigned bytes")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(shape)):
        raise SourceError(f"{path}: holds {body.size} values, its header says {shape}")
    return body.reshape(shape)


def idx_items(folder: Path, split: str) -> tuple[list[ArrayItem], str]:
    """(an item per image of the IDX files of `split`, a fingerprint of their contents)."""
    found = idx_files(folder, split)
    if found is None:
        raise SourceError(f"{folder}: no {IDX_PREFIXES.get(split, split)}-images/labels IDX files for split {split!r}")
    images_path, labels_path = found
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise SourceError(f"{folder}: IDX images {images.shape} and labels {labels.shape} do not match")
    return _grey_items(images, labels, images_path.name), _digest(images, labels)


def digits_items() -> tuple[list[ArrayItem], str]:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), ink scaled to 0..255."""
    datasets = require("sklearn.datasets", "eval", "sklearn:digits")
    digits = datasets.load_digits()
    images = (digits.images * (255 / 16)).round().astype(np.uint8)  # 0..16 ink levels -> 0..255
    return _grey_items(images, digits.target, "digits"), _digest(images, digits.target)


def _grey_items(images: np.ndarray, labels: np.ndarray, name: str) -> list[ArrayItem]:
    return [ArrayItem(f"{name}:{i}", (), int(label), array=images, index=i) for i, label in enumerate(labels)]


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes() + np.asarray(labels).tobytes()).hexdigest()[:16]
