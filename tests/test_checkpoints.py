"""Checkpoint files: round trips, every format users bring, resizing, and damaged files."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import open_clip
import pytest
import torch
from open_clip.model import resize_pos_embed
from safetensors.torch import save_file

import cliplab
from cliplab.models import resize_positional_embedding

from .conftest import CAPTIONS


def outputs(model: cliplab.CLIP, size: int | None = None):
    size = size or model.image_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model(images, cliplab.tokenize(CAPTIONS[:2]))[0]


@pytest.fixture(params=["tiny-ViT/8@64px", "tiny-RN@64px"])
def model(request):
    torch.manual_seed(0)
    return cliplab.create_model(request.param).eval()


def test_cliplab_round_trip_is_bit_identical(model, tmp_path):
    path = tmp_path / "model.safetensors"
    cliplab.save_checkpoint(model, path)
    loaded, preprocess = cliplab.load(path)
    assert loaded.config == model.config
    assert torch.equal(outputs(loaded), outputs(model))
    assert preprocess.transforms[1].size == model.image_size
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary files left


def test_config_survives_round_trip_even_when_shapes_cannot_tell(tmp_path):
    """GELU and head counts are not visible in tensor shapes; cliplab's file stores them."""
    model = cliplab.create_model("tiny-ViT/8@64px", activation="gelu", vision={"head_width": 32})
    cliplab.save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = cliplab.load_model(tmp_path / "m.safetensors")
    assert loaded.config.activation == "gelu" and loaded.config.vision.heads == 6
    assert torch.equal(outputs(loaded), outputs(model.eval()))


@pytest.mark.parametrize("layout", ["training-checkpoint", "plain-bin", "safetensors", "compiled"])
def test_openclip_files_load(layout, tmp_path):
    torch.manual_seed(0)
    ref = open_clip.create_model("RN50-quickgelu" if layout == "plain-bin" else "ViT-B-32-quickgelu").eval()
    state = ref.state_dict()
    if layout == "training-checkpoint":  # what OpenCLIP's trainer writes under DDP
        path = tmp_path / "epoch_1.pt"
        torch.save(
            {
                "epoch": 1,
                "name": "run",
                "state_dict": {f"module.{k}": v for k, v in state.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
            },
            path,
        )
    elif layout == "plain-bin":
        path = tmp_path / "open_clip_pytorch_model.bin"
        torch.save(state, path)
    elif layout == "safetensors":
        path = tmp_path / "open_clip_model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        path = tmp_path / "compiled.pt"
        torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, path)
    ours = cliplab.load_model(path)
    size = ours.image_size
    images, text = torch.randn(1, 3, size, size), open_clip.tokenize(["a dog"])
    with torch.no_grad():
        assert (ours.encode_image(images) - ref.encode_image(images)).abs().max() <= 1e-5
        assert (ours.encode_text(text) - ref.encode_text(text)).abs().max() <= 1e-5


class OpenAIStyle(torch.nn.Module):
    """Wraps a model the way OpenAI's released TorchScript files look: fp16, with extra int tensors."""

    def __init__(self, model: cliplab.CLIP):
        super().__init__()
        self.inner = model
        self.register_buffer("input_resolution", torch.tensor(model.image_size))
        self.register_buffer("context_length", torch.tensor(77))
        self.register_buffer("vocab_size", torch.tensor(49408))

    def forward(self, image, text):
        return self.inner(image, text)


TRACING = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")


