"""Deployment packages: the function's code zip, a dependencies layer, file layers, a container build context.

* :func:`build_code_zip`: the handler and the inference module (pure Python, a few hundred KB), plus any files
  the function needs (the ONNX export, weights) under their names in the task root.
* :func:`build_dependency_layer`: the handler's dependencies for Lambda's Python runtime and architecture,
  installed from manylinux wheels by ``pip install --target --platform ... --python-version ... --only-binary
  =:all:`` (a cross-platform, binary-only resolve: never a source build for this machine, never this machine's
  site-packages), under ``python/`` as Lambda's layer paths expect.
* :func:`build_file_layer`: one file (the ONNX export, weights) under ``<folder>/`` (``/opt/<folder>/<file>``).
* :func:`write_container_context`: a container image's build context for runtimes too big for a layer (PyTorch,
  TensorFlow): the task root with the dependencies resolved the same way, on the Lambda Python base image
  (:mod:`perfdesk.lambda_pkg.images` builds, checks and pushes it).

Every zip is reproducible byte for byte: entries sorted by name, one fixed timestamp, modes normalised to 0644 or
0755, no ``__pycache__`` and no ``bin/`` scripts (their shebang names this machine's interpreter). Unchanged
packages keep their CodeSha256. :func:`package_facts` says how big each is against Lambda's limits (50 MB zipped
inline, 250 MB unzipped for code and layers together); :class:`PackageTooLarge` names the biggest items.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from perfdesk import shipped

#: Lambda's limit on the unzipped function plus all its layers.
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
#: Lambda's limit on a zip sent inline (CreateFunction, UpdateFunctionCode, PublishLayerVersion); above it the zip
#: goes through S3 (S3Bucket/S3Key).
MAX_INLINE_ZIP_BYTES = 50 * 1024 * 1024
#: Handler string of the shipped handler.
HANDLER = "perfdesk.shipped.handler.lambda_handler"
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
#: glibc of the OS under each Lambda Python runtime: python3.10 and 3.11 run on Amazon Linux 2 (glibc 2.26),
#: python3.12 and 3.13 on Amazon Linux 2023 (glibc 2.34). A wheel for a newer glibc does not load there.
RUNTIME_GLIBC = {"3.10": 26, "3.11": 26, "3.12": 34, "3.13": 34}
_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
#: The handler's dependencies per inference runtime in a zip function (boto3 is in Lambda's Python runtime).
LAYER_REQUIREMENTS = {"onnx": ["onnxruntime", "numpy", "pillow"]}
#: Pins the resolver cannot know: on Amazon Linux 2 the newest onnxruntime with wheels for its glibc (1.16) was
#: built against NumPy 1.x and fails to import under NumPy 2.
_CONSTRAINTS = {("onnx", 26): ["numpy<2"]}
#: Runtimes whose dependencies are far above the 250 MB a function and its layers may unzip to.
IMAGE_ONLY = {
    "torch": "PyTorch (torch and torchvision unzip to about 800 MB even as CPU-only wheels)",
    "tensorflow": "TensorFlow (tensorflow-cpu unzips to about 1.2 GB)",
}
#: Requirements of a container image's task root per runtime (write_container_context).
RUNTIME_REQUIREMENTS = {
    "torch": ["torch", "torchvision", "numpy", "pillow", "psutil"],
    "onnx": ["onnxruntime", "numpy", "pillow", "psutil"],
    "tensorflow": ["tensorflow-cpu", "numpy", "pillow", "psutil"],
}


class PackageTooLarge(Exception):
    """A package is above Lambda's unzipped limit; the message names the biggest items and what to do."""


class NotForZip(ValueError):
    """The runtime's dependencies cannot go in a layer (PyTorch, TensorFlow): the function must be an image."""


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def shipped_files(root: Path | None = None) -> list[tuple[Path, str]]:
    """(source, name in zip) of the shipped code (:func:`perfdesk.shipped.shipped_files`)."""
    root = root or _repo_root()
    return [(root / name, name) for name in shipped.shipped_files(root)]


def lambda_platforms(python_version: str, architecture: str) -> list[str]:
    """pip ``--platform`` tags of the wheels that load on the runtime: manylinux2014 and every ``manylinux_2_N``
    up to the runtime's glibc (pip takes the tags as given and does not add the older ones itself)."""
    if architecture not in _MACHINE:
        raise ValueError(f"architecture must be x86_64 or arm64, not {architecture!r}")
    if python_version not in RUNTIME_GLIBC:
        raise ValueError(f"no Lambda Python runtime {python_version!r}; known: {', '.join(sorted(RUNTIME_GLIBC))}")
    machine = _MACHINE[architecture]
    tags = [f"manylinux2014_{machine}"]
    tags += [f"manylinux_2_{minor}_{machine}" for minor in range(17, RUNTIME_GLIBC[python_version] + 1)]
    return tags


