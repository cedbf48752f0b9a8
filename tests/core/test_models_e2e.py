"""Issue 3's end to end: a detection model on ONNX Runtime and a Keras classifier on TensorFlow against the local
server, with per-phase server timings in the CSV, and a stream trial fed from a video file."""

import subprocess

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PYTHON, agent_env

pytestmark = pytest.mark.slow


def _video(path, frames=12):
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 20 * i % 255, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_detection_on_onnx_and_keras_on_tensorflow(tmp_path):
    _video(tmp_path / "feed.mp4")
    profile = tmp_path / "models.toml"
    profile.write_text(f"""
[session]
name = "models"
output = "{tmp_path / "sessions"}"

[[targets]]
name = "server"
kind = "local-server"
wsgi_threads = 2

[[workloads]]
name = "det-onnx"
model = "ssdlite320_mobilenet_v3_large"
runtime = "onnx"
images = "synthetic"
synthetic_size = [320, 240]
image_count = 2
score_threshold = 0.0

[[workloads]]
name = "keras-tf"
model = "keras_mobilenet_v2"
runtime = "tensorflow"
images = "synthetic"
synthetic_size = [224, 224]
image_count = 2

[[trials]]
kind = "warm"
warmup = 1
count = 4

[[trials]]
kind = "stream"
source = "feed.mp4"
fps = 10
frames = 8
mode = "async"
max_in_flight = 2
""")
    proc = subprocess.run(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    session = next((tmp_path / "sessions").iterdir())
    req = pd.read_csv(session / "requests.csv")
    warm = req[req.trial == "warm"]
    assert warm.groupby("workload").size().to_dict() == {"det-onnx": 4, "keras-tf": 4}
    assert (warm.status == "ok").all()
    for col in ("server_decode_ms", "server_preprocess_ms", "server_inference_ms", "server_postprocess_ms"):
        assert (warm[col] > 0).all(), col
    stream = req[req.trial == "stream"]
    assert stream.groupby("workload").size().to_dict() == {"det-onnx": 8, "keras-tf": 8}
    assert set(stream.status) <= {"ok", "dropped"} and (stream.status == "ok").any()
    # the video's frames were sent, not the workload's synthetic images: frame payloads are small (160x120)
    assert stream.payload_bytes.max() < warm.payload_bytes.min()
