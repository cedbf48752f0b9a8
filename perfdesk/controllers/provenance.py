"""Reproducibility facts for manifest.json (issue 7 item 6): the client host, its TCP round-trip time to each
target, software versions, and file hashes for packages, layers, models and weights.

The core calls :func:`manifest_extras` when it writes the manifest and stores the result under ``"provenance"``.
Every probe has a timeout and reports a failure as data (``"error"``), never as an exception: a manifest must
be written even when a target is unreachable.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: Distributions whose versions matter to a measurement (read from metadata; nothing is imported).
PACKAGES = (
    "perfdesk",
    "torch",
    "torchvision",
    "onnxruntime",
    "tensorflow-cpu",
    "tensorflow",
    "numpy",
    "pandas",
    "scipy",
    "pillow",
    "flask",
    "gunicorn",
    "boto3",
    "botocore",
    "paramiko",
    "awslambdaric",
    "psutil",
    "textual",
    "rich",
    "pydantic",
    "av",
)


def tcp_rtt(host: str, port: int, samples: int = 5, timeout: float = 2.0) -> dict[str, Any]:
    """Time ``samples`` TCP connects to host:port (one SYN / SYN-ACK round trip each, plus the local stack).

    Returns ``{"host", "port", "samples_ms", "min_ms", "median_ms", "max_ms", "error"}``; on failure the
    figures are None and ``error`` says what failed (DNS, refused, timeout).
    """
    out: dict[str, Any] = {
        "host": host,
        "port": port,
        "samples_ms": [],
        "min_ms": None,
        "median_ms": None,
        "max_ms": None,
        "error": "",
    }
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        out["error"] = f"cannot resolve {host}: {exc}"
        return out
    family, kind, proto, _, address = infos[0]
    for _ in range(max(1, samples)):
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            start = time.perf_counter()
            sock.connect(address)
            out["samples_ms"].append((time.perf_counter() - start) * 1000.0)
        except OSError as exc:
            out["error"] = f"TCP connect to {host}:{port} failed: {exc}"
            break
        finally:
            sock.close()
    if out["samples_ms"]:
        values = out["samples_ms"]
        out.update(min_ms=min(values), median_ms=statistics.median(values), max_ms=max(values))
    return out


def target_endpoint(describe: dict[str, Any]) -> tuple[str, int] | None:
    """host:port a target's requests go to, from its describe() dict: ``url`` / ``endpoint_url`` /
    ``host`` + ``port``, or, for AWS Lambda, the regional Lambda API endpoint."""
    for key in ("url", "endpoint_url", "base_url"):
        if describe.get(key):
            parts = urlsplit(str(describe[key]))
            if parts.hostname:
                return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if describe.get("host"):
        return str(describe["host"]), int(describe.get("port") or 22)
    if describe.get("kind") == "lambda" and describe.get("region"):
        return f"lambda.{describe['region']}.amazonaws.com", 443
    return None


def client_host() -> dict[str, Any]:
    """The machine that sent the load."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["physical_cores"] = psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - psutil is a dependency, but a manifest must not fail for want of it
        pass
    return info


def software_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that matter (absent ones left out)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def source_revision() -> str:
    """git commit of the perfdesk checkout (with '+dirty' when modified), or '' when not a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not commit:
            return ""
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file (package zips, layers, model weights), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def manifest_extras(
    targets: dict[str, dict[str, Any]] | None = None, rtt_samples: int = 5, timeout: float = 2.0
) -> dict[str, Any]:
    """Facts to add to manifest.json. ``targets``: name -> describe() dict; each with a reachable endpoint gets
    an RTT measurement (``"rtt": {name: tcp_rtt(...)}``; targets with no endpoint are listed with an error)."""
    rtt: dict[str, Any] = {}
    for name, describe in (targets or {}).items():
        endpoint = target_endpoint(describe or {})
        if endpoint is None:
            rtt[name] = {"error": "no endpoint in the target's description (url, host/port or region)"}
        else:
            rtt[name] = tcp_rtt(*endpoint, samples=rtt_samples, timeout=timeout)
    return {
        "client": client_host(),
        "rtt": rtt,
        "software": software_versions(),
        "perfdesk_revision": source_revision(),
    }
