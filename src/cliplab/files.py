"""Small file helpers every layer may use: atomic writes, the cache folder, reading a user's text file.

An atomic write goes to a temporary file beside its destination, is fsynced and renamed into place,
so a reader (or a resumed run) never sees a file half-written, whatever killed the writer and when.
"""

from __future__ import annotations

import errno
import json
import os
import stat
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


class NotRegularFile(OSError):
    """A path that is a folder, a pipe, a device or a socket where a file's bytes were wanted."""


class FileTooLarge(OSError):
    """A file larger than the caller's bound."""


def read_regular(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`. A pipe, a device or a folder is refused
    without waiting on it (opened non-blocking, checked with fstat before any read), and no more than
    `max_bytes` + 1 bytes are ever read, whatever the file claims."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a folder, not a file"
                if stat.S_ISDIR(info.st_mode)
                else "not a regular file (a pipe, device or socket)"
            )
            raise NotRegularFile(errno.EINVAL, kind)
        if info.st_size > max_bytes:
            raise FileTooLarge(errno.EFBIG, f"{info.st_size:,} bytes, more than the {max_bytes:,} allowed")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:  # it grew while being read
            raise FileTooLarge(errno.EFBIG, f"more than the {max_bytes:,} bytes allowed")
        return data
    finally:
        os.close(fd)


def read_range(path: str | os.PathLike, offset: int, size: int) -> bytes:
    """`size` bytes at `offset` of a regular file (fewer where it ends sooner), never blocking on a pipe."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file (a pipe, device or socket)")
        return os.pread(fd, size, offset) if hasattr(os, "pread") else _seek_read(fd, offset, size)
    finally:
        os.close(fd)


def _seek_read(fd: int, offset: int, size: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def regular_file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as a file (missing, a folder, a pipe, a broken link), or None."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_symlink() and not path.exists():
        return "a broken or looping symbolic link"
    if not path.exists():
        return "no such file"
    return "a folder, not a file" if path.is_dir() else "not a regular file (a pipe, device or socket)"


MAX_TEXT_BYTES = 64 * 2**20  # a list of labels, templates or class names, a run configuration


def read_user_text(path: str | os.PathLike, what: str) -> str:
    """The text of a file the user named (a list of labels, templates, class names), or a clear error."""
    path = Path(path).expanduser()
    try:
        return read_regular(path, MAX_TEXT_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise SourceError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{what} {path} is a folder, not a file") from None
    except NotRegularFile as err:
        raise SourceError(f"{what} {path} is {os_reason(err)}") from None
    except UnicodeDecodeError:
        raise SourceError(f"{what} {path} is not UTF-8 text") from None
    except OSError as err:
        raise SourceError(f"{what} {path} cannot be read ({os_reason(err)})") from None
