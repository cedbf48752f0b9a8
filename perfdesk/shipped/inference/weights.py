"""Weights: ``random``, a local file, an https:// URL or an s3:// URI, checked against a sha256.

Remote weights are downloaded once into ``<cache_dir>/weights/`` (to a temporary name, then renamed, so a broken
download never looks like a cached file). The sha256 of the file actually used is always computed and reported, so
the manifest records which weights produced a result even when the profile gave none.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from perfdesk.shipped.errors import InferenceError

DOWNLOAD_TIMEOUT_S = 60


@dataclass
class ResolvedWeights:
    """Where the weights are on disk and their sha256. ``path`` is None for random weights, and for an ONNX export
    loaded instead of them (``onnx_file``: the export holds the weights; ``sha256`` says which they were)."""

    source: str
    path: Path | None
    sha256: str | None

    @property
    def random(self) -> bool:
        return self.source == "random"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():  # a SavedModel directory: hash the files in a stable order
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode())
            h.update(bytes.fromhex(sha256_of(f)))
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_weights(source: str, expected_sha256: str | None, cache_dir: Path) -> ResolvedWeights:
    """Make the weights available locally and check them; raises :class:`InferenceError` naming the file."""
    if source == "random":
        return ResolvedWeights(source, None, None)
    scheme = urlparse(source).scheme
    if scheme in ("http", "https"):
        path = _cached(source, cache_dir, expected_sha256, _download_https)
    elif scheme == "s3":
        path = _cached(source, cache_dir, expected_sha256, _download_s3)
    elif scheme in ("", "file"):
        path = Path(source[len("file://") :] if scheme == "file" else source).expanduser()
        if not path.exists():
            raise InferenceError(f"weights file {path} does not exist (weights = {source!r})")
    else:
        raise InferenceError(
            f"weights {source!r}: unsupported scheme {scheme!r}; use 'random', a path, https:// or s3://"
        )
    sha = sha256_of(path)
    if expected_sha256 and sha != expected_sha256:
        raise InferenceError(
            f"weights file {path} has sha256 {sha}, expected {expected_sha256} (from {source}); "
            "the file is truncated, corrupted or not the one the profile names"
        )
    return ResolvedWeights(source, path, sha)


def ensure_writable(folder: Path) -> None:
    """Create a cache folder, or say which one could not be written and how to pick another."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"no write permission on {folder}")
    except OSError as exc:
        raise InferenceError(
            f"cache folder {folder} is not writable ({exc}); set cache_dir or PERFDESK_CACHE_DIR to a writable "
            "folder (/tmp/perfdesk in a Lambda function)"
        ) from None


def _cached(source: str, cache_dir: Path, expected: str | None, fetch) -> Path:
    name = Path(urlparse(source).path).name or "weights"
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    target = cache_dir / "weights" / key / name
    if target.exists():
        if expected is None or sha256_of(target) == expected:
            return target
        target.unlink()  # stale or corrupt cache entry: fetch again, then check again
    ensure_writable(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    os.close(fd)
    try:
        fetch(source, Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _download_https(url: str, dest: Path) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InferenceError(f"could not download weights from {url}: {exc}") from None


def _download_s3(uri: str, dest: Path) -> None:
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise InferenceError(f"weights {uri!r}: an s3 URI must be s3://bucket/key")
    try:
        import boto3
    except ImportError:
        raise InferenceError(f"weights {uri}: boto3 is needed for s3:// weights (pip install boto3)") from None
    from botocore.exceptions import BotoCoreError, ClientError

    try:  # boto3 reads AWS's own configuration: credentials, region, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL
        boto3.client("s3").download_file(bucket, key, str(dest))
    except (BotoCoreError, ClientError) as exc:
        raise InferenceError(f"could not download weights from {uri}: {exc}") from None