@TRACING
def test_openai_torchscript_archive_loads_without_running_it(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@64px").eval()
    example = (torch.randn(1, 3, 64, 64), cliplab.tokenize(["a dog"]))
    traced = torch.jit.trace(model, example, check_trace=False)
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(traced, path)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load must never be called")

    monkeypatch.setattr(torch.jit, "load", refuse)
    contents = cliplab.read_checkpoint(path)
    assert contents.kind == "torchscript"
    assert contents.state_dict.keys() == model.state_dict().keys()
    assert all(torch.equal(contents.state_dict[k], v) for k, v in model.state_dict().items())
    assert torch.equal(outputs(cliplab.load_model(path)), outputs(model))


@TRACING
def test_openai_fp16_archive_with_extra_entries(tmp_path):
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-RN@64px").eval()
    example = (torch.randn(1, 3, 64, 64), cliplab.tokenize(["a"]))
    traced = torch.jit.trace(OpenAIStyle(model), example, check_trace=False).half()  # fp16, as released
    path = tmp_path / "RN-tiny.pt"
    torch.jit.save(traced, path)
    state = cliplab.read_checkpoint(path).state_dict
    assert state["inner.visual.conv1.weight"].dtype == torch.float16
    assert "inner.input_resolution" not in state and "input_resolution" in state
    # OpenAI's archives hold the model at the top level; emulate that by dropping the wrapper prefix.
    plain = {k.removeprefix("inner."): v for k, v in state.items()}
    loaded = cliplab.build_model(plain).float()
    assert torch.equal(
        outputs(loaded), outputs(cliplab.build_model({k: v.half() for k, v in model.state_dict().items()}).float())
    )


def test_plain_openai_state_dict_file(tmp_path):
    model = cliplab.create_model("tiny-ViT/8@64px").eval()
    torch.save({k: v.half() for k, v in model.state_dict().items()}, tmp_path / "state.pt")
    loaded = cliplab.load_model(tmp_path / "state.pt")
    assert loaded.dtype == torch.float32
    assert (outputs(loaded) - outputs(model)).abs().max() < 0.05  # only fp16 rounding apart


def test_resize_224_to_336_matches_openclip():
    torch.manual_seed(0)
    model = cliplab.create_model("ViT-B/16").eval()
    state = model.state_dict()
    resized = resize_positional_embedding(state, model.config, 336)["visual.positional_embedding"]
    assert resized.shape == (1 + (336 // 16) ** 2, 768)
    assert torch.equal(resized[0], state["visual.positional_embedding"][0])  # class token untouched
    ref_model = open_clip.create_model("ViT-B-16-quickgelu", force_image_size=336)
    ref_state = {**state}
    resize_pos_embed(ref_state, ref_model)
    assert (resized - ref_state["visual.positional_embedding"]).abs().max() <= 1e-6


def test_checkpoint_runs_at_another_image_size(model, tmp_path):
    cliplab.save_checkpoint(model, tmp_path / "m.safetensors")
    bigger, preprocess = cliplab.load(tmp_path / "m.safetensors", image_size=96)
    assert bigger.image_size == 96 and preprocess.transforms[1].size == 96
    logits = outputs(bigger, 96)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    same = cliplab.load_model(tmp_path / "m.safetensors", image_size=64)  # no-op resize
    assert torch.equal(outputs(same), outputs(model))
    # Converting at the new size writes a checkpoint that remembers it.
    cliplab.convert(tmp_path / "m.safetensors", tmp_path / "m96.safetensors", image_size=96)
    assert torch.equal(outputs(cliplab.load_model(tmp_path / "m96.safetensors"), 96), logits)


# ---------------------------------------------------------------------------------------------
# damaged and wrong files


@pytest.fixture
def saved(tmp_path):
    model = cliplab.create_model("tiny-ViT/8@64px")
    cliplab.save_checkpoint(model, tmp_path / "good.safetensors")
    torch.save(model.state_dict(), tmp_path / "good.pt")
    return tmp_path


def truncate(src, dst, fraction=0.5):
    data = src.read_bytes()
    return write(dst, data[: int(len(data) * fraction)])


def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: truncate(d / "good.safetensors", d / "cut.safetensors"), "damaged or truncated safetensors"),
        (lambda d: truncate(d / "good.pt", d / "cut.pt"), "truncated or damaged zip"),
        (lambda d: write(d / "empty.pt", b""), "is empty"),
        (lambda d: write(d / "notes.txt", b"hello, not weights\n"), "not a checkpoint"),
        (lambda d: write(d / "noise.bin", os.urandom(4096)), "not a checkpoint"),
        (lambda d: d / "missing.pt", "no such file"),
        (lambda d: (d / "folder").mkdir() or d / "folder", "without config.json"),
    ],
    ids=["truncated-safetensors", "truncated-zip", "empty", "text", "noise", "missing", "folder"],
)
def test_damaged_files_get_clear_errors(saved, make, message):
    with pytest.raises(cliplab.CheckpointError, match=message):
        cliplab.load_model(make(saved))


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cliplab-pwned",))


