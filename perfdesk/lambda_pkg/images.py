"""Container images for Lambda functions: build (Docker or buildah), check against Lambda's 10 GiB limit, push to
ECR.

* :func:`choose_builder`: Docker where an engine is running (``docker info`` succeeds), else buildah (daemonless,
  rootful, its own storage under ``~/.cache/perfdesk/buildah`` with the vfs driver, chroot isolation); the
  build context never runs anything (``COPY`` only), so both build it the same way. buildah builds are
  reproducible byte for byte (OCI format, ``--timestamp 0``, no identity label): an unchanged context gives the
  same image digest, and Lambda's CodeSha256 stays.
* :func:`check_image_size`: the uncompressed size of every layer together against Lambda's 10 GiB, with the
  reason AWS gives when it refuses an image (``InvalidImage``, ``SizeLimitExceeded``).
* :class:`EcrImages`: the session's ECR repository (created and tagged with the session's tags, recorded in the
  session's ledger first) or the one the profile names, the registry login from ``GetAuthorizationToken`` (user
  ``AWS``, the base64 token's password), and the push; the function then runs ``<repositoryUri>@<digest>``.
* :class:`LocalRegistry`: Debian's ``docker-registry`` on a loopback port (the registry behind a local ECR).

The registry and ECR's control plane are two services. On AWS the repository URI names the registry. A local ECR
control plane (the moto server, through ``AWS_ENDPOINT_URL_ECR`` or ``AWS_ENDPOINT_URL``) answers repository URIs
on AWS's registry names (``123456789012.dkr.ecr.us-east-1.amazonaws.com/...``) but serves no registry: perfdesk
then pushes to the registry the profile names (``registry``, or ``PERFDESK_ECR_REGISTRY``, e.g.
``http://127.0.0.1:5000``) under the repository's name, keeps the function's ImageUri in ECR's form, and the
emulator, given the same registry (``perfdesk emulator --registry``, or the same variable), pulls ECR image URIs
from it. See docs/lambda.md, "Container images".
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

#: Lambda's limit on a container image: every layer together, uncompressed.
MAX_IMAGE_BYTES = 10 * 1024**3
#: AWS's reason when an image is over it (the function's StateReason, InvalidImage/SizeLimitExceeded).
SIZE_LIMIT_REASON = "Uncompressed container image size exceeds 10 GiB limit"
#: AWS's Lambda Python base image.
AWS_BASE = "public.ecr.aws/lambda/python:{python}"
#: The ``base_image`` value that asks for perfdesk's stand-in base (:mod:`perfdesk.lambda_pkg.standin_base`).
STANDIN = "local"
#: The variable naming the registry behind a local ECR control plane (client and emulator both read it).
REGISTRY_ENV = "PERFDESK_ECR_REGISTRY"
#: The account of local stand-ins (moto and the emulator use it).
LOCAL_ACCOUNT = "123456789012"
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
_PLATFORM = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}


class ImageError(Exception):
    """Building, pushing or checking an image failed; the message says what and what to do."""


class ImageTooLarge(ImageError):
    """The image is above Lambda's 10 GiB (uncompressed)."""


def _tail(proc: subprocess.CompletedProcess, lines: int = 6) -> str:
    text = (proc.stderr or "") + "\n" + (proc.stdout or "")
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(kept[-lines:])


def _run(cmd: list[str], *, timeout: float, env: dict[str, str] | None = None, input_text: str | None = None):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, input=input_text)
    except subprocess.TimeoutExpired:
        raise ImageError(f"`{' '.join(cmd[:4])} ...` did not finish in {timeout:.0f} s") from None
    except FileNotFoundError:
        raise ImageError(f"{cmd[0]} is not installed") from None


