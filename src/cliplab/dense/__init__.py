"""Where in the picture: local embeddings in the text's space (MaskCLIP, SCLIP, ClearCLIP), similarity
maps for any labels, segmentation and regions (labelled by their pixels or by their crops)."""

from .crops import classify_crops, label_regions
from .local import DEFAULT_METHOD, METHODS, local_embeddings
from .maps import BACKGROUND, DenseMaps, regions, segment, similarity_maps

__all__ = [
    "BACKGROUND",
    "DEFAULT_METHOD",
    "DenseMaps",
    "classify_crops",
    "label_regions",
    "METHODS",
    "local_embeddings",
    "regions",
    "segment",
    "similarity_maps",
]
