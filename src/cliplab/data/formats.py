"""The input forms cliplab reads, recognised in one place: image suffixes, tables, shard patterns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import SourceError
from ..extras import require
from ..files import regular_file_problem

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
IMAGE_EXTENSIONS = tuple(suffix[1:] for suffix in IMAGE_SUFFIXES)  # as WebDataset member extensions
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")  # .json: JSON lines, as the trainer reads it


def is_shard_spec(spec: str) -> bool:
    """A brace pattern (`data/{00000..00099}.tar`), a `.tar` file, or a folder holding `.tar` files."""
    path = Path(spec)
    return "{" in spec or path.suffix == ".tar" or (path.is_dir() and any(path.glob("*.tar")))


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES


def read_rows(table: Path) -> list[dict]:
    """The rows of a CSV, TSV, JSON-lines or Parquet table, as dicts.

    Text is read with undecodable bytes kept as surrogate escapes, so one bad row is reported when
    it is used instead of failing the whole file.
    """
    suffix = table.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise SourceError(f"{table}: unknown table format {suffix!r}; use {', '.join(TABLE_SUFFIXES)}")
    if problem := regular_file_problem(table):
        raise SourceError(f"{table}: {problem}")
    if suffix == ".parquet":
        parquet = require("pyarrow.parquet", "parquet", "reading Parquet tables")
        try:
            return parquet.read_table(table).to_pylist()
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise SourceError(f"{table}: not a readable Parquet file ({err})") from None
    with open(table, newline="", encoding="utf-8", errors="surrogateescape") as f:
        if suffix in (".csv", ".tsv"):
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        rows = []
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SourceError(f"{table}, line {number}: not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise SourceError(f"{table}, line {number}: a row must be a JSON object, not {type(row).__name__}")
            rows.append(row)
        return rows
