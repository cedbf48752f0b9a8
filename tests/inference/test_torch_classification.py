"""The engine API on PyTorch with random weights: result shape, timings, labels, batches."""

import base64

import numpy as np
import pytest

from perfdesk.shipped.inference import BadInput, EngineConfig, InferenceError, known_models, load_engine
from perfdesk.shipped.inference.labels import coco_labels, imagenet_labels
from perfdesk.shipped.inference.threads import default_threads

PHASES = {"decode_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "total_ms"}


def test_known_models_cover_issue_3():
    models = known_models()
    for name in ("resnet50", "resnet101", "mobilenet_v2", "mobilenet_v3_large"):
        assert models[name] == "classification"
    for name in ("ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn"):
        assert models[name] == "detection"


def test_shipped_class_names():
    assert len(imagenet_labels()) == 1000 and imagenet_labels()[281] == "tabby"
    assert len(coco_labels()) == 91 and coco_labels()[1] == "person"


def check_classification(result, batch, top_k):
    assert result["batch_size"] == batch and len(result["predictions"]) == batch
    assert result["random_weights"] is True
    assert set(result["timings"]) == PHASES
    assert all(v >= 0 for v in result["timings"].values())
    t = result["timings"]
    assert t["total_ms"] >= t["inference_ms"] > 0
    for preds in result["predictions"]:
        assert len(preds) == top_k
        probs = [p["prob"] for p in preds]
        assert probs == sorted(probs, reverse=True)
        assert all(0 <= p <= 1 for p in probs)
        for p in preds:
            assert imagenet_labels()[p["index"]] == p["label"]


def test_mobilenet_v2_on_a_photo(mobilenet_torch, chelsea_jpeg, coffee_png):
    info = mobilenet_torch.info
    assert info["model"] == "mobilenet_v2" and info["task"] == "classification" and info["runtime"] == "torch"
    assert info["random_weights"] is True and info["weights_sha256"] is None and info["threads"] == 2
    assert info["load_ms"] > 0 and "torch" in info["versions"]
    result = mobilenet_torch.predict([chelsea_jpeg, coffee_png], top_k=3)
    check_classification(result, 2, 3)
    assert result["model"] == "mobilenet_v2" and result["runtime"] == "torch"


def test_random_weights_are_reproducible(mobilenet_torch, chelsea_jpeg):
    """Two engines (think: the agent and the function) built with random weights give the same output."""
    other = load_engine(EngineConfig(model="mobilenet_v2", runtime="torch", threads=2))
    a = mobilenet_torch.predict([chelsea_jpeg], top_k=5)["predictions"][0]
    b = other.predict([chelsea_jpeg], top_k=5)["predictions"][0]
    assert [p["index"] for p in a] == [p["index"] for p in b]
    np.testing.assert_allclose([p["prob"] for p in a], [p["prob"] for p in b], rtol=1e-5)


@pytest.mark.slow
def test_resnet50_on_a_photo(chelsea_jpeg):
    engine = load_engine(
        EngineConfig.from_dict(
            {
                "model": "resnet50",
                "runtime": "torch",
                "device": "cpu",
                "threads": None,
                "weights": "random",
                "weights_sha256": None,
            }
        )
    )
    assert engine.info["model"] == "resnet50" and engine.info["threads"] == default_threads("torch")
    check_classification(engine.predict([chelsea_jpeg]), 1, 5)


def test_predict_request_round_trip(mobilenet_torch, chelsea_jpeg):
    body = {"images": [base64.b64encode(chelsea_jpeg).decode()] * 3, "top_k": 2, "request_id": "ignored"}
    check_classification(mobilenet_torch.predict_request(body), 3, 2)


def test_undecodable_bytes_are_bad_input(mobilenet_torch, chelsea_jpeg):
    with pytest.raises(BadInput, match="image 1: not a JPEG, PNG or WebP"):
        mobilenet_torch.predict([chelsea_jpeg, b"definitely not an image"])
    with pytest.raises(BadInput, match="image 0: truncated or corrupt"):
        mobilenet_torch.predict([chelsea_jpeg[: len(chelsea_jpeg) // 2]])
    assert issubclass(BadInput, InferenceError)


def test_results_and_info_are_json(mobilenet_torch, chelsea_jpeg):
    """The agent and the handler send both as JSON: no NumPy scalars, no paths."""
    import json

    json.dumps(mobilenet_torch.info)
    json.dumps(mobilenet_torch.predict([chelsea_jpeg]))