# -- builders ----------------------------------------------------------------------------------------------------
class ImageBuilder:
    """Builds a context into a local image and pushes it. ``name`` is ``docker`` or ``buildah``."""

    name = ""

    def build(self, context: Path, ref: str, architecture: str, timeout_s: float = 3600.0) -> None:
        raise NotImplementedError

    def exists(self, ref: str) -> bool:
        raise NotImplementedError

    def size(self, ref: str) -> int | None:
        """Uncompressed bytes of every layer of the local image (None: the builder cannot tell)."""
        raise NotImplementedError

    def image_id(self, ref: str) -> str:
        """The local image's ID (its config's digest: equal IDs, equal images)."""
        raise NotImplementedError

    def push(
        self, ref: str, dest: str, *, username: str | None, password: str | None, tls_verify: bool, timeout_s: float
    ) -> str:
        """Push ``ref`` as ``dest`` (``host/repository:tag``); returns the manifest digest the registry stored."""
        raise NotImplementedError

    def remove(self, ref: str) -> None:
        raise NotImplementedError

    def local_refs(self, repository: str) -> list[str]:
        """The builder's local images named ``repository:*``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"builder": self.name}


class BuildahBuilder(ImageBuilder):
    """buildah with its own storage (vfs driver: no kernel overlay needed) and chroot isolation: no daemon."""

    name = "buildah"

    def __init__(self, root: str | Path | None = None, executable: str = "buildah"):
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "perfdesk" / "buildah"
        self.root = Path(root) if root else base
        self.exe = executable

    def _cmd(self, *args: str) -> list[str]:
        return [
            self.exe,
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
            *args,
        ]

    def build(self, context: Path, ref: str, architecture: str, timeout_s: float = 3600.0) -> None:
        proc = _run(
            self._cmd(
                "bud",
                "--isolation",
                "chroot",
                "--format",
                "oci",
                "--timestamp",
                "0",
                "--identity-label=false",
                "--platform",
                _PLATFORM[architecture],
                "-t",
                ref,
                "-f",
                str(context / "Dockerfile"),
                str(context),
            ),
            timeout=timeout_s,
        )
        if proc.returncode != 0:
            raise ImageError(f"buildah could not build {ref} from {context}: {_tail(proc)}")

    def exists(self, ref: str) -> bool:
        return _run(self._cmd("inspect", "--type", "image", ref), timeout=120).returncode == 0

    def image_id(self, ref: str) -> str:
        proc = _run(self._cmd("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref), timeout=120)
        return proc.stdout.strip()

    def _storage(self, what: str) -> list[dict]:
        try:
            return json.loads((self.root / "storage" / f"vfs-{what}" / f"{what}.json").read_text())
        except (OSError, ValueError):
            return []

    def size(self, ref: str) -> int | None:
        # buildah prints sizes rounded for people; its storage records each layer's exact uncompressed size
        proc = _run(self._cmd("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref), timeout=120)
        image_id = proc.stdout.strip()
        image = next((i for i in self._storage("images") if i.get("id") == image_id), None)
        if image is None:
            return None
        layers = {layer["id"]: layer for layer in self._storage("layers")}
        total, layer_id = 0, image.get("layer")
        while layer_id:
            layer = layers.get(layer_id)
            if layer is None:
                return None
            total += int(layer.get("diff-size") or 0)
            layer_id = layer.get("parent")
        return total

    def push(
        self, ref: str, dest: str, *, username: str | None, password: str | None, tls_verify: bool, timeout_s: float
    ) -> str:
        with tempfile.TemporaryDirectory(prefix="perfdesk-push-") as tmp:
            digest_file = Path(tmp) / "digest"
            args = ["push", "--quiet", f"--tls-verify={'true' if tls_verify else 'false'}"]
            args += ["--digestfile", str(digest_file)]
            if username is not None:  # an auth file, not --creds: the password never shows in the process list
                auth = Path(tmp) / "auth.json"
                token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
                auth.write_text(json.dumps({"auths": {dest.split("/")[0]: {"auth": token}}}))
                auth.chmod(0o600)
                args += ["--authfile", str(auth)]
            proc = _run(self._cmd(*args, ref, f"docker://{dest}"), timeout=timeout_s)
            if proc.returncode != 0:
                raise ImageError(f"the registry refused the push of {dest}: {_tail(proc, 3)}")
            return digest_file.read_text().strip()

    def remove(self, ref: str) -> None:
        _run(self._cmd("rmi", ref), timeout=300)

    def local_refs(self, repository: str) -> list[str]:
        out = []
        for image in self._storage("images"):
            out += [n for n in image.get("names") or [] if n.rsplit(":", 1)[0] == repository]
        return out

    def describe(self) -> dict[str, Any]:
        return {"builder": "buildah (vfs storage, chroot isolation)", "buildah_root": str(self.root)}


class DockerBuilder(ImageBuilder):
    """The Docker engine (``docker build`` with BuildKit where it has buildx, without provenance attestations:
    an image index is not what Lambda runs)."""

    name = "docker"

    def __init__(self, executable: str = "docker"):
        self.exe = executable

    def build(self, context: Path, ref: str, architecture: str, timeout_s: float = 3600.0) -> None:
        env = {**os.environ, "SOURCE_DATE_EPOCH": "0"}
        cmd = [self.exe, "build", "--platform", _PLATFORM[architecture], "-t", ref]
        if _run([self.exe, "buildx", "version"], timeout=60).returncode == 0:
            cmd += ["--provenance=false"]
        proc = _run(cmd + [str(context)], timeout=timeout_s, env=env)
        if proc.returncode != 0:
            raise ImageError(f"docker could not build {ref} from {context}: {_tail(proc)}")

    def exists(self, ref: str) -> bool:
        return _run([self.exe, "image", "inspect", ref], timeout=120).returncode == 0

    def image_id(self, ref: str) -> str:
        proc = _run([self.exe, "image", "inspect", "--format", "{{.Id}}", ref], timeout=120)
        return proc.stdout.strip().removeprefix("sha256:")

    def size(self, ref: str) -> int | None:
        proc = _run([self.exe, "image", "inspect", "--format", "{{.Size}}", ref], timeout=120)
        return int(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip().isdigit() else None

    def push(
        self, ref: str, dest: str, *, username: str | None, password: str | None, tls_verify: bool, timeout_s: float
    ) -> str:
        host = dest.split("/")[0]
        if username is not None:
            proc = _run(
                [self.exe, "login", "--username", username, "--password-stdin", host], timeout=120, input_text=password
            )
            if proc.returncode != 0:
                raise ImageError(f"docker login to {host} failed: {_tail(proc, 3)}")
        proc = _run([self.exe, "tag", ref, dest], timeout=120)
        if proc.returncode != 0:
            raise ImageError(f"docker tag {ref} {dest}: {_tail(proc, 3)}")
        proc = _run([self.exe, "push", dest], timeout=timeout_s)
        if proc.returncode != 0:
            raise ImageError(f"the registry refused the push of {dest}: {_tail(proc, 3)}")
        m = re.search(r"digest: (sha256:[0-9a-f]{64})", proc.stdout)
        if not m:
            raise ImageError(f"docker push of {dest} printed no digest: {_tail(proc, 3)}")
        return m.group(1)

    def remove(self, ref: str) -> None:
        _run([self.exe, "image", "rm", ref], timeout=300)

    def local_refs(self, repository: str) -> list[str]:
        proc = _run([self.exe, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository], timeout=120)
        return [line for line in proc.stdout.split() if line.rsplit(":", 1)[0] == repository]


def docker_engine_running(executable: str = "docker") -> bool:
    if shutil.which(executable) is None:
        return False
    try:
        return subprocess.run([executable, "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def choose_builder(prefer: str = "auto") -> ImageBuilder:
    """``docker`` where an engine answers ``docker info``, else ``buildah``; ``prefer`` forces one."""
    if prefer == "docker" or (prefer == "auto" and docker_engine_running()):
        if not docker_engine_running():
            raise ImageError("image_builder is 'docker', but no Docker engine is running (`docker info` fails)")
        return DockerBuilder()
    if shutil.which("buildah") is None:
        raise ImageError(
            "no image builder here: no Docker engine is running (`docker info` fails) and buildah is not installed; "
            "install buildah (Debian/Ubuntu: apt-get install buildah) or start Docker"
        )
    if os.geteuid() != 0:
        raise ImageError("buildah builds here as root only (its chroot isolation and vfs storage); run as root")
    return BuildahBuilder()


# -- the size check ------------------------------------------------------------------------------------------------
def check_image_size(size: int | None, ref: str, limit: int = MAX_IMAGE_BYTES) -> None:
    """:class:`ImageTooLarge` with AWS's reason when ``size`` (uncompressed bytes) is above Lambda's limit."""
    if size is not None and size > limit:
        raise ImageTooLarge(
            f"{SIZE_LIMIT_REASON}: {ref} is {size / 2**30:.2f} GiB uncompressed (Lambda's limit is "
            f"{limit / 2**30:.0f} GiB for every layer together). Use a smaller runtime (onnx as a zip with layers), "
            "CPU-only wheels, or fewer dependencies"
        )


# -- context hashing -----------------------------------------------------------------------------------------------
def context_digest(context: Path) -> str:
    """A hash of the build context (names, modes, link targets and contents): equal contexts, equal images."""
    h = hashlib.sha256()
    for path in sorted(context.rglob("*")):
        rel = path.relative_to(context).as_posix()
        if path.is_symlink():
            h.update(f"L {rel} {os.readlink(path)}\n".encode())
        elif path.is_file():
            h.update(f"F {rel} {path.stat().st_mode & 0o777:o}\n".encode())
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        elif path.is_dir():
            h.update(f"D {rel}\n".encode())
    return h.hexdigest()


# -- the base, the context and the function image ----------------------------------------------------------------
def default_base(python_version: str, lambda_on_aws: bool) -> str:
    """AWS's base image where the function runs on AWS; perfdesk's stand-in where it runs on an emulator (AWS's
    cannot be pulled there, and the stand-in is built from this machine's Python)."""
    return AWS_BASE.format(python=python_version) if lambda_on_aws else STANDIN


def ensure_base(
    builder: ImageBuilder,
    base_image: str,
    python_version: str,
    architecture: str,
    *,
    work_dir: str | Path | None = None,
    say: Callable[[str], None] | None = None,
) -> str:
    """The base image reference to build on: ``base_image`` as given, or (``local``) perfdesk's stand-in, built
    into the builder's storage once per Python version."""
    if base_image != STANDIN:
        return base_image
    from perfdesk.lambda_pkg import standin_base

    say = say or (lambda line: log.info("%s", line))
    try:
        ref = standin_base.base_ref(python_version, architecture)
        if builder.exists(ref):
            return ref
        say(f"building perfdesk's stand-in Lambda base image {ref} from this machine's Python (once)")
        t0 = time.monotonic()
        context = standin_base.prepare(python_version, architecture, work_dir)
    except standin_base.BaseUnavailable as exc:
        raise ImageError(str(exc)) from None
    try:
        builder.build(context, ref, architecture)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    say(f"built {ref} in {time.monotonic() - t0:.1f} s")
    return ref


FUNCTION_DOCKERFILE = """\
# perfdesk function image: the task root (the handler, the inference module, and their dependencies resolved for
# Lambda's platform on the client) on the Lambda Python base image. Nothing runs at build time.
FROM {base}
COPY task/ /var/task/
CMD ["{handler}"]
"""


def compile_task_root(task: Path, python_version: str) -> bool:
    """Byte-compile the task root with the runtime's Python version (unchecked hashes: valid whatever the file
    times in the image), where this machine has that version; a read-only /var/task cannot take them later."""
    from perfdesk.lambda_pkg import standin_base

    python = standin_base.find_interpreter(python_version)
    if python is None:
        return False
    proc = subprocess.run(
        [
            str(python),
            "-I",
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-d",
            "/var/task",
            str(task),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return proc.returncode == 0


def write_function_context(
    dest: str | Path,
    *,
    base: str,
    handler: str,
    files: dict[str, Path],
    install: Callable[[Path], None] | None = None,
    python_version: str = "3.11",
    compile_py: bool = True,
) -> Path:
    """A build context in ``dest``: ``task/`` (``files``, name in the task root -> local file; then ``install``
    puts the dependencies into it) and a Dockerfile that copies it to /var/task on ``base``."""
    dest = Path(dest)
    task = dest / "task"
    shutil.rmtree(task, ignore_errors=True)
    task.mkdir(parents=True)
    for name, src in sorted(files.items()):
        out = task / name
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)
        out.chmod(0o644)
    if install is not None:
        install(task)
    for path in (task, *task.rglob("*")):  # readable by Lambda's sandbox user, whatever this machine's umask
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod((mode & 0o755) | 0o444 | (0o111 if path.is_dir() else 0))
    if compile_py:
        compile_task_root(task, python_version)
    (dest / "Dockerfile").write_text(FUNCTION_DOCKERFILE.format(base=base, handler=handler))
    return dest


def inputs_key(*parts: Any, files: dict[str, Path] | None = None) -> str:
    """A hash of what goes into an image (as Docker's cache keys a step by its instruction and inputs): ``parts``
    (base, requirements, platform, ...) and the contents of ``files``. Equal inputs: the image built before serves."""
    h = hashlib.sha256(json.dumps([str(p) for p in parts]).encode())
    for name, path in sorted((files or {}).items()):
        h.update(f"\n{name}\n".encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def build_function_image(
    builder: ImageBuilder,
    name: str,
    architecture: str,
    *,
    context: Path | None = None,
    write_context: Callable[[Path], Path] | None = None,
    key: str | None = None,
    work_dir: str | Path | None = None,
    say: Callable[[str], None] | None = None,
    limit: int = MAX_IMAGE_BYTES,
) -> tuple[str, int | None]:
    """Build ``localhost/perfdesk/<name>:<key>`` unless the builder has it (older tags of ``name`` are removed), and
    check it against Lambda's 10 GiB. Returns (ref, size).

    Either ``context``, a build context already written (its content hash is the key: an unchanged context is not
    built again), or ``write_context(folder)`` with ``key``, a hash of the inputs (:func:`inputs_key`): the context
    is then written only when no image of that key exists, in a temporary folder under ``work_dir`` removed after
    the build (a PyTorch context is gigabytes)."""
    say = say or (lambda line: log.info("%s", line))
    repository = f"localhost/perfdesk/{slug(name, 120)}"
    if context is not None:
        key = context_digest(context)
    if key is None or (context is None and write_context is None):
        raise ValueError("build_function_image needs a context, or write_context with a key")
    ref = f"{repository}:{key[:16]}"
    if builder.exists(ref):
        say(f"image {ref} already built (same inputs)")
    else:
        t0 = time.monotonic()
        tmp = None
        if context is None:
            assert write_context is not None
            tmp = Path(tempfile.mkdtemp(prefix="perfdesk-image-", dir=work_dir))
            context = write_context(tmp / "context")
            say(f"build context written in {time.monotonic() - t0:.1f} s")
        try:
            say(f"building {ref} with {builder.name}")
            t1 = time.monotonic()
            builder.build(context, ref, architecture)
            say(f"built {ref} in {time.monotonic() - t1:.1f} s")
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        for old in builder.local_refs(repository):
            if old != ref:
                builder.remove(old)
    size = builder.size(ref)
    check_image_size(size, ref, limit)
    if size is not None:
        say(f"image {ref}: {size / 2**20:.1f} MB uncompressed of Lambda's {limit / 2**30:.0f} GiB")
    return ref, size


# -- the registry behind ECR ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Registry:
    """Where images are pushed: ``host`` (``host[:port]``), over TLS or not, with the login for it."""

    host: str
    tls: bool = True
    username: str | None = None
    password: str | None = None

    def url(self, path: str = "") -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}{path}"


def parse_registry(value: str) -> tuple[str, bool]:
    """``http://127.0.0.1:5000`` or ``127.0.0.1:5000`` -> (host, tls). Without a scheme, loopback is plain HTTP."""
    value = value.strip().rstrip("/")
    if "://" in value:
        parts = urlparse(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ImageError(f"registry {value!r} is not an http:// or https:// address")
        return parts.netloc, parts.scheme == "https"
    host = value.split("/")[0]
    return host, host.split(":")[0] not in ("127.0.0.1", "localhost", "::1", "[::1]")


def split_image_uri(uri: str) -> tuple[str, str, str]:
    """``host/repo/name:tag`` or ``host/repo@sha256:...`` -> (host, repository, tag or digest)."""
    if "/" not in uri:
        raise ValueError(f"{uri!r} is not an image URI (host/repository:tag)")
    host, rest = uri.split("/", 1)
    if "@" in rest:
        repo, ref = rest.split("@", 1)
    elif ":" in rest.rsplit("/", 1)[-1]:
        repo, ref = rest.rsplit(":", 1)
    else:
        repo, ref = rest, "latest"
    return host, repo, ref


def is_aws_endpoint(url: str | None) -> bool:
    host = urlparse(url or "").hostname or ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


def slug(text: str, limit: int = 64) -> str:
    """ECR's repository and tag grammar: lowercase letters and digits, separated by single ``.``, ``_`` or ``-``."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "x"


class EcrImages:
    """The session's images in ECR: the repository, the registry login, the push, and their removal.

    ``ecr`` is a boto3 ECR client, or None where there is no ECR control plane (a local-lambda target with no
    local ECR: the repository URI is then ECR's form for the local account, and ``registry`` must be given).
    ``repository`` names a repository the profile keeps (the session only adds and removes its own tag in it);
    without it the session creates ``perfdesk/<session>/<target>``, tagged, and deletes it at the end."""

    def __init__(
        self,
        ecr,
        session_id: str,
        region: str,
        *,
        registry: str | None = None,
        repository: str | None = None,
        ledger=None,
        say: Callable[[str], None] | None = None,
        tags: dict[str, str] | None = None,
    ):
        self.ecr = ecr
        self.session_id = session_id
        self.region = region
        self.registry_override = registry or os.environ.get(REGISTRY_ENV) or None
        self.named_repository = repository
        self.ledger = ledger
        self.say = say or (lambda line: log.info("%s", line))
        self.tags = tags or {"perfdesk:session": session_id, "perfdesk:managed": "true"}
        self.created: list[str] = []  # repositories this session created
        self.pushed: list[tuple[str, str, str]] = []  # (repository, tag, digest)

    def _ledger(self, type_: str, **fields: Any) -> None:
        if self.ledger is not None:
            self.ledger.add(type_, **fields)

    def repository_name(self, target: str) -> str:
        return self.named_repository or f"perfdesk/{slug(self.session_id, 100)}/{slug(target, 100)}"

    def ensure_repository(self, name: str) -> str:
        """The repository's URI; created now (tagged) unless it exists or the profile named it."""
        if self.ecr is None:
            return f"{LOCAL_ACCOUNT}.dkr.ecr.{self.region}.amazonaws.com/{name}"
        if name == self.named_repository:
            try:
                repo = self.ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
            except self.ecr.exceptions.RepositoryNotFoundException:
                raise ImageError(
                    f"ECR repository {name} (the profile's 'repository') does not exist; create it, or leave "
                    "'repository' out and the session creates one"
                ) from None
            return repo["repositoryUri"]
        self._ledger("ecr-repository", name=name)
        try:
            repo = self.ecr.create_repository(
                repositoryName=name,
                imageTagMutability="MUTABLE",
                tags=[{"Key": k, "Value": v} for k, v in self.tags.items()],
            )["repository"]
            self.created.append(name)
            self.say(f"created ECR repository {name} (tagged perfdesk:session={self.session_id})")
        except self.ecr.exceptions.RepositoryAlreadyExistsException:
            repo = self.ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
            self.say(f"reusing ECR repository {name}")
        return repo["repositoryUri"]

    def registry(self, repository_uri: str) -> Registry:
        """Where to push and with which login: the profile's registry, else the one the repository URI names, with
        ECR's authorization token (``AWS`` and the token's password)."""
        username = password = None
        proxy = None
        if self.ecr is not None:
            data = self.ecr.get_authorization_token()["authorizationData"][0]
            user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
            username = user or "AWS"
            proxy = data.get("proxyEndpoint")
        if self.registry_override:
            host, tls = parse_registry(self.registry_override)
            return Registry(host, tls, username, password)
        host = repository_uri.split("/")[0]
        endpoint = self.ecr.meta.endpoint_url if self.ecr is not None else None
        if ECR_HOST.match(host) and not is_aws_endpoint(endpoint):
            where = f"the ECR at {endpoint}" if endpoint else "no ECR control plane"
            raise ImageError(
                f"{where} (not AWS) names the repository {repository_uri}, on AWS's registry, which is not where a "
                f"local ECR keeps images; name the local registry: 'registry' on the target, or {REGISTRY_ENV}="
                "http://127.0.0.1:PORT (e.g. Debian's docker-registry), and start the emulator with the same"
            )
        tls = parse_registry(host)[1] if not ECR_HOST.match(host) else True
        if proxy and ECR_HOST.match(host):
            tls = urlparse(proxy).scheme != "http"
        return Registry(host, tls, username, password)

    def push(self, builder: ImageBuilder, local_ref: str, target: str, timeout_s: float = 3600.0) -> dict[str, str]:
        """Create (or find) the repository, log in, push; returns ``image_uri`` (``<repositoryUri>@<digest>``),
        ``repository``, ``tag``, ``digest`` and ``registry``."""
        name = self.repository_name(target)
        uri = self.ensure_repository(name)
        reg = self.registry(uri)
        tag = f"{slug(self.session_id, 80)}-{slug(target, 40)}"
        dest = f"{reg.host}/{name}:{tag}"
        if name == self.named_repository:
            self._ledger("ecr-image", repository=name, tag=tag)
        self.say(f"pushing {local_ref} to {dest} ({'TLS' if reg.tls else 'plain HTTP, loopback'})")
        t0 = time.monotonic()
        try:
            digest = builder.push(
                local_ref, dest, username=reg.username, password=reg.password, tls_verify=reg.tls, timeout_s=timeout_s
            )
        except ImageError as exc:
            raise ImageError(
                f"{exc}. Is the registry {reg.url()} up and does it take this login? (ECR: the repository exists and "
                "the credentials may push to it; a local registry: "
                f"{REGISTRY_ENV} or 'registry' names where it listens)"
            ) from None
        self.pushed.append((name, tag, digest))
        self.say(f"pushed {dest} ({digest[:19]}) in {time.monotonic() - t0:.1f} s")
        return {"image_uri": f"{uri}@{digest}", "repository": name, "tag": tag, "digest": digest, "registry": reg.url()}

    def remove(self) -> list[str]:
        """Delete what this session put in ECR: the repositories it created (with their images), or its tags in a
        repository the profile named. Safe to repeat."""
        if self.ecr is None:
            return []
        removed = []
        for name in self.created:
            try:
                self.ecr.delete_repository(repositoryName=name, force=True)
                removed.append(f"ECR repository {name}")
            except self.ecr.exceptions.RepositoryNotFoundException:
                pass
        self.created = []
        for name, tag, _digest in self.pushed:
            if name != self.named_repository:
                continue
            resp = self.ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageTag": tag}])
            if resp.get("imageIds"):
                removed.append(f"ECR image {name}:{tag}")
        self.pushed = [p for p in self.pushed if p[0] != self.named_repository]
        return removed


def sweep_ecr(ecr, entries: list[dict], session_id: str | None) -> list[str]:
    """``perfdesk teardown``: delete the ECR repositories tagged with the session (``None``: any perfdesk
    session) or recorded in its ledger as created, and its image tags in repositories the profile named."""
    removed: list[str] = []
    recorded = {e["name"] for e in entries if e.get("type") == "ecr-repository"}
    names: list[str] = []
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repo in page.get("repositories", []):
            try:
                tags = {
                    t["Key"]: t["Value"] for t in ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
                }
            except ecr.exceptions.RepositoryNotFoundException:
                continue
            ours = tags.get("perfdesk:managed") == "true" and (
                session_id is None or tags.get("perfdesk:session") == session_id
            )
            if ours or repo["repositoryName"] in recorded:
                names.append(repo["repositoryName"])
    for name in names:
        try:
            ecr.delete_repository(repositoryName=name, force=True)
            removed.append(f"ECR repository {name}")
        except ecr.exceptions.RepositoryNotFoundException:
            continue
    for e in entries:
        if e.get("type") != "ecr-image" or e.get("repository") in names:
            continue
        try:
            resp = ecr.batch_delete_image(repositoryName=e["repository"], imageIds=[{"imageTag": e["tag"]}])
        except ecr.exceptions.RepositoryNotFoundException:
            continue
        if resp.get("imageIds"):
            removed.append(f"ECR image {e['repository']}:{e['tag']}")
    return removed


# -- a local registry ----------------------------------------------------------------------------------------------
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


_SPAWNER: list[Any] = []


def _spawner():
    from concurrent.futures import ThreadPoolExecutor

    if not _SPAWNER:
        _SPAWNER.append(ThreadPoolExecutor(1, thread_name_prefix="perfdesk-registry-spawner"))
    return _SPAWNER[0]


def _die_with_parent() -> None:  # in the child between fork and exec: it dies with perfdesk, even killed hard
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def registry_executable() -> str | None:
    """Debian's ``docker-registry`` (upstream's binary is ``registry``)."""
    return shutil.which("docker-registry") or shutil.which("registry")


class LocalRegistry:
    """The Docker/OCI distribution registry on a loopback port, its storage in ``root``: the registry behind a local
    ECR, for tests and for local-lambda sessions that name none. Stopped (and its process gone) by :meth:`stop`."""

    def __init__(self, root: str | Path, port: int = 0):
        self.root = Path(root)
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> LocalRegistry:
        import socket
        import urllib.request

        exe = registry_executable()
        if exe is None:
            raise ImageError(
                "no registry for the function's image: install Debian's docker-registry (apt-get install "
                f"docker-registry), or name one: 'registry' on the target or {REGISTRY_ENV}"
            )
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(REGISTRY_CONFIG.format(root=self.root / "data", port=self.port))
        log_file = open(self.root / "registry.log", "ab")
        cmd = [exe, "serve", str(config)]

        def popen() -> subprocess.Popen:
            return subprocess.Popen(
                cmd,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

        try:  # forked by one long-lived thread: PR_SET_PDEATHSIG fires when the forking *thread* ends
            self.proc = _spawner().submit(popen).result()
        finally:
            log_file.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ImageError(
                    f"the registry exited ({self.proc.returncode}): {(self.root / 'registry.log').read_text()[-300:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ImageError(f"the registry did not answer on {self.url} within {timeout_s:.0f} s")

    def stop(self, remove_data: bool = False) -> None:
        """Stop the registry; ``remove_data`` also deletes what it stored (the images of a session that ended)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if remove_data:
            shutil.rmtree(self.root / "data", ignore_errors=True)

    def __enter__(self) -> LocalRegistry:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
