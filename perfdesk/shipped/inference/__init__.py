"""perfdesk's inference module, shipped to both the server agent and the Lambda function.

It imports nothing of the controller side (``perfdesk.controllers``), and the heavy runtimes (torch, onnxruntime,
tensorflow, boto3) only when an engine needs them, so that the server and the function run exactly the same code::

    from perfdesk.shipped.inference import EngineConfig, load_engine, InferenceError, BadInput

    engine = load_engine(EngineConfig(model="resnet50", runtime="torch"))
    result = engine.predict([jpeg_bytes], top_k=5)          # or engine.predict_request(json_body)

See docs/inference.md for the result's shape and the models, runtimes and weights it supports.
"""

from __future__ import annotations

from perfdesk.shipped.errors import BadInput, InferenceError
from perfdesk.shipped.options import EngineConfig

from .base import Engine
from .loader import load_engine
from .registry import known_models

__all__ = ["EngineConfig", "Engine", "load_engine", "InferenceError", "BadInput", "known_models"]
