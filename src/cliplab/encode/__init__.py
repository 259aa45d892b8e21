"""Encoding: images and texts through a model's towers, in batches, with a report of what was skipped.

    from cliplab.encode import embed_images, embed_texts
    images = embed_images(model, source.items)        # .features (M, D), .kept, .sizes, .skipped
    texts = embed_texts(model, ["a dog", "a cat"])     # (2, D)

Features are L2-normalised float32 on the CPU. Evaluation, `cliplab embed`, validation during
training, zero-shot classifiers, search and the demo all encode through here.
"""

from .images import ImageBatch, ImageEmbeddings, Skipped, embed_images, image_batches
from .texts import embed_texts

__all__ = ["ImageBatch", "ImageEmbeddings", "Skipped", "embed_images", "embed_texts", "image_batches"]
