"""ONNX Runtime: models exported from PyTorch (see :mod:`onnx_export`), CPU provider, CUDA provider if present.

Where the export comes from: ``onnx_file`` (an export made at build time and shipped with a function: a path, an
https:// URL or an s3:// URI, checked against ``onnx_sha256``), else the export cache (exported now if missing,
which needs torch). Inside a Lambda function the export is never made at cold start: no layer holds torch, so a
function without ``onnx_file`` fails at init saying so.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from perfdesk.shipped.errors import InferenceError

from .base import Engine, package_versions
from .onnx_export import OPSET, ensure_onnx
from .threads import default_threads
from .weights import resolve_weights


def shipped_onnx(cfg) -> tuple[Path, str | None]:
    """The export named by ``cfg.onnx_file`` on local disk, and its sha256 where it was computed. A remote file is
    downloaded into the cache once and checked against ``onnx_sha256``; a local one (in the function's package or a
    layer, which Lambda checks by their CodeSha256) is not hashed again at every cold start."""
    source = cfg.onnx_file
    if "://" not in source:
        path = Path(source)
        if not path.is_file():
            raise InferenceError(
                f"the ONNX model {path} is not there (onnx_file = {source!r}); it is exported at build time and "
                "shipped with the function (package, layer or S3): redeploy, or correct PERFDESK_ONNX_FILE"
            )
        return path, None
    try:
        resolved = resolve_weights(source, cfg.onnx_sha256, cfg.cache_path)
    except InferenceError as exc:
        raise InferenceError(f"the ONNX model: {exc}") from None
    assert resolved.path is not None  # a URL always resolves to a downloaded file
    return resolved.path, resolved.sha256


def _inside_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def _import_ort():
    t0 = time.perf_counter()
    try:
        import onnxruntime
    except ImportError as exc:
        raise InferenceError(
            f"ONNX Runtime is not installed ({exc}); install the extra: pip install 'perfdesk[onnx]' "
            "(or pip install onnxruntime)"
        ) from None
    return onnxruntime, round((time.perf_counter() - t0) * 1000.0, 3)


def pick_providers(ort, device: str) -> tuple[list[str], str]:
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise InferenceError(
            f"device 'cuda' asked for, but ONNX Runtime has no CUDA provider here (available: {', '.join(available)}); "
            "install onnxruntime-gpu or use device 'cpu'"
        )
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda"
    return ["CPUExecutionProvider"], "cpu"


class OnnxEngine(Engine):
    session: Any  # an onnxruntime.InferenceSession (onnxruntime is imported on load)
    input_name: str

    @classmethod
    def load(cls, cfg, spec, weights) -> OnnxEngine:
        ort, import_ms = _import_ort()
        t0 = time.perf_counter()
        sha = None
        if cfg.onnx_file:
            (path, sha), exported = shipped_onnx(cfg), False
        elif _inside_lambda():
            raise InferenceError(
                "this function has no ONNX model: PERFDESK_ONNX_FILE is not set, and a function never exports one at "
                "cold start (exporting needs torch, which no layer holds). Export it at build time "
                "(perfdesk.shipped.inference.onnx_export.prepare_onnx, which perfdesk's lambda targets do) and ship "
                "it in the package, a layer or S3, with PERFDESK_ONNX_FILE naming it"
            )
        else:
            path, exported = ensure_onnx(spec, weights, cfg.cache_path)
        t_export = time.perf_counter()
        threads = cfg.threads or default_threads("onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # warnings about unused initialisers etc. are noise here
        providers, device = pick_providers(ort, cfg.device)
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own kinds: one InferenceError
            raise InferenceError(
                f"ONNX Runtime could not load {path} ({exc}); "
                + ("ship a good export (redeploy)" if cfg.onnx_file else "delete the file to export it again")
            ) from None
        self = cls(cfg, spec, weights)
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.info.update(
            device=device,
            threads=threads,
            import_ms=import_ms,
            load_ms=round((time.perf_counter() - t0) * 1000.0, 3),
            export_ms=round((t_export - t0) * 1000.0, 3) if exported else 0.0,
            onnx_file=str(path),
            onnx_sha256=sha or cfg.onnx_sha256,
            opset=OPSET,
            providers=session.get_providers(),
            versions=package_versions("onnxruntime", "onnx", "torch", "torchvision", "numpy", "pillow"),
        )
        return self

    def _classify(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def _detect(self, images):
        # The exported graph takes one image (sizes differ); a batch is a loop, as torchvision's own batch is.
        out = []
        for im in images:
            boxes, labels, scores = self.session.run(None, {self.input_name: im})
            out.append((boxes, labels, scores))
        return out
