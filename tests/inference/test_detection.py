"""Detection output is well formed, on PyTorch and ONNX Runtime, with the annotated image on request."""

import base64
import io

import pytest
from PIL import Image

from perfdesk.inference import EngineConfig, load_engine
from perfdesk.inference.labels import coco_labels

MODEL = "ssdlite320_mobilenet_v3_large"


def check_boxes(prediction, size, threshold):
    w, h = size
    boxes = prediction["boxes"]
    assert boxes, "the random SSDlite emits boxes at threshold 0"
    scores = [b["score"] for b in boxes]
    assert scores == sorted(scores, reverse=True)
    for b in boxes:
        assert b["score"] >= threshold
        x1, y1, x2, y2 = b["box"]
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
        assert 0 < b["index"] < len(coco_labels()) and coco_labels()[b["index"]] == b["label"]


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_detection_well_formed(runtime, cache_dir, chelsea_jpeg, coffee_png):
    engine = load_engine(EngineConfig(model=MODEL, runtime=runtime, cache_dir=str(cache_dir), threads=2))
    assert engine.info["task"] == "detection"
    result = engine.predict([chelsea_jpeg, coffee_png], score_threshold=0.0, annotate=True)
    assert result["batch_size"] == 2 and result["random_weights"] is True
    for blob, prediction in zip([chelsea_jpeg, coffee_png], result["predictions"]):
        size = Image.open(io.BytesIO(blob)).size
        check_boxes(prediction, size, 0.0)
        annotated = Image.open(io.BytesIO(base64.b64decode(prediction["annotated_jpeg_b64"])))
        assert annotated.format == "JPEG" and annotated.size == size
    # a threshold above every random score leaves no box, and no annotation unless asked for
    quiet = engine.predict([chelsea_jpeg], score_threshold=0.99)
    assert quiet["predictions"] == [{"boxes": []}]
