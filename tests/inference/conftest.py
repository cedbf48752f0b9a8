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
    from perfdesk.inference import EngineConfig, load_engine

    return load_engine(EngineConfig(model="mobilenet_v2", runtime="torch", threads=2))
