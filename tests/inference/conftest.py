import io

import pytest


def jpeg_of(array, quality=90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="session")
def chelsea_jpeg() -> bytes:
    """A real photo bundled with scikit-image (a cat), as JPEG."""
    from skimage import data

    return jpeg_of(data.chelsea())


@pytest.fixture(scope="session")
def coffee_png() -> bytes:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.coffee()).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def mobilenet_torch():
    from perfdesk.shipped.inference import EngineConfig, load_engine

    return load_engine(EngineConfig(model="mobilenet_v2", runtime="torch", threads=2))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One cache for the session, so each ONNX export happens once."""
    return tmp_path_factory.mktemp("perfdesk-cache")


@pytest.fixture(scope="session")
def spread_weights(tmp_path_factory):
    """A mobilenet_v2 state dict whose outputs are far from uniform. Freshly initialised batch-norm statistics make
    the activations vanish (probabilities ~1/1000 everywhere, top-1 decided by rounding noise), so the statistics
    are first estimated on a few noise images. Returns (path, sha256)."""
    import hashlib

    import torch
    import torchvision

    torch.manual_seed(1)
    model = torchvision.models.mobilenet_v2(weights=None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 128, 128))
        model.classifier[1].weight.mul_(30.0)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2-spread.pth"
    torch.save(model.state_dict(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()
