"""Post-processing: top-k labels for classification, filtered and labelled boxes for detection, annotation."""

from __future__ import annotations

import base64

import numpy as np

from .labels import coco_labels


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def looks_like_probabilities(x: np.ndarray) -> bool:
    return bool(np.all(x >= 0) and np.allclose(x.sum(axis=-1), 1.0, atol=1e-3))


def top_k(probs: np.ndarray, k: int, labels, offset: int = 0) -> list[list[dict]]:
    """Per row, the ``k`` most probable classes, most probable first.

    ``offset`` drops leading columns that are not classes (a 1001-way model's background column).
    """
    out = []
    probs = probs[:, offset:]
    k = max(1, min(k, probs.shape[1]))
    for row in probs:
        idx = np.argpartition(-row, k - 1)[:k]
        idx = idx[np.argsort(-row[idx], kind="stable")]
        out.append(
            [
                {"label": labels[i] if i < len(labels) else f"class_{i}", "index": int(i), "prob": float(row[i])}
                for i in idx
            ]
        )
    return out


def detections(boxes, labels, scores, size: tuple[int, int], threshold: float) -> list[dict]:
    """Boxes at or above ``threshold``, clipped to the image (``size`` = width, height), highest score first."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    w, h = size
    keep = scores >= threshold
    boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    names = coco_labels()
    out = []
    for i in order:
        x1, y1, x2, y2 = boxes[i]
        x1, x2 = float(np.clip(x1, 0, w)), float(np.clip(x2, 0, w))
        y1, y2 = float(np.clip(y1, 0, h)), float(np.clip(y2, 0, h))
        idx = int(labels[i])
        label = names[idx] if 0 <= idx < len(names) else f"class_{idx}"
        out.append({"label": label, "index": idx, "score": float(scores[i]), "box": [x1, y1, x2, y2]})
    return out


def annotate(img, boxes: list[dict]) -> str:
    """The image with its boxes and labels drawn on, as base64 JPEG."""
    from PIL import ImageDraw

    from .images import encode_jpeg

    img = img.copy()
    draw = ImageDraw.Draw(img)
    width = max(2, round(min(img.size) / 200))
    for b in boxes:
        x1, y1, x2, y2 = b["box"]
        draw.rectangle([x1, y1, x2, y2], outline=(255, 64, 0), width=width)
        text = f"{b['label']} {b['score']:.2f}"
        tx, ty = x1 + width, max(0.0, y1 - 12)
        bbox = draw.textbbox((tx, ty), text)
        draw.rectangle(bbox, fill=(255, 64, 0))
        draw.text((tx, ty), text, fill=(255, 255, 255))
    return base64.b64encode(encode_jpeg(img)).decode("ascii")
