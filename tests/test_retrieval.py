"""Retrieval ranks and recall@K with several captions per image, on features whose answers are known."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.evaluate import retrieval_metrics, retrieval_ranks


def test_ranks_with_several_captions_per_image():
    images = torch.eye(3)  # image i points along axis i
    texts = F.normalize(
        torch.tensor(
            [
                [1.0, 0.0, 0.0],  # image 0, exact
                [0.0, 0.2, 1.0],  # image 0's second caption, but closest to image 2
                [0.9, 1.0, 0.0],  # image 1, slightly closer to 1 than to 0
                [0.0, 0.0, 1.0],  # image 2
                [0.0, 0.0, 1.0],  # image 2 again
            ]
        ),
        dim=-1,
    )
    owners = torch.tensor([0, 0, 1, 2, 2])
    image_ranks, text_ranks = retrieval_ranks(images, texts, owners)
    # image 0: its caption 0 is the best of all captions; image 1: caption 2 is the only one with a
    # y component; image 2: captions 3 and 4 tie at the top, both its own.
    assert image_ranks.tolist() == [1, 1, 1]
    assert text_ranks.tolist() == [1, 3, 1, 1, 1]  # caption 1 finds image 2, then 1, then its own image 0
    metrics = retrieval_metrics(images, texts, owners, ks=(1, 5))
    assert metrics["image_to_text_R@1"] == 1.0
    assert metrics["text_to_image_R@1"] == 0.8 and metrics["text_to_image_R@5"] == 1.0


def test_ties_count_against_the_query_and_chunks_do_not_matter():
    images = torch.ones(4, 2) / 2**0.5  # four identical images: every caption ties with all of them
    texts = F.normalize(torch.randn(6, 2), dim=-1)
    owners = torch.tensor([0, 1, 2, 3, 3, 0])
    image_ranks, text_ranks = retrieval_ranks(images, texts, owners)
    assert text_ranks.tolist() == [4] * 6
    torch.manual_seed(0)
    images, texts = F.normalize(torch.randn(50, 8), dim=-1), F.normalize(torch.randn(120, 8), dim=-1)
    owners = torch.arange(120) % 50
    for a, b in zip(retrieval_ranks(images, texts, owners, chunk=7), retrieval_ranks(images, texts, owners)):
        assert torch.equal(a, b)


def test_equal_to_a_brute_force_reference_with_one_to_five_captions_per_image():
    generator = torch.Generator().manual_seed(1)
    counts = torch.randint(1, 6, (40,), generator=generator)  # 1..5 captions per image
    owners = torch.arange(40).repeat_interleave(counts)
    images = F.normalize(torch.randn(40, 16, generator=generator), dim=-1)
    texts = F.normalize(images[owners] + 0.9 * torch.randn(len(owners), 16, generator=generator), dim=-1)
    scores = (images @ texts.t()).tolist()
    # image -> text: 1 + the number of other images' captions scoring at least its best own caption
    expected_image = []
    for i, row in enumerate(scores):
        best = max(s for s, o in zip(row, owners.tolist()) if o == i)
        expected_image.append(1 + sum(s >= best for s, o in zip(row, owners.tolist()) if o != i))
    # text -> image: the number of images scoring at least the caption's own image (itself included)
    expected_text = [sum(scores[i][j] >= scores[o][j] for i in range(40)) for j, o in enumerate(owners.tolist())]
    image_ranks, text_ranks = retrieval_ranks(images, texts, owners)
    assert image_ranks.tolist() == expected_image and text_ranks.tolist() == expected_text
    metrics = retrieval_metrics(images, texts, owners)
    for k in (1, 5, 10):
        assert metrics[f"image_to_text_R@{k}"] == sum(r <= k for r in expected_image) / 40
        assert metrics[f"text_to_image_R@{k}"] == sum(r <= k for r in expected_text) / len(owners)
