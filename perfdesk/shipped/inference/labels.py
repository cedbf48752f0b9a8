"""Class names shipped with perfdesk (written from torchvision's weights metadata; no download needed)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_HERE = Path(__file__).parent


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index = class id."""
    return tuple((_HERE / "imagenet_classes.txt").read_text().splitlines())


@cache
def coco_labels() -> tuple[str, ...]:
    """torchvision's 91 COCO category names, index = category id (0 is ``__background__``, gaps are ``N/A``)."""
    return tuple((_HERE / "coco_classes.txt").read_text().splitlines())