def layer_requirements(runtime: str, python_version: str) -> tuple[list[str], list[str]]:
    """(requirements, constraints) of the dependencies layer of a zip function on ``runtime``.

    Raises :class:`NotForZip` for PyTorch and TensorFlow: no layer holds them, they go as container images."""
    if runtime in IMAGE_ONLY:
        raise NotForZip(
            f"runtime {runtime!r} cannot be packaged as a zip with layers: {IMAGE_ONLY[runtime]}, far above the "
            f"{MAX_UNZIPPED_BYTES // 2**20} MB a Lambda function and its layers may unzip to. Use the onnx runtime "
            "(onnxruntime, numpy and pillow fit a layer; the model is exported at build time), or package it as a "
            "container image (packaging = 'image', this runtime's default)"
        )
    if runtime not in LAYER_REQUIREMENTS:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(sorted(LAYER_REQUIREMENTS))}")
    glibc = RUNTIME_GLIBC.get(python_version, 34)
    return list(LAYER_REQUIREMENTS[runtime]), list(_CONSTRAINTS.get((runtime, glibc), []))


# -- zips ------------------------------------------------------------------------------------------------------
def _info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, _ZIP_TIME)
    info.external_attr = (0o100000 | (0o755 if mode & 0o111 else 0o644)) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix: the same bytes on every client OS
    return info


def _add(zf: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o644) -> None:
    zf.writestr(_info(name, mode), data)


def _add_file(zf: zipfile.ZipFile, name: str, path: Path) -> None:
    st = path.stat()
    info = _info(name, st.st_mode)
    info.file_size = st.st_size  # lets zipfile decide on zip64 before streaming
    with open(path, "rb") as src, zf.open(info, "w") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def _skipped(rel: Path) -> bool:
    return "__pycache__" in rel.parts or rel.suffix == ".pyc" or rel.parts[:2] == ("python", "bin")


def _zip_tree(tree: Path, dest: Path) -> Path:
    files = sorted(
        (p.relative_to(tree).as_posix(), p)
        for p in tree.rglob("*")
        if p.is_file() and not p.is_symlink() and not _skipped(p.relative_to(tree))
    )
    return _zip_files(files, dest)


def _zip_files(files: Iterable[tuple[str, Path]], dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name, path in sorted(files):
            _add_file(zf, name, path)
    os.replace(tmp, dest)
    return dest


def build_code_zip(
    dest: str | Path,
    weights: str | Path | None = None,
    root: Path | None = None,
    *,
    files: Mapping[str, str | Path] | None = None,
) -> Path:
    """The function's code zip at ``dest``: the shipped code, plus ``files`` (name in the zip -> local file, e.g.
    ``{"model/resnet50.onnx": path}``); ``weights`` goes in as ``weights/<name>`` (then set
    PERFDESK_WEIGHTS=weights/<name>)."""
    dest = Path(dest)
    entries = {name: src for src, name in shipped_files(root)}
    if weights is not None:
        entries[f"weights/{Path(weights).name}"] = Path(weights)
    for name, src in (files or {}).items():
        entries[name] = Path(src)
    _zip_files(entries.items(), dest)
    check_unzipped_size([dest])
    return dest


def build_file_layer(path: str | Path, dest: str | Path, folder: str = "weights") -> Path:
    """A layer holding one file as ``<folder>/<name>`` (``/opt/<folder>/<name>`` in the function)."""
    path = Path(path)
    _zip_files([(f"{folder}/{path.name}", path)], Path(dest))
    check_unzipped_size([Path(dest)])
    return Path(dest)


def build_weights_layer(weights: str | Path, dest: str | Path) -> Path:
    """A layer holding the weights file as ``weights/<name>`` (``/opt/weights/<name>`` in the function)."""
    return build_file_layer(weights, dest, "weights")


def unzipped_items(zip_path: Path) -> dict[str, int]:
    """Unzipped bytes per top-level item (``python/numpy`` counts as one item) of a package."""
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            key = "/".join(parts[:2]) if parts[0] in ("python", "weights", "model") and len(parts) > 2 else parts[0]
            sizes[key] = sizes.get(key, 0) + info.file_size
    return sizes


def package_facts(zip_path: str | Path, top: int = 5) -> dict:
    """Sizes of one package against Lambda's limits: zipped bytes (inline up to 50 MB, else through S3), unzipped
    bytes (250 MB for code and layers together) and its biggest items."""
    zip_path = Path(zip_path)
    items = unzipped_items(zip_path)
    zipped = zip_path.stat().st_size
    return {
        "zipped_bytes": zipped,
        "unzipped_bytes": sum(items.values()),
        "upload": "inline" if zipped < MAX_INLINE_ZIP_BYTES else "s3",
        "biggest": dict(sorted(items.items(), key=lambda kv: -kv[1])[:top]),
    }


def describe_sizes(name: str, facts: dict) -> str:
    """One log line: ``deps layer: 38.6 MB zipped (inline), 133.0 MB unzipped (python/numpy 31.6 MB, ...)``."""
    biggest = ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in facts["biggest"].items())
    return (
        f"{name}: {facts['zipped_bytes'] / 2**20:.1f} MB zipped ({facts['upload']}), "
        f"{facts['unzipped_bytes'] / 2**20:.1f} MB unzipped ({biggest})"
    )


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
            "use the onnx runtime, or package the function as a container image (packaging = 'image')"
        )
    return total


