"""Losses: parity with open_clip, exact distributed gradients (2 gloo processes), gradient caching."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from open_clip.loss import ClipLoss as OpenClipLoss
from open_clip.loss import SigLipLoss as OpenSigLipLoss

import cliplab
from cliplab.loss import ClipLoss, SigLipLoss, grad_cache_backward

from .conftest import CAPTIONS

BATCH = 8


def features(n: int = BATCH, d: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(n, d, generator=g), dim=-1).requires_grad_()
    text = F.normalize(torch.randn(n, d, generator=g), dim=-1).requires_grad_()
    return image, text


@pytest.mark.parametrize("local_loss", [False, True])
def test_clip_loss_matches_openclip(local_loss):
    image, text = features()
    scale = torch.tensor(14.3, requires_grad=True)
    ours = ClipLoss(local_loss=local_loss)(image, text, scale)
    ours.backward()
    grads = image.grad.clone(), text.grad.clone(), scale.grad.clone()
    image.grad = text.grad = scale.grad = None
    theirs = OpenClipLoss(local_loss=local_loss)(image, text, scale)
    theirs.backward()
    assert abs(ours.item() - theirs.item()) <= 1e-6
    for a, b in zip(grads, (image.grad, text.grad, scale.grad)):
        assert (a - b).abs().max() <= 1e-6
    # the definition, written out: mean of the two cross-entropies over the similarity matrix
    logits = scale * image @ text.t()
    expected = (F.cross_entropy(logits, torch.arange(BATCH)) + F.cross_entropy(logits.t(), torch.arange(BATCH))) / 2
    assert abs(ours.item() - expected.item()) <= 1e-6


def test_siglip_loss_matches_openclip():
    image, text = features()
    scale, bias = torch.tensor(10.0, requires_grad=True), torch.tensor(-10.0, requires_grad=True)
    ours = SigLipLoss()(image, text, scale, bias)
    ours.backward()
    grads = image.grad.clone(), text.grad.clone(), scale.grad.clone(), bias.grad.clone()
    image.grad = text.grad = scale.grad = bias.grad = None
    theirs = OpenSigLipLoss()(image, text, scale, bias)
    theirs.backward()
    assert abs(ours.item() - theirs.item()) <= 1e-5 * abs(theirs.item())
    for a, b in zip(grads, (image.grad, text.grad, scale.grad, bias.grad)):
        assert (a - b).abs().max() <= 1e-6 * max(1.0, b.abs().max().item())


# ---------------------------------------------------------------------------------------------
# two processes on gloo against one process with the whole batch


def make_batch():
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@64px", text={"layers": 1}, vision={"layers": 1})
    images = torch.randn(BATCH, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    texts = cliplab.tokenize((CAPTIONS * 2)[:BATCH])
    return model, images, texts


def loss_of(kind: str, model, images, texts):
    image_features = model.encode_image(images, normalize=True)
    text_features = model.encode_text(texts, normalize=True)
    if kind == "siglip":
        return SigLipLoss()(image_features, text_features, model.logit_scale.exp(), torch.tensor(-5.0))
    return ClipLoss(local_loss=(kind == "local"))(image_features, text_features, model.logit_scale.exp())


def _worker(rank: int, world: int, init_file: str, kind: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model, images, texts = make_batch()
    part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    loss = loss_of(kind, model, images[part], texts[part])
    loss.backward()
    for p in model.parameters():  # what DistributedDataParallel does: average gradients over ranks
        dist.all_reduce(p.grad)
        p.grad /= world
    dist.all_reduce(loss)
    if rank == 0:
        torch.save({"loss": loss / world, "grads": {n: p.grad for n, p in model.named_parameters()}}, out)
    dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["gathered", "local", "siglip"])
def test_two_gloo_processes_equal_one_process_with_the_whole_batch(kind, tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), kind, str(tmp_path / "rank0.pt")), nprocs=2, join=True)
    distributed = torch.load(tmp_path / "rank0.pt", weights_only=True)

    model, images, texts = make_batch()
    loss = loss_of(kind, model, images, texts)
    loss.backward()
    assert abs(distributed["loss"].item() - loss.item()) <= 1e-6 * max(1.0, loss.item())
    for name, p in model.named_parameters():
        scale = max(1.0, p.grad.abs().max().item())
        assert (distributed["grads"][name] - p.grad).abs().max() <= 1e-6 * scale, name


# ---------------------------------------------------------------------------------------------
# gradient caching


def encoder(model):
    return lambda images, texts: (model.encode_image(images, normalize=True), model.encode_text(texts, normalize=True))


@pytest.mark.parametrize("micro_batch_size", [1, 3, BATCH])
def test_grad_cache_equals_full_batch_gradient(micro_batch_size):
    model, images, texts = make_batch()
    loss = loss_of("gathered", model, images, texts)
    loss.backward()
    full = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    def loss_fn(image_features, text_features):
        return ClipLoss()(image_features, text_features, model.logit_scale.exp())

    cached = grad_cache_backward(model, encoder(model), loss_fn, images, texts, micro_batch_size)
    assert abs(cached.item() - loss.item()) <= 1e-6
    for name, p in model.named_parameters():
        assert (p.grad - full[name]).abs().max() <= 1e-5 * max(1.0, full[name].abs().max().item()), name
    assert model.logit_scale.grad.abs() > 0


def test_grad_cache_replays_random_draws():
    """A stochastic encoder (dropout here, patch dropout in training) sees the same draws twice."""
    model, images, texts = make_batch()
    dropout = torch.nn.Dropout(0.5)

    def noisy(images, texts):
        return F.normalize(dropout(model.encode_image(images)), dim=-1), model.encode_text(texts, normalize=True)

    def loss_fn(image_features, text_features):
        return ClipLoss()(image_features, text_features, model.logit_scale.exp())

    torch.manual_seed(5)
    grad_cache_backward(model, noisy, loss_fn, images, texts, micro_batch_size=BATCH)
    one_chunk = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(5)
    image_features, text_features = noisy(images, texts)
    loss_fn(image_features, text_features).backward()
    for name, p in model.named_parameters():
        assert (p.grad - one_chunk[name]).abs().max() <= 1e-5 * max(1.0, p.grad.abs().max().item()), name
