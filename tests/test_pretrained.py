"""Released weights by name, with no internet: a server on loopback stands in for OpenAI's file host
and the Hugging Face Hub (tests/hub_server.py), and test-only registry entries point at small
generated checkpoints whose SHA-256 they carry."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

import cliplab
from cliplab.errors import ConfigError, DownloadError
from cliplab.pretrained import registry

from .conftest import CAPTIONS
from .hub_server import FileServer

TINY = "tiny-RN@32px"


def embeddings(model) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(cliplab.tokenize(CAPTIONS[:2]))


def assert_same(a, b, atol=0.0) -> None:
    for x, y in zip(embeddings(a), embeddings(b)):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


@pytest.fixture
def server():
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    """Caches in tmp_path; OpenAI's host and the Hub on the loopback server; online."""
    for var in ("CLIPLAB_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLIPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLIPLAB_OPENAI_URL", server.url)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


OPEN_CLIP_CFG = {  # a small OpenCLIP ViT whose heads are 80 wide (as ViT-H-14's), GELU, 0.5 normalisation
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 160, "patch_size": 8, "head_width": 80},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture
def release(monkeypatch, server):
    """A registry holding test entries: an OpenAI-style release of a tiny model (served at
    /<sha256>/tiny-RN-32.pt) and a Hub tag of a small OpenCLIP model."""
    torch.manual_seed(0)
    model = cliplab.create_model(TINY).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    server.files[f"/{sha256}/tiny-RN-32.pt"] = data
    shape = model.config.to_dict()
    for key in ("activation", "image_mean", "image_std", "image_resize", "logit_bias"):
        shape.pop(key)
    table = {
        "architectures": {"tiny-RN-32": shape, "tiny-ViT-80": _open_clip_shape()},
        "pretrained": [
            {"architecture": "tiny-RN-32", "tag": "openai", "activation": "quick_gelu", "source": "openai",
             "file": "tiny-RN-32.pt", "sha256": sha256, "licence": "MIT", "imagenet_top1": 0.5},
            {"architecture": "tiny-ViT-80", "tag": "testtag", "activation": "gelu", "source": "hf-hub",
             "repo": "testorg/tiny-open-clip", "file": "open_clip_pytorch_model.bin", "image_mean": [0.5] * 3,
             "image_std": [0.5] * 3, "licence": "MIT"},
        ],
    }  # fmt: skip
    monkeypatch.setattr(registry, "_registry", lambda: table)
    return model, data, f"/{sha256}/tiny-RN-32.pt"


def _open_clip_shape() -> dict:
    from cliplab.checkpoints.openclip import from_open_clip_config

    shape = from_open_clip_config(OPEN_CLIP_CFG).to_dict()
    for key in ("activation", "image_mean", "image_std", "image_resize", "logit_bias"):
        shape.pop(key)
    return shape


def gets(server) -> list:
    return [r for r in server.requests if r[0] == "GET"]


# ----- OpenAI's releases -----


def test_a_release_is_downloaded_verified_into_the_cache_and_found_there_next_time(env, server, release):
    model, data, url_path = release
    loaded = cliplab.load_model(TINY)
    assert_same(loaded, model)
    cached = env / "cache" / "tiny-RN-32.pt"
    assert cached.read_bytes() == data and not (env / "cache" / "tiny-RN-32.pt.part").exists()
    assert gets(server) == [("GET", url_path, None)]
    assert_same(cliplab.load_model(TINY), model)  # a second load makes no request
    assert len(server.requests) == 1


def test_a_dropped_download_resumes_with_only_the_rest(env, server, release):
    model, data, url_path = release
    half = len(data) // 2
    server.drop_after[url_path] = half
    with pytest.raises(DownloadError, match=rf"closed early after {half:,} of {len(data):,} bytes.*resumes"):
        cliplab.load_model(TINY)
    assert (env / "cache" / "tiny-RN-32.pt.part").stat().st_size == half
    assert not (env / "cache" / "tiny-RN-32.pt").exists()
    assert_same(cliplab.load_model(TINY), model)
    assert gets(server)[-1] == ("GET", url_path, f"bytes={half}-")  # only the rest was asked for
    assert (env / "cache" / "tiny-RN-32.pt").read_bytes() == data


