"""ViT models convert to and from transformers' CLIPModel with identical embeddings."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import cliplab
from cliplab.checkpoints import from_hf_state_dict, to_hf_state_dict

from .conftest import CAPTIONS

TOL = 1e-5
VIT_MODELS = ["ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]


def features(output) -> torch.Tensor:
    """transformers 5 returns an output object from get_*_features; 4.x returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def hf_embeddings(hf: transformers.CLIPModel, images: torch.Tensor, text: torch.Tensor):
    with torch.no_grad():
        return features(hf.get_image_features(pixel_values=images)), features(hf.get_text_features(input_ids=text))


def inputs(model: cliplab.CLIP, batch: int = 2):
    images = torch.randn(batch, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(2))
    return images, cliplab.tokenize(CAPTIONS[:batch])


@pytest.mark.parametrize("name", VIT_MODELS)
def test_cliplab_to_hf_to_cliplab(name, tmp_path):
    torch.manual_seed(0)
    model = cliplab.create_model(name).eval()
    images, text = inputs(model, batch=1 if "L/14" in name else 2)
    with torch.no_grad():
        ours_image, ours_text = model.encode_image(images), model.encode_text(text)

    cliplab.save_hf_folder(model, tmp_path / "hf")
    hf = transformers.CLIPModel.from_pretrained(tmp_path / "hf").eval()
    hf_image, hf_text = hf_embeddings(hf, images, text)
    assert (hf_image - ours_image).abs().max() <= TOL
    assert (hf_text - ours_text).abs().max() <= TOL

    back = cliplab.load_model(tmp_path / "hf")  # HF -> cliplab recovers the very same tensors
    assert back.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


SMALL_HF = dict(
    text_config=dict(
        hidden_size=256,
        intermediate_size=1024,
        num_attention_heads=4,
        num_hidden_layers=3,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        eos_token_id=49407,
    ),
    vision_config=dict(
        hidden_size=192,
        intermediate_size=768,
        num_attention_heads=3,
        num_hidden_layers=2,
        image_size=64,
        patch_size=16,
        hidden_act="quick_gelu",
    ),
    projection_dim=128,
)
LEGACY_EOS = {
    **SMALL_HF,
    "text_config": {**SMALL_HF["text_config"], "eos_token_id": 2, "hidden_act": "gelu"},
    "vision_config": {**SMALL_HF["vision_config"], "hidden_act": "gelu"},
}


@pytest.mark.parametrize(
    "hf_config", [SMALL_HF, LEGACY_EOS, {}], ids=["small", "legacy-eos-gelu", "hf-default-vit-b-32"]
)
def test_hf_model_to_cliplab(hf_config, tmp_path):
    """A CLIPModel made and saved by transformers itself loads into cliplab with equal embeddings."""
    torch.manual_seed(0)
    hf = transformers.CLIPModel(transformers.CLIPConfig(**hf_config)).eval()
    hf.save_pretrained(tmp_path / "made-by-hf")
    ours = cliplab.load_model(tmp_path / "made-by-hf")
    assert ours.config.vision.heads == hf.config.vision_config.num_attention_heads
    assert ours.config.embed_dim == hf.config.projection_dim
    images, text = inputs(ours)
    hf_image, hf_text = hf_embeddings(hf, images, text)
    with torch.no_grad():
        assert (ours.encode_image(images) - hf_image).abs().max() <= TOL
        assert (ours.encode_text(text) - hf_text).abs().max() <= TOL


def test_state_dict_mapping_is_a_bijection():
    state = cliplab.create_model("tiny-ViT/8@64px").state_dict()
    hf = to_hf_state_dict(state)
    assert "text_model.encoder.layers.0.self_attn.q_proj.weight" in hf and "visual_projection.weight" in hf
    back = from_hf_state_dict(hf)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_resnet_has_no_hf_layout(tmp_path):
    with pytest.raises(ValueError, match="only Vision Transformer"):
        cliplab.save_hf_folder(cliplab.create_model("tiny-RN@64px"), tmp_path / "hf")


def test_unsupported_hf_config_is_named(tmp_path):
    model = cliplab.create_model("tiny-ViT/8@64px")
    cliplab.save_hf_folder(model, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config["vision_config"]["hidden_act"] = "relu"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(cliplab.CheckpointError, match="unsupported activations"):
        cliplab.load_model(tmp_path / "hf")
