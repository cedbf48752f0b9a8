"""Frames for a stream feed: from a video file (PyAV) or an image sequence (a folder), as JPEG bytes.

Each frame comes with its presentation time in seconds, so a feeder can send it on schedule (frame ``i`` of an
``fps`` feed is due at ``i / fps``). With ``fps`` given, a video is resampled to that rate: for each due time the
latest decoded frame at or before it is taken (frames are repeated when the video is slower, skipped when it is
faster), as a camera feed at that rate would deliver them.

PyAV (``pip install av``, perfdesk's ``video`` extra) is imported only for video files; a missing install is an
:class:`InferenceError`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from perfdesk.shipped.errors import InferenceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts"}


@dataclass(frozen=True)
class Frame:
    index: int  # position in the feed, 0-based
    pts_s: float  # when it is due, seconds from the start of the feed
    jpeg: bytes


def _to_jpeg(img, size: tuple[int, int] | None, quality: int) -> bytes:
    if img.mode != "RGB":
        img = img.convert("RGB")
    if size is not None:
        img = img.resize(size)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def video_frames(
    path: Path,
    fps: float | None = None,
    max_frames: int | None = None,
    size: tuple[int, int] | None = None,
    quality: int = 90,
) -> Iterator[Frame]:
    """Frames of a video file; ``fps`` resamples (None: every frame at its own time); ``size`` = (width, height)."""
    path = Path(path)
    if not path.is_file():
        raise InferenceError(f"video file {path} does not exist")
    try:
        import av
    except ImportError:
        raise InferenceError(
            "reading video needs PyAV; install the extra: pip install 'perfdesk[video]' (or pip install av)"
        ) from None
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise InferenceError(f"could not open video file {path}: {exc}") from None
    with container:
        if not container.streams.video:
            raise InferenceError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        start = None
        held = None  # the latest decoded frame not yet past (resampling)
        last_t = 0.0
        try:
            for decoded in container.decode(stream):
                pts, time_base = decoded.pts, decoded.time_base
                t = float(pts * time_base) if pts is not None and time_base is not None else None
                if t is None:
                    continue
                if start is None:
                    start = t
                t -= start
                if fps is None:
                    yield Frame(count, t, _to_jpeg(decoded.to_image(), size, quality))
                    count += 1
                else:
                    # emit every due time that this frame passes, using the frame held before it
                    while held is not None and count / fps < t - 1e-9:
                        yield Frame(count, count / fps, held)
                        count += 1
                        if max_frames is not None and count >= max_frames:
                            return
                    held = _to_jpeg(decoded.to_image(), size, quality)
                    last_t = t
                if max_frames is not None and count >= max_frames:
                    return
        except av.FFmpegError as exc:
            raise InferenceError(f"could not decode video file {path} at frame {count}: {exc}") from None
        if fps is not None and held is not None:
            # the last frame lasts one frame period of the video; due times inside it get it too
            rate = stream.average_rate or stream.base_rate
            end = last_t + (1.0 / float(rate) if rate else 0.0)
            while (count / fps < end - 1e-9 or count == 0) and (max_frames is None or count < max_frames):
                yield Frame(count, count / fps, held)
                count += 1


def sequence_frames(
    folder: Path,
    fps: float = 10.0,
    max_frames: int | None = None,
    size: tuple[int, int] | None = None,
    quality: int = 90,
) -> Iterator[Frame]:
    """The JPEG/PNG/WebP images of a folder in name order, one every ``1 / fps`` seconds; others skipped with a
    warning. JPEG files are passed through as they are unless ``size`` asks for a resize."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise InferenceError(f"image sequence folder {folder} does not exist")
    count = 0
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            log.warning("skipping %s: not a JPEG, PNG or WebP file", path)
            continue
        data = path.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as img:
                jpeg = data if img.format == "JPEG" and size is None else _to_jpeg(img, size, quality)
        except (UnidentifiedImageError, OSError) as exc:
            log.warning("skipping %s: not an image (%s)", path, exc.__class__.__name__)
            continue
        yield Frame(count, count / fps, jpeg)
        count += 1
        if max_frames is not None and count >= max_frames:
            return
    if count == 0:
        raise InferenceError(f"image sequence folder {folder} has no JPEG, PNG or WebP image")


def frames(source: str | Path, fps: float | None = None, **kwargs) -> Iterator[Frame]:
    """A video file or an image-sequence folder, by what ``source`` is."""
    path = Path(source)
    if path.is_dir():
        return sequence_frames(path, fps or 10.0, **kwargs)
    return video_frames(path, fps, **kwargs)