def test_a_wrong_hash_deletes_the_file_and_names_both_hashes(env, server, release):
    _, data, _ = release
    server.wrong_bytes = True
    with pytest.raises(DownloadError) as info:
        cliplab.load_model(TINY)
    message = str(info.value)
    assert "SHA-256" in message and hashlib.sha256(bytes(len(data))).hexdigest() in message
    assert registry.pretrained_weights()[0].sha256 in message
    assert [p.name for p in (env / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_a_missing_file_is_one_clear_line(env, server, release):
    _, _, url_path = release
    del server.files[url_path]
    with pytest.raises(DownloadError, match="answered 404"):
        cliplab.load_model(TINY)


def test_an_unreachable_host_is_one_clear_line(env, monkeypatch, release):
    monkeypatch.setenv("CLIPLAB_OPENAI_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(DownloadError, match="could not download http://127.0.0.1:9/"):
        cliplab.load_model(TINY)


@pytest.mark.parametrize("switch", ["CLIPLAB_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_makes_no_request_and_says_where_to_put_the_file(env, server, release, monkeypatch, switch):
    monkeypatch.setenv(switch, "1")
    with pytest.raises(cliplab.CheckpointError, match=r"tiny-RN-32\.pt .* is not in .*cache.* offline mode") as info:
        cliplab.load_model(TINY)
    assert server.url in str(info.value) and server.requests == []


def test_vit_b_32_from_a_host_answering_wrong_bytes(env, server):
    """The issue's must-show: the real registry entry, a host answering every path with other bytes."""
    url_path = f"/{registry.openai_release('ViT-B/32').sha256}/ViT-B-32.pt"
    server.files[url_path] = b"not the weights" * 1000
    with pytest.raises(DownloadError, match="SHA-256"):
        cliplab.load("ViT-B/32")
    result = subprocess.run([sys.executable, "-m", "cliplab", "info", "ViT-B/32"], capture_output=True, text=True)
    assert result.returncode == 2 and "SHA-256" in result.stderr and "Traceback" not in result.stderr
    assert not (env / "cache" / "ViT-B-32.pt").exists() and not (env / "cache" / "ViT-B-32.pt.part").exists()
    requests = len(server.requests)
    offline = subprocess.run(
        [sys.executable, "-m", "cliplab", "info", "ViT-B/32"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "CLIPLAB_OFFLINE": "1"},
    )
    assert offline.returncode == 2 and "offline mode" in offline.stderr
    assert len(server.requests) == requests  # offline: the server saw nothing


# ----- registry -----


def test_an_architecture_cliplab_does_not_build_is_a_clear_error():
    with pytest.raises(ConfigError, match="no released weights for 'ViT-bigG-14' that cliplab builds"):
        cliplab.load_model("ViT-bigG-14", pretrained="laion2b_s39b_b160k")
    with pytest.raises(ConfigError, match="ViT-B-32 has no pretrained tag 'nope'; its tags: openai, "):
        cliplab.load_model("ViT-B-32:nope")


def test_the_registry_is_consistent():
    entries = registry.pretrained_weights()
    assert len({e.name for e in entries}) == len(entries) > 50
    openai = [e for e in entries if e.source == "openai"]
    assert len(openai) == 9 and all(len(e.sha256) == 64 for e in openai)
    for entry in entries:
        config = entry.clip_config()  # every entry makes a configuration cliplab builds
        assert config.activation == entry.activation
        if entry.source == "hf-hub":
            assert entry.repo.count("/") == 1 and entry.file
    laion = registry.find("ViT-L/14", "laion2b_s32b_b82k")
    assert laion.clip_config().image_mean == (0.5, 0.5, 0.5)  # its own normalisation, as OpenCLIP's tag says
    assert registry.find("ViT-B-32-quickgelu", "laion400m_e31").activation == "quick_gelu"
    assert registry.find("ViT-H-14", "dfn5b").clip_config().image_resize == "squash"


def test_models_lists_the_pretrained_weights(capsys):
    from cliplab.cli import main

    assert main(["models", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert "laion2b_s34b_b79k" in out and "66.6" in out and "ViT-H-14" in out and "CC-BY-NC-4.0" in out


# ----- the Hugging Face Hub -----


def _open_clip_model():
    import open_clip

    torch.manual_seed(1)
    model = open_clip.model.CLIP(**OPEN_CLIP_CFG).eval()
    return model


def _serve_open_clip_repo(server, repo: str, model) -> None:
    config = {"model_cfg": OPEN_CLIP_CFG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    server.add_hub_file(repo, "open_clip_config.json", json.dumps(config).encode())
    server.add_hub_file(repo, "open_clip_model.safetensors", safetensors_bytes(model.state_dict()))


def test_an_open_clip_hub_repository_loads_with_open_clips_embeddings(env, server):
    pytest.importorskip("open_clip")
    reference = _open_clip_model()
    _serve_open_clip_repo(server, "testorg/tiny-open-clip", reference)
    model = cliplab.load_model("hf-hub:testorg/tiny-open-clip")
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    text = cliplab.tokenize(CAPTIONS[:2])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), reference.encode_image(images), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_text(text), reference.encode_text(text), atol=1e-5, rtol=0)
    assert model.image_mean == (0.5, 0.5, 0.5) and model.config.activation == "gelu"
    # the same files in a local folder are the same model
    local = env / "local-open-clip"
    local.mkdir()
    for path in server.files:
        if "/testorg/tiny-open-clip/" in path:
            (local / path.rsplit("/", 1)[-1]).write_bytes(server.files[path])
    assert_same(model, cliplab.load_model(local))


def test_a_pretrained_tag_on_the_hub_takes_the_safetensors_twin(env, server, release):
    pytest.importorskip("open_clip")
    reference = _open_clip_model()
    _serve_open_clip_repo(server, "testorg/tiny-open-clip", reference)
    model = cliplab.load_model("tiny-ViT-80", pretrained="testtag")
    assert model.image_mean == (0.5, 0.5, 0.5)
    assert_same(model, cliplab.load_model("hf-hub:testorg/tiny-open-clip"))
    fetched = {path.rsplit("/", 1)[-1] for method, path, _ in server.requests if method == "GET"}
    assert "open_clip_pytorch_model.bin" not in fetched  # the .bin was never needed


def test_a_transformers_hub_repository_loads_like_its_local_folder(env, server, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(2)
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 2, "num_hidden_layers": 2},
        vision_config={"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 2, "num_hidden_layers": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=32,
    )  # fmt: skip
    reference = transformers.CLIPModel(config).eval()
    reference.save_pretrained(tmp_path / "local")
    for name in ("config.json", "model.safetensors"):
        server.add_hub_file("testorg/tiny-hf-clip", name, (tmp_path / "local" / name).read_bytes())
    model = cliplab.load_model("testorg/tiny-hf-clip")
    assert_same(model, cliplab.load_model(tmp_path / "local"))
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference.get_image_features(pixel_values=images)
        expected = getattr(expected, "pooler_output", expected)
        torch.testing.assert_close(model.encode_image(images), expected, atol=1e-5, rtol=0)


def test_hub_failures_are_one_clear_line(env, server, monkeypatch):
    pytest.importorskip("huggingface_hub")
    with pytest.raises(DownloadError, match="has no repository testorg/nothing"):
        cliplab.load_model("hf-hub:testorg/nothing")
    server.add_hub_file("testorg/config-only", "config.json", b"{}")
    with pytest.raises(DownloadError, match="testorg/config-only has no weights cliplab reads"):
        cliplab.load_model("testorg/config-only")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(server.requests)
    with pytest.raises(DownloadError, match=r"in the Hub's cache \(offline mode\)"):
        cliplab.load_model("hf-hub:testorg/tiny-open-clip")
    assert len(server.requests) == before


def test_offline_hub_loads_come_from_its_cache_without_a_request(env, server, monkeypatch):
    pytest.importorskip("open_clip")
    _serve_open_clip_repo(server, "testorg/tiny-open-clip", _open_clip_model())
    online = cliplab.load_model("hf-hub:testorg/tiny-open-clip")
    monkeypatch.setenv("CLIPLAB_OFFLINE", "1")
    before = len(server.requests)
    assert_same(cliplab.load_model("hf-hub:testorg/tiny-open-clip"), online)
    assert len(server.requests) == before
