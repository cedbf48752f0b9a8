"""Workloads: which model on which runtime, and the images sent to it (client side).

A :class:`WorkloadSpec` comes from the profile; :func:`build_payloads` turns it into ready-to-send
:class:`Payload` objects (encoded once, reused by every request, so the load generator does no encoding on its
hot path). The wire format, the same for the server agent and the function handler, is
:mod:`perfdesk.shipped.wire`.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from perfdesk.shipped.options import EngineConfig
from perfdesk.shipped.wire import encode_request

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
BUNDLED_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "cat", "hubble_deep_field")


class WorkloadSpec(BaseModel):
    """One model on one runtime, with its inputs. A profile lists one or more (``[[workloads]]``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(min_length=1, description="Name used in CSVs; defaults to the model name.")
    runtime: Literal["torch", "onnx", "tensorflow"] = Field("torch", description="Inference runtime.")
    model: str = Field(
        "resnet50",
        description="Model name: resnet50, resnet101, mobilenet_v2, mobilenet_v3_large, ssdlite320_mobilenet_v3_large,"
        " fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_resnet50_fpn (or keras_resnet50, keras_mobilenet_v2,"
        " savedmodel on the tensorflow runtime).",
    )
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Device; auto picks CUDA when present.")
    threads: int | None = Field(None, ge=1, le=256, description="Intra-op threads of the runtime (default: measured).")
    weights: str = Field(
        "random",
        description="'random' (timing only; marked in every result), a local file, an https:// URL or an s3:// URI.",
    )
    weights_sha256: str | None = Field(None, description="Expected sha256 of the weights file (checked).")
    images: str = Field(
        "bundled",
        description="'bundled' (real photos shipped with scikit-image), 'synthetic', or a folder of JPEG/PNG/WebP.",
    )
    synthetic_size: tuple[int, int] = Field((640, 480), description="Width and height of synthetic images.")
    image_count: int = Field(6, ge=1, le=10000, description="How many distinct images (payloads) to cycle through.")
    batch: int = Field(1, ge=1, le=256, description="Images per request (the batch study sent 16).")
    top_k: int = Field(5, ge=1, le=1000, description="Classification: labels returned per image.")
    score_threshold: float = Field(0.5, ge=0, le=1, description="Detection: minimum score of a returned box.")
    annotate: bool = Field(False, description="Detection: also return an annotated JPEG.")

    @field_validator("synthetic_size")
    @classmethod
    def _size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 8 or max(v) > 8192:
            raise ValueError("each side must be between 8 and 8192 pixels")
        return v

    @field_validator("images")
    @classmethod
    def _images_exist(cls, v: str, info: ValidationInfo) -> str:
        if v in ("bundled", "synthetic"):
            return v
        return str(check_path(v, info, want_dir=True))

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, v: str, info: ValidationInfo) -> str:
        if v == "random" or v.startswith(("https://", "http://", "s3://")):
            return v
        return str(check_path(v, info))

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str, info: ValidationInfo) -> str:
        import difflib

        from perfdesk.shipped.errors import InferenceError
        from perfdesk.shipped.inference.registry import MODELS, resolve

        try:
            resolve(model, info.data.get("runtime", "torch"))
        except InferenceError as exc:
            close = difflib.get_close_matches(model, list(MODELS), n=1)
            hint = f"did you mean '{close[0]}'? " if close and close[0] != model else ""
            raise ValueError(f"{hint}{exc}") from None
        return model

    def request_options(self) -> dict:
        """The options every request of this workload carries (see :mod:`perfdesk.shipped.wire`)."""
        return {"top_k": self.top_k, "score_threshold": self.score_threshold, "annotate": self.annotate}

    def engine_config(self) -> EngineConfig:
        """The inference engine's options (encoded as argv for the agent, as environment for a function)."""
        return EngineConfig(
            model=self.model,
            runtime=self.runtime,
            device=self.device,
            threads=self.threads,
            weights=self.weights,
            weights_sha256=self.weights_sha256,
        )


def check_path(value: str, info: ValidationInfo, want_dir: bool = False) -> Path:
    """Profile validation helper: a referenced file must exist. Returns it absolute (relative paths are relative to
    the profile's folder): the loader resolves every path once, and nothing downstream re-resolves."""
    base = Path((info.context or {}).get("base_dir", "."))
    path = Path(value).expanduser()
    full = (path if path.is_absolute() else base / path).resolve()
    if not full.exists():
        raise ValueError(f"no such {'folder' if want_dir else 'file'}: {full}")
    if want_dir and not full.is_dir():
        raise ValueError(f"not a folder: {full}")
    return full


@dataclass
class Payload:
    """One request's content, encoded once."""

    names: list[str]
    images: list[bytes]
    body: bytes  # the JSON wire format
    batch_size: int
    content_type: str = "application/json"
    request_options: dict = field(default_factory=dict)

    @property
    def payload_bytes(self) -> int:
        return len(self.body)


def _jpeg(array) -> bytes:
    from PIL import Image

    img = Image.fromarray(array)
    if img.mode != "RGB":
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def bundled_photos() -> list[tuple[str, bytes]]:
    """Real photos that ship with scikit-image, as JPEG bytes."""
    from skimage import data

    out = []
    for name in BUNDLED_PHOTOS:
        out.append((name, _jpeg(getattr(data, name)())))
    return out


def synthetic_images(count: int, size: tuple[int, int], seed: int = 0) -> list[tuple[str, bytes]]:
    """Random-noise JPEGs of a given size (same decode and pre-processing cost as a photo of that size)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w, h = size
    return [(f"synthetic-{i}-{w}x{h}", _jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))) for i in range(count)]


def folder_images(folder: Path) -> list[tuple[str, bytes]]:
    """The user's images in a folder; files that are not JPEG/PNG/WebP images are skipped with a warning."""
    from PIL import Image, UnidentifiedImageError

    out = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            log.warning("skipping %s: not an image (%s)", path, exc.__class__.__name__)
            continue
        if fmt not in ("JPEG", "PNG", "WEBP"):
            log.warning("skipping %s: %s images are not supported (JPEG, PNG, WebP)", path, fmt)
            continue
        out.append((path.name, data))
    if not out:
        raise ValueError(f"{folder}: no JPEG, PNG or WebP image found")
    return out


def load_images(spec: WorkloadSpec) -> list[tuple[str, bytes]]:
    if spec.images == "bundled":
        images = bundled_photos()
    elif spec.images == "synthetic":
        images = synthetic_images(spec.image_count, spec.synthetic_size)
    else:
        images = folder_images(Path(spec.images))
    return images


def build_payloads(spec: WorkloadSpec) -> list[Payload]:
    """Distinct payloads for the workload: ``image_count`` requests of ``batch`` images each, cycling the images."""
    images = load_images(spec)
    options = spec.request_options()
    count = min(spec.image_count, max(1, len(images))) if spec.batch == 1 else spec.image_count
    payloads = []
    for i in range(count):
        chosen = [images[(i * spec.batch + j) % len(images)] for j in range(spec.batch)]
        names = [n for n, _ in chosen]
        blobs = [b for _, b in chosen]
        payloads.append(Payload(names, blobs, encode_request(blobs, options), spec.batch, request_options=options))
    return payloads
