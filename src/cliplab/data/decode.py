"""Decoding one image or caption, turning every way it can be bad into a `BadSample` with a reason."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import BadSample
from ..files import FileTooLarge, NotRegularFile, os_reason, read_regular

# PIL's own default; larger images are refused as possible decompression bombs.
MAX_PIXELS = 89_478_485


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A fully decoded PIL image from encoded bytes, or BadSample."""
    if not data:
        raise BadSample("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise BadSample("too many pixels", f"{width}x{height} exceeds {max_pixels:,}")
            image.load()  # decode now, so truncation shows here and not inside a transform
    except BadSample:
        raise
    except UnidentifiedImageError:
        raise BadSample("not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadSample("too many pixels", str(err)) from None
    except MemoryError:
        raise BadSample("undecodable image", "decoding it needs more memory than there is") from None
    except Exception as err:  # truncated or corrupt data: a crafted file can make a parser raise anything
        raise BadSample("undecodable image", f"{type(err).__name__}: {err}") from None
    return image


MAX_FILE_BYTES = 1 << 30  # an encoded image larger than this is refused before it is read


def read_image(path: Path, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> Image.Image:
    """A fully decoded image from a regular file (never a pipe or a device, which could block a reader)."""
    try:
        data = read_regular(path, max_bytes)
    except FileNotFoundError:
        raise BadSample("missing file", str(path)) from None
    except IsADirectoryError:
        raise BadSample("not a file", f"{path} is a folder") from None
    except NotRegularFile as err:
        raise BadSample("not a file", f"{path} is {os_reason(err)}") from None
    except FileTooLarge as err:
        raise BadSample("file too large", f"{path}: {os_reason(err)}") from None
    except OSError as err:
        raise BadSample("unreadable file", f"{path}: {os_reason(err)}") from None
    return decode_image(data, max_pixels)


def check_caption(caption: str | bytes) -> str:
    """The caption as text, or BadSample if it is empty or not valid UTF-8."""
    if isinstance(caption, bytes):
        try:
            caption = caption.decode("utf-8")
        except UnicodeDecodeError:
            raise BadSample("caption not UTF-8") from None
    try:
        caption.encode("utf-8")  # surrogate escapes from undecodable bytes in a table fail here
    except UnicodeEncodeError:
        raise BadSample("caption not UTF-8") from None
    if not caption.strip():
        raise BadSample("empty caption")
    return caption
