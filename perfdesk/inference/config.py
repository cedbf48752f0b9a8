"""Engine configuration: which model, on which runtime and device, with which weights."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import InferenceError

RUNTIMES = ("torch", "onnx", "tensorflow")
DEVICES = ("cpu", "cuda", "auto")


def default_cache_dir() -> Path:
    """``$PERFDESK_CACHE_DIR``, else ``~/.cache/perfdesk`` (a Lambda function sets the variable to /tmp/...)."""
    env = os.environ.get("PERFDESK_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "perfdesk"


@dataclass
class EngineConfig:
    """What :func:`perfdesk.inference.load_engine` builds.

    ``weights`` is ``"random"`` (seeded, timing only), a local path, an ``https://`` URL or an ``s3://`` URI; for
    runtime ``tensorflow`` with model ``savedmodel`` it is the SavedModel directory. ``weights_sha256``, when
    given, is checked against the file. ``threads`` is the runtime's intra-op thread count (None: the measured
    default, see :mod:`perfdesk.inference.threads`). ``cache_dir`` holds downloaded weights and ONNX exports.
    """

    model: str = "resnet50"
    runtime: str = "torch"
    device: str = "cpu"
    threads: int | None = None
    weights: str = "random"
    weights_sha256: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise InferenceError(f"unknown runtime {self.runtime!r}; known runtimes: {', '.join(RUNTIMES)}")
        if self.device not in DEVICES:
            raise InferenceError(f"unknown device {self.device!r}; known devices: {', '.join(DEVICES)}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InferenceError(f"threads must be a positive integer or None, got {self.threads!r}")
        if not self.weights:
            raise InferenceError("weights must be 'random', a path, an https:// URL or an s3:// URI")
        if self.weights_sha256 is not None:
            sha = self.weights_sha256.strip().lower()
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise InferenceError(f"weights_sha256 must be 64 hex digits, got {self.weights_sha256!r}")
            self.weights_sha256 = sha

    @classmethod
    def from_dict(cls, d: dict) -> "EngineConfig":
        """Build from ``WorkloadSpec.model_options()`` (or any dict with these keys); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InferenceError(f"unknown engine option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**d)

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"
