"""TensorFlow runs both Keras models and a user's SavedModel (skipped where TensorFlow is not installed)."""

import importlib.util

import pytest

from perfdesk.shipped.inference import EngineConfig, InferenceError, load_engine

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("TensorFlow is not installed (the 'tensorflow' extra)", allow_module_level=True)

# Keras's own NumPy 2 deprecation noise when it saves weights (not ours to fix).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture(scope="module")
def tf():
    """TensorFlow, imported the way the engine imports it (triton first: see runtime_tf._load_triton_first)."""
    from perfdesk.shipped.inference.runtime_tf import import_tf

    return import_tf()[0]


@pytest.mark.parametrize("model, alias", [("keras_mobilenet_v2", "mobilenet_v2"), ("keras_resnet50", "resnet50")])
def test_keras_models(model, alias, chelsea_jpeg, coffee_png):
    engine = load_engine(EngineConfig(model=alias, runtime="tensorflow", threads=2))
    assert engine.info["model"] == model and engine.info["runtime"] == "tensorflow"
    assert engine.info["random_weights"] is True and "tensorflow" in str(engine.info["versions"])
    for batch in ([chelsea_jpeg], [chelsea_jpeg, coffee_png]):  # a second batch size must not break the tf.function
        result = engine.predict(batch, top_k=3)
        assert result["batch_size"] == len(batch) and result["random_weights"] is True
        for preds in result["predictions"]:
            assert len(preds) == 3 and preds[0]["prob"] >= preds[-1]["prob"]


def test_savedmodel(tf, tmp_path, chelsea_jpeg):
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.applications.MobileNetV2(weights=None, input_shape=(160, 160, 3))  # ends in a softmax
    model.export(str(tmp_path / "sm"), verbose=False)
    engine = load_engine(EngineConfig(model="savedmodel", runtime="tensorflow", weights=str(tmp_path / "sm")))
    assert engine.info["random_weights"] is False and len(engine.info["weights_sha256"]) == 64
    assert engine.input_size == 160
    result = engine.predict([chelsea_jpeg, chelsea_jpeg], top_k=5)
    assert engine.outputs_probabilities  # the exported model ends in a softmax: used as is
    preds = result["predictions"][0]
    assert len(preds) == 5 and preds == result["predictions"][1]


def test_savedmodel_needs_a_directory(tmp_path):
    with pytest.raises(InferenceError, match="model 'savedmodel' needs weights = the path of a SavedModel"):
        load_engine(EngineConfig(model="savedmodel", runtime="tensorflow"))
    (tmp_path / "x.h5").write_bytes(b"x")
    with pytest.raises(InferenceError, match="is a file; model 'savedmodel' needs the SavedModel directory"):
        load_engine(EngineConfig(model="savedmodel", runtime="tensorflow", weights=str(tmp_path / "x.h5")))


def test_keras_weights_file(tf, tmp_path, chelsea_jpeg):
    tf.keras.utils.set_random_seed(3)
    model = tf.keras.applications.MobileNetV2(weights=None, classifier_activation=None)
    path = tmp_path / "mnv2.weights.h5"
    model.save_weights(str(path))
    engine = load_engine(EngineConfig(model="keras_mobilenet_v2", runtime="tensorflow", weights=str(path)))
    assert engine.info["random_weights"] is False and len(engine.info["weights_sha256"]) == 64
    assert engine.predict([chelsea_jpeg])["random_weights"] is False
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InferenceError, match=f"weights file {broken} could not be loaded into Keras MobileNetV2"):
        load_engine(EngineConfig(model="keras_mobilenet_v2", runtime="tensorflow", weights=str(broken)))
