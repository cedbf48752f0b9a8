"""Frames from a video file (written here with PyAV) and from an image sequence folder."""

import io

import numpy as np
import pytest
from PIL import Image

from perfdesk.shipped.inference import InferenceError
from perfdesk.shipped.inference.frames import frames, sequence_frames, video_frames

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """2 s of 64x48 video at 10 fps; frame i has brightness 10 * i (so the frames can be told apart)."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def brightness(jpeg: bytes) -> float:
    return float(np.asarray(Image.open(io.BytesIO(jpeg))).mean())


def test_every_frame(video):
    got = list(video_frames(video))
    assert len(got) == 20
    assert [f.index for f in got] == list(range(20))
    assert got[0].pts_s == 0 and got[-1].pts_s == pytest.approx(1.9)
    assert Image.open(io.BytesIO(got[0].jpeg)).format == "JPEG"
    levels = [brightness(f.jpeg) for f in got]
    assert levels == sorted(levels) and levels[-1] - levels[0] > 150


def test_resampled(video):
    slow = list(video_frames(video, fps=5))
    assert len(slow) == 10 and [f.pts_s for f in slow[:3]] == [0.0, 0.2, 0.4]
    fast = list(frames(video, fps=20, max_frames=30))
    assert len(fast) == 30  # frames repeat when the feed is faster than the video
    assert brightness(fast[0].jpeg) == pytest.approx(brightness(fast[1].jpeg), abs=2)
    small = next(video_frames(video, size=(32, 24)))
    assert Image.open(io.BytesIO(small.jpeg)).size == (32, 24)


def test_image_sequence(tmp_path, caplog):
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 50 * i, np.uint8)).save(tmp_path / f"f{i:02d}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    got = list(sequence_frames(tmp_path, fps=4))
    assert [f.pts_s for f in got] == [0.0, 0.25, 0.5]
    assert all(Image.open(io.BytesIO(f.jpeg)).format == "JPEG" for f in got)
    assert "skipping" in caplog.text and "notes.txt" in caplog.text


def test_errors(tmp_path):
    with pytest.raises(InferenceError, match="video file .*missing.mp4 does not exist"):
        list(frames(tmp_path / "missing.mp4"))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(InferenceError, match="could not open video file .*bad.mp4"):
        list(frames(tmp_path / "bad.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InferenceError, match="has no JPEG, PNG or WebP image"):
        list(frames(tmp_path / "empty"))
