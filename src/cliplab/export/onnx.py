"""ONNX export: `image.onnx` and `text.onnx`, each tower on its own, with a dynamic batch axis.

- `image.onnx`: input `pixel_values` (float32, N x 3 x H x W, preprocessed as `onnx_config.json` says),
  output `image_embeds` (float32, N x E): what `model.encode_image` returns, not normalised.
- `text.onnx`: input `input_ids` (int64, N x context length, as `model.tokenizer` writes them), output
  `text_embeds` (float32, N x E): what `model.encode_text` returns, not normalised. The graph runs the full
  context; the feature is read at each row's end-of-text token (the row's largest id), as OpenAI's CLIP does.
- `onnx_config.json`: the preprocessing, the tokenizer's settings and the score's scale (and bias).

torch's exporter (`torch.onnx.export(..., dynamo=True)`, which needs `onnxscript`) writes the graphs; when
ONNX Runtime is installed, the export is checked against the model on a batch of other size than the one
traced, and the largest differences are returned. Files are written into a temporary folder beside the
target and moved into place at the end, so an interrupted export leaves no half-written graph.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..extras import require
from ..files import write_json
from ..models import CLIP, logit_scale
from ..tokenizer import default_tokenizer

ONNX_CONFIG = "onnx_config.json"
IMAGE_FILE = "image.onnx"
TEXT_FILE = "text.onnx"
# Above this, a graph's weights go to a `.onnx.data` file beside it (protobuf's limit is 2 GiB).
EXTERNAL_DATA_BYTES = 1 << 30
CHECK_TEXTS = ("a photo of a dog.", "", "a diagram " + "of a very long sentence " * 30)


@dataclass(frozen=True)
class OnnxExport:
    """What `save_onnx` wrote, and how far ONNX Runtime's outputs are from the model's (None: not checked)."""

    folder: Path
    files: tuple[str, ...]
    image_difference: float | None
    text_difference: float | None


class _Tower(nn.Module):
    """One tower of the model as a module of its own: `encode_image` or `encode_text`, for the exporter."""

    def __init__(self, model: CLIP, encode: str) -> None:
        super().__init__()
        self.model, self.encode = model, encode

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.encode)(inputs)


def save_onnx(model: CLIP, folder: str | os.PathLike, check: bool = True) -> OnnxExport:
    """Write `model`'s towers as ONNX graphs into `folder` (see the module's docstring for the files)."""
    require("onnxscript", "onnx", "ONNX export")
    require("onnx", "onnx", "ONNX export")
    if not isinstance(model, CLIP):
        raise ConfigError(
            f"ONNX export covers cliplab's CLIP models (Vision Transformer and ResNet image towers), "
            f"not {type(model).__name__}"
        )
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    model = _float32_cpu(model)
    large = sum(p.numel() * 4 for p in model.parameters()) > EXTERNAL_DATA_BYTES
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
    trim = model.trim_text_padding
    model.trim_text_padding = False  # the graph's shapes must not depend on the ids' values
    try:
        batch = torch.export.Dim("batch", min=1, max=65536)
        size = model.image_size
        _export(
            _Tower(model, "encode_image"),
            "pixel_values",
            torch.randn(2, 3, size, size),
            "image_embeds",
            scratch,
            batch,
            large,
        )
        ids = model.tokenizer(["a photo of a cat.", "a diagram"])
        _export(_Tower(model, "encode_text"), "input_ids", ids, "text_embeds", scratch, batch, large)
        write_json(scratch / ONNX_CONFIG, onnx_config(model), indent=2)
        written = tuple(sorted(path.name for path in scratch.iterdir()))
        for name in written:
            os.replace(scratch / name, folder / name)
    finally:
        model.trim_text_padding = trim
        shutil.rmtree(scratch, ignore_errors=True)
    image_difference = text_difference = None
    if check:
        with contextlib.suppress(ImportError):
            image_difference, text_difference = check_onnx(model, folder)
    return OnnxExport(folder, written, image_difference, text_difference)


def _float32_cpu(model: CLIP) -> CLIP:
    """The model in float32 on the CPU, in eval mode: the model itself if it already is, else a copy."""
    if all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters()) and not model.training:
        return model
    return copy.deepcopy(model).float().cpu().eval()


def _export(
    module: nn.Module,
    input_name: str,
    example: torch.Tensor,
    output_name: str,
    folder: Path,
    batch: torch.export.Dim,
    large: bool,
) -> None:
    file = folder / (IMAGE_FILE if input_name == "pixel_values" else TEXT_FILE)
    # The exporter reports its progress on stdout and warns about internals; neither is the user's business.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes={"inputs": {0: batch}},
            optimize=True,
            verbose=False,
        )
        program.save(str(file), external_data=large)


def onnx_config(model: CLIP) -> dict:
    """What a runtime needs around the graphs: preprocessing, tokenizer and scoring."""
    tokenizer = default_tokenizer()
    bias = model.logit_bias
    return {
        "format": "cliplab-onnx",
        "version": 1,
        "model": model.config.to_dict(),
        "embed_dim": model.embed_dim,
        "image": {
            "file": IMAGE_FILE,
            "input": "pixel_values",
            "output": "image_embeds",
            "image_size": model.image_size,
            "resize": model.image_resize,  # "shortest": shorter side to image_size, then centre crop
            "interpolation": "bicubic",
            "mean": list(model.image_mean),
            "std": list(model.image_std),
            "rescale": 1 / 255,
        },
        "text": {
            "file": TEXT_FILE,
            "input": "input_ids",
            "output": "text_embeds",
            "context_length": model.context_length,
            "tokenizer": "OpenAI CLIP BPE (lower-cased, ftfy and HTML-unescaped); vocab.json/merges.txt of "
            "`cliplab convert --to hf`",
            "vocab_size": len(tokenizer.encoder),
            "sot_token_id": tokenizer.sot_token_id,
            "eot_token_id": tokenizer.eot_token_id,
            "pad_token_id": 0,
        },
        # logits = logit_scale * cos(image, text) (+ logit_bias for a model trained with the sigmoid loss)
        "logit_scale": float(logit_scale(model).detach()),
        "logit_bias": None if bias is None else float(bias),
    }


def check_onnx(model: CLIP, folder: str | os.PathLike) -> tuple[float, float]:
    """Largest absolute differences between ONNX Runtime's outputs and the model's, on 3 images and 3 texts
    of different lengths (a batch size the export did not trace). Needs onnxruntime."""
    import onnxruntime

    folder = Path(folder)
    model = _float32_cpu(model)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(3, 3, model.image_size, model.image_size, generator=generator)
    ids = model.tokenizer(list(CHECK_TEXTS))
    differences = []
    for file, name, inputs, encode in (
        (IMAGE_FILE, "pixel_values", pixels, model.encode_image),
        (TEXT_FILE, "input_ids", ids, model.encode_text),
    ):
        session = onnxruntime.InferenceSession(str(folder / file), options, providers=["CPUExecutionProvider"])
        (theirs,) = session.run(None, {name: inputs.numpy()})
        with torch.no_grad():
            ours = encode(inputs)
        difference = (torch.from_numpy(theirs) - ours).abs().max().item()
        differences.append(difference if math.isfinite(difference) else float("inf"))
    return differences[0], differences[1]
