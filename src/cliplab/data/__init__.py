"""Training data: caption tables, safe decoding of samples, and datasets that skip bad ones."""

from .dataset import Batch, CaptionDataset, Sample, collate
from .decode import BadSample, check_caption, decode_image, read_image
from .table import CaptionedImage, read_caption_table

__all__ = [
    "BadSample",
    "Batch",
    "CaptionDataset",
    "CaptionedImage",
    "Sample",
    "check_caption",
    "collate",
    "decode_image",
    "read_caption_table",
    "read_image",
]
