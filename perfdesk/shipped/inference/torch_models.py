"""Building torchvision models, with random (seeded) or loaded weights. Used by the torch and onnx runtimes."""

from __future__ import annotations

import time

from perfdesk.shipped.errors import InferenceError

from .registry import DETECTION, ModelSpec
from .weights import ResolvedWeights

SEED = 0


def import_torch() -> float:
    """Import torch and torchvision; returns the milliseconds it took (0 when already imported)."""
    t0 = time.perf_counter()
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:
        raise InferenceError(
            f"PyTorch is not installed ({exc}); install the extra: pip install 'perfdesk[torch]' "
            "(or pip install torch torchvision)"
        ) from None
    return round((time.perf_counter() - t0) * 1000.0, 3)


def build_model(spec: ModelSpec, weights: ResolvedWeights):
    """The torchvision model in eval mode on the CPU.

    Random weights: built with ``weights=None`` (and ``weights_backbone=None``, so nothing is downloaded) under a
    fixed seed, so every process (server agent, function) gets the same model. Otherwise the file is a state dict
    (``torch.save(model.state_dict())``, as torchvision publishes), optionally wrapped in ``{"state_dict": ...}`` or
    ``{"model": ...}``; it is loaded with ``weights_only=True`` (no code in a weights file is executed).
    """
    import torch
    import torchvision.models as tvm
    import torchvision.models.detection as tvd

    kwargs = {"weights": None}
    if spec.task == DETECTION:
        kwargs["weights_backbone"] = None
        builder = getattr(tvd, spec.builder)
    else:
        builder = getattr(tvm, spec.builder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = builder(**kwargs)
    if not weights.random:
        state = load_state_dict(weights)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0:3]
            raise InferenceError(
                f"weights file {weights.path} does not fit model {spec.name}: {' '.join(first)[:600]}"
            ) from None
    return model.eval()


def load_state_dict(weights: ResolvedWeights) -> dict:
    import torch

    path = weights.path
    assert path is not None  # called only for weights on disk (random weights have no state dict)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file, pickled code refused by weights_only
        raise InferenceError(
            f"weights file {path} could not be read as a PyTorch state dict ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}); is it truncated or of another format?"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InferenceError(f"weights file {path} is not a state dict of tensors (got {type(obj).__name__})")
    return obj
