"""Queries against an embedded collection: by text, by an example image or by a raw embedding.

A `Searcher` holds the collection, its index and the model that embedded it; it refuses any other
model, since vectors from two models live in different spaces and their similarities mean nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..caches import LRUCache
from ..encode import embed_texts
from ..errors import QueryError
from ..loading import load_model
from ..models import Model, model_device, model_fingerprint
from ..transforms import model_transform
from ..zeroshot import PromptCache, build_classifier, probabilities
from .collection import Collection
from .index import DUPLICATE_THRESHOLD, Hit, ShardedVectors, build_index, load_index, nearest, query_vector

TEXT_CACHE_BYTES = 16 * 2**20  # embeddings of recent text queries


class Searcher:
    def __init__(self, collection: Collection, model: Model, index=None, index_kind: str | None = None):
        collection.check_model(model_fingerprint(model))
        self.collection, self.model = collection, model.eval()
        self.transform = model_transform(model)
        self.vectors = ShardedVectors(collection)  # the stored embeddings, read row by row to re-score
        if index is None:  # no saved index yet: an exact one in memory
            index, index_kind, _ = build_index(self.vectors, "flat")
        self.index, self.index_kind = index, index_kind
        self._texts = LRUCache(TEXT_CACHE_BYTES)  # embeddings of recent text queries: repeats cost nothing
        self.prompt_cache = PromptCache()  # so do repeated zero-shot labels

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike,
        checkpoint: str | None = None,
        device: str = "cpu",
        memory_map: bool | None = None,
    ) -> Searcher:
        """The collection in `folder` with its model: the manifest's checkpoint, or `checkpoint` if it is the
        same model. `memory_map`: search the saved index memory-mapped (None: when it is larger than half
        the memory available)."""
        collection = Collection.open(folder)
        model = load_model(checkpoint or collection.model["checkpoint"], device=device)
        index, info = load_index(collection, memory_map)
        return cls(collection, model, index, info.kind if info else None)

    @property
    def dim(self) -> int:
        return self.collection.dim

    def text_vector(self, text: str) -> np.ndarray:
        return self.text_vectors([text])[0]

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) normalised embeddings, the new ones in one batch through the text tower."""
        known = {text: self._texts.get(text) for text in texts}
        new = [text for text, vector in known.items() if vector is None]
        if new:
            for text, vector in zip(new, embed_texts(self.model, new, batch_size=len(new)).numpy()):
                known[text] = vector
                self._texts.put(text, vector)
        return np.stack([known[text] for text in texts])

    def image_vector(self, image: Image.Image) -> np.ndarray:
        return self.image_vectors([image])[0]

    @torch.inference_mode()
    def image_vectors(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(len(images), dim) normalised embeddings, in one batch through the image tower."""
        pixels = torch.stack([self.transform(image) for image in images]).to(model_device(self.model))
        return self.model.encode_image(pixels, normalize=True).float().cpu().numpy()

    def search(
        self, vector: np.ndarray, k: int = 10, fold_duplicates: bool = False, threshold: float = DUPLICATE_THRESHOLD
    ) -> list[Hit]:
        """The k items most similar to `vector` (normalised here), best first.

        With `fold_duplicates`, an item at least `threshold` similar to a better hit is listed under
        that hit's `duplicates` instead of taking a place of its own.
        """
        return nearest(self.index, self.index_kind, self.vectors, vector, k, fold_duplicates, threshold)

    def search_videos(self, vector: np.ndarray, k: int = 10) -> list[Hit]:
        """The k videos whose own embeddings (the mean of their frames') are most similar, best first;
        a hit's id is a video's (`collection.videos[id]`)."""
        videos = self.collection.video_vectors
        if not len(videos):
            raise QueryError(f"{self.collection.folder} holds no videos")
        scores = videos @ query_vector(vector, self.dim)
        best = np.argsort(-scores, kind="stable")[:k]
        return [Hit(int(i), float(scores[i])) for i in best]

    def classify(self, image: Image.Image, labels: Sequence[str], templates: Sequence[str]) -> list[tuple[str, float]]:
        """Zero-shot probabilities of `labels` for the image (prompt ensembling over `templates`), best first."""
        return self.classify_vector(self.image_vector(image), labels, templates)

    @torch.no_grad()
    def classify_vector(
        self, vector: np.ndarray, labels: Sequence[str], templates: Sequence[str]
    ) -> list[tuple[str, float]]:
        """`classify` of an image already embedded."""
        weights = build_classifier(self.model, list(labels), list(templates), cache=self.prompt_cache).cpu()
        features = torch.from_numpy(np.asarray(vector, dtype=np.float32))[None, :]
        scores = probabilities(self.model, features, weights)[0].tolist()
        return sorted(zip(labels, scores), key=lambda pair: -pair[1])
