"""Weights from the Hugging Face Hub, through `huggingface_hub` (the `hub` extra): OpenCLIP's
repositories (`open_clip_config.json` and its weights) and transformers' `CLIPModel` repositories
(`config.json` and `model.safetensors`). Files land in the Hub's own cache (`HF_HOME`,
`HF_HUB_CACHE`) and come from `HF_ENDPOINT`; `HF_HUB_OFFLINE=1` or `CLIPLAB_OFFLINE=1` use only that
cache. What is downloaded is read by cliplab's safe readers like any local file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..checkpoints.openclip import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS
from ..errors import CheckpointError, DownloadError
from ..extras import require
from ..files import read_regular
from .download import offline

TRANSFORMERS_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _hub():
    return require("huggingface_hub", "hub", "loading weights from the Hugging Face Hub")


def hub_file(repo_id: str, filename: str) -> Path | None:
    """`filename` of the Hub repository `repo_id`, downloaded into the Hub's cache (or found there);
    None when the repository has no such file."""
    hub = _hub()
    errors = hub.errors
    try:
        return Path(
            hub.hf_hub_download(
                repo_id,
                filename,
                local_files_only=offline(),
                library_name="cliplab",
                endpoint=os.environ.get("HF_ENDPOINT") or None,  # read now: huggingface_hub reads it at import
                cache_dir=_hub_cache(),
            )
        )
    except errors.GatedRepoError:
        raise DownloadError(f"{repo_id} is gated on the Hugging Face Hub: accept its terms there and log in") from None
    except errors.RepositoryNotFoundError:
        raise DownloadError(
            f"the Hugging Face Hub has no repository {repo_id} (or it is private: log in with `hf auth login`)"
        ) from None
    except errors.RevisionNotFoundError as err:
        raise DownloadError(f"{repo_id}: {_first_line(err)}") from None
    except errors.LocalEntryNotFoundError:
        if offline():
            return None  # not in the cache; the caller says what was looked for
        raise DownloadError(
            f"could not reach the Hugging Face Hub for {repo_id}/{filename} and it is not in the Hub's cache"
        ) from None
    except errors.EntryNotFoundError:
        return None
    except errors.HfHubHTTPError as err:
        raise DownloadError(f"could not download {repo_id}/{filename}: {_first_line(err)}") from None
    except errors.HFValidationError as err:
        raise DownloadError(f"{repo_id!r} is not a Hugging Face Hub repository id: {_first_line(err)}") from None
    except OSError as err:
        raise DownloadError(f"could not download {repo_id}/{filename}: {_first_line(err)}") from None
    except Exception as err:  # the HTTP client's own errors (connection refused, timeouts, ...)
        if type(err).__module__.split(".")[0] in ("httpx", "httpcore", "requests", "urllib3"):
            raise DownloadError(f"could not download {repo_id}/{filename}: {_first_line(err)}") from None
        raise


def _hub_cache() -> str | None:
    """The Hub's cache as the environment says now (`HF_HUB_CACHE`, else `HF_HOME`/hub), or None for its default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    return os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None


def first_file(repo_id: str, filenames: tuple[str, ...] | list[str], what: str) -> Path:
    """The first of `filenames` that the repository has, or a DownloadError naming them all."""
    for filename in filenames:
        if (path := hub_file(repo_id, filename)) is not None:
            return path
    where = " in the Hub's cache (offline mode)" if offline() else ""
    raise DownloadError(f"{repo_id} has no {what}{where}: looked for {', '.join(filenames)}")


def open_clip_repo(repo_id: str) -> Path:
    """The local folder (in the Hub's cache) holding an OpenCLIP repository's configuration and weights
    ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K"), for `read_open_clip_folder`."""
    config = first_file(repo_id, [OPEN_CLIP_CONFIG], "OpenCLIP configuration (not an OpenCLIP repository?)")
    weights = first_file(repo_id, OPEN_CLIP_WEIGHTS, "OpenCLIP weights")
    if weights.parent != config.parent:  # the files of one revision share one snapshot folder
        raise DownloadError(f"{repo_id} changed while it was downloaded; try again")
    return config.parent


def weights_file(repo_id: str, filename: str) -> Path:
    """A named weights file of a repository, its safetensors twin first when there is one (as OpenCLIP looks)."""
    names = [filename]
    if filename == "open_clip_pytorch_model.bin":
        names.insert(0, "open_clip_model.safetensors")
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return first_file(repo_id, names, "weights")


def transformers_repo(repo_id: str) -> Path:
    """The local folder (in the Hub's cache) holding a transformers CLIPModel repository's `config.json` and
    weights, for `read_hf_folder`."""
    config = first_file(repo_id, ["config.json"], "config.json (not a transformers model repository?)")
    weights = first_file(repo_id, TRANSFORMERS_WEIGHTS, "weights cliplab reads")
    if weights.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(read_regular(weights, 2**24))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{weights} is not a valid shard index ({type(err).__name__}: {err})") from None
        for shard in shards:
            if not isinstance(shard, str) or Path(shard).name != shard:
                raise CheckpointError(f"{weights} names a shard outside the repository: {shard!r}")
            first_file(repo_id, [shard], f"shard {shard}")
    if weights.parent != config.parent:  # the files of one revision share one snapshot folder
        raise DownloadError(f"{repo_id} changed while it was downloaded; try again")
    return config.parent


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
