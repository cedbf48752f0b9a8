"""Pre-processing, in NumPy and Pillow so that every runtime sees exactly the same input.

Classification follows the ResNet study: resize the shorter side to 256, center-crop 224, scale to [0, 1] and
normalise with the ImageNet mean and standard deviation (torchvision's recipe). Keras models get their own
``preprocess_input`` arithmetic instead (``caffe`` for ResNet50, ``tf`` for MobileNetV2), in NHWC layout.
Detection models get the decoded image as CHW float in [0, 1]; the model resizes it itself.
"""

from __future__ import annotations

import numpy as np

RESIZE = 256
CROP = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def resize_center_crop(img, resize: int = RESIZE, crop: int = CROP) -> np.ndarray:
    """Shorter side to ``resize`` (bilinear), center ``crop`` x ``crop``; returns HWC uint8."""
    from PIL import Image

    w, h = img.size
    if w <= h:
        nw, nh = resize, max(1, round(h * resize / w))
    else:
        nw, nh = max(1, round(w * resize / h)), resize
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left = int(round((nw - crop) / 2.0))
    top = int(round((nh - crop) / 2.0))
    # (Pillow pads with black where the crop box leaves the image, which only happens when resize < crop.)
    return np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def classification_batch(images, mode: str = "torch", size: int = CROP) -> np.ndarray:
    """Decoded RGB images -> one float32 batch.

    ``mode``: ``torch`` (NCHW, ImageNet mean/std), ``caffe`` (NHWC, BGR minus mean), ``tf`` (NHWC, [-1, 1]),
    ``unit`` (NHWC, [0, 1]; a SavedModel of unknown convention).
    """
    resize = RESIZE if size == CROP else int(round(size * RESIZE / CROP))
    hwc = np.stack([resize_center_crop(img, resize, size) for img in images]).astype(np.float32)
    if mode == "torch":
        x = (hwc / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
    if mode == "caffe":
        return np.ascontiguousarray(hwc[..., ::-1] - CAFFE_BGR_MEAN, dtype=np.float32)
    if mode == "tf":
        return hwc / 127.5 - 1.0
    if mode == "unit":
        return hwc / 255.0
    raise ValueError(f"unknown pre-processing mode {mode!r}")


def detection_inputs(images) -> list[np.ndarray]:
    """Decoded RGB images -> CHW float32 arrays in [0, 1] (one per image; sizes may differ)."""
    return [np.ascontiguousarray(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0) for img in images]
