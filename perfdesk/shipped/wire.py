"""The wire format between perfdesk and what it deploys: one module, used by both sides.

A request (the same for the server agent and the function handler)::

    {"images": ["<base64 JPEG/PNG/WebP>", ...], "top_k": 5, "score_threshold": 0.5, "annotate": false}

Keys other than these are ignored, so a front end may add its own (a request id, say). An answer::

    {"predictions": [...], "timings": {"decode_ms": .., "preprocess_ms": .., "inference_ms": ..,
     "postprocess_ms": .., "server_ms": ..}, "batch_size": 1, "model": {...}, ...}

or ``{"error": "..."}`` with a 4xx/5xx status. :func:`encode_request` and :func:`parse_request` are the two halves
of a request, :func:`parse_response` reads an answer; :func:`sample_jpeg` is the small image used for warm-ups and
probes. Shipped code: this module imports nothing of the client side.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field

from perfdesk.shipped.errors import BadInput

MAX_IMAGES = 256
#: Request options with their defaults.
DEFAULTS = {"top_k": 5, "score_threshold": 0.5, "annotate": False}


def encode_request(images: list[bytes], options: dict | None = None) -> bytes:
    """The JSON body for ``images`` (encoded image bytes) with the request ``options`` (top_k, ...)."""
    return json.dumps({"images": [base64.b64encode(i).decode("ascii") for i in images], **(options or {})}).encode()


@dataclass
class Request:
    images: list[bytes]
    top_k: int = 5
    score_threshold: float = 0.5
    annotate: bool = False


def parse_request(body) -> Request:
    """Validate the wire format; :class:`BadInput` names the offending field."""
    if not isinstance(body, dict):
        raise BadInput(f"request body must be a JSON object, got {type(body).__name__}")
    images = body.get("images")
    if images is None:
        raise BadInput("request body has no 'images' (a list of base64-encoded JPEG/PNG/WebP images)")
    if not isinstance(images, list):
        raise BadInput(f"'images' must be a list of base64 strings, got {type(images).__name__}")
    if not images:
        raise BadInput("'images' is empty; send at least one image")
    if len(images) > MAX_IMAGES:
        raise BadInput(f"'images' has {len(images)} images; at most {MAX_IMAGES} per request")
    blobs = []
    for i, item in enumerate(images):
        if not isinstance(item, str):
            raise BadInput(f"images[{i}] must be a base64 string, got {type(item).__name__}")
        try:
            blobs.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise BadInput(f"images[{i}] is not valid base64 ({exc})") from None
    req = Request(blobs)
    if "top_k" in body:
        k = body["top_k"]
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
            raise BadInput(f"'top_k' must be an integer from 1 to 1000, got {k!r}")
        req.top_k = k
    if "score_threshold" in body:
        t = body["score_threshold"]
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 1:
            raise BadInput(f"'score_threshold' must be a number from 0 to 1, got {t!r}")
        req.score_threshold = float(t)
    if "annotate" in body:
        a = body["annotate"]
        if not isinstance(a, bool):
            raise BadInput(f"'annotate' must be true or false, got {a!r}")
        req.annotate = a
    return req


@dataclass
class Response:
    """An answer as the client reads it: ``ok`` with timings and the top label, or the error text."""

    ok: bool
    status: int
    response_bytes: int
    error: str = ""
    top1: str = ""
    timings: dict = field(default_factory=dict)
    body: dict = field(default_factory=dict)

    @property
    def server_total_ms(self):
        return self.timings.get("server_ms", self.timings.get("total_ms"))


def parse_response(status: int, data: bytes) -> Response:
    """Read the agent's (or a function's) JSON answer: predictions and timings, or the error it names."""
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {}
    if status != 200 or not isinstance(body, dict) or "predictions" not in body:
        err = body.get("error") if isinstance(body, dict) else None
        text = str(err) if err else data[:200].decode("utf-8", "replace")
        return Response(False, status, len(data), error=text, body=body if isinstance(body, dict) else {})
    top1 = ""
    preds = body.get("predictions") or []
    if preds:
        first = preds[0]
        if isinstance(first, list) and first:
            top1 = str(first[0].get("label", ""))
        elif isinstance(first, dict) and first.get("boxes"):
            top1 = str(first["boxes"][0].get("label", ""))
    return Response(True, status, len(data), top1=top1, timings=body.get("timings") or {}, body=body)


def sample_jpeg() -> bytes:
    """A small generated photo-sized JPEG for warm-up inferences and probes (no file shipped for it)."""
    from PIL import Image

    img = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
