"""Detection output is well formed on PyTorch and ONNX Runtime, the two agree, and annotation works.

Random detector weights give every box the same score (the activations vanish through fresh batch-norm
statistics), so the boxes kept among the ties are arbitrary. The engines here load a state dict whose batch-norm
statistics were estimated on noise first: distinct scores, so the torch and onnx outputs can be compared box by box.
"""

import base64
import io

import pytest
from PIL import Image

from perfdesk.shipped.inference import EngineConfig, load_engine
from perfdesk.shipped.inference.labels import coco_labels

MODEL = "ssdlite320_mobilenet_v3_large"


@pytest.fixture(scope="module")
def ssd_weights(tmp_path_factory):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.eval()
    model.backbone.train()
    model.head.train()
    with torch.no_grad():
        model.head(list(model.backbone(torch.randn(4, 3, 320, 320)).values()))
    path = tmp_path_factory.mktemp("ssd") / "ssdlite-calibrated.pth"
    torch.save(model.eval().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def engines(ssd_weights, cache_dir):
    return {
        rt: load_engine(
            EngineConfig(model=MODEL, runtime=rt, weights=str(ssd_weights), cache_dir=str(cache_dir), threads=2)
        )
        for rt in ("torch", "onnx")
    }


def check_boxes(prediction, size, threshold):
    w, h = size
    boxes = prediction["boxes"]
    assert boxes, "SSDlite emits up to 300 boxes at threshold 0"
    scores = [b["score"] for b in boxes]
    assert scores == sorted(scores, reverse=True)
    for b in boxes:
        assert b["score"] >= threshold
        x1, y1, x2, y2 = b["box"]
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
        assert 0 < b["index"] < len(coco_labels()) and coco_labels()[b["index"]] == b["label"]


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_detection_well_formed(runtime, engines, chelsea_jpeg, coffee_png):
    engine = engines[runtime]
    assert engine.info["task"] == "detection" and engine.info["random_weights"] is False
    result = engine.predict([chelsea_jpeg, coffee_png], score_threshold=0.0, annotate=True)
    assert result["batch_size"] == 2 and result["random_weights"] is False
    for blob, prediction in zip([chelsea_jpeg, coffee_png], result["predictions"]):
        size = Image.open(io.BytesIO(blob)).size
        check_boxes(prediction, size, 0.0)
        annotated = Image.open(io.BytesIO(base64.b64decode(prediction["annotated_jpeg_b64"])))
        assert annotated.format == "JPEG" and annotated.size == size
    # a threshold above every score leaves no box, and there is no annotation unless asked for
    assert engine.predict([chelsea_jpeg], score_threshold=0.99)["predictions"] == [{"boxes": []}]


def test_torch_and_onnx_detections_agree(engines, chelsea_jpeg):
    """On a photo whose size differs from the export's example input (the graph's sizes are dynamic)."""
    a = engines["torch"].predict([chelsea_jpeg], score_threshold=0.0)["predictions"][0]["boxes"][:20]
    b = engines["onnx"].predict([chelsea_jpeg], score_threshold=0.0)["predictions"][0]["boxes"][:20]
    assert a[0]["score"] > a[-1]["score"]  # distinct scores: the comparison means something
    assert [x["score"] for x in a] == pytest.approx([y["score"] for y in b], abs=1e-4)
    # near-equal scores may swap places between runtimes: match each torch box to an onnx box
    for x in a:
        assert any(
            x["index"] == y["index"]
            and x["box"] == pytest.approx(y["box"], abs=0.05)
            and x["score"] == pytest.approx(y["score"], abs=1e-4)
            for y in b
        ), x


def test_random_detector_runs(cache_dir, chelsea_jpeg):
    """Random weights (no file): junk boxes, still well formed and marked random."""
    engine = load_engine(EngineConfig(model=MODEL, runtime="torch", threads=2))
    result = engine.predict([chelsea_jpeg], score_threshold=0.0)
    assert result["random_weights"] is True
    check_boxes(result["predictions"][0], Image.open(io.BytesIO(chelsea_jpeg)).size, 0.0)
