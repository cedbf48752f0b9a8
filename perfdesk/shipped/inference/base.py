"""The engine: one model on one runtime, with per-phase timings.

:class:`Engine` holds everything that does not depend on the runtime (decoding, pre-processing, post-processing,
timings, the result's shape); a runtime subclass supplies only the model call (:meth:`Engine._classify` or
:meth:`Engine._detect`). The server agent and the function handler both call :func:`load_engine` then
:meth:`Engine.predict_request`, so the two paradigms run exactly the same code.
"""

from __future__ import annotations

import importlib.metadata
import time

import numpy as np

from perfdesk.shipped.errors import BadInput, InferenceError
from perfdesk.shipped.options import EngineConfig
from perfdesk.shipped.wire import parse_request

from . import postprocess, preprocess
from .images import decode_image
from .labels import imagenet_labels
from .registry import CLASSIFICATION, DETECTION, ModelSpec
from .weights import ResolvedWeights


def _ms(t0: float, t1: float) -> float:
    return round((t1 - t0) * 1000.0, 3)


def package_versions(*names: str) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


class Engine:
    """A loaded model. Build one with :func:`load_engine`; call :meth:`predict` or :meth:`predict_request`.

    ``info`` describes it (model, task, runtime, device, threads, weights, weights_sha256, random_weights, load_ms,
    import_ms, versions). Subclasses set ``preprocess_mode`` (see :func:`preprocess.classification_batch`) and
    implement :meth:`_classify` or :meth:`_detect`.
    """

    preprocess_mode = "torch"
    input_size = preprocess.CROP
    class_offset = 0  # leading non-class columns in the classifier output (1001-way models: 1)
    outputs_probabilities = False

    def __init__(self, cfg: EngineConfig, spec: ModelSpec, weights: ResolvedWeights):
        self.cfg = cfg
        self.spec = spec
        self.weights = weights
        self.task = spec.task
        self.labels = imagenet_labels()
        self.info: dict = {
            "model": spec.name,
            "task": spec.task,
            "runtime": cfg.runtime,
            "device": cfg.device,
            "threads": cfg.threads,
            "weights": cfg.weights,
            "weights_sha256": weights.sha256,
            "random_weights": weights.random,
            "load_ms": None,
            "import_ms": None,
            "versions": {},
        }

    # -- runtime hooks ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, cfg: EngineConfig, spec: ModelSpec, weights: ResolvedWeights) -> Engine:
        """Import the runtime, build the model and return the engine (:func:`load_engine` calls it)."""
        raise NotImplementedError

    def _classify(self, batch: np.ndarray) -> np.ndarray:
        """Pre-processed batch -> (N, classes) logits or probabilities."""
        raise NotImplementedError

    def _detect(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """CHW float images in [0, 1] -> per image (boxes xyxy in pixels, COCO label ids, scores)."""
        raise NotImplementedError

    # -- the contract -------------------------------------------------------------------------------------------
    def predict(
        self, images: list[bytes], *, top_k: int = 5, score_threshold: float = 0.5, annotate: bool = False
    ) -> dict:
        """Run the model on encoded JPEG/PNG/WebP images (one batch); see the module docs for the result's shape.

        Raises :class:`BadInput` for an image that does not decode, :class:`InferenceError` if the runtime fails.
        """
        if not images:
            raise BadInput("no images given; send at least one")
        t0 = time.perf_counter()
        decoded = [decode_image(b, i) for i, b in enumerate(images)]
        t1 = time.perf_counter()
        predictions: list  # per image: its top-k classes (a list), or its boxes (a dict)
        if self.task == CLASSIFICATION:
            x = preprocess.classification_batch(decoded, self.preprocess_mode, self.input_size)
            t2 = time.perf_counter()
            raw = self._run(self._classify, x)
            t3 = time.perf_counter()
            probs = raw if self.outputs_probabilities else postprocess.softmax(raw)
            predictions = postprocess.top_k(probs, top_k, self.labels, self.class_offset)
        else:
            x = preprocess.detection_inputs(decoded)
            t2 = time.perf_counter()
            raw = self._run(self._detect, x)
            t3 = time.perf_counter()
            predictions = []
            for img, (boxes, labels, scores) in zip(decoded, raw):
                found = postprocess.detections(boxes, labels, scores, img.size, score_threshold)
                entry: dict = {"boxes": found}
                if annotate:
                    entry["annotated_jpeg_b64"] = postprocess.annotate(img, found)
                predictions.append(entry)
        t4 = time.perf_counter()
        return {
            "predictions": predictions,
            "timings": {
                "decode_ms": _ms(t0, t1),
                "preprocess_ms": _ms(t1, t2),
                "inference_ms": _ms(t2, t3),
                "postprocess_ms": _ms(t3, t4),
                "total_ms": _ms(t0, t4),
            },
            "batch_size": len(images),
            "random_weights": self.weights.random,
            "model": self.spec.name,
            "runtime": self.cfg.runtime,
        }

    def predict_request(self, body: dict) -> dict:
        """Validate the wire format (``{"images": [base64...], "top_k"?, "score_threshold"?, "annotate"?}``),
        then :meth:`predict`. Raises :class:`BadInput` for a malformed body."""
        req = parse_request(body)
        return self.predict(req.images, top_k=req.top_k, score_threshold=req.score_threshold, annotate=req.annotate)

    def _run(self, fn, x):
        try:
            return fn(x)
        except InferenceError:
            raise
        except Exception as exc:  # a runtime failure (out of memory, a bad graph): say which engine failed
            raise InferenceError(f"{self.cfg.runtime} inference of {self.spec.name} failed: {exc}") from exc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec.name} on {self.cfg.runtime}/{self.info['device']}>"


__all__ = ["Engine", "package_versions", "CLASSIFICATION", "DETECTION"]
