"""Search a collection by text or by example: embed it (`embed_collection`), index it
(`index_collection`), query it (`Searcher`). Needs the `search` extra: pip install 'cliplab[search]'."""

from .collection import Collection, CollectionItem
from .embed import EmbedReport, embed_collection
from .index import IndexInfo, build_index, load_index
from .searcher import Hit, Searcher
from .tune import index_collection

__all__ = [
    "Collection",
    "EmbedReport",
    "Hit",
    "IndexInfo",
    "CollectionItem",
    "Searcher",
    "build_index",
    "embed_collection",
    "index_collection",
    "load_index",
]
