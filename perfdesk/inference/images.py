"""Image decoding and the request wire format.

The wire format (same for the server agent and the function handler)::

    {"images": ["<base64 JPEG/PNG/WebP>", ...], "top_k": 5, "score_threshold": 0.5, "annotate": false}

Keys other than these are ignored, so a front end may add its own (a request id, say).
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import dataclass

from .errors import BadInput

MAX_IMAGES = 256
FORMATS = ("JPEG", "PNG", "WEBP")


def decode_image(data: bytes, index: int = 0):
    """JPEG/PNG/WebP bytes -> an RGB ``PIL.Image`` (fully loaded); :class:`BadInput` for anything else."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BadInput(f"image {index}: expected encoded image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise BadInput(f"image {index}: empty")
    try:
        with warnings.catch_warnings():
            # A decompression bomb warning (huge pixel count) becomes an error: a 4xx, not a memory blow-up.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            img.load()
    except UnidentifiedImageError:
        raise BadInput(f"image {index}: not a JPEG, PNG or WebP image ({len(data)} bytes)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInput(f"image {index}: too many pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"image {index}: truncated or corrupt image ({exc})") from None
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def encode_jpeg(img, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


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
