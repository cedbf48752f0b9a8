"""TensorFlow: ``tf.keras.applications`` ResNet50 and MobileNetV2 under ``tf.function``, and a user's SavedModel.

TensorFlow is optional (the ``tensorflow`` install extra); it is imported only when an engine of this runtime is
built, and a missing install is an :class:`InferenceError` saying what to install.

Keras models get Keras's own pre-processing (``caffe``: BGR minus the ImageNet mean for ResNet50; ``tf``: [-1, 1]
for MobileNetV2) after the same resize 256 / center crop 224. Weights: ``random`` (seeded ``weights=None``) or a
Keras weights file (``.weights.h5``, or the legacy ``.h5`` that keras.applications publishes).

A SavedModel (model ``savedmodel``, weights = its directory) is called through its ``serving_default`` signature,
whose single image input must be NHWC: uint8 inputs get the pixels as they are, float inputs get them scaled to
[0, 1]; the height and width come from the signature (224 when unknown). The first output is taken as class
scores (1001 columns: column 0 is background); logits are soft-maxed, probabilities used as they are.
"""

from __future__ import annotations

import os
import time

import numpy as np

from perfdesk.shipped.errors import InferenceError

from .base import Engine, package_versions
from .threads import default_threads
from .weights import sha256_of

SEED = 0
KERAS = {"keras_resnet50": ("ResNet50", "caffe"), "keras_mobilenet_v2": ("MobileNetV2", "tf")}


def import_tf():
    t0 = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not the user's concern
    _load_triton_first()
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise InferenceError(
            f"TensorFlow is not installed ({exc}); install the extra: pip install 'perfdesk[tensorflow]'"
        ) from None
    return tf, round((time.perf_counter() - t0) * 1000.0, 3)


def _load_triton_first() -> None:
    """Import triton (shipped with CUDA builds of torch) before TensorFlow, if it is installed.

    Both carry LLVM; when TensorFlow is loaded first, a later ``import triton`` (which torchvision triggers through
    torch._dynamo) aborts the whole process ("LLVM ERROR: inconsistency in registered CommandLine options"). The
    other order works, and one process may hold a TensorFlow engine and then a torch or ONNX one (the ONNX export
    uses torch). Costs ~0.4 s, and nothing where triton is not installed (a TensorFlow-only function).
    """
    import importlib.util
    import sys

    if "triton" in sys.modules or "tensorflow" in sys.modules:
        return
    try:
        if importlib.util.find_spec("triton") is not None:
            import triton  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken triton must not stop TensorFlow from loading
        pass


def _set_threads(tf, threads: int) -> int:
    """Intra-op threads; TensorFlow fixes them when its runtime starts, so a second engine keeps the first's."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    return tf.config.threading.get_intra_op_parallelism_threads() or threads


def _pick_device(tf, device: str) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cuda" and not gpus:
        raise InferenceError("device 'cuda' asked for, but TensorFlow sees no GPU here; use device 'cpu' or 'auto'")
    return "cuda" if device in ("cuda", "auto") and gpus else "cpu"


class TensorFlowEngine(Engine):
    device: str

    @classmethod
    def load(cls, cfg, spec, weights) -> TensorFlowEngine:
        tf, import_ms = import_tf()
        t0 = time.perf_counter()
        threads = _set_threads(tf, cfg.threads or default_threads("tensorflow"))
        self = cls(cfg, spec, weights)
        self.device = _pick_device(tf, cfg.device)
        with tf.device("/GPU:0" if self.device == "cuda" else "/CPU:0"):
            if spec.name == "savedmodel":
                self._load_savedmodel(tf, weights)
            else:
                self._load_keras(tf, spec, weights)
        self.info.update(
            device=self.device,
            threads=threads,
            import_ms=import_ms,
            load_ms=round((time.perf_counter() - t0) * 1000.0, 3),
            versions=package_versions("tensorflow", "tensorflow-cpu", "keras", "numpy", "pillow"),
        )
        return self

    def _load_keras(self, tf, spec, weights) -> None:
        cls_name, mode = KERAS[spec.name]
        builder = getattr(tf.keras.applications, cls_name)
        tf.keras.utils.set_random_seed(SEED)
        model = builder(weights=None, classifier_activation=None)
        if not weights.random:
            try:
                model.load_weights(str(weights.path))
            except Exception as exc:  # noqa: BLE001 - Keras raises many kinds: one InferenceError naming the file
                raise InferenceError(
                    f"weights file {weights.path} could not be loaded into Keras {cls_name} "
                    f"({type(exc).__name__}: {str(exc)[:300]}); it must be a Keras weights file (.weights.h5 or .h5)"
                ) from None
        self.model = model
        self.preprocess_mode = mode
        spec_in = tf.TensorSpec([None, 224, 224, 3], tf.float32)
        # One signature with a free batch dimension: a new batch size does not trace the graph again.
        self.fn = tf.function(lambda x: model(x, training=False), input_signature=[spec_in])

    def _load_savedmodel(self, tf, weights) -> None:
        path = weights.path
        if path.is_file():
            raise InferenceError(f"weights {path} is a file; model 'savedmodel' needs the SavedModel directory")
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # noqa: BLE001 - TensorFlow raises many kinds: one InferenceError
            raise InferenceError(
                f"could not load the SavedModel at {path} ({type(exc).__name__}: {str(exc)[:300]})"
            ) from None
        sig = loaded.signatures.get("serving_default")
        if sig is None:
            raise InferenceError(f"the SavedModel at {path} has no 'serving_default' signature")
        inputs = sig.structured_input_signature[1]
        if len(inputs) != 1:
            raise InferenceError(
                f"the SavedModel at {path} takes {len(inputs)} inputs ({', '.join(inputs)}); one image input is needed"
            )
        ((name, tspec),) = inputs.items()
        shape = tspec.shape
        if shape.rank != 4 or shape[-1] != 3:
            raise InferenceError(
                f"the SavedModel at {path} input {name!r} has shape {shape}; NHWC with 3 channels is needed"
            )
        self._loaded = loaded  # keep the object alive: the signature's variables belong to it
        self._sig = sig
        self._input_name = name
        self._input_dtype = tspec.dtype
        self.input_size = int(shape[1]) if shape[1] is not None else 224
        self.preprocess_mode = "unit"
        self._uint8 = tspec.dtype == tf.uint8
        self.info["weights_sha256"] = self.info["weights_sha256"] or sha256_of(path)

    def _classify(self, batch: np.ndarray) -> np.ndarray:
        if hasattr(self, "fn"):
            return self.fn(batch).numpy()
        import tensorflow as tf

        x = np.clip(np.rint(batch * 255.0), 0, 255).astype(np.uint8) if self._uint8 else batch
        outputs = self._sig(**{self._input_name: tf.constant(x, dtype=self._input_dtype)})
        out = np.asarray(next(iter(outputs.values())), dtype=np.float32)
        if out.ndim != 2:
            raise InferenceError(f"the SavedModel's first output has shape {out.shape}; (batch, classes) is needed")
        self.class_offset = 1 if out.shape[1] == 1001 else 0
        self.outputs_probabilities = bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))
        return out
