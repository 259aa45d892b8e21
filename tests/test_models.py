"""Model behaviour: attention implementations, text trimming, names and overrides."""

from __future__ import annotations

import math
import random

import pytest
import torch

import cliplab
from cliplab.models import ATTENTION_FUNCTIONS, get_config, set_attention
from cliplab.models.layers import reference_attention, sdpa_attention

from .conftest import CAPTIONS


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_equals_plain_softmax_attention(causal):
    q, k, v = torch.randn(3, 2, 4, 17, 16).unbind(0)
    assert (sdpa_attention(q, k, v, causal) - reference_attention(q, k, v, causal)).abs().max() <= 1e-6
    if causal:  # the first position attends only to itself
        assert torch.allclose(reference_attention(q, k, v, True)[:, :, 0], v[:, :, 0])


@pytest.mark.parametrize("name", ["tiny-ViT/8@64px", "tiny-RN@64px"])
def test_whole_model_same_with_either_attention(name):
    torch.manual_seed(0)
    model = cliplab.create_model(name).eval()
    images, text = torch.randn(2, 3, 64, 64), cliplab.tokenize(CAPTIONS[:2])
    with torch.no_grad():
        fast = model(images, text)[0]
        slow = set_attention(model, "reference")(images, text)[0]
    assert (fast - slow).abs().max() <= 1e-4  # logits: cosines x 14.3
    assert all(m.attention_fn is reference_attention for m in model.modules() if hasattr(m, "attention_fn"))
    with pytest.raises(ValueError, match="unknown attention"):
        set_attention(model, "flash-9000")
    assert set(ATTENTION_FUNCTIONS) == {"sdpa", "reference"}


def test_trimming_text_padding_changes_nothing_in_inference_or_training():
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@64px")
    text = cliplab.tokenize(CAPTIONS)
    assert int(text.argmax(-1).max()) + 1 < 40  # the batch really is much shorter than 77

    def run(trim: bool):
        model.zero_grad()
        model.trim_text_padding = trim
        features = model.encode_text(text)
        features.square().sum().backward()
        return features.detach(), model.token_embedding.weight.grad.clone(), model.positional_embedding.grad.clone()

    trimmed, full = run(True), run(False)
    for ours, plain in zip(trimmed, full):  # features, then the two embedding gradients
        assert (ours - plain).abs().max() <= 1e-5 * max(1.0, plain.abs().max().item())  # float32 rounding only
    assert full[2][40:].abs().max() == 0  # padding positions never receive gradient either way


def test_length_buckets_equal_the_plain_path_for_mixed_short_and_full_length_texts():
    from cliplab.models.clip import TEXT_BUCKET_ROWS

    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@64px")
    words = ["a", "dog", "photo", "of", "snow", "red", "the", "running"]
    rng = random.Random(0)
    texts = [
        " ".join(rng.choice(words) for _ in range(rng.choice([1, 2, 5, 20, 80])))
        for _ in range(3 * TEXT_BUCKET_ROWS + 7)
    ]
    text = cliplab.tokenize(texts, truncate=True)
    lengths = text.argmax(-1)
    assert int(lengths.min()) < 5 and int(lengths.max()) == 76  # the longest fill the whole context

    def run(trim: bool):
        model.zero_grad()
        model.trim_text_padding = trim
        features = model.encode_text(text)
        (features * torch.linspace(-1, 1, features.shape[1])).sum().backward()
        return (
            features.detach(),
            model.token_embedding.weight.grad.clone(),
            model.transformer.resblocks[0].attn.in_proj_weight.grad.clone(),
        )

    for ours, plain in zip(run(True), run(False)):  # features in the batch's order, then two gradients
        assert (ours - plain).abs().max() <= 1e-5 * max(1.0, plain.abs().max().item())


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@64px")
    images, text = torch.randn(2, 3, 64, 64), cliplab.tokenize(CAPTIONS[:2])

    def grads():
        model.zero_grad()
        model(images, text)[0].logsumexp(0).sum().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    plain = grads()
    model.set_grad_checkpointing(True)
    assert (grads() - plain).abs().max() <= 1e-6


def test_logits_use_a_capped_temperature():
    model = cliplab.create_model("tiny-ViT/8@64px").eval()
    images, text = torch.randn(2, 3, 64, 64), cliplab.tokenize(CAPTIONS[:2])
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
        logits, _ = model(images, text)
    assert logits.abs().max() <= 100.0 + 1e-4


def test_a_learned_logit_bias_is_saved_loaded_and_scores_with_a_sigmoid(tmp_path):
    from cliplab.zeroshot import build_classifier, classify

    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@32px").eval()
    assert isinstance(model, cliplab.Model) and model.logit_bias is None and "logit_bias" not in model.state_dict()
    images, texts = torch.randn(3, 3, 32, 32), cliplab.tokenize(["a cat", "a dog"])
    plain, _ = model(images, texts)
    cliplab.models.add_logit_bias(model, -4.0)
    assert model.config.logit_bias and model.state_dict()["logit_bias"].item() == -4.0
    biased, _ = model(images, texts)
    torch.testing.assert_close(biased, plain - 4.0)
    cliplab.save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = cliplab.load_model(tmp_path / "m.safetensors")
    assert loaded.logit_bias.item() == -4.0 and torch.equal(loaded(images, texts)[0], biased)
    weights = build_classifier(loaded, ["cat", "dog"])  # zero-shot: each label's own sigmoid, as SigLIP scores
    features = loaded.encode_image(images, normalize=True)
    expected = (loaded.logit_scale.exp() * features @ weights - 4.0).sigmoid()
    torch.testing.assert_close(classify(loaded, images, weights), expected)


