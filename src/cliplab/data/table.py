"""Tables of images: CSV, TSV, JSON lines or Parquet files with an image column and a caption or label column.

Rows naming the same image are grouped, so an image with five captions is one item with five
captions (training draws one per visit). Relative image paths start at `image_root`, by default the
table's folder, or its `images/` subfolder when the images are there (Flickr8k's layout).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import SourceError
from .formats import read_rows
from .items import FileItem


def table_items(
    table: Path,
    image_column: str = "image",
    caption_column: str = "caption",
    label_column: str = "label",
    image_root: str | Path | None = None,
    split: str | None = None,
) -> tuple[list[FileItem], list[str] | None, list[tuple[str, str]]]:
    """(items in first-appearance order, the class names found when the table has labels, problems).

    `split` keeps only the rows whose `split` column has that value. Labels that are all integers
    index classes "0", "1", ...; other labels are class names, sorted.
    """
    rows = read_rows(table)
    columns = set(rows[0]) if rows else set()
    captioned, labelled = caption_column in columns, label_column in columns
    if rows and (image_column not in columns or not (captioned or labelled)):
        raise SourceError(
            f"{table}: needs columns {image_column!r} and {caption_column!r} (captions) or {label_column!r} "
            f"(labels); it has {sorted(columns)}"
        )
    if split is not None:
        if rows and "split" not in columns:
            raise SourceError(f"{table}: has no 'split' column to select split {split!r} from")
        rows = [row for row in rows if row["split"] == split]
    if not rows:
        raise SourceError(f"{table} has no rows" + (f" in split {split!r}" if split is not None else ""))
    classes, label_of = _classes([_label_text(row[label_column]) for row in rows]) if labelled else (None, {})
    root = Path(image_root) if image_root is not None else default_image_root(table, rows, image_column)
    grouped: dict[str, tuple[list[str], int | None]] = {}
    problems = []
    for row in rows:
        name = str(row[image_column])
        label = label_of[_label_text(row[label_column])] if labelled else None
        captions, first_label = grouped.setdefault(name, ([], label))
        if captioned:
            captions.append("" if row[caption_column] is None else str(row[caption_column]))
        if label != first_label:
            problems.append((name, "rows with different labels; the first is used"))
    items = [
        FileItem(str(root / name), tuple(captions), label, path=str(root / name))
        for name, (captions, label) in grouped.items()
    ]
    return items, classes, problems


def _label_text(value) -> str:
    return "" if value is None else str(value).strip()


def _classes(labels: list[str]) -> tuple[list[str], dict[str, int]]:
    """(class names, label -> class index): integer labels index "0".."max", others are sorted names."""
    if all(label.isdigit() for label in labels):
        return [str(i) for i in range(max(int(label) for label in labels) + 1)], {t: int(t) for t in set(labels)}
    names = sorted(set(labels))
    return names, {name: i for i, name in enumerate(names)}


def default_image_root(table: Path, rows: list[dict], image_column: str) -> Path:
    """The table's folder, or its `images/` subfolder when the first image is there instead."""
    folder = table.parent
    first = str(rows[0][image_column]) if rows else ""
    if rows and not (folder / first).exists() and (folder / "images" / first).exists():
        return folder / "images"
    return folder


def table_fingerprint(table: Path, options: tuple, items: list[FileItem]) -> str:
    """Changes with the table, the options it is read with, and each image file's size and time."""
    digest = hashlib.sha256()
    stat = table.stat()
    digest.update(f"{table}|{options}|{stat.st_size}|{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    for item in items:
        try:
            image = Path(item.path).stat()
            digest.update(f"{item.path}|{image.st_size}|{image.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            digest.update(f"{item.path}|missing\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]
