"""ONNX export: ONNX Runtime's embeddings equal cliplab's, for a ViT and a ResNet, any batch size, any text length."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import cliplab
from cliplab.cli.main import main
from cliplab.export import onnx as export

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TEXTS = [
    "",
    "a dog.",
    "a photo of a big red dog running on the beach at sunset, seen from far away",
    "naïve café, 3 o'clock!!",
    "a diagram " + "of a sentence that does not fit " * 20,
]


def session(path):
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["tiny-ViT/8@64px", "tiny-RN@64px"])
def test_onnx_runtime_gives_the_models_embeddings(tmp_path, name, capsys):
    torch.manual_seed(0)
    model = cliplab.create_model(name).eval()
    checkpoint = tmp_path / "model.safetensors"
    cliplab.save_checkpoint(model, checkpoint)
    assert main(["convert", str(checkpoint), str(tmp_path / "onnx"), "--to", "onnx"]) == 0
    printed = capsys.readouterr().out
    assert "image.onnx, onnx_config.json, text.onnx" in printed and "checked with ONNX Runtime" in printed
    assert not list((tmp_path / "onnx").glob(".export-*"))  # the scratch folder is gone

    image, text = session(tmp_path / "onnx" / "image.onnx"), session(tmp_path / "onnx" / "text.onnx")
    (pixels_in,), (image_out,) = image.get_inputs(), image.get_outputs()
    assert (pixels_in.name, pixels_in.type, image_out.name) == ("pixel_values", "tensor(float)", "image_embeds")
    assert isinstance(pixels_in.shape[0], str) and pixels_in.shape[1:] == [3, 64, 64]  # a dynamic batch axis
    (ids_in,), (text_out,) = text.get_inputs(), text.get_outputs()
    assert (ids_in.name, ids_in.type, text_out.name) == ("input_ids", "tensor(int64)", "text_embeds")
    assert isinstance(ids_in.shape[0], str) and ids_in.shape[1] == model.context_length

    generator = torch.Generator().manual_seed(1)
    for batch in (1, 5):  # neither is the batch size traced (2)
        pixels = torch.randn(batch, 3, 64, 64, generator=generator)
        (theirs,) = image.run(None, {"pixel_values": pixels.numpy()})
        with torch.no_grad():
            ours = model.encode_image(pixels)
        torch.testing.assert_close(torch.from_numpy(theirs), ours, atol=1e-4, rtol=0)
    ids = model.tokenizer(TEXTS)
    assert len(set(ids.argmax(dim=1).tolist())) == len(TEXTS)  # every text ends at another position
    (theirs,) = text.run(None, {"input_ids": ids.numpy()})
    with torch.no_grad():
        ours = model.encode_text(ids)
    torch.testing.assert_close(torch.from_numpy(theirs), ours, atol=1e-4, rtol=0)
    (single,) = text.run(None, {"input_ids": ids[2:3].numpy()})
    torch.testing.assert_close(torch.from_numpy(single), ours[2:3], atol=1e-4, rtol=0)

    config = json.loads((tmp_path / "onnx" / "onnx_config.json").read_text())
    assert config["image"]["image_size"] == 64 and config["image"]["mean"] == list(model.image_mean)
    assert config["text"]["context_length"] == model.context_length
    assert config["text"]["eot_token_id"] == int(ids.max())
    assert config["logit_scale"] == pytest.approx(float(model.logit_scale.detach().exp()))
    assert cliplab.CLIPConfig.from_dict(config["model"]) == model.config


def test_an_interrupted_export_leaves_no_graph_behind(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@32px").eval()
    real = export._export

    def fail_on_text(module, input_name, *args):
        if input_name == "input_ids":
            raise KeyboardInterrupt
        real(module, input_name, *args)

    monkeypatch.setattr(export, "_export", fail_on_text)
    with pytest.raises(KeyboardInterrupt):
        cliplab.save_onnx(model, tmp_path / "onnx")
    assert list((tmp_path / "onnx").iterdir()) == []
    assert model.trim_text_padding  # the model is as it was


def test_without_the_onnx_extra_the_error_says_what_to_install(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    cliplab.save_checkpoint(cliplab.create_model("tiny-ViT/8@32px"), tmp_path / "model.safetensors")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    assert main(["convert", str(tmp_path / "model.safetensors"), str(tmp_path / "onnx"), "--to", "onnx"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "ONNX export needs onnxscript" in error and "[onnx]" in error
    assert not (tmp_path / "onnx").exists()