def test_names_spellings_and_overrides():
    assert cliplab.available_models()[:9] == [
        "RN50",
        "RN101",
        "RN50x4",
        "RN50x16",
        "RN50x64",
        "ViT-B/32",
        "ViT-B/16",
        "ViT-L/14",
        "ViT-L/14@336px",
    ]
    assert get_config("ViT-L/14@336px") == get_config("ViT-L-14-336") == get_config("vit-l-14-336-quickgelu")
    assert get_config("ViT-B/16").vision.patch_size == 16 and get_config("RN50x4").vision.image_size == 288
    model = cliplab.create_model("ViT-B/32", image_size=96, activation="gelu", text={"layers": 1}, vision={"layers": 1})
    assert model.image_size == 96 and model.config.activation == "gelu" and len(model.transformer.resblocks) == 1
    with pytest.raises(ValueError, match="unknown model 'ViT-Z/99'"):
        cliplab.create_model("ViT-Z/99")
    with pytest.raises(TypeError, match="unknown model option 'depth'"):
        cliplab.create_model("ViT-B/32", depth=3)
    with pytest.raises(ValueError, match="not a multiple of patch size"):
        cliplab.create_model("ViT-B/32", image_size=100)
    with pytest.raises(ValueError, match="unknown activation"):
        cliplab.create_model("RN50", activation="swish")


def test_bad_text_input_is_explained():
    model = cliplab.create_model("tiny-ViT/8@64px")
    with pytest.raises(ValueError, match="shape \\(batch, length\\)"):
        model.encode_text(torch.zeros(77, dtype=torch.long))
    with pytest.raises(ValueError, match="context length is 77"):
        model.encode_text(torch.zeros(1, 80, dtype=torch.long))
    assert model.encode_text(torch.zeros(0, 77, dtype=torch.long)).shape == (0, 128)


def test_small_configurations_are_small():
    for name in ("tiny-ViT/8@64px", "small-ViT/8@96px", "tiny-RN@64px"):
        model = cliplab.create_model(name)
        assert sum(p.numel() for p in model.parameters()) < 30e6
        assert model.image_size <= 128


def test_folded_quickgelu_mlp_equals_the_plain_path_in_inference_and_training():
    from cliplab.models.layers import MLP

    torch.manual_seed(0)
    mlp = MLP(64, 256, "quick_gelu")
    x = torch.randn(3, 50, 64)
    with torch.no_grad():  # the in-place inference path
        assert torch.allclose(mlp(x), mlp.plain_forward(x), rtol=1e-5, atol=1e-6)
    x.requires_grad_()
    fast, plain = mlp(x), mlp.plain_forward(x)
    assert torch.allclose(fast, plain, rtol=1e-5, atol=1e-6)
    probe = torch.randn_like(plain)
    grads_fast = torch.autograd.grad((fast * probe).sum(), [x, *mlp.parameters()])
    grads_plain = torch.autograd.grad((plain * probe).sum(), [x, *mlp.parameters()])
    for a, b in zip(grads_fast, grads_plain):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    assert mlp(torch.randn(0, 5, 64)).shape == (0, 5, 64)


def test_patch_embedding_as_a_matmul_equals_the_convolution():
    torch.manual_seed(0)
    visual = cliplab.create_model("tiny-ViT/8@64px").visual
    for size in (64, 70):  # 70: six pixels past the last patch, which the convolution ignores too
        images = torch.randn(2, 3, size, size)
        conv = visual.conv1(images).flatten(2).transpose(1, 2)  # N D G G -> N (G*G) D
        assert torch.allclose(visual.embed_patches(images), conv, rtol=1e-5, atol=1e-5)
    images = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    assert torch.allclose(
        visual.embed_patches(images), visual.conv1(images).flatten(2).transpose(1, 2), rtol=1e-5, atol=1e-5
    )


def test_resnet_keeps_channels_last_weights_after_loading():
    model = cliplab.create_model("tiny-RN@64px")
    model.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    assert model.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(
            model.encode_image(images), model.encode_image(images.contiguous(memory_format=torch.channels_last))
        )


def test_patch_dropout_in_training_only_and_keeps_the_class_token():
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@64px")
    images = torch.randn(3, 3, 64, 64)
    model.eval()
    reference = model.encode_image(images)
    model.visual.patch_dropout = 0.5
    assert torch.equal(model.encode_image(images), reference)  # evaluation sees every patch
    model.train()
    tokens = torch.randn(3, 65, 192)
    kept = model.visual.drop_patches(tokens)  # N (32 + 1) D
    assert kept.shape == (3, 33, 192) and torch.equal(kept[:, 0], tokens[:, 0])
    rows = [{tuple(t.tolist()) for t in tokens[i, 1:]} for i in range(3)]
    assert all(tuple(t.tolist()) in rows[i] for i in range(3) for t in kept[i, 1:])  # real patches, not copies
    assert model.encode_image(images).shape == reference.shape
    assert not torch.allclose(model.encode_image(images), reference)
