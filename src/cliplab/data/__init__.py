"""Data: every input form opened in one place (`open_source`), items that open their own image, safe
decoding that names what is wrong with a bad sample, and training batches from any source."""

from ..errors import BadSample
from .dataset import Batch, CaptionDataset, Sample, collate
from .decode import MAX_PIXELS, check_caption, decode_image, read_image
from .formats import IMAGE_SUFFIXES, TABLE_SUFFIXES
from .items import ArrayItem, FileItem, Item, ShardItem, VideoItem, item_at
from .loader import StreamState, TrainingData
from .shards import write_shards
from .sources import Source, open_source

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "TABLE_SUFFIXES",
    "ArrayItem",
    "BadSample",
    "Batch",
    "CaptionDataset",
    "FileItem",
    "Item",
    "Sample",
    "ShardItem",
    "Source",
    "StreamState",
    "TrainingData",
    "VideoItem",
    "check_caption",
    "collate",
    "decode_image",
    "item_at",
    "open_source",
    "read_image",
    "write_shards",
]
