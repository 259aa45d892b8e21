"""The paper's nine architectures match open-clip-torch on identical (seeded random) weights."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

import cliplab
from cliplab.models import get_config

from .conftest import CAPTIONS

PAPER_MODELS = {
    "RN50": "RN50-quickgelu",
    "RN101": "RN101-quickgelu",
    "RN50x4": "RN50x4-quickgelu",
    "RN50x16": "RN50x16-quickgelu",
    "RN50x64": "RN50x64-quickgelu",
    "ViT-B/32": "ViT-B-32-quickgelu",
    "ViT-B/16": "ViT-B-16-quickgelu",
    "ViT-L/14": "ViT-L-14-quickgelu",
    "ViT-L/14@336px": "ViT-L-14-336-quickgelu",
}
LARGE = {"RN50x16", "RN50x64", "ViT-L/14", "ViT-L/14@336px"}
TOL = 1e-5


def assert_parity(ours: cliplab.CLIP, ref: torch.nn.Module, batch: int) -> None:
    size = ours.image_size
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    text = open_clip.tokenize(CAPTIONS[:batch] if batch < len(CAPTIONS) else CAPTIONS)
    with torch.no_grad():
        ref_image, ref_text = ref.encode_image(images), ref.encode_text(text)
        image, text_features = ours.encode_image(images), ours.encode_text(text)
        logits_per_image, logits_per_text = ours(images, text)
    ref_logits = ref.logit_scale.exp() * F.normalize(ref_image, dim=-1) @ F.normalize(ref_text, dim=-1).t()
    assert (image - ref_image).abs().max() <= TOL
    assert (text_features - ref_text).abs().max() <= TOL
    assert (logits_per_image - ref_logits).abs().max() <= TOL * 100  # logits are cosines scaled by 1/0.07
    assert torch.equal(logits_per_text, logits_per_image.t())
    assert ref_image.abs().max() > 1e-2 and ref_text.abs().max() > 1e-2  # features are not trivially zero


@pytest.mark.parametrize("name", list(PAPER_MODELS))
def test_paper_architecture_matches_openclip(name):
    torch.manual_seed(0)
    ref = open_clip.create_model(PAPER_MODELS[name]).eval()
    state_dict = ref.state_dict()
    ours = cliplab.build_model(state_dict)  # strict: every key and shape must match
    # The inferred architecture is exactly the built-in configuration of that name.
    assert ours.config == get_config(name) == get_config(PAPER_MODELS[name])
    assert_parity(ours, ref, batch=1 if name in LARGE else 2)


def test_gelu_variant_matches_openclip():
    torch.manual_seed(0)
    ref = open_clip.create_model("ViT-B-32").eval()  # OpenCLIP's plain-GELU ViT-B/32
    ours = cliplab.build_model(ref.state_dict(), activation="gelu")
    assert ours.config.activation == "gelu"
    assert_parity(ours, ref, batch=2)
    quick = cliplab.build_model(ref.state_dict())  # the wrong activation must show
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224)
        assert (quick.encode_image(x) - ref.encode_image(x)).abs().max() > 1e-3


def test_random_initialisation_statistics_match_openai():
    """Unset weights follow OpenAI's initialisation (so training from scratch starts the same way)."""
    torch.manual_seed(0)
    ours = cliplab.create_model("ViT-B/32").state_dict()
    ref = open_clip.create_model("ViT-B-32-quickgelu").state_dict()
    for key in (
        "token_embedding.weight",
        "positional_embedding",
        "text_projection",
        "transformer.resblocks.0.attn.in_proj_weight",
        "transformer.resblocks.0.mlp.c_proj.weight",
        "visual.proj",
        "visual.transformer.resblocks.0.attn.in_proj_weight",
    ):
        assert ours[key].std().item() == pytest.approx(ref[key].std().item(), rel=0.05), key
    assert ours["logit_scale"].item() == pytest.approx(ref["logit_scale"].item())
