"""Exporting torchvision models to ONNX, cached on disk.

The cache key is the model, the weights (their sha256, or ``random`` with the seed and torchvision's version, since
the initialisation code decides random weights) and the opset: ``<cache_dir>/onnx/<model>-<weights>-opset<N>.onnx``.
The file is written under a temporary name and renamed, so concurrent workers never read a half-written model.

The exporter is the TorchScript-based one (``dynamo=False``): it exports a classifier in well under a second and
torchvision's detection models with their dynamic image sizes; the dynamo exporter is the fallback where the
TorchScript one is gone.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

from perfdesk.shipped.errors import InferenceError

from .registry import DETECTION, ModelSpec
from .torch_models import SEED, build_model, import_torch
from .weights import ResolvedWeights, ensure_writable

log = logging.getLogger(__name__)

OPSET = 17
EXPORT_SIZE = (3, 480, 640)  # example detection input; height and width are dynamic in the graph


def _torchvision_version() -> str | None:
    try:
        return importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        return None


def cache_file(spec: ModelSpec, weights: ResolvedWeights, cache_dir: Path, opset: int = OPSET) -> Path:
    """Where the export of this model and weights lives.

    Random weights depend on torchvision's initialisation code, so their key names its version. Where torchvision
    is not installed (a function that ships only onnxruntime and an export made at build time), the export of
    random weights already in the cache is used, whichever version made it.
    """
    folder = cache_dir / "onnx"
    if not weights.random:
        assert weights.sha256 is not None  # weights on disk are hashed when resolved
        return folder / f"{spec.name}-{weights.sha256[:16]}-opset{opset}.onnx"
    tv = _torchvision_version()
    if tv is None:
        found = sorted(folder.glob(f"{spec.name}-random{SEED}-tv*-opset{opset}.onnx"))
        if found:
            return found[-1]
        tv = "unknown"
    return folder / f"{spec.name}-random{SEED}-tv{tv}-opset{opset}.onnx"


def prepare_onnx(cfg) -> Path:
    """Export (or find) the ONNX file an ``onnx`` engine of ``cfg`` will load, without building the engine.

    For builders of function packages and host images: export at build time into a cache directory that ships
    with the code, point ``cache_dir`` (or ``PERFDESK_CACHE_DIR``) at it, and the function needs neither torch
    nor a writable disk to load the model.
    """
    from .registry import resolve
    from .weights import resolve_weights

    spec = resolve(cfg.model, "onnx")
    weights = resolve_weights(cfg.weights, cfg.weights_sha256, cfg.cache_path)
    return ensure_onnx(spec, weights, cfg.cache_path)[0]


def ensure_onnx(spec: ModelSpec, weights: ResolvedWeights, cache_dir: Path, opset: int = OPSET) -> tuple[Path, bool]:
    """The ONNX file for this model and weights, exported now if not cached; returns (path, exported_now)."""
    path = cache_file(spec, weights, cache_dir, opset)
    if path.exists():
        return path, False
    import_torch()
    model = build_model(spec, weights)
    ensure_writable(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".export-", suffix=".onnx")
    os.close(fd)
    t0 = time.perf_counter()
    try:
        _export(model, spec, Path(tmp), opset)
        os.replace(tmp, path)
    except InferenceError:
        raise
    except Exception as exc:
        raise InferenceError(f"exporting {spec.name} to ONNX (opset {opset}) failed: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("exported %s to %s in %.1f s", spec.name, path, time.perf_counter() - t0)
    return path, True


def _detection_wrapper(model):
    import torch

    class SingleImageDetector(torch.nn.Module):
        """One CHW image in, (boxes, labels, scores) out, in that order whatever the model's dict order is."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            out = self.inner([image])[0]
            return out["boxes"], out["labels"], out["scores"]

    return SingleImageDetector(model).eval()


def _export(model, spec: ModelSpec, dest: Path, opset: int) -> None:
    import torch

    if spec.task == DETECTION:
        module = _detection_wrapper(model)
        args = (torch.rand(*EXPORT_SIZE),)
        names = (["image"], ["boxes", "labels", "scores"])
        axes = {"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "labels": {0: "n"}, "scores": {0: "n"}}
        shapes = None
    else:
        module = model
        args = (torch.randn(1, 3, 224, 224),)
        names = (["images"], ["logits"])
        axes = {"images": {0: "batch"}, "logits": {0: "batch"}}
        shapes = ({0: torch.export.Dim("batch", min=1, max=256)},)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings are noise to a perfdesk user
        try:
            torch.onnx.export(
                module,
                args,
                str(dest),
                input_names=names[0],
                output_names=names[1],
                opset_version=opset,
                dynamic_axes=axes,
                dynamo=False,
            )
        except TypeError:  # a torch without the TorchScript exporter
            torch.onnx.export(
                module,
                args,
                str(dest),
                input_names=names[0],
                output_names=names[1],
                opset_version=opset,
                dynamic_shapes=shapes,
                dynamo=True,
                external_data=False,
            )
