"""The models perfdesk knows, by name, and which runtimes run them.

torchvision models run on the ``torch`` and ``onnx`` runtimes (ONNX models are exported from the torchvision
model); Keras models (``tf.keras.applications``) and a user's SavedModel run on ``tensorflow``. On the tensorflow
runtime the names ``resnet50`` and ``mobilenet_v2`` mean their Keras counterparts.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfdesk.shipped.errors import InferenceError

CLASSIFICATION = "classification"
DETECTION = "detection"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    runtimes: tuple[str, ...]
    builder: str  # torchvision.models(.detection) function name, or keras.applications class name
    input_size: int | None = None  # detection: the side the model resizes to (documentation only)


_TV = ("torch", "onnx")
_TF = ("tensorflow",)

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("resnet50", CLASSIFICATION, _TV, "resnet50"),
        ModelSpec("resnet101", CLASSIFICATION, _TV, "resnet101"),
        ModelSpec("mobilenet_v2", CLASSIFICATION, _TV, "mobilenet_v2"),
        ModelSpec("mobilenet_v3_large", CLASSIFICATION, _TV, "mobilenet_v3_large"),
        ModelSpec("ssdlite320_mobilenet_v3_large", DETECTION, _TV, "ssdlite320_mobilenet_v3_large", 320),
        ModelSpec("fasterrcnn_mobilenet_v3_large_fpn", DETECTION, _TV, "fasterrcnn_mobilenet_v3_large_fpn", 800),
        ModelSpec("fasterrcnn_resnet50_fpn", DETECTION, _TV, "fasterrcnn_resnet50_fpn", 800),
        ModelSpec("keras_resnet50", CLASSIFICATION, _TF, "ResNet50"),
        ModelSpec("keras_mobilenet_v2", CLASSIFICATION, _TF, "MobileNetV2"),
        ModelSpec("savedmodel", CLASSIFICATION, _TF, "savedmodel"),
    )
}

# On the tensorflow runtime, these torchvision names mean the Keras model of the same architecture.
TF_ALIASES = {"resnet50": "keras_resnet50", "mobilenet_v2": "keras_mobilenet_v2"}


def known_models() -> dict[str, str]:
    """Model name -> task (``classification`` or ``detection``)."""
    return {name: spec.task for name, spec in MODELS.items()}


def resolve(model: str, runtime: str) -> ModelSpec:
    """The spec for ``model`` on ``runtime``; raises :class:`InferenceError` listing what is known."""
    if runtime == "tensorflow":
        model = TF_ALIASES.get(model, model)
    spec = MODELS.get(model)
    if spec is None:
        raise InferenceError(f"unknown model {model!r}; known models: {', '.join(MODELS)}")
    if runtime not in spec.runtimes:
        fits = [n for n, s in MODELS.items() if runtime in s.runtimes]
        extra = " (and resnet50, mobilenet_v2 as aliases)" if runtime == "tensorflow" else ""
        raise InferenceError(
            f"model {model!r} does not run on runtime {runtime!r} (it runs on {', '.join(spec.runtimes)}); "
            f"models for {runtime}: {', '.join(fits)}{extra}"
        )
    return spec
