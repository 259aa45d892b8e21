"""Labelled image sets for evaluation, from the formats people keep them in.

- a folder with one subfolder per class (the subfolder names are the class names);
- a label table (CSV or TSV with `image` and `label` columns; paths relative to the table's folder
  or its `images/` subfolder);
- MNIST-style IDX files (`train-images-idx3-ubyte[.gz]` + labels, or `t10k-...` for the test split),
  as Fashion-MNIST and MNIST ship;
- WebDataset shards (a folder of `.tar` files, one `.tar`, or `{00000..00009}.tar`) whose samples hold
  an image and a `.cls` label;
- `sklearn:digits`: scikit-learn's bundled 8x8 handwritten digits (1,797 images; needs scikit-learn);
- `synthetic:heldout` / `synthetic:seen`: the demo's world of coloured shapes.

Every source gives a `LabelledImages`: class names, labels, and image `i` loaded on demand, plus a
fingerprint of its contents for the feature cache. A file that cannot be decoded is skipped when
features are computed, and counted (see `features.py`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.decode import read_image
from ..data.table import default_image_root, read_rows

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class LabelledImages:
    name: str
    classes: list[str]
    labels: list[int]
    load: Callable[[int], Image.Image]  # image i, fully decoded; raises BadSample when it cannot be
    fingerprint: str  # changes whenever the images or labels do
    ids: list[str]  # a name per image (its path, or "source:index")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int], name: str | None = None) -> LabelledImages:
        indices = list(indices)
        digest = hashlib.sha256(f"{self.fingerprint}/{indices}".encode()).hexdigest()[:16]
        return LabelledImages(
            name or self.name,
            self.classes,
            [self.labels[i] for i in indices],
            _Subset(self.load, indices),
            digest,
            [self.ids[i] for i in indices],
        )


# Loaders are small classes rather than closures so that a DataLoader can pickle them into workers
# under any start method.
class _Subset:
    def __init__(self, load, indices: list[int]):
        self.inner, self.indices = load, indices

    def __call__(self, i: int) -> Image.Image:
        return self.inner(self.indices[i])


class _Files:
    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __call__(self, i: int) -> Image.Image:
        return read_image(self.paths[i])


class _GreyArrays:
    def __init__(self, images: np.ndarray):
        self.images = images

    def __call__(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i]).convert("RGB")  # uint8 (H, W): greyscale


class _Scenes:
    def __init__(self, world, scenes: list, size: int):
        self.world, self.scenes, self.size = world, scenes, size

    def __call__(self, i: int) -> Image.Image:
        return self.world.render(self.scenes[i], self.size)


def open_labelled_images(
    source: str | os.PathLike, split: str = "test", classes: Sequence[str] | None = None
) -> LabelledImages:
    """A labelled image set from a folder of class folders, a label table, IDX files or `synthetic:...`.

    `classes` renames the classes of label-indexed sources (IDX files, tables of integer labels),
    in label order; `split` picks IDX files' `train` or `test` (t10k) half.
    """
    text = str(source)
    if text.startswith("synthetic:"):
        return _synthetic(text.split(":", 1)[1])
    if text == "sklearn:digits":
        return _digits(classes)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
        return _label_table(path, classes)
    if "{" in text or path.suffix == ".tar" or (path.is_dir() and any(path.glob("*.tar"))):
        return _labelled_shards(text, classes)
    if path.is_dir():
        if _idx_files(path, split) is not None:
            return _idx(path, split, classes)
        return _class_folders(path)
    raise ValueError(
        f"{text}: not a folder of class folders, a label table (.csv/.tsv), a folder of IDX files, "
        "sklearn:digits, or synthetic:heldout / synthetic:seen"
    )


def _labelled_shards(source: str, classes: Sequence[str] | None) -> LabelledImages:
    from ..data.shard_index import ShardImages, index_shards, sample_label

    index = index_shards(source)
    samples = [s for s in index.samples if sample_label(s) is not None]
    if not samples:
        raise ValueError(
            f"{source}: no samples with a .cls label (for retrieval use captions: --task zeroshot_retrieval)"
        )
    labels = [sample_label(s) for s in samples]
    names = list(classes) if classes is not None else [str(i) for i in range(max(labels) + 1)]
    if max(labels) >= len(names):
        raise ValueError(f"{source}: label {max(labels)} but only {len(names)} class names")
    name = Path(source.split("{")[0].rstrip("/")).name or "shards"
    return LabelledImages(
        name,
        names,
        labels,
        ShardImages(samples),
        hashlib.sha256(f"{index.fingerprint}|{names}".encode()).hexdigest()[:16],
        [f"{s.shard}:{s.key}" for s in samples],
    )


def _class_folders(root: Path) -> LabelledImages:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{root}: no class subfolders")
    paths, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                paths.append(file)
                labels.append(label)
    if not paths:
        raise ValueError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return _from_paths(root.name, classes, paths, labels, root)


def _label_table(table: Path, classes: Sequence[str] | None) -> LabelledImages:
    rows = read_rows(table)
    if not rows or "image" not in rows[0] or "label" not in rows[0]:
        raise ValueError(f"{table}: a label table needs 'image' and 'label' columns")
    raw = [str(row["label"]).strip() for row in rows]
    if classes is not None or all(r.isdigit() for r in raw):
        names = list(classes) if classes is not None else [str(i) for i in range(max(int(r) for r in raw) + 1)]
        labels = [int(r) for r in raw]
        if max(labels) >= len(names):
            raise ValueError(f"{table}: label {max(labels)} but only {len(names)} class names")
    else:
        names = sorted(set(raw))
        labels = [names.index(r) for r in raw]
    root = default_image_root(table, rows, "image")  # beside the table, or in its images/ folder
    paths = [Path(row["image"]) if Path(row["image"]).is_absolute() else root / row["image"] for row in rows]
    return _from_paths(f"{table.parent.name}-{table.stem}", names, paths, labels, table)  # imagenette-labels


def _from_paths(name: str, classes: list[str], paths: list[Path], labels: list[int], base: Path) -> LabelledImages:
    digest = hashlib.sha256()
    for path, label in zip(paths, labels):
        try:
            stat = path.stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{label}\n".encode())
        except OSError:
            digest.update(f"{path}|missing|{label}\n".encode())
    digest.update("\n".join(classes).encode())
    return LabelledImages(name, classes, labels, _Files(paths), digest.hexdigest()[:16], [str(p) for p in paths])


def _idx_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test' for IDX files, got {split!r}")
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        matches = [folder / f"{prefix}-{kind}{ext}" for ext in ("", ".gz")]
        found.append(next((m for m in matches if m.is_file()), None))
    return (found[0], found[1]) if all(found) else None


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST file format): a magic number giving the type and rank, then the sizes."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: holds {body.size} values, its header says {shape}")
    return body.reshape(shape)


def _idx(folder: Path, split: str, classes: Sequence[str] | None) -> LabelledImages:
    images_path, labels_path = _idx_files(folder, split)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: IDX images {images.shape} and labels {labels.shape} do not match")
    names = list(classes) if classes is not None else [str(i) for i in range(int(labels.max()) + 1)]
    digest = hashlib.sha256(images.tobytes() + labels.tobytes() + "\n".join(names).encode()).hexdigest()[:16]
    return LabelledImages(
        f"{folder.name}-{split}",
        names,
        labels.astype(int).tolist(),
        _GreyArrays(images),
        digest,
        [f"{images_path.name}:{i}" for i in range(len(labels))],
    )


def _digits(classes: Sequence[str] | None) -> LabelledImages:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("sklearn:digits needs scikit-learn: pip install 'cliplab[eval]'") from None
    digits = load_digits()
    images = (digits.images * (255 / 16)).round().astype(np.uint8)  # 0..16 ink levels -> 0..255
    names = list(classes) if classes is not None else [str(d) for d in range(10)]
    return LabelledImages(
        "sklearn-digits",
        names,
        digits.target.astype(int).tolist(),
        _GreyArrays(images),
        hashlib.sha256(images.tobytes() + digits.target.tobytes() + "\n".join(names).encode()).hexdigest()[:16],
        [f"digits:{i}" for i in range(len(images))],
    )


def _synthetic(spec: str, count: int = 600, seed: int = 1_000_003, size: int = 64) -> LabelledImages:
    from ..data import synthetic

    if spec not in ("heldout", "seen"):
        raise ValueError(f"synthetic:{spec}: choose synthetic:heldout or synthetic:seen")
    world = synthetic.SyntheticWorld()
    pairs = world.held_out if spec == "heldout" else world.seen
    scenes = [world.scene(i, seed, spec, objects=1) for i in range(count)]
    labels = [pairs.index((s.things[0].colour, s.things[0].shape)) for s in scenes]
    return LabelledImages(
        f"synthetic-{spec}",
        [f"{c} {s}" for c, s in pairs],
        labels,
        _Scenes(world, scenes, size),
        # the world's definition is part of the key: a release that changes it must not reuse features
        hashlib.sha256(
            repr(
                (spec, count, seed, size, synthetic.COLOURS, synthetic.SHAPES, synthetic.JITTER, world.held_out)
            ).encode()
        ).hexdigest()[:16],
        [f"synthetic:{spec}:{i}" for i in range(count)],
    )


def images_of(entries: Sequence, name: str) -> LabelledImages:
    """The images of caption-table entries (`cliplab.data.CaptionedImage`) as an unlabelled set, for retrieval."""
    paths = [entry.path for entry in entries]
    return _from_paths(name, ["image"], paths, [0] * len(paths), Path(name))