def test_pickles_with_code_are_refused_and_never_run(tmp_path):
    marker = "/tmp/cliplab-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(cliplab.CheckpointError, match="weights_only=True"):
        cliplab.load_model(tmp_path / "evil.pt")
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps(Exploit(), protocol=2))
    with pytest.raises(cliplab.CheckpointError):
        cliplab.load_model(tmp_path / "legacy.pt")
    assert not os.path.exists(marker)


def test_torchscript_archive_with_foreign_globals_is_refused(tmp_path):
    path = tmp_path / "evil_ts.pt"
    payload = pickle.dumps(Exploit(), protocol=2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", payload)
        archive.writestr("evil/constants.pkl", pickle.dumps(()))
        archive.writestr("evil/code/__torch__.py", "")
    with pytest.raises(cliplab.CheckpointError, match="posix.system|os.system|refusing"):
        cliplab.load_model(path)
    assert not os.path.exists("/tmp/cliplab-pwned")


def test_mismatched_weights_name_the_problem(tmp_path):
    small = cliplab.create_model("tiny-ViT/8@64px")
    state = small.state_dict()
    # missing and unexpected keys
    broken = {k: v for k, v in state.items() if not k.startswith("visual.ln_post")} | {"extra.weight": torch.zeros(1)}
    with pytest.raises(
        cliplab.CheckpointError,
        match=r"2 missing keys: visual.ln_post.bias, visual.ln_post.weight.*1 unexpected keys: extra.weight",
    ):
        cliplab.build_model(broken)
    # a configuration that disagrees with the tensors
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        tmp_path / "lying.safetensors",
        metadata={
            "format": "cliplab",
            "cliplab_config": json.dumps(cliplab.get_config("small-ViT/8@96px").to_dict()),
        },
    )
    with pytest.raises(cliplab.CheckpointError, match="shape mismatches: .*checkpoint .* vs model"):
        cliplab.load_model(tmp_path / "lying.safetensors")
    # weights of something that is not CLIP at all
    torch.save({"conv.weight": torch.zeros(3, 3), "fc.bias": torch.zeros(3)}, tmp_path / "resnet.pt")
    with pytest.raises(cliplab.CheckpointError, match="not a CLIP state dict"):
        cliplab.load_model(tmp_path / "resnet.pt")


def test_failed_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    first = cliplab.create_model("tiny-ViT/8@64px")
    cliplab.save_checkpoint(first, path)
    before = path.read_bytes()

    def write_half_then_die(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", write_half_then_die)
    with pytest.raises(OSError, match="disk full"):
        cliplab.save_checkpoint(cliplab.create_model("tiny-ViT/8@64px"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_model_names_resolve_to_cached_files_or_explain(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(cliplab.CheckpointError, match=r"ViT-L-14-336px\.pt .* offline mode .* download https://"):
        cliplab.load("ViT-L/14@336px")  # offline, as every test runs (conftest)
    with pytest.raises(cliplab.CheckpointError, match="no such file or folder, and not a model name"):
        cliplab.load("no-such-model")
    model = cliplab.create_model("tiny-ViT/8@64px")
    torch.save(model.state_dict(), tmp_path / "tiny-ViT-8-64px.pt")
    loaded, _ = cliplab.load("tiny-ViT/8@64px")
    assert torch.equal(outputs(loaded), outputs(model.eval()))
