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

from .errors import InferenceError
from .registry import DETECTION, ModelSpec
from .torch_models import SEED, build_model, import_torch
from .weights import ResolvedWeights

log = logging.getLogger(__name__)

OPSET = 17
EXPORT_SIZE = (3, 480, 640)  # example detection input; height and width are dynamic in the graph


def cache_file(spec: ModelSpec, weights: ResolvedWeights, cache_dir: Path, opset: int = OPSET) -> Path:
    if weights.random:
        try:
            tv = importlib.metadata.version("torchvision")
        except importlib.metadata.PackageNotFoundError:
            tv = "unknown"
        key = f"random{SEED}-tv{tv}"
    else:
        key = weights.sha256[:16]
    return cache_dir / "onnx" / f"{spec.name}-{key}-opset{opset}.onnx"


def ensure_onnx(spec: ModelSpec, weights: ResolvedWeights, cache_dir: Path, opset: int = OPSET) -> tuple[Path, bool]:
    """The ONNX file for this model and weights, exported now if not cached; returns (path, exported_now)."""
    path = cache_file(spec, weights, cache_dir, opset)
    if path.exists():
        return path, False
    import_torch()
    model = build_model(spec, weights)
    path.parent.mkdir(parents=True, exist_ok=True)
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
            torch.onnx.export(module, args, str(dest), input_names=names[0], output_names=names[1],
                              opset_version=opset, dynamic_axes=axes, dynamo=False)
        except TypeError:  # a torch without the TorchScript exporter
            torch.onnx.export(module, args, str(dest), input_names=names[0], output_names=names[1],
                              opset_version=opset, dynamic_shapes=shapes, dynamo=True, external_data=False)
