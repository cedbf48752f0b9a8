"""Deployment packages: the function's code zip, a dependencies layer, a weights layer, a container build context.

* :func:`build_code_zip`: the handler and the inference module (pure Python, a few hundred KB), optionally the
  weights (placement ``package``). Deterministic (fixed timestamps, sorted), so an unchanged package keeps its
  CodeSha256 and the update is skipped.
* :func:`build_dependency_layer`: manylinux wheels for the Lambda runtime's Python version and architecture
  (``pip download --only-binary=:all: --platform ... --python-version ...``), unpacked under ``python/``, checked
  against Lambda's 250 MB unzipped limit (:class:`PackageTooLarge` names the biggest items).
* :func:`build_weights_layer`: the weights file under ``weights/`` (``/opt/weights/<file>`` in the function).
* :func:`write_container_context`: a Dockerfile on ``public.ecr.aws/lambda/python`` for dependencies too big for
  layers (PyTorch): ``docker build`` it, push to ECR, and give the image URI to the ``lambda`` target.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from perfdesk import shipped

#: Lambda's limit on the unzipped function plus all its layers.
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
#: Handler string of the shipped handler.
HANDLER = "perfdesk.shipped.handler.lambda_handler"
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
_PLATFORMS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"],
    "arm64": ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"],
}
#: Runtime dependencies of the handler per inference runtime (boto3 is in Lambda's Python runtime already).
RUNTIME_REQUIREMENTS = {
    "torch": ["torch", "torchvision", "numpy", "pillow", "psutil"],
    "onnx": ["onnxruntime", "numpy", "pillow", "psutil"],
    "tensorflow": ["tensorflow-cpu", "numpy", "pillow", "psutil"],
}


class PackageTooLarge(Exception):
    """A package is above Lambda's unzipped limit; the message names the biggest items and what to do."""


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def shipped_files(root: Path | None = None) -> list[tuple[Path, str]]:
    """(source, name in zip) of the shipped code (:func:`perfdesk.shipped.shipped_files`)."""
    root = root or _repo_root()
    return [(root / name, name) for name in shipped.shipped_files(root)]


