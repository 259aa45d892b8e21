"""Caption tables: CSV, TSV, JSON lines or Parquet files of (image path, caption) rows.

Rows naming the same image are grouped, so an image with five captions is one entry with five
captions (training samples one per visit). Captions are read with undecodable bytes kept as
surrogate escapes, so one bad row is reported later instead of failing the whole file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CaptionedImage:
    path: Path
    captions: tuple[str, ...]


def read_rows(table: Path) -> list[dict[str, str]]:
    suffix = table.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with open(table, newline="", encoding="utf-8", errors="surrogateescape") as f:
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    if suffix in (".jsonl", ".json"):
        with open(table, encoding="utf-8", errors="surrogateescape") as f:
            return [json.loads(line) for line in f if line.strip()]
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("reading Parquet tables needs pyarrow: pip install 'cliplab[parquet]'") from None
        return pq.read_table(table).to_pylist()
    raise ValueError(f"{table}: unknown table format {suffix!r}; use .csv, .tsv, .jsonl or .parquet")


def read_caption_table(
    table: str | Path,
    image_column: str = "image",
    caption_column: str = "caption",
    image_root: str | Path | None = None,
    split: str | None = None,
) -> list[CaptionedImage]:
    """Entries of a caption table in first-appearance order, image paths resolved.

    Relative paths are taken from `image_root`, by default the table's folder (or its `images/`
    subfolder when the images are there, as in Flickr8k's layout). `split` keeps only the rows
    whose `split` column has that value.
    """
    table = Path(table)
    rows = read_rows(table)
    if rows and (image_column not in rows[0] or caption_column not in rows[0]):
        raise ValueError(f"{table}: needs columns {image_column!r} and {caption_column!r}; it has {sorted(rows[0])}")
    if split is not None:
        if rows and "split" not in rows[0]:
            raise ValueError(f"{table}: has no 'split' column to select split {split!r} from")
        rows = [row for row in rows if row["split"] == split]
    root = Path(image_root) if image_root is not None else default_image_root(table, rows, image_column)
    grouped: dict[str, list[str]] = {}
    for row in rows:
        grouped.setdefault(str(row[image_column]), []).append(
            "" if row[caption_column] is None else str(row[caption_column])
        )
    return [CaptionedImage(root / name, tuple(captions)) for name, captions in grouped.items()]


def default_image_root(table: Path, rows: list[dict], image_column: str) -> Path:
    """The table's folder, or its `images/` subfolder when the first image is there instead."""
    folder = table.parent
    if (
        rows
        and not (folder / str(rows[0][image_column])).exists()
        and (folder / "images" / str(rows[0][image_column])).exists()
    ):
        return folder / "images"
    return folder
