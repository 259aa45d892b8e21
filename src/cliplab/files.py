"""Small file helpers every layer may use: atomic writes, the cache folder, reading a user's text file.

An atomic write goes to a temporary file beside its destination, is fsynced and renamed into place,
so a reader (or a resumed run) never sees a file half-written, whatever killed the writer and when.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SourceError

if TYPE_CHECKING:
    import torch


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it over `path`.

    The file gets the permissions a plain `open` would give it (0666 less the umask), not the
    temporary file's private 0600, so other users and services can read what cliplab writes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)  # some writers (safetensors) replace the file: its mode is set after
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    try:  # Linux says it without changing it
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)  # elsewhere the only way to read it is to set it and set it back
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any, indent: int = 1) -> None:
    write_text(path, json.dumps(data, indent=indent) + "\n")


def save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> None:
    """A safetensors file of `tensors` (copied to contiguous CPU memory), written atomically."""
    from safetensors.torch import save_file

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(contiguous, tmp, metadata=dict(metadata or {})))


def os_reason(err: BaseException) -> str:
    """What went wrong, in words: an OSError's text without its `[Errno N]` and repeated file name."""
    return getattr(err, "strerror", None) or str(err)


def cache_dir() -> Path:
    """cliplab's cache: `$CLIPLAB_CACHE`, default `~/.cache/cliplab` (weights, cached features)."""
    return Path(os.environ.get("CLIPLAB_CACHE") or Path.home() / ".cache" / "cliplab")


def read_user_text(path: str | os.PathLike, what: str) -> str:
    """The text of a file the user named (a list of labels, templates, class names), or a clear error."""
    path = Path(path).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{what} {path} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise SourceError(f"{what} {path} is not UTF-8 text") from None
    except OSError as err:
        raise SourceError(f"{what} {path} cannot be read ({os_reason(err)})") from None
