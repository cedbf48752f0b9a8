"""Weights from a file, an http(s) URL and an s3:// URI (moto server on loopback); clear errors naming the file."""

import functools
import http.server
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from perfdesk.shipped.inference import EngineConfig, InferenceError, load_engine


def test_file_weights_with_sha(spread_weights, tmp_path, chelsea_jpeg):
    path, sha = spread_weights
    engine = load_engine(
        EngineConfig(model="mobilenet_v2", weights=str(path), weights_sha256=sha.upper(), cache_dir=str(tmp_path))
    )
    assert engine.info["weights_sha256"] == sha and engine.info["random_weights"] is False
    assert engine.predict([chelsea_jpeg])["random_weights"] is False


def test_sha_is_reported_when_not_given(spread_weights, tmp_path):
    path, sha = spread_weights
    engine = load_engine(EngineConfig(model="mobilenet_v2", weights=str(path), cache_dir=str(tmp_path)))
    assert engine.info["weights_sha256"] == sha


def test_truncated_weights_file_is_named(spread_weights, tmp_path):
    path, _ = spread_weights
    broken = tmp_path / "truncated.pth"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InferenceError, match=f"weights file {broken} could not be read as a PyTorch state dict"):
        load_engine(EngineConfig(model="mobilenet_v2", weights=str(broken), cache_dir=str(tmp_path)))


def test_mismatched_sha_is_named(spread_weights, tmp_path):
    path, _ = spread_weights
    with pytest.raises(InferenceError, match=f"weights file {path} has sha256 .*, expected 0000"):
        load_engine(EngineConfig(model="mobilenet_v2", weights=str(path), weights_sha256="0" * 64))


def test_weights_of_another_model_are_named(spread_weights, tmp_path):
    path, sha = spread_weights
    with pytest.raises(InferenceError, match=f"weights file {path} does not fit model mobilenet_v3_large"):
        load_engine(EngineConfig(model="mobilenet_v3_large", weights=str(path), cache_dir=str(tmp_path)))


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_weights_are_downloaded_once(spread_weights, http_root, tmp_path):
    path, sha = spread_weights
    root, base = http_root
    shutil.copy(path, root / "w.pth")
    cache = tmp_path / "cache"
    cfg = EngineConfig(model="mobilenet_v2", weights=f"{base}/w.pth", weights_sha256=sha, cache_dir=str(cache))
    assert load_engine(cfg).info["weights_sha256"] == sha
    cached = list((cache / "weights").rglob("w.pth"))
    assert len(cached) == 1
    (root / "w.pth").unlink()  # the second load must come from the cache
    assert load_engine(cfg).info["weights_sha256"] == sha


def test_url_not_found_is_named(http_root, tmp_path):
    _, base = http_root
    with pytest.raises(InferenceError, match=f"could not download weights from {base}/missing.pth: HTTP Error 404"):
        load_engine(EngineConfig(model="mobilenet_v2", weights=f"{base}/missing.pth", cache_dir=str(tmp_path)))


def test_corrupt_download_is_refetched_and_checked(spread_weights, http_root, tmp_path):
    path, sha = spread_weights
    root, base = http_root
    (root / "w.pth").write_bytes(b"garbage")
    cfg = EngineConfig(model="mobilenet_v2", weights=f"{base}/w.pth", weights_sha256=sha, cache_dir=str(tmp_path))
    with pytest.raises(InferenceError, match="has sha256 .* expected"):
        load_engine(cfg)
    shutil.copy(path, root / "w.pth")  # fixed upstream: the bad cached copy is replaced
    assert load_engine(cfg).info["weights_sha256"] == sha


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_s3():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    yield endpoint
    proc.terminate()
    proc.wait(10)


def test_s3_weights(spread_weights, moto_s3, tmp_path, monkeypatch):
    import boto3

    path, sha = spread_weights
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": moto_s3,  # AWS's own variable: boto3 reads it
    }.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=moto_s3)
    s3.create_bucket(Bucket="models")
    s3.upload_file(str(path), "models", "mobilenet/w.pth")
    cfg = EngineConfig(
        model="mobilenet_v2", weights="s3://models/mobilenet/w.pth", weights_sha256=sha, cache_dir=str(tmp_path)
    )
    assert load_engine(cfg).info["weights_sha256"] == sha
    with pytest.raises(InferenceError, match="could not download weights from s3://models/nope.pth"):
        load_engine(EngineConfig(model="mobilenet_v2", weights="s3://models/nope.pth", cache_dir=str(tmp_path)))


def test_unwritable_cache_is_named(http_root, tmp_path):
    _, base = http_root
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    with pytest.raises(InferenceError, match=f"cache folder {blocker}/weights/.* is not writable.*PERFDESK_CACHE_DIR"):
        load_engine(EngineConfig(model="mobilenet_v2", weights=f"{base}/w.pth", cache_dir=str(blocker)))
