"""Videos: frames sampled at a rate, decoded with PyAV (the `video` extra; FFmpeg inside its wheels).

    for frame in sample_frames("lecture.mp4", fps=1):
        frame.time, frame.image            # seconds from the video's start, a PIL image (RGB)

Frames stream: one decoded frame at a time, so memory does not grow with the video's length. Only the
kept frames are converted to RGB; when frames are kept far apart (more than twice the distance between
keyframes) the decoder seeks to the keyframe before the next one instead of decoding what lies between,
and frames nothing depends on (B-frames) are not decoded at all when at most one in four is kept.

A file that cannot be opened or has no video stream raises `BadSample` before any frame; one that breaks
part of the way raises `VideoCutOff` after the frames before the damage (the caller decides what to keep).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BadSample
from ..extras import require
from ..files import regular_file_problem
from .decode import MAX_PIXELS

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")
CUT_OFF_SECONDS = 1.0  # a video whose frames stop this much before the duration its header gives is cut off


def _av():
    return require("av", "video", "reading videos")


class VideoCutOff(BadSample):
    """Decoding stopped part of the way through a video; `time` is how far it got (seconds)."""

    def __init__(self, time: float, detail: str):
        super().__init__("video cut off", f"decoding stopped after {format_time(time)}: {detail}")
        self.time = time


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    duration: float | None  # seconds, where the file says
    frame_rate: float | None  # frames per second, where the file says
    codec: str


@dataclass(frozen=True)
class Frame:
    time: float  # seconds from the start of the video
    image: Image.Image  # RGB


def format_time(seconds: float) -> str:
    """00:12:31 (whole seconds; hours always shown, as video players do for long files)."""
    seconds = max(0, int(seconds + 1e-6))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _open(path: str | Path):
    """(container, its first video stream), or BadSample saying why not."""
    av = _av()
    path = Path(path)
    if problem := regular_file_problem(path):
        raise BadSample("missing file" if not path.exists() else "not a file", f"{path}: {problem}")
    if path.stat().st_size == 0:
        raise BadSample("empty file", str(path))
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as err:
        raise BadSample("not a video", f"{path}: {_reason(err)}") from None
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams})
        container.close()
        raise BadSample("no video stream", f"{path}" + (f" holds only {' and '.join(kinds)}" if kinds else " is empty"))
    return container, container.streams.video[0]


def _reason(err: Exception) -> str:
    """FFmpeg's words for what went wrong ("Invalid data found when processing input"), without the
    error number and file name PyAV adds."""
    return getattr(err, "strerror", None) or str(err)


def video_info(path: str | Path) -> VideoInfo:
    container, stream = _open(path)
    with container:
        return _info(container, stream)


def _info(container, stream) -> VideoInfo:
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(
        stream.codec_context.width, stream.codec_context.height, duration, float(rate) if rate else None, stream.name
    )


class _Video:
    """An open video checked for use: its container and first video stream, what it says of itself, its
    time base and the time its first frame is shown at (frame times count from there)."""

    def __init__(self, path: str | Path, max_pixels: int):
        self.container, self.stream = _open(path)
        self.info = _info(self.container, self.stream)
        if self.info.width * self.info.height > max_pixels:
            self.container.close()
            raise BadSample("too many pixels", f"{self.info.width}x{self.info.height} frames exceed {max_pixels:,}")
        self.base = self.stream.time_base
        self.origin = float(self.stream.start_time * self.base) if self.stream.start_time is not None else 0.0

    def __enter__(self) -> _Video:
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()


def sample_frames(
    path: str | Path, fps: float = 1.0, max_pixels: int = MAX_PIXELS, info: list | None = None
) -> Iterator[Frame]:
    """The frames at 0, 1/fps, 2/fps, ... seconds (each the first frame shown at or after that time).

    `info`, when given a list, receives the `VideoInfo` before the first frame is yielded.
    """
    if not fps > 0 or math.isinf(fps):
        raise ValueError(f"fps must be a positive number, not {fps}")
    av = _av()
    with _Video(path, max_pixels) as video:
        container, stream, about, base, origin = video.container, video.stream, video.info, video.base, video.origin
        if info is not None:
            info.append(about)
        if about.frame_rate and about.frame_rate >= 4 * fps:
            stream.codec_context.skip_frame = "NONREF"  # B-frames: never kept, never needed by another frame
        step = 1.0 / fps
        target, last, count, sought = 0.0, -math.inf, 0, None
        keyframes: list[float] = []  # times of the keyframes seen, to learn how far apart they are
        decoded, reached = 0, 0.0  # frames decoded, and the time up to which they show the video
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    decoded += 1
                    if frame.pts is None:  # no timestamps: count frames at the rate the stream gives
                        time = (decoded - 1) / (about.frame_rate or fps)
                    else:
                        time = float(frame.pts * base) - origin
                    shown = float(frame.duration * base) if frame.duration else 1 / (about.frame_rate or fps)
                    reached = max(reached, time + shown)
                    if frame.key_frame and (not keyframes or time > keyframes[-1]):
                        keyframes.append(time)
                    if time < target - 1e-6 or time <= last:
                        continue
                    last = time
                    image = Image.fromarray(frame.to_ndarray(format="rgb24"))
                    count += 1
                    yield Frame(time, image)
                    target = max(target + step, time - (time - target) % step + step)
                if len(keyframes) >= 3:
                    gap = max(b - a for a, b in zip(keyframes[-3:], keyframes[-2:]))
                    if target != sought and target - last > 2 * gap + 1e-6:  # beyond the next keyframe
                        container.seek(int((target + origin) / base), stream=stream, backward=True)
                        sought = target  # once: a seek that lands early must not be repeated
        except av.FFmpegError as err:
            if count == 0 and decoded == 0:
                raise BadSample("undecodable video", f"{path}: {_reason(err)}") from None
            raise VideoCutOff(max(last, 0.0), _reason(err)) from None
        if count == 0:
            raise BadSample("undecodable video", f"{path}: no frame could be decoded")
        if about.duration and reached < about.duration - CUT_OFF_SECONDS:  # the data stops early, silently
            raise VideoCutOff(
                last, f"its frames end at {format_time(reached)} of the {format_time(about.duration)} it says it lasts"
            )


def frame_at(path: str | Path, time: float, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The frame shown at `time` seconds (seeking to the keyframe before it, then decoding forward)."""
    av = _av()
    with _Video(path, max_pixels) as video:
        container, stream, base, origin = video.container, video.stream, video.base, video.origin
        chosen = None
        try:
            if time > 0:
                container.seek(int((time + origin) / base), stream=stream, backward=True)
            for frame in container.decode(stream):
                at = float(frame.pts * base) - origin if frame.pts is not None else 0.0
                if chosen is None or at <= time + 1e-3:
                    chosen = frame.to_ndarray(format="rgb24")
                if at >= time - 1e-3:
                    break
        except av.FFmpegError as err:
            if chosen is None:
                raise BadSample("undecodable video", f"{path}: {_reason(err)}") from None
        if chosen is None:
            raise BadSample("undecodable video", f"{path}: no frame at {time:.2f} s")
        return Image.fromarray(np.ascontiguousarray(chosen))


def write_video(
    path: str | Path, frames: Iterable[np.ndarray | Image.Image], fps: float, codec: str = "libx264", **options: str
) -> None:
    """Encode RGB frames (all one size, even sides for most codecs) into a video file at `fps`: the test and
    benchmark videos. `codec`: libx264 (.mp4), libvpx-vp9 (.webm), mpeg4 (.avi), ...; `options` are the
    encoder's (crf, preset, g for the keyframe interval, ...)."""
    av = _av()
    with av.open(str(path), "w") as container:
        stream = None
        for frame in frames:
            array = np.asarray(frame.convert("RGB") if isinstance(frame, Image.Image) else frame, dtype=np.uint8)
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options)
                stream.height, stream.width = array.shape[:2]
                stream.pix_fmt = "yuv420p"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        if stream is None:
            raise ValueError("write_video needs at least one frame")
        container.mux(stream.encode())


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
