"""Clear errors: unknown model, bad options, bad weights, bad requests."""

import base64

import pytest

from perfdesk.shipped.inference import BadInput, EngineConfig, InferenceError, load_engine


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(InferenceError, match=r"unknown model 'resnet5'; known models: resnet50, resnet101"):
        load_engine(EngineConfig(model="resnet5"))


def test_model_on_the_wrong_runtime():
    with pytest.raises(InferenceError, match="does not run on runtime 'torch'.*models for torch: resnet50"):
        load_engine(EngineConfig(model="keras_mobilenet_v2", runtime="torch"))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"runtime": "tflite"}, "unknown runtime 'tflite'; known runtimes: torch, onnx, tensorflow"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"threads": 0}, "threads must be a positive integer"),
        ({"weights_sha256": "abc"}, "weights_sha256 must be 64 hex digits"),
        ({"colour": "red"}, "unknown engine option.*colour"),
        ({"weights": "ftp://host/w.pt"}, "unsupported scheme 'ftp'"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(InferenceError, match=message):
        load_engine(EngineConfig.from_dict({"model": "mobilenet_v2", **options}))


def test_missing_weights_file_is_named(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(InferenceError, match=f"weights file {path} does not exist"):
        load_engine(EngineConfig(model="mobilenet_v2", weights=str(path)))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    "body, message",
    [
        ([], "must be a JSON object"),
        ({}, "has no 'images'"),
        ({"images": "abc"}, "'images' must be a list"),
        ({"images": []}, "'images' is empty"),
        ({"images": ["AAAA"] * 257}, "257 images; at most 256"),
        ({"images": [3]}, r"images\[0\] must be a base64 string"),
        ({"images": ["not base64!"]}, r"images\[0\] is not valid base64"),
        ({"images": [_b64(b"hello")]}, "image 0: not a JPEG, PNG or WebP"),
        ({"images": ["JPEG"], "top_k": 0}, "'top_k' must be an integer from 1 to 1000"),
        ({"images": ["JPEG"], "top_k": True}, "'top_k' must be an integer"),
        ({"images": ["JPEG"], "score_threshold": 1.5}, "'score_threshold' must be a number from 0 to 1"),
        ({"images": ["JPEG"], "annotate": "yes"}, "'annotate' must be true or false"),
    ],
)
def test_predict_request_rejects_bad_input(mobilenet_torch, body, message):
    with pytest.raises(BadInput, match=message):
        mobilenet_torch.predict_request(body)
