"""ONNX Runtime: export from PyTorch, cache, and agreement with PyTorch on the same photo."""

import numpy as np
import pytest

from perfdesk.shipped.inference import EngineConfig, load_engine


def test_torch_and_onnx_agree_on_a_photo(spread_weights, cache_dir, chelsea_jpeg, coffee_png):
    path, sha = spread_weights
    cfg = dict(model="mobilenet_v2", weights=str(path), weights_sha256=sha, cache_dir=str(cache_dir), threads=2)
    torch_engine = load_engine(EngineConfig(runtime="torch", **cfg))
    onnx_engine = load_engine(EngineConfig(runtime="onnx", **cfg))
    assert onnx_engine.info["weights_sha256"] == sha and onnx_engine.info["random_weights"] is False
    assert onnx_engine.info["providers"] == ["CPUExecutionProvider"]
    assert sha[:16] in onnx_engine.info["onnx_file"] and "opset17" in onnx_engine.info["onnx_file"]
    a = torch_engine.predict([chelsea_jpeg, coffee_png], top_k=1000)
    b = onnx_engine.predict([chelsea_jpeg, coffee_png], top_k=1000)
    assert b["random_weights"] is False and b["runtime"] == "onnx" and b["batch_size"] == 2
    for pa, pb in zip(a["predictions"], b["predictions"]):
        assert pa[0]["prob"] > 0.05  # far from uniform: the top-1 comparison means something
        assert pa[0]["index"] == pb[0]["index"]
        probs_a = np.zeros(1000)
        probs_b = np.zeros(1000)
        for p in pa:
            probs_a[p["index"]] = p["prob"]
        for p in pb:
            probs_b[p["index"]] = p["prob"]
        assert np.abs(probs_a - probs_b).max() < 1e-4, np.abs(probs_a - probs_b).max()


def test_export_is_cached(cache_dir, chelsea_jpeg):
    cfg = EngineConfig(model="mobilenet_v2", runtime="onnx", cache_dir=str(cache_dir), threads=1)
    first = load_engine(cfg)
    second = load_engine(cfg)
    assert second.info["onnx_file"] == first.info["onnx_file"]
    assert second.info["export_ms"] == 0.0
    assert "random0" in first.info["onnx_file"] and first.info["threads"] == 1
    result = second.predict([chelsea_jpeg] * 3, top_k=5)
    assert result["batch_size"] == 3 and result["random_weights"] is True


def test_prepared_export_is_found_without_torchvision(cache_dir, monkeypatch, chelsea_jpeg):
    """A function that ships onnxruntime but not torch finds the export made at build time."""
    from perfdesk.shipped.inference import onnx_export

    cfg = EngineConfig(model="mobilenet_v2", runtime="onnx", cache_dir=str(cache_dir), threads=1)
    path = onnx_export.prepare_onnx(cfg)
    assert path.exists()
    monkeypatch.setattr(onnx_export, "_torchvision_version", lambda: None)
    monkeypatch.setattr(onnx_export, "import_torch", lambda: pytest.fail("torch must not be needed"))
    engine = load_engine(cfg)
    assert engine.info["onnx_file"] == str(path) and engine.info["export_ms"] == 0.0
    assert engine.predict([chelsea_jpeg])["batch_size"] == 1


def test_shipped_export_is_loaded_and_a_function_never_exports(cache_dir, tmp_path, monkeypatch, chelsea_jpeg):
    """onnx_file: the build-time export is loaded as is (no weights read, no torch); inside a function with none,
    init fails saying where the export should have come from."""
    from perfdesk.shipped.inference import InferenceError, onnx_export

    made = onnx_export.prepare_onnx(EngineConfig(model="mobilenet_v2", runtime="onnx", cache_dir=str(cache_dir)))
    shipped = tmp_path / "task" / "model" / made.name
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(made.read_bytes())
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    monkeypatch.setattr(onnx_export, "import_torch", lambda: pytest.fail("torch must not be needed"))
    env = {
        "LAMBDA_TASK_ROOT": str(tmp_path / "task"),
        "PERFDESK_MODEL": "mobilenet_v2",
        "PERFDESK_RUNTIME": "onnx",
        "PERFDESK_WEIGHTS": "/client/only/w.pth",  # where the client read them: never opened here
        "PERFDESK_WEIGHTS_SHA256": "ab" * 32,
        "PERFDESK_ONNX_FILE": f"model/{made.name}",
        "PERFDESK_CACHE_DIR": str(tmp_path / "tmp-cache"),
    }
    cfg = EngineConfig.from_env(env)
    assert cfg.onnx_file == str(shipped)
    engine = load_engine(cfg)
    assert engine.info["onnx_file"] == str(shipped) and engine.info["export_ms"] == 0.0
    assert engine.info["random_weights"] is False and engine.info["weights_sha256"] == "ab" * 32
    assert engine.predict([chelsea_jpeg])["batch_size"] == 1
    with pytest.raises(InferenceError, match="is not there.*redeploy"):
        load_engine(EngineConfig.from_env({**env, "PERFDESK_ONNX_FILE": "model/missing.onnx"}))
    no_file = {k: v for k, v in env.items() if k != "PERFDESK_ONNX_FILE"}
    with pytest.raises(InferenceError, match="never exports one at cold start.*PERFDESK_ONNX_FILE"):
        load_engine(EngineConfig.from_env({**no_file, "PERFDESK_WEIGHTS": "random"}))
    assert EngineConfig.from_env(env).to_env()["PERFDESK_ONNX_FILE"] == str(shipped)
