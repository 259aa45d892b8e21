"""WebDataset shards read in place (evaluation sets, embedding collections): one item per sample.

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

from ..errors import BadSample
from ..files import regular_file_problem
from .decode import check_caption
from .formats import IMAGE_EXTENSIONS
from .items import ShardItem
from .shards import sample_captions

TEXT_EXTENSIONS = ("cls", "txt", "json")


@dataclass
class _Sample:
    key: str
    shard: str
    image: tuple[int, int] | None = None  # (offset, size) of the image member's bytes
    texts: dict[str, bytes] = field(default_factory=dict)  # extension -> bytes, for cls / txt / json


def shards_fingerprint(shards: list[str]) -> str:
    """Changes whenever a shard's size or modification time does."""
    digest = hashlib.sha256()
    for shard in shards:
        stat = Path(shard).stat()
        digest.update(f"{shard}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def index_shards(shards: list[str]) -> tuple[list[ShardItem], list[tuple[str, str]]]:
    """(an item per sample with a complete image, what was wrong: cut-off shards, samples without an image)."""
    samples: list[_Sample] = []
    problems: list[tuple[str, str]] = []
    for shard in shards:
        if problem := regular_file_problem(shard):  # a pipe named x.tar would block the reader
            problems.append((shard, problem))
            continue
        size = Path(shard).stat().st_size
        first = len(samples)
        try:
            with tarfile.open(shard, mode="r:") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    folder, _, base = member.name.rpartition("/")
                    stem, _, extension = base.partition(".")
                    key, extension = (f"{folder}/{stem}" if folder else stem), extension.lower()
                    if len(samples) == first or samples[-1].key != key:
                        samples.append(_Sample(key, shard))
                    if extension in IMAGE_EXTENSIONS and samples[-1].image is None:
                        samples[-1].image = (member.offset_data, member.size)
                    elif extension in TEXT_EXTENSIONS:
                        samples[-1].texts[extension] = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError) as err:
            problems.append((shard, f"cut off or damaged: {err}"))
        cut = [s for s in samples[first:] if s.image and sum(s.image) > size]
        for sample in cut:  # its image runs past the end of the file
            sample.image = None
        if cut:
            problems.append((shard, f"cut off: {len(cut)} image(s) incomplete"))
    items = []
    for sample in samples:
        if sample.image is None:
            problems.append((f"{sample.shard}:{sample.key}", "no complete image"))
            continue
        offset, size = sample.image
        key = f"{Path(sample.shard).name}:{sample.key}"
        items.append(ShardItem(key, _captions(sample), _label(sample), path=sample.shard, offset=offset, size=size))
    return items, problems


def _label(sample: _Sample) -> int | None:
    text = sample.texts.get("cls")
    try:
        return int(text.decode("utf-8").strip()) if text is not None else None
    except (UnicodeDecodeError, ValueError):
        return None


def _captions(sample: _Sample) -> tuple[str, ...]:
    """The sample's captions (its .json "captions"/"caption", else its .txt); () when it has none usable."""
    try:
        return tuple(check_caption(caption) for caption in sample_captions(sample.texts))
    except BadSample:
        return ()
