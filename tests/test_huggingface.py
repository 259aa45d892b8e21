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


def test_a_saved_folder_is_a_whole_transformers_model_with_its_processor(tmp_path, image_files, capsys):
    """CLIPProcessor and CLIPModel from the folder reproduce cliplab: token ids up to each end-of-text
    token, pixels to within one 8-bit level when shrinking, embeddings to 1e-5."""
    from PIL import Image

    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@64px").eval()
    cliplab.save_hf_folder(model, tmp_path / "hf")
    for name in (
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "preprocessor_config.json",
    ):
        assert (tmp_path / "hf" / name).is_file()
    processor = transformers.CLIPProcessor.from_pretrained(tmp_path / "hf")
    hf = transformers.CLIPModel.from_pretrained(tmp_path / "hf").eval()
    texts = [*CAPTIONS, "A PHOTO of   two  dogs!!", "naïve café, 3 o'clock"]
    ours = cliplab.tokenize(texts)
    theirs = processor(text=texts, padding="max_length", max_length=77, return_tensors="pt")
    for row, text in enumerate(texts):
        end = int(ours[row].argmax()) + 1
        assert theirs["input_ids"][row, :end].tolist() == ours[row, :end].tolist(), text
    images = [Image.open(path).convert("RGB") for path in image_files]
    preprocess = cliplab.transforms.model_transform(model)
    pixels = torch.stack([preprocess(image) for image in images])
    their_pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    difference = (pixels - their_pixels).abs().amax(dim=(1, 2, 3))
    shrunk = torch.tensor([min(image.size) >= model.image_size for image in images])
    assert shrunk.sum() >= 5 and (~shrunk).sum() >= 1
    # Shrinking: both are bicubic with antialiasing; one 8-bit level is 1/255/0.26 = 0.015 after normalisation.
    largest = difference[shrunk].max().item()
    assert largest < 0.02
    # Enlarging: transformers 5 resizes with torchvision's bicubic kernel (a = -0.75), PIL with a = -0.5,
    # and when the crop margin is odd its crop starts one pixel earlier (floor vs round-half-even); they
    # differ near edges by tens of levels (the README says so).
    enlarged = difference[~shrunk].max().item()
    assert enlarged < 1.0
    with torch.no_grad():
        image_pair = features(hf.get_image_features(pixel_values=pixels)), model.encode_image(pixels)
        text_pair = (
            features(hf.get_text_features(input_ids=theirs["input_ids"], attention_mask=theirs["attention_mask"])),
            model.encode_text(ours),
        )
    torch.testing.assert_close(*image_pair, atol=1e-5, rtol=0)
    torch.testing.assert_close(*text_pair, atol=1e-5, rtol=0)
    embedding = max((a - b).abs().max().item() for a, b in (image_pair, text_pair))
    # and back: cliplab reads the folder's preprocessing too
    assert cliplab.load_model(tmp_path / "hf").image_mean == model.image_mean
    with capsys.disabled():
        print(
            f"\nCLIPProcessor vs cliplab: largest pixel difference {largest:.4f} over {int(shrunk.sum())} images"
            f" shrunk to the input, {enlarged:.4f} over {int((~shrunk).sum())} enlarged;"
            f" largest embedding difference {embedding:.1e}"
        )