# -- the dependencies layer ------------------------------------------------------------------------------------
def install_wheels(
    target: str | Path,
    requirements: list[str],
    python_version: str = "3.11",
    architecture: str = "x86_64",
    *,
    constraints: list[str] | None = None,
    find_links: str | None = None,
    no_index: bool = False,
    work_dir: str | Path | None = None,
    timeout_s: float = 1800.0,
) -> Path:
    """Install ``requirements`` into ``target`` from manylinux wheels for Lambda's Python ``python_version`` on
    ``architecture`` (x86_64|arm64): a layer's ``python/`` folder, or an image's task root.

    pip resolves for the runtime, not for this machine (``--platform``, ``--python-version``, ``--implementation
    cp``, ``--only-binary=:all:``), ignores what is installed here (``--target`` with ``--ignore-installed``), and
    uses the configured index and its own cache (pip.conf, ``PIP_*``). Raises :class:`RuntimeError` with pip's
    message (e.g. no wheel for the platform)."""
    platforms = lambda_platforms(python_version, architecture)
    target = Path(target)
    tmp = Path(work_dir or tempfile.mkdtemp(prefix="perfdesk-wheels-"))
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(target),
        "--ignore-installed",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "--no-compile",
        "--no-warn-conflicts",
        "--no-warn-script-location",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
    ]
    for plat in platforms:
        cmd += ["--platform", plat]
    if constraints:
        cfile = tmp / "constraints.txt"
        cfile.write_text("\n".join(constraints) + "\n")
        cmd += ["--constraint", str(cfile)]
    if find_links:
        cmd += ["--find-links", find_links]
    if no_index:
        cmd.append("--no-index")
    cmd += list(requirements)
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_TARGET", "PIP_USER", "PIP_PREFIX")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()][-5:]
        raise RuntimeError(
            f"pip could not get {architecture} wheels for Python {python_version} (platforms {platforms[0]} .. "
            f"{platforms[-1]}) of {' '.join(requirements)}: " + " / ".join(tail)
        )
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: their shebang names this machine's Python
    return target


#: A dependencies layer built for one set of requirements, Python version and architecture is reused by later
#: sessions on this machine for this long (the wheels pip resolves change with new releases; a day-old layer is
#: what a nightly run would have built). ``PERFDESK_LAYER_CACHE_S`` changes it; 0 turns the cache off.
LAYER_CACHE_S = 24 * 3600.0


