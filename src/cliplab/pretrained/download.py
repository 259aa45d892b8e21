"""Verified downloads of OpenAI's released files, as openai/CLIP's `clip.load` fetches them, and more.

The file streams into `<name>.part` beside its place in the cache while its SHA-256 is computed; it is
renamed into place only when the hash equals the published one (OpenAI's URLs hold it), and deleted
when not. An interrupted download resumes with an HTTP Range request for the rest. Two processes
asking for the same file take turns (a lock file), so neither reads a half-written one.

    CLIPLAB_OPENAI_URL   replaces https://openaipublic.azureedge.net/clip/models (a mirror; the tests)
    CLIPLAB_OFFLINE=1    never touches the network (HF_HUB_OFFLINE=1 too)
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import DownloadError
from ..files import os_reason

OPENAI_URL = "https://openaipublic.azureedge.net/clip/models"
CHUNK = 1 << 20
TIMEOUT = 60  # seconds without a byte before a download counts as failed


def offline() -> bool:
    """Whether the network is off limits: `CLIPLAB_OFFLINE` or `HF_HUB_OFFLINE` set to 1/true/yes/on."""
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("CLIPLAB_OFFLINE", "HF_HUB_OFFLINE")
    )


def openai_url(sha256: str, file: str) -> str:
    """Where OpenAI publishes a file: `<base>/<sha256>/<file>`, the base replaceable by `CLIPLAB_OPENAI_URL`."""
    base = os.environ.get("CLIPLAB_OPENAI_URL", "").strip() or OPENAI_URL
    return f"{base.rstrip('/')}/{sha256}/{file}"


def download(url: str, target: Path, sha256: str, progress: bool | None = None) -> Path:
    """`target`, fetched from `url` if it is not there yet and verified against `sha256`.

    `progress`: a progress bar on standard error (None: only when it is a terminal)."""
    target = Path(target)
    if target.is_file():
        return target
    if offline():
        raise DownloadError(f"{target.name} is not in {target.parent} and the network is off (offline mode)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.with_name(target.name + ".lock")):
        if target.is_file():  # another process finished it while this one waited
            return target
        part = target.with_name(target.name + ".part")
        for _ in range(2):  # a second round only when the server would not resume the part
            digest = _fetch(url, part, progress)
            if digest is not None:
                break
        else:
            raise DownloadError(f"could not download {url}: the server would not resume {part}; delete it and retry")
        if digest != sha256:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url}: the downloaded file's SHA-256 is {digest}, not the published {sha256}; the file was deleted "
                "and nothing was saved (a proxy or mirror answered with other bytes?)"
            )
        os.replace(part, target)
    return target


def _fetch(url: str, part: Path, progress: bool | None) -> str | None:
    """Append the rest of `url` to `part` (all of it when there is no part); the SHA-256 of the whole part,
    or None when the server cannot resume and the part was removed to start over."""
    hasher, have = hashlib.sha256(), 0
    if part.is_file():
        with open(part, "rb") as f:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
                have += len(chunk)
    headers = {"User-Agent": "cliplab", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing after the part: it may be the whole file
            return hasher.hexdigest()
        raise DownloadError(f"could not download {url}: the server answered {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise DownloadError(f"could not download {url}: {_reason(err)}") from None
    with response:
        start = _range_start(response.headers.get("Content-Range")) if response.status == 206 else 0
        if have and start != have:  # the server ignored the range or sent another one: start over
            part.unlink(missing_ok=True)
            return None
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        bar = tqdm(
            total=total,
            initial=have,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name[: -len(".part")],
            disable=None if progress is None else not progress,
            leave=False,
        )
        with bar, open(part, "ab") as out:
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    have += len(chunk)
                    bar.update(len(chunk))
            except http.client.IncompleteRead as err:  # the connection closed early: keep what came
                out.write(err.partial)
                hasher.update(err.partial)
                have += len(err.partial)
                raise DownloadError(_kept(url, part, have, total, "the connection closed early")) from None
            except (OSError, http.client.HTTPException) as err:
                raise DownloadError(_kept(url, part, have, total, _reason(err))) from None
            out.flush()
            os.fsync(out.fileno())
    if total is not None and have < total:
        raise DownloadError(_kept(url, part, have, total, "the connection closed early"))
    return hasher.hexdigest()


def _kept(url: str, part: Path, have: int, total: int | None, reason: str) -> str:
    of = f" of {total:,}" if total else ""
    return (
        f"could not download {url}: {reason} after {have:,}{of} bytes; they are kept in {part} and the next try resumes"
    )


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", content_range or "")
    return int(match.group(1)) if match else None


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    if isinstance(err, (socket.timeout, TimeoutError)):
        return f"no answer within {TIMEOUT} s"
    if isinstance(err, OSError):
        return os_reason(err)
    return str(err) or type(err).__name__


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock on `path` (a file beside the download) for as long as the block runs."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; a concurrent download fails its hash check at worst
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