def _add(zf: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, _ZIP_TIME)
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def _zip_tree(tree: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                _add(zf, path.relative_to(tree).as_posix(), path.read_bytes(), path.stat().st_mode & 0o777)
    return dest


def build_code_zip(dest: str | Path, weights: str | Path | None = None, root: Path | None = None) -> Path:
    """The function's code zip at ``dest``; with ``weights``, the file goes in as ``weights/<name>`` (placement
    ``package``: then set PERFDESK_WEIGHTS=weights/<name>)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w") as zf:
        for src, name in shipped_files(root):
            _add(zf, name, src.read_bytes())
        if weights is not None:
            w = Path(weights)
            _add(zf, f"weights/{w.name}", w.read_bytes())
    check_unzipped_size([dest])
    return dest


def build_weights_layer(weights: str | Path, dest: str | Path) -> Path:
    """A layer holding the weights file as ``weights/<name>`` (``/opt/weights/<name>`` in the function)."""
    dest = Path(dest)
    w = Path(weights)
    with zipfile.ZipFile(dest, "w") as zf:
        _add(zf, f"weights/{w.name}", w.read_bytes())
    check_unzipped_size([dest])
    return dest


def unzipped_items(zip_path: Path) -> dict[str, int]:
    """Unzipped bytes per top-level item (``python/torch`` counts as one item) of a package."""
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            key = "/".join(parts[:2]) if parts[0] in ("python", "weights") and len(parts) > 2 else parts[0]
            sizes[key] = sizes.get(key, 0) + info.file_size
    return sizes


def check_unzipped_size(zips: list[Path], limit: int = MAX_UNZIPPED_BYTES) -> int:
    """Total unzipped size of a function's packages (code and layers); :class:`PackageTooLarge` above ``limit``."""
    sizes: dict[str, int] = {}
    for z in zips:
        for item, size in unzipped_items(Path(z)).items():
            sizes[f"{Path(z).name}:{item}"] = size
    total = sum(sizes.values())
    if total > limit:
        biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
        listing = ", ".join(f"{k} {v / 2**20:.0f} MB" for k, v in biggest)
        raise PackageTooLarge(
            f"the function's packages unzip to {total / 2**20:.0f} MB, above Lambda's {limit / 2**20:.0f} MB limit "
            f"for a function and its layers; biggest: {listing}. Put the weights in S3 (weights placement 's3'), "
            "use the onnx runtime, or build a container image (perfdesk.lambda_pkg.builders.write_container_context)"
        )
    return total


def build_dependency_layer(
    dest: str | Path,
    requirements: list[str],
    python_version: str = "3.11",
    architecture: str = "x86_64",
    *,
    find_links: str | None = None,
    no_index: bool = False,
    work_dir: str | Path | None = None,
    limit: int = MAX_UNZIPPED_BYTES,
) -> Path:
    """A layer zip of manylinux wheels for Lambda's Python ``python_version`` on ``architecture`` (x86_64|arm64).

    Wheels only (no source builds: they would be built for this machine, not Lambda's). Raises
    :class:`PackageTooLarge` (what is big) or :class:`RuntimeError` (pip's message, e.g. no wheel for the platform).
    """
    if architecture not in _PLATFORMS:
        raise ValueError(f"architecture must be x86_64 or arm64, not {architecture!r}")
    dest = Path(dest)
    tmp = Path(work_dir or tempfile.mkdtemp(prefix="perfdesk-layer-"))
    wheels, tree = tmp / "wheels", tmp / "layer"
    shutil.rmtree(tree, ignore_errors=True)
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--dest",
        str(wheels),
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "--disable-pip-version-check",
    ]
    for plat in _PLATFORMS[architecture]:
        cmd += ["--platform", plat]
    if find_links:
        cmd += ["--find-links", find_links]
    if no_index:
        cmd.append("--no-index")
    cmd += list(requirements)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(
            f"pip could not get {architecture} wheels for Python {python_version} of "
            f"{' '.join(requirements)}: " + " / ".join(tail)
        )
    site = tree / "python"
    site.mkdir(parents=True)
    for whl in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(whl) as zf:
            zf.extractall(site)
    # Check before zipping: a torch-sized tree should fail fast with the names, not after minutes of deflate.
    sizes: dict[str, int] = {}
    for item in site.iterdir():
        sizes[f"python/{item.name}"] = (
            sum(p.stat().st_size for p in item.rglob("*") if p.is_file()) if item.is_dir() else item.stat().st_size
        )
    total = sum(sizes.values())
    if total > limit:
        biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
        raise PackageTooLarge(
            f"the dependencies layer unzips to {total / 2**20:.0f} MB, above Lambda's {limit / 2**20:.0f} MB limit; "
            "biggest: "
            + ", ".join(f"{k} {v / 2**20:.0f} MB" for k, v in biggest)
            + ". Use the onnx runtime (onnxruntime fits), or a container image (write_container_context)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    return _zip_tree(tree, dest)


DOCKERFILE = """\
# perfdesk function image: the handler and the inference module on AWS's Lambda Python base image.
# Build: docker build --platform linux/{platform} -t perfdesk-fn . ; push to ECR; set image_uri in the profile.
FROM --platform=linux/{platform} public.ecr.aws/lambda/python:{python}

COPY requirements.txt ${{LAMBDA_TASK_ROOT}}/requirements.txt
RUN pip install --no-cache-dir {pip_options}-r ${{LAMBDA_TASK_ROOT}}/requirements.txt --target ${{LAMBDA_TASK_ROOT}}

COPY perfdesk/ ${{LAMBDA_TASK_ROOT}}/perfdesk/
{weights_line}
ENV PERFDESK_MODEL={model} PERFDESK_RUNTIME={runtime}
CMD ["{handler}"]
"""


def write_container_context(
    dest: str | Path,
    model: str = "resnet50",
    runtime: str = "torch",
    python_version: str = "3.11",
    architecture: str = "x86_64",
    requirements: list[str] | None = None,
    weights: str | Path | None = None,
    pip_options: str = "",
    root: Path | None = None,
) -> Path:
    """Write a container image build context (Dockerfile, requirements.txt, perfdesk/, weights/) into ``dest``.

    For dependencies above the 250 MB layer limit (PyTorch): images may be up to 10 GB. ``pip_options`` is added
    to the install line (e.g. an extra index of CPU-only torch wheels)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    reqs = requirements or RUNTIME_REQUIREMENTS[runtime]
    (dest / "requirements.txt").write_text("\n".join(reqs) + "\n")
    for src, name in shipped_files(root):
        out = dest / name
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)
    weights_line = ""
    if weights is not None:
        w = Path(weights)
        (dest / "weights").mkdir(exist_ok=True)
        shutil.copyfile(w, dest / "weights" / w.name)
        weights_line = f"COPY weights/ ${{LAMBDA_TASK_ROOT}}/weights/\nENV PERFDESK_WEIGHTS=weights/{w.name}\n"
    (dest / "Dockerfile").write_text(
        DOCKERFILE.format(
            platform="arm64" if architecture == "arm64" else "amd64",
            python=python_version,
            pip_options=(pip_options + " ") if pip_options else "",
            weights_line=weights_line,
            model=model,
            runtime=runtime,
            handler=HANDLER,
        )
    )
    return dest


def zip_bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def in_memory_zip(files: dict[str, bytes]) -> bytes:
    """A small zip from names and contents (test handlers, probes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in sorted(files.items()):
            _add(zf, name, data)
    return buf.getvalue()