def layer_cache_dir() -> Path:
    """``$PERFDESK_LAYER_CACHE`` or ``$XDG_CACHE_HOME/perfdesk/layers`` (default ``~/.cache/perfdesk/layers``)."""
    env = os.environ.get("PERFDESK_LAYER_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "perfdesk" / "layers"


def _layer_cache_s() -> float:
    try:
        return float(os.environ.get("PERFDESK_LAYER_CACHE_S", LAYER_CACHE_S))
    except ValueError:
        return LAYER_CACHE_S


def cached_layer(name: str) -> Path | None:
    """The cached layer zip named ``name`` (its name carries the hash of what it was built from), if young enough."""
    max_age = _layer_cache_s()
    if max_age <= 0:
        return None
    path = layer_cache_dir() / name
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return None
    return path if age < max_age else None


def cache_layer(zip_path: Path) -> None:
    """Keep a built layer zip for later sessions (written whole, then renamed: a concurrent reader never sees half
    of it). A cache that cannot be written is skipped."""
    if _layer_cache_s() <= 0:
        return
    folder = layer_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
        os.close(fd)
        shutil.copyfile(zip_path, tmp)
        os.replace(tmp, folder / zip_path.name)
    except OSError:
        return


def build_dependency_layer(
    dest: str | Path,
    requirements: list[str],
    python_version: str = "3.11",
    architecture: str = "x86_64",
    *,
    constraints: list[str] | None = None,
    find_links: str | None = None,
    no_index: bool = False,
    work_dir: str | Path | None = None,
    limit: int = MAX_UNZIPPED_BYTES,
    timeout_s: float = 1800.0,
) -> Path:
    """A layer zip of ``requirements`` installed from manylinux wheels for Lambda's Python ``python_version`` on
    ``architecture`` (x86_64|arm64), under ``python/`` (:func:`install_wheels`). Raises :class:`PackageTooLarge`
    (what is big) or :class:`RuntimeError` (pip's message, e.g. no wheel for the platform).
    """
    dest = Path(dest)
    tmp = Path(work_dir or tempfile.mkdtemp(prefix="perfdesk-layer-"))
    tree = tmp / "layer"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    install_wheels(
        tree / "python",
        requirements,
        python_version,
        architecture,
        constraints=constraints,
        find_links=find_links,
        no_index=no_index,
        work_dir=tmp,
        timeout_s=timeout_s,
    )
    site = tree / "python"
    # Check before zipping: a tree above the limit should fail fast with the names, not after minutes of deflate.
    sizes: dict[str, int] = {}
    for item in sorted(site.iterdir()):
        rel = item.relative_to(tree)
        if _skipped(rel):
            continue
        sizes[rel.as_posix()] = (
            sum(p.stat().st_size for p in item.rglob("*") if p.is_file() and not _skipped(p.relative_to(tree)))
            if item.is_dir()
            else item.stat().st_size
        )
    total = sum(sizes.values())
    if total > limit:
        biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
        raise PackageTooLarge(
            f"the dependencies layer unzips to {total / 2**20:.0f} MB, above Lambda's {limit / 2**20:.0f} MB limit; "
            "biggest: "
            + ", ".join(f"{k} {v / 2**20:.0f} MB" for k, v in biggest)
            + ". Use the onnx runtime (onnxruntime fits), or a container image (packaging = 'image')"
        )
    return _zip_tree(tree, dest)


def image_requirements(runtime: str, python_version: str) -> tuple[list[str], list[str]]:
    """(requirements, constraints) of a container image's task root on ``runtime``: torch and torchvision pinned
    as the matching pair of ``scripts/constraints.txt`` where this is a checkout that has it."""
    if runtime not in RUNTIME_REQUIREMENTS:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(sorted(RUNTIME_REQUIREMENTS))}")
    constraints = list(_CONSTRAINTS.get((runtime, RUNTIME_GLIBC.get(python_version, 34)), []))
    pins = _repo_root() / "scripts" / "constraints.txt"
    if runtime == "torch" and pins.is_file():
        for line in pins.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                constraints.append(line)
    return list(RUNTIME_REQUIREMENTS[runtime]), constraints


def write_container_context(
    dest: str | Path,
    runtime: str = "torch",
    python_version: str = "3.12",
    architecture: str = "x86_64",
    *,
    base: str | None = None,
    files: Mapping[str, str | Path] | None = None,
    requirements: list[str] | None = None,
    constraints: list[str] | None = None,
    find_links: str | None = None,
    no_index: bool = False,
    work_dir: str | Path | None = None,
    root: Path | None = None,
    compile_py: bool = True,
) -> Path:
    """A container image's build context in ``dest``: ``task/`` holds the shipped code, ``files`` (name in the task
    root -> local file, e.g. the weights) and the runtime's dependencies installed from manylinux wheels for the
    function's platform (:func:`install_wheels`, never this machine's site-packages); the Dockerfile copies it to
    ``/var/task`` on ``base`` (default AWS's ``public.ecr.aws/lambda/python:<version>``) and runs the shipped
    handler. Nothing runs at build time, so Docker and buildah build it alike (:mod:`perfdesk.lambda_pkg.images`).
    Raises :class:`RuntimeError` with pip's message."""
    from perfdesk.lambda_pkg import images

    if requirements is None:
        requirements, pinned = image_requirements(runtime, python_version)
        constraints = pinned + list(constraints or [])
    entries: dict[str, Path] = {name: src for src, name in shipped_files(root)}
    entries.update({name: Path(src) for name, src in (files or {}).items()})

    def install(task: Path) -> None:
        install_wheels(
            task,
            requirements,
            python_version,
            architecture,
            constraints=constraints,
            find_links=find_links,
            no_index=no_index,
            work_dir=work_dir,
        )

    return images.write_function_context(
        dest,
        base=base or images.AWS_BASE.format(python=python_version),
        handler=HANDLER,
        files=entries,
        install=install if requirements else None,
        python_version=python_version,
        compile_py=compile_py,
    )


def zip_bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def in_memory_zip(files: dict[str, bytes]) -> bytes:
    """A small zip from names and contents (test handlers, probes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in sorted(files.items()):
            _add(zf, name, data)
    return buf.getvalue()
