"""Engine options: which model, on which runtime and device, with which weights; and their two encodings.

:class:`EngineConfig` is the one model of the engine's options. perfdesk writes it as command-line flags for the
agent (:meth:`EngineConfig.to_argv`, read back by :meth:`EngineConfig.add_arguments` and
:meth:`EngineConfig.from_args`) and as environment variables for a function (:meth:`EngineConfig.to_env`, read back
by :meth:`EngineConfig.from_env`). The client resolves every local path before it encodes (the profile loader makes
them absolute); a function's relative ``weights`` are relative to its task root, where the package puts them.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path

from perfdesk.shipped.errors import InferenceError

RUNTIMES = ("torch", "onnx", "tensorflow")
DEVICES = ("cpu", "cuda", "auto")


def default_cache_dir() -> Path:
    """``$PERFDESK_CACHE_DIR``, else ``~/.cache/perfdesk`` (a Lambda function sets the variable to /tmp/...)."""
    env = os.environ.get("PERFDESK_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "perfdesk"


@dataclass
class EngineConfig:
    """What :func:`perfdesk.shipped.inference.load_engine` builds.

    ``weights`` is ``"random"`` (seeded, timing only), a local path, an ``https://`` URL or an ``s3://`` URI; for
    runtime ``tensorflow`` with model ``savedmodel`` it is the SavedModel directory. ``weights_sha256``, when
    given, is checked against the file. ``threads`` is the runtime's intra-op thread count (None: the measured
    default, see :mod:`perfdesk.shipped.inference.threads`). ``cache_dir`` holds downloaded weights and ONNX exports.

    ``onnx_file`` (runtime ``onnx``) is an export made beforehand (at build time, where torch is): a path, an
    ``https://`` URL or an ``s3://`` URI, checked against ``onnx_sha256`` when given. The engine loads it and never
    exports; ``weights`` and ``weights_sha256`` then only say which weights it was exported from. A function
    (``AWS_LAMBDA_FUNCTION_NAME`` set) on the onnx runtime needs it: it never exports at cold start.
    """

    model: str = "resnet50"
    runtime: str = "torch"
    device: str = "cpu"
    threads: int | None = None
    weights: str = "random"
    weights_sha256: str | None = None
    cache_dir: str | None = None
    onnx_file: str | None = None
    onnx_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise InferenceError(f"unknown runtime {self.runtime!r}; known runtimes: {', '.join(RUNTIMES)}")
        if self.device not in DEVICES:
            raise InferenceError(f"unknown device {self.device!r}; known devices: {', '.join(DEVICES)}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InferenceError(f"threads must be a positive integer or None, got {self.threads!r}")
        if not self.weights:
            raise InferenceError("weights must be 'random', a path, an https:// URL or an s3:// URI")
        for name in ("weights_sha256", "onnx_sha256"):
            value = getattr(self, name)
            if value is not None:
                sha = value.strip().lower()
                if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                    raise InferenceError(f"{name} must be 64 hex digits, got {value!r}")
                setattr(self, name, sha)
        if self.onnx_file is not None and self.runtime != "onnx":
            raise InferenceError(f"onnx_file is for the onnx runtime, not {self.runtime!r}")

    @classmethod
    def from_dict(cls, d: dict) -> EngineConfig:
        """Build from ``WorkloadSpec.model_options()`` (or any dict with these keys); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InferenceError(f"unknown engine option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**d)

    # -- argv (the agent) ---------------------------------------------------------------------------------
    def to_argv(self) -> list[str]:
        """The agent's command-line flags for these options (read back by :meth:`from_args`)."""
        argv = ["--model", self.model, "--runtime", self.runtime, "--device", self.device, "--weights", self.weights]
        if self.threads is not None:
            argv += ["--threads", str(self.threads)]
        if self.weights_sha256:
            argv += ["--weights-sha256", self.weights_sha256]
        if self.cache_dir:
            argv += ["--cache-dir", self.cache_dir]
        if self.onnx_file:
            argv += ["--onnx-file", self.onnx_file]
        if self.onnx_sha256:
            argv += ["--onnx-sha256", self.onnx_sha256]
        return argv

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("engine")
        g.add_argument("--model", default="resnet50", help="model name (default resnet50)")
        g.add_argument("--runtime", default="torch", choices=RUNTIMES, help="inference runtime (default torch)")
        g.add_argument("--device", default="cpu", choices=DEVICES, help="device (default cpu)")
        g.add_argument("--threads", type=int, default=None, help="intra-op threads of the runtime")
        g.add_argument("--weights", default="random", help="'random', a file, an https:// URL or an s3:// URI")
        g.add_argument("--weights-sha256", default=None, help="expected sha256 of the weights file")
        g.add_argument("--cache-dir", default=None, help="where downloaded weights and exports go")
        g.add_argument("--onnx-file", default=None, help="onnx runtime: a ready export to load (never export)")
        g.add_argument("--onnx-sha256", default=None, help="expected sha256 of the ONNX file")

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> EngineConfig:
        return cls(
            model=ns.model,
            runtime=ns.runtime,
            device=ns.device,
            threads=ns.threads,
            weights=ns.weights,
            weights_sha256=ns.weights_sha256,
            cache_dir=ns.cache_dir,
            onnx_file=getattr(ns, "onnx_file", None),
            onnx_sha256=getattr(ns, "onnx_sha256", None),
        )

    # -- environment (a function) -------------------------------------------------------------------------
    def to_env(self) -> dict[str, str]:
        """The function's environment variables for these options (read back by :meth:`from_env`)."""
        env = {
            "PERFDESK_MODEL": self.model,
            "PERFDESK_RUNTIME": self.runtime,
            "PERFDESK_DEVICE": self.device,
            "PERFDESK_WEIGHTS": self.weights,
        }
        if self.threads is not None:
            env["PERFDESK_THREADS"] = str(self.threads)
        if self.weights_sha256:
            env["PERFDESK_WEIGHTS_SHA256"] = self.weights_sha256
        if self.cache_dir:
            env["PERFDESK_CACHE_DIR"] = self.cache_dir
        if self.onnx_file:
            env["PERFDESK_ONNX_FILE"] = self.onnx_file
        if self.onnx_sha256:
            env["PERFDESK_ONNX_SHA256"] = self.onnx_sha256
        return env

    @classmethod
    def from_env(cls, environ=os.environ) -> EngineConfig:
        """Options from a function's environment; relative paths (weights, the ONNX file) are under the task root
        (``LAMBDA_TASK_ROOT``)."""
        root = environ.get("LAMBDA_TASK_ROOT", os.getcwd())

        def local(value: str | None) -> str | None:
            if value and value != "random" and "://" not in value and not os.path.isabs(value):
                return os.path.join(root, value)
            return value

        weights = local(environ.get("PERFDESK_WEIGHTS", "random")) or "random"
        threads = environ.get("PERFDESK_THREADS")
        return cls(
            model=environ.get("PERFDESK_MODEL", "resnet50"),
            runtime=environ.get("PERFDESK_RUNTIME", "torch"),
            device=environ.get("PERFDESK_DEVICE", "cpu"),
            threads=int(threads) if threads else None,
            weights=weights,
            weights_sha256=environ.get("PERFDESK_WEIGHTS_SHA256") or None,
            cache_dir=environ.get("PERFDESK_CACHE_DIR") or None,
            onnx_file=local(environ.get("PERFDESK_ONNX_FILE") or None),
            onnx_sha256=environ.get("PERFDESK_ONNX_SHA256") or None,
        )

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"
