"""Sources of every form, caption tables and the training dataset: every kind of bad sample is skipped and counted."""

from __future__ import annotations

import json
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cliplab.data import BadSample, CaptionDataset, collate, decode_image, open_source
from cliplab.errors import SourceError
from cliplab.tokenizer import BPETokenize
from cliplab.transforms import image_transform

from .conftest import natural_image


def png_bytes(width: int, height: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(natural_image(height, width)).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png() -> bytes:
    """A tiny PNG whose header claims 100,000 x 100,000 pixels."""
    data = bytearray(png_bytes(8, 8))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 100_000, 100_000)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


@pytest.fixture
def messy_table(tmp_path):
    """A TSV of good samples with one of every kind of bad sample between them."""
    folder = tmp_path / "images"
    folder.mkdir()
    good = png_bytes(40, 30)
    jpeg = tmp_path / "j.jpg"
    Image.fromarray(natural_image(60, 80)).save(jpeg, quality=90)
    files = {
        "truncated.jpg": jpeg.read_bytes()[:300],
        "text.jpg": b"this is not a picture, just text\n",
        "empty.jpg": b"",
        "bomb.png": bomb_png(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    bad_rows = [
        ("missing.jpg", "a dog"),
        ("empty.jpg", "a dog"),
        ("truncated.jpg", "a dog"),
        ("text.jpg", "a dog"),
        ("bomb.png", "a dog"),
        ("g_empty_caption.png", ""),
        ("g_blank_caption.png", "   \t "),
        ("g_bad_bytes.png", None),
    ]
    lines = [b"image\tcaption\tsplit"]
    for i, (name, caption) in enumerate(bad_rows):
        good_name = f"good{i}.png"
        (folder / good_name).write_bytes(good)
        lines.append(f"{good_name}\ta good picture number {i}\ttrain".encode())
        if name.startswith("g_"):
            (folder / name).write_bytes(good)
        raw = b"caf\xe9 \xff\xfe dog" if caption is None else caption.encode()
        lines.append(name.encode() + b"\t" + raw + b"\ttrain")
    lines.append(b"good_last.png\tthe last good picture\tdev")
    (folder / "good_last.png").write_bytes(good)
    table = tmp_path / "captions.tsv"
    table.write_bytes(b"\n".join(lines) + b"\n")
    return table


EXPECTED_SKIPS = Counter(
    {
        "missing file": 1,
        "empty file": 1,
        "undecodable image": 1,
        "not an image": 1,
        "too many pixels": 1,
        "empty caption": 2,
        "caption not UTF-8": 1,
    }
)


def test_every_bad_sample_is_skipped_counted_and_named(messy_table):
    entries = open_source(messy_table).items  # finds the images/ subfolder by itself
    assert len(entries) == 17
    dataset = CaptionDataset(entries, image_transform(32), tokenizer=BPETokenize(16))
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert sum(len(b.images) for b in batches) == len(dataset)  # every batch keeps its size
    counts = sum((b.skip_counts() for b in batches), Counter())
    assert counts == EXPECTED_SKIPS
    skipped_paths = {path.rsplit("/", 1)[-1] for b in batches for path, _ in b.skipped}
    assert "bomb.png" in skipped_paths and "missing.jpg" in skipped_paths
    assert all(b.images.shape[1:] == (3, 32, 32) and b.texts.shape[1] == 16 for b in batches)


def test_caption_draws_are_deterministic_per_epoch(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(20, 20))
    rows = [{"image": "a.png", "caption": f"caption {i}"} for i in range(5)]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    entries = open_source(tmp_path / "t.jsonl").items
    assert len(entries) == 1 and len(entries[0].captions) == 5
    dataset = CaptionDataset(entries, image_transform(16), seed=3)

    def draws():
        return [tuple(dataset[0].text.tolist()) for _ in range(3)]

    first = draws()
    assert first == draws() and len(set(first)) == 1  # same (seed, epoch, index): same caption
    seen = set()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        seen.add(tuple(dataset[0].text.tolist()))
    assert len(seen) > 1  # different epochs draw different captions


def test_table_formats_and_split(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"image": "x.jpg", "caption": "one", "split": "train"},
        {"image": "x.jpg", "caption": "two", "split": "train"},
        {"image": "y.jpg", "caption": "three", "split": "dev"},
    ]
    (tmp_path / "t.csv").write_text(
        "image,caption,split\n" + "".join(f"{r['image']},{r['caption']},{r['split']}\n" for r in rows)
    )
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        entries = open_source(tmp_path / name).items
        assert [(Path(e.path).name, e.captions) for e in entries] == [("x.jpg", ("one", "two")), ("y.jpg", ("three",))]
        assert [Path(e.path).name for e in open_source(tmp_path / name, split="dev").items] == ["y.jpg"]
    with pytest.raises(SourceError, match="needs columns 'image' and 'text'"):
        open_source(tmp_path / "t.csv", caption_column="text")
    (tmp_path / "t.xlsx").write_bytes(b"PK")
    with pytest.raises(SourceError, match="not an image folder, a table"):
        open_source(tmp_path / "t.xlsx")


def test_all_bad_data_stops_with_a_clear_message(tmp_path):
    (tmp_path / "t.tsv").write_text("image\tcaption\n" + "".join(f"nope{i}.jpg\tcap\n" for i in range(5)))
    dataset = CaptionDataset(open_source(tmp_path / "t.tsv").items, image_transform(16))
    with pytest.raises(SourceError, match="5 bad samples in a row.*data path"):
        dataset[0]


def test_decode_reasons():
    assert decode_image(png_bytes(10, 12)).size == (10, 12)
    for data, reason in [
        (b"", "empty file"),
        (png_bytes(50, 50)[:200], "undecodable image"),
        (b"hello", "not an image"),
        (bomb_png(), "too many pixels"),
    ]:
        with pytest.raises(BadSample) as info:
            decode_image(data)
        assert info.value.reason == reason
    with pytest.raises(BadSample, match="too many pixels"):
        decode_image(png_bytes(100, 100), max_pixels=5000)
    assert torch.is_tensor(image_transform(8)(decode_image(png_bytes(10, 12))))
