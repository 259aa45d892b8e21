"""Released weights by name: where a name, a path or a Hub id points, fetched when it is not here yet.

locate("path/to/file.pt")                     a file or folder you have
locate("ViT-B/32")                             OpenAI's release: the caches, else OpenAI's URL (verified)
locate("ViT-B-32", "laion2b_s34b_b79k")        an OpenCLIP pretrained tag (also "ViT-B-32:laion2b_s34b_b79k")
locate("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")   an OpenCLIP repository on the Hub
locate("openai/clip-vit-base-patch32")         a transformers CLIPModel repository on the Hub
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError
from ..files import cache_dir
from ..models.config import CLIPConfig, available_models, display_name
from .download import OPENAI_URL, download, offline, openai_url
from .registry import Pretrained, find, openai_release, pretrained_weights

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".tar", ".zip", ".json")


@dataclass(frozen=True)
class Located:
    path: Path  # the checkpoint file or Hugging Face folder to read
    config: CLIPConfig | None = None  # what the name says beyond the file (a tag's activation, preprocessing)
    weights: str = ""  # a short name of the weights: "laion2b_s34b_b79k", "ViT-B-32", the file's stem


def cache_dirs() -> list[Path]:
    """Where released files are looked for: cliplab's cache, then OpenAI's `clip` cache."""
    return [cache_dir(), Path.home() / ".cache" / "clip"]


def locate(name_or_path: str | os.PathLike, pretrained: str | None = None, progress: bool | None = None) -> Located:
    """The file (or folder) a path, a model name, a pretrained tag or a Hub id refers to, downloaded into
    a cache first when it is not there (never with `CLIPLAB_OFFLINE=1`)."""
    text = str(name_or_path).strip()
    path = Path(text).expanduser()
    if pretrained is None:
        if path.exists() or path.is_symlink():  # a broken link is the reader's to explain
            return Located(path, weights=path.stem if path.is_file() else path.name)
        if text.startswith("hf-hub:"):
            from .hub import open_clip_repo

            return Located(open_clip_repo(text.removeprefix("hf-hub:").strip("/")), weights=text.rsplit("/", 1)[-1])
        if re.fullmatch(r"[\w@/.-]+:[\w.-]+", text):  # "ViT-B-32:laion2b_s34b_b79k"
            text, pretrained = text.rsplit(":", 1)
    if pretrained is not None:
        return _fetch(find(text, pretrained), progress)
    if (release := openai_release(text)) is not None:
        return _fetch(release, progress)
    if text.lower() in {
        name.lower() for name in available_models()
    }:  # a built-in with no release: a file in the caches
        return _cached_builtin(text)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not text.lower().endswith(CHECKPOINT_SUFFIXES):
        from .hub import transformers_repo

        folder = transformers_repo(text)
        return Located(folder, weights=text.rsplit("/", 1)[-1])
    raise CheckpointError(
        f"no checkpoint at {text}: no such file or folder, and not a model name ({', '.join(available_models())}), "
        "an OpenCLIP name with a pretrained tag (`cliplab models --pretrained`) or a Hugging Face Hub id"
    )


def _fetch(entry: Pretrained, progress: bool | None) -> Located:
    config, weights = entry.clip_config(), entry.tag if entry.tag != "openai" else entry.file.rsplit(".", 1)[0]
    if entry.source == "hf-hub":
        from .hub import weights_file

        return Located(weights_file(entry.repo, entry.file), config, weights)
    stem = entry.file.rsplit(".", 1)[0]
    for folder in cache_dirs():  # the file, or a cliplab conversion of it under the same name
        for name in (entry.file, f"{stem}.safetensors"):
            if (folder / name).is_file():
                return Located(folder / name, config, weights)
    url = openai_url(entry.sha256, entry.file)
    if offline():
        where = " or ".join(str(d) for d in cache_dirs())
        raise CheckpointError(
            f"{entry.file} ({display_name(entry.architecture)}) is not in {where}, and offline mode is on "
            f"(CLIPLAB_OFFLINE or HF_HUB_OFFLINE): download {url} and put it in one of those folders"
        )
    return Located(download(url, cache_dir() / entry.file, entry.sha256, progress), config, weights)


def _cached_builtin(name: str) -> Located:
    stem = display_name(name).replace("/", "-").replace("@", "-")  # "tiny-ViT/8@64px" -> "tiny-ViT-8-64px"
    for folder in cache_dirs():
        for file in (f"{stem}.pt", f"{stem}.safetensors"):
            if (folder / file).is_file():
                return Located(folder / file, weights=stem)
    raise CheckpointError(
        f"{display_name(name)} is a built-in architecture without released weights, and no {stem}.pt or "
        f"{stem}.safetensors is in {' or '.join(str(d) for d in cache_dirs())}: train it (cliplab train "
        f"model={display_name(name)}) or give a checkpoint's path"
    )


__all__ = [
    "OPENAI_URL",
    "Located",
    "Pretrained",
    "cache_dirs",
    "download",
    "find",
    "locate",
    "offline",
    "openai_release",
    "pretrained_weights",
]
