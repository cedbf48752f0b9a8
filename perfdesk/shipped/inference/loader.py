"""Build an engine from its configuration: the one place that picks a runtime module (imported only here)."""

from __future__ import annotations

from perfdesk.shipped.errors import InferenceError
from perfdesk.shipped.options import EngineConfig

from .base import Engine
from .registry import resolve
from .weights import ResolvedWeights, resolve_weights


def load_engine(cfg: EngineConfig) -> Engine:
    """Build the engine ``cfg`` describes. Raises :class:`InferenceError` with a message saying what to fix
    (unknown model: the known ones; missing, truncated or mismatched weights: the file; a runtime not installed)."""
    cls: type[Engine]  # the runtime's subclass, imported below
    if isinstance(cfg, dict):
        cfg = EngineConfig.from_dict(cfg)
    spec = resolve(cfg.model, cfg.runtime)
    if spec.name == "savedmodel" and cfg.weights == "random":
        raise InferenceError("model 'savedmodel' needs weights = the path of a SavedModel directory")
    if cfg.onnx_file:  # a ready export holds the weights: they are not read (nor shipped) again
        weights = ResolvedWeights(cfg.weights, None, cfg.weights_sha256)
    else:
        weights = resolve_weights(cfg.weights, cfg.weights_sha256, cfg.cache_path)
    if cfg.runtime == "torch":
        from .runtime_torch import TorchEngine as cls
    elif cfg.runtime == "onnx":
        from .runtime_onnx import OnnxEngine as cls
    else:
        from .runtime_tf import TensorFlowEngine as cls
    return cls.load(cfg, spec, weights)
