"""Packages: the code zip's contents, the 250 MB check, a dependencies layer from a wheel, the container context."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from perfdesk.lambda_pkg import builders


def test_code_zip_ships_handler_and_inference_only(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"\0" * 1000)
    z = builders.build_code_zip(tmp_path / "code.zip", weights=weights)
    names = zipfile.ZipFile(z).namelist()
    assert "perfdesk/shipped/handler.py" in names and "perfdesk/shipped/inference/base.py" in names
    assert "perfdesk/shipped/inference/imagenet_classes.txt" in names and "weights/w.pth" in names
    assert all(n == "perfdesk/__init__.py" or n.startswith(("perfdesk/shipped/", "weights/")) for n in names)
    again = builders.build_code_zip(tmp_path / "again.zip", weights=weights)
    assert again.read_bytes() == z.read_bytes()  # deterministic: unchanged code keeps its CodeSha256
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    z = builders.build_code_zip(tmp_path / "model.zip", files={"model/m.onnx": model})
    assert "model/m.onnx" in zipfile.ZipFile(z).namelist() and "weights/w.pth" not in zipfile.ZipFile(z).namelist()


def test_size_check_names_the_biggest_items(tmp_path):
    z = tmp_path / "layer.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("python/torch/lib.so", b"\0" * 300_000)
        zf.writestr("python/numpy/core.so", b"\0" * 100_000)
    assert builders.check_unzipped_size([z], limit=500_000) == 400_000
    with pytest.raises(builders.PackageTooLarge, match=r"layer.zip:python/torch.*layer.zip:python/numpy.*container"):
        builders.check_unzipped_size([z], limit=200_000)


def _wheel(folder, name="tinydep", version="1.0"):
    """A minimal pure-Python wheel with a console script (what pip would fetch), built here: no network needed."""
    dist = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "VALUE = 7\n")
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/entry_points.txt", f"[console_scripts]\n{name} = {name}:VALUE\n")
        zf.writestr(f"{dist}/RECORD", "")
    return path


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_dependency_layer_from_wheels(tmp_path, arch):
    wheels = tmp_path / "index"
    wheels.mkdir()
    _wheel(wheels)
    kw = dict(find_links=str(wheels), no_index=True)
    z = builders.build_dependency_layer(tmp_path / "deps.zip", ["tinydep"], "3.12", arch, work_dir=tmp_path / "w", **kw)
    names = zipfile.ZipFile(z).namelist()
    assert "python/tinydep/__init__.py" in names and "python/tinydep-1.0.dist-info/METADATA" in names
    # no scripts (their shebang names this machine's Python), no bytecode of this machine's Python
    assert not [n for n in names if n.startswith("python/bin/") or "__pycache__" in n or n.endswith(".pyc")]
    # reproducible byte for byte: another folder, another time, the same zip
    again = builders.build_dependency_layer(
        tmp_path / "again.zip", ["tinydep"], "3.12", arch, work_dir=tmp_path / "elsewhere", **kw
    )
    assert again.read_bytes() == z.read_bytes()
    with pytest.raises(builders.PackageTooLarge, match="python/tinydep"):
        builders.build_dependency_layer(
            tmp_path / "big.zip", ["tinydep"], "3.12", arch, work_dir=tmp_path / "w2", limit=10, **kw
        )
    with pytest.raises(RuntimeError, match="pip could not get .* wheels for Python 3.12"):
        builders.build_dependency_layer(
            tmp_path / "none.zip", ["no-such-dep-xyz"], "3.12", arch, work_dir=tmp_path / "w3", **kw
        )


def test_platform_tags_follow_the_runtime_os():
    al2 = builders.lambda_platforms("3.11", "x86_64")  # Amazon Linux 2: glibc 2.26
    assert (
        al2[0] == "manylinux2014_x86_64" and al2[-1] == "manylinux_2_26_x86_64" and "manylinux_2_28_x86_64" not in al2
    )
    al2023 = builders.lambda_platforms("3.13", "arm64")  # Amazon Linux 2023: glibc 2.34
    assert al2023[0] == "manylinux2014_aarch64" and al2023[-1] == "manylinux_2_34_aarch64"
    with pytest.raises(ValueError, match="known: 3.10, 3.11, 3.12, 3.13"):
        builders.lambda_platforms("3.9", "x86_64")
    with pytest.raises(ValueError, match="x86_64 or arm64"):
        builders.lambda_platforms("3.12", "amd64")


def test_layer_requirements_per_runtime():
    assert builders.layer_requirements("onnx", "3.12") == (["onnxruntime", "numpy", "pillow"], [])
    # Amazon Linux 2's newest onnxruntime (1.16) was built against NumPy 1.x
    assert builders.layer_requirements("onnx", "3.11") == (["onnxruntime", "numpy", "pillow"], ["numpy<2"])
    for runtime in ("torch", "tensorflow"):
        with pytest.raises(builders.NotForZip, match="cannot be packaged as a zip.*container image"):
            builders.layer_requirements(runtime, "3.12")


def test_package_facts_say_inline_or_s3(tmp_path):
    small = tmp_path / "small.zip"
    small.write_bytes(builders.in_memory_zip({"python/pkg/a.py": b"A = 1\n" * 100}))
    facts = builders.package_facts(small)
    assert facts["upload"] == "inline" and facts["unzipped_bytes"] == 600 and facts["biggest"] == {"python/pkg": 600}
    assert "MB zipped (inline)" in builders.describe_sizes("deps layer", facts)
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w") as zf:  # stored random bytes: as large zipped as unzipped
        zf.writestr("blob.bin", os.urandom(builders.MAX_INLINE_ZIP_BYTES))
    assert builders.package_facts(big)["upload"] == "s3"


@pytest.mark.slow
def test_onnx_layer_from_the_configured_registry_is_reproducible(tmp_path):
    """The real resolve (pip's configured index, its cache): onnxruntime, numpy and pillow for Python 3.11 on
    x86_64, built twice to the same bytes; what the function imports and nothing of PyTorch."""
    reqs, constraints = builders.layer_requirements("onnx", "3.11")
    zips = [
        builders.build_dependency_layer(
            tmp_path / f"deps{i}.zip", reqs, "3.11", "x86_64", constraints=constraints, work_dir=tmp_path / f"w{i}"
        )
        for i in range(2)
    ]
    assert zips[0].read_bytes() == zips[1].read_bytes()
    names = zipfile.ZipFile(zips[0]).namelist()
    tops = {n.split("/")[1] for n in names}
    assert {"onnxruntime", "numpy", "PIL"} <= tops and not {"torch", "torchvision", "bin"} & tops
    assert any(n.startswith("python/numpy-1.") and n.endswith("/METADATA") for n in names)  # numpy<2 on AL2
    facts = builders.package_facts(zips[0])
    assert facts["unzipped_bytes"] < builders.MAX_UNZIPPED_BYTES


def test_container_context(tmp_path):
    """The task root holds the shipped code and the dependencies resolved for the function's platform (here arm64,
    not this machine), and the Dockerfile only copies it onto the base."""
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    ctx = builders.write_container_context(
        tmp_path / "image",
        "torch",
        python_version="3.12",
        architecture="arm64",
        files={"weights/w.pt": weights},
        requirements=["six"],
        work_dir=tmp_path / "wheels",
        compile_py=False,
    )
    docker = (ctx / "Dockerfile").read_text()
    assert "FROM public.ecr.aws/lambda/python:3.12" in docker
    assert "COPY task/ /var/task/" in docker and "RUN" not in docker
    assert 'CMD ["perfdesk.shipped.handler.lambda_handler"]' in docker
    task = ctx / "task"
    assert (task / "perfdesk" / "shipped" / "handler.py").is_file()
    assert (task / "weights" / "w.pt").read_bytes() == b"weights"
    assert (task / "six.py").is_file() and not (task / "bin").exists()


def test_image_requirements_pin_the_torch_pair():
    reqs, constraints = builders.image_requirements("torch", "3.12")
    assert {"torch", "torchvision"} <= set(reqs)
    pins = [c for c in constraints if c.startswith(("torch==", "torchvision=="))]
    assert len(pins) == 2  # the matching pair of scripts/constraints.txt


def test_handler_imports_nothing_of_the_controller_side():
    code = (
        "import sys, perfdesk.shipped.handler as h; "
        "bad = [m for m in sys.modules if m.startswith('perfdesk.controllers') or m in "
        "('torch', 'boto3', 'onnxruntime', 'tensorflow', 'textual', 'rich')]; print(bad); assert not bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_layer_cache_keeps_a_built_layer_for_a_day(tmp_path, monkeypatch):
    """A built dependencies layer is kept whole under the cache folder for later sessions, for a day at most; with
    the cache off (PERFDESK_LAYER_CACHE_S=0) nothing is kept or found."""
    import os
    import time

    from perfdesk.lambda_pkg import builders

    monkeypatch.setenv("PERFDESK_LAYER_CACHE", str(tmp_path / "cache"))
    built = tmp_path / "deps-onnx-py3.11-x86_64-0123456789ab.zip"
    built.write_bytes(b"PK layer")
    assert builders.cached_layer(built.name) is None
    builders.cache_layer(built)
    hit = builders.cached_layer(built.name)
    assert hit == tmp_path / "cache" / built.name and hit.read_bytes() == b"PK layer"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [built.name]  # no partial file left
    old = time.time() - builders.LAYER_CACHE_S - 60
    os.utime(hit, (old, old))
    assert builders.cached_layer(built.name) is None  # older than a day: built again
    monkeypatch.setenv("PERFDESK_LAYER_CACHE_S", "0")
    os.utime(hit, None)
    assert builders.cached_layer(built.name) is None
