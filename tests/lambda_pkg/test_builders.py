"""Packages: the code zip's contents, the 250 MB check, a dependencies layer from a wheel, the container context."""

from __future__ import annotations

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


def test_size_check_names_the_biggest_items(tmp_path):
    z = tmp_path / "layer.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("python/torch/lib.so", b"\0" * 300_000)
        zf.writestr("python/numpy/core.so", b"\0" * 100_000)
    assert builders.check_unzipped_size([z], limit=500_000) == 400_000
    with pytest.raises(builders.PackageTooLarge, match=r"layer.zip:python/torch.*layer.zip:python/numpy.*container"):
        builders.check_unzipped_size([z], limit=200_000)


def _wheel(folder, name="tinydep", version="1.0"):
    """A minimal pure-Python wheel (what pip download would fetch), built here so the test needs no network."""
    dist = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "VALUE = 7\n")
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return path


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_dependency_layer_from_wheels(tmp_path, arch):
    wheels = tmp_path / "index"
    wheels.mkdir()
    _wheel(wheels)
    z = builders.build_dependency_layer(
        tmp_path / "deps.zip",
        ["tinydep"],
        "3.12",
        arch,
        find_links=str(wheels),
        no_index=True,
        work_dir=tmp_path / "work",
    )
    assert "python/tinydep/__init__.py" in zipfile.ZipFile(z).namelist()
    with pytest.raises(builders.PackageTooLarge, match="python/tinydep"):
        builders.build_dependency_layer(
            tmp_path / "big.zip",
            ["tinydep"],
            "3.12",
            arch,
            find_links=str(wheels),
            no_index=True,
            work_dir=tmp_path / "work2",
            limit=10,
        )
    with pytest.raises(RuntimeError, match="pip could not get"):
        builders.build_dependency_layer(
            tmp_path / "none.zip",
            ["no-such-dep-xyz"],
            "3.12",
            arch,
            find_links=str(wheels),
            no_index=True,
            work_dir=tmp_path / "work3",
        )


def test_container_context(tmp_path):
    ctx = builders.write_container_context(
        tmp_path / "image", model="resnet50", runtime="torch", architecture="arm64", python_version="3.12"
    )
    docker = (ctx / "Dockerfile").read_text()
    assert "FROM --platform=linux/arm64 public.ecr.aws/lambda/python:3.12" in docker
    assert 'CMD ["perfdesk.shipped.handler.lambda_handler"]' in docker
    assert "torch" in (ctx / "requirements.txt").read_text().split()
    assert (ctx / "perfdesk" / "shipped" / "handler.py").is_file()


def test_handler_imports_nothing_of_the_controller_side():
    code = (
        "import sys, perfdesk.shipped.handler as h; "
        "bad = [m for m in sys.modules if m.startswith('perfdesk.controllers') or m in "
        "('torch', 'boto3', 'onnxruntime', 'tensorflow', 'textual', 'rich')]; print(bad); assert not bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
