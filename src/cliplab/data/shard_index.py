"""WebDataset shards read in place (for evaluation sets and embedding collections).

One pass over the tar headers records, per sample, where its image's bytes lie (shard, offset, size)
and its small text members (`.cls` label, `.txt` / `.json` captions); an image is read later with a
single seek, so a large set never sits in memory. A shard cut off in the middle keeps its complete
samples; the cut is reported.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..data.decode import BadSample, check_caption, decode_image
from ..data.shards import IMAGE_EXTENSIONS, list_shards, sample_captions

TEXT_EXTENSIONS = ("cls", "txt", "json")


@dataclass
class ShardSample:
    key: str
    shard: str
    image: tuple[int, int] | None = None  # (offset, size) of the image member's bytes
    texts: dict[str, bytes] = field(default_factory=dict)  # extension -> bytes, for cls / txt / json


@dataclass
class ShardIndex:
    samples: list[ShardSample]
    problems: list[tuple[str, str]]  # (shard, what was wrong)
    fingerprint: str


def index_shards(source: str | Path) -> ShardIndex:
    shards = list_shards(source)
    samples: list[ShardSample] = []
    problems: list[tuple[str, str]] = []
    digest = hashlib.sha256()
    for shard in shards:
        stat = Path(shard).stat()
        digest.update(f"{shard}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        current: ShardSample | None = None
        try:
            with tarfile.open(shard, mode="r:") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    folder, _, base = member.name.rpartition("/")
                    stem, _, extension = base.partition(".")
                    key, extension = (f"{folder}/{stem}" if folder else stem), extension.lower()
                    if current is None or current.key != key:
                        current = ShardSample(key, shard)
                        samples.append(current)
                    if extension in IMAGE_EXTENSIONS and current.image is None:
                        current.image = (member.offset_data, member.size)
                    elif extension in TEXT_EXTENSIONS:
                        current.texts[extension] = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError) as err:
            problems.append((shard, f"cut off or damaged: {err}"))
        cut = [s for s in samples if s.shard == shard and s.image and sum(s.image) > stat.st_size]
        for sample in cut:  # its image runs past the end of the file: skipped (and counted) when loaded
            sample.image = None
        if cut:
            problems.append((shard, f"cut off: {len(cut)} image(s) incomplete"))
    return ShardIndex(samples, problems, digest.hexdigest()[:16])


class ShardImages:
    """image i of the indexed samples, read with one seek (a callable for LabelledImages)."""

    def __init__(self, samples: list[ShardSample]):
        self.samples = samples

    def __call__(self, i: int) -> Image.Image:
        sample = self.samples[i]
        if sample.image is None:
            raise BadSample("no image")
        offset, size = sample.image
        with open(sample.shard, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise BadSample("shard cut off")
        return decode_image(data)


def sample_label(sample: ShardSample) -> int | None:
    text = sample.texts.get("cls")
    try:
        return int(text.decode("utf-8").strip()) if text is not None else None
    except (UnicodeDecodeError, ValueError):
        return None


def sample_caption_list(sample: ShardSample) -> list[str]:
    """The sample's captions (its .json "captions"/"caption", else its .txt); [] when it has none usable."""
    try:
        return [check_caption(caption) for caption in sample_captions(sample.texts)]
    except BadSample:
        return []
