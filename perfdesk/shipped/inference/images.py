"""Image decoding and encoding (the wire format is :mod:`perfdesk.shipped.wire`)."""

from __future__ import annotations

import io
import warnings

from perfdesk.shipped.errors import BadInput

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
