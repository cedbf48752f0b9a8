"""Container-image functions in the emulator: the image a function's ImageUri names, pulled from its registry over
the OCI distribution API, unpacked once per manifest digest, and what an environment needs to run it.

As on Lambda, CreateFunction (and UpdateFunctionCode) with ``PackageType: Image`` first resolves the image: its
manifest and config must exist in the registry (else ``InvalidParameterValueException: Source image ... does not
exist``) and be of a media type Lambda runs (an image manifest, not an index of several). The function is then
``Pending`` (an update ``InProgress``) while the layers are pulled and unpacked in the background, and becomes
``Active`` (``Successful``), or ``Failed`` with ``InvalidImage`` where AWS would refuse the image (over 10 GiB
uncompressed, a layer it cannot read).

The image's registry: ECR's registry names (``<account>.dkr.ecr.<region>.amazonaws.com``) are served by the
registry the emulator is given (``registry``, ``perfdesk emulator --registry``, or ``PERFDESK_ECR_REGISTRY``),
as the registry behind a local ECR control plane; an image URI on that registry's own address is taken too. Any
other registry is refused, as Lambda takes images from ECR only.

Unpacking applies the layers in order into one root file system (whiteouts honoured: ``.wh.<name>`` removes a
lower layer's file, ``.wh..wh..opq`` a lower layer's folder contents; paths resolved inside the root, never through
a link out of it; set-uid bits and device files dropped), verified against each blob's digest, in a cache shared
by every emulator on the machine (``PERFDESK_LAMBDA_IMAGES``, default ``~/.cache/perfdesk/lambda-images``), one
folder per manifest digest, prepared once (a file lock; the folder appears only when complete); the four images
used last (and any used within the hour) are kept.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlparse

from perfdesk.lambda_pkg.emulator.store import ApiError, invalid

log = logging.getLogger(__name__)

REGISTRY_ENV = "PERFDESK_ECR_REGISTRY"
MAX_IMAGE_BYTES = 10 * 1024**3
SIZE_LIMIT_REASON = "SizeLimitExceeded: Uncompressed container image size exceeds 10 GiB limit"
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar": "tar",
    "application/vnd.docker.image.rootfs.diff.tar": "tar",
}
_FORMAT = 1
#: Mount points the environment needs in any root (created at unpack time: the root is read-only later).
MOUNT_POINTS = ("proc", "dev", "sys", "tmp", "var/task", "opt")


class ImageFailed(Exception):
    """The image cannot run: the function goes to ``Failed`` with ``reason_code`` and this message."""

    def __init__(self, message: str, reason_code: str = "InvalidImage"):
        super().__init__(message)
        self.reason_code = reason_code


def default_cache_dir() -> Path:
    if os.environ.get("PERFDESK_LAMBDA_IMAGES"):
        return Path(os.environ["PERFDESK_LAMBDA_IMAGES"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "perfdesk" / "lambda-images"


def not_exist(uri: str) -> ApiError:
    return invalid(f"Source image {uri} does not exist. Provide a valid source image.")


def not_supported(uri: str) -> ApiError:
    return invalid(f"The image manifest, config or layer media type for the source image {uri} is not supported.")


def split_uri(uri: str) -> tuple[str, str, str]:
    """``host/repo:tag`` or ``host/repo@sha256:...`` -> (host, repository, reference), as CreateFunction checks it
    (the client's parser, :func:`perfdesk.lambda_pkg.images.split_image_uri`, with AWS's error)."""
    from perfdesk.lambda_pkg.images import split_image_uri

    try:
        host, repo, ref = split_image_uri(uri)
    except ValueError:
        raise invalid(f"Source image {uri} is not valid. Provide a valid source image.") from None
    if not repo or not ref:
        raise invalid(f"Source image {uri} is not valid. Provide a valid source image.")
    return host, repo, ref


@dataclass(frozen=True)
class ImageConfig:
    """What runs: the image's config, with the function's ``ImageConfig`` overrides applied."""

    entrypoint: tuple[str, ...]
    command: tuple[str, ...]
    working_dir: str
    env: tuple[tuple[str, str], ...]
    user: str = ""

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.command]

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


@dataclass
class ResolvedImage:
    """An image found in its registry: the manifest (by digest) and the config; not yet unpacked."""

    uri: str
    registry: str  # base URL of the registry that serves it
    repository: str
    digest: str
    manifest: dict
    config: dict
    config_digest: str

    @property
    def resolved_uri(self) -> str:
        host, repo, _ = split_uri(self.uri)
        return f"{host}/{repo}@{self.digest}"

    def run_config(self, overrides: dict | None = None) -> ImageConfig:
        """ENTRYPOINT, CMD, WorkingDir and Env of the image, with the function's ImageConfig over them."""
        cfg = self.config.get("config") or {}
        overrides = overrides or {}
        env = []
        for item in cfg.get("Env") or []:
            key, _, value = item.partition("=")
            env.append((key, value))
        entry: list[str] = list(overrides.get("EntryPoint") or cfg.get("Entrypoint") or [])
        cmd: list[str] = list(overrides.get("Command") or cfg.get("Cmd") or [])
        workdir = overrides.get("WorkingDirectory") or cfg.get("WorkingDir") or "/"
        return ImageConfig(tuple(entry), tuple(cmd), workdir, tuple(env), cfg.get("User") or "")


@dataclass
class UnpackedImage:
    """An image ready to run: its root file system, and how big it is uncompressed."""

    digest: str
    rootfs: Path
    size: int
    config: dict = field(default_factory=dict)


# -- the registry client --------------------------------------------------------------------------------------------
class RegistryClient:
    """The OCI distribution API's read side (manifests and blobs), anonymous or with a bearer token the registry
    hands out anonymously; plain HTTP for loopback registries."""

    def __init__(self, base_url: str, timeout_s: float = 60.0):
        self.base = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._token: str | None = None

    def _open(self, path: str, accept: tuple[str, ...] = (), method: str = "GET"):
        headers = {"User-Agent": "perfdesk-lambda-emulator"}
        if accept:
            headers["Accept"] = ", ".join(accept)
        for attempt in range(2):
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            req = urllib.request.Request(self.base + path, headers=headers, method=method)
            try:
                return urllib.request.urlopen(req, timeout=self.timeout_s)
            except urllib.error.HTTPError as exc:
                challenge = exc.headers.get("WWW-Authenticate", "") if exc.code == 401 else ""
                if attempt == 0 and challenge.lower().startswith("bearer "):
                    self._token = self._bearer(challenge)
                    continue
                raise
        raise AssertionError("unreachable")

    def _bearer(self, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        query = "&".join(f"{k}={quote(v)}" for k, v in params.items())
        with urllib.request.urlopen(f"{realm}?{query}", timeout=self.timeout_s) as resp:
            data = json.loads(resp.read())
        return data.get("token") or data.get("access_token") or ""

    def manifest(self, repository: str, reference: str) -> tuple[str, str, bytes]:
        """(media type, digest, raw bytes) of a manifest; HTTPError 404 when the repository or reference is not
        there."""
        with self._open(f"/v2/{repository}/manifests/{reference}", MANIFEST_TYPES + INDEX_TYPES) as resp:
            raw = resp.read()
            media = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
            digest = resp.headers.get("Docker-Content-Digest") or ""
        media = media or json.loads(raw).get("mediaType", "")
        computed = "sha256:" + hashlib.sha256(raw).hexdigest()
        if reference.startswith("sha256:") and computed != reference:
            raise ImageFailed(f"the registry's manifest for {reference} has digest {computed}")
        return media, digest or computed, raw

    def blob(self, repository: str, digest: str):
        """A file-like reader of a blob (the caller closes it)."""
        return self._open(f"/v2/{repository}/blobs/{digest}")

    def blob_bytes(self, repository: str, digest: str, limit: int = 16 * 2**20) -> bytes:
        with self.blob(repository, digest) as resp:
            data = resp.read(limit + 1)
        if len(data) > limit:
            raise ImageFailed(f"blob {digest} is larger than {limit} bytes")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ImageFailed(f"blob {digest} does not match its digest")
        return data


# -- unpacking -----------------------------------------------------------------------------------------------------
class _Counting:
    """A reader that counts (and limits) the bytes read through it: a layer's uncompressed size."""

    def __init__(self, raw, limit: int, seen: int):
        self.raw, self.limit, self.count = raw, limit, seen

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        if self.count > self.limit:
            raise ImageFailed(SIZE_LIMIT_REASON)
        return data


def _inside(root: Path, name: str, follow_last: bool = False) -> Path:
    """The real path of ``name`` inside ``root``, resolving links as a chroot would (absolute targets from
    ``root``, ``..`` never above it); the last component is not followed unless ``follow_last``."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        if (parts or follow_last) and candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise ImageFailed(f"too many levels of links at {name}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(part)
    return root.joinpath(*done)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _apply_layer(root: Path, fileobj, *, created: set[str]) -> None:
    """Apply one layer's tar stream to ``root``: whiteouts first remove lower layers' files, then entries land."""
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            norm = os.path.normpath("/" + member.name).lstrip("/")  # '..' never climbs above the root
            if not norm:
                continue
            head, base = os.path.split(norm)
            if base == ".wh..wh..opq":
                folder = _inside(root, head, follow_last=True)
                if folder.is_dir():
                    for child in folder.iterdir():
                        rel = os.path.relpath(child, root)
                        if rel not in created:
                            _remove(child)
                continue
            if base.startswith(".wh."):
                victim = _inside(root, os.path.join(head, base[4:]))
                if victim.exists() or victim.is_symlink():
                    _remove(victim)
                continue
            parent = _inside(root, head, follow_last=True) if head else root
            parent.mkdir(parents=True, exist_ok=True)
            path = parent / base
            created.add(os.path.relpath(path, root))
            mode = member.mode & 0o1777  # no set-uid or set-gid bits in a cache a host user may read
            if member.isdir():
                if path.is_symlink() or (path.exists() and not path.is_dir()):
                    _remove(path)  # a folder replaces a lower layer's link or file (never chmod through a link)
                path.mkdir(exist_ok=True)
                path.chmod(mode)
            elif member.isreg():
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
                src = tar.extractfile(member)
                with open(path, "wb") as out:
                    if src is not None:
                        shutil.copyfileobj(src, out, 1 << 20)
                path.chmod(mode)
            elif member.issym():
                if path.exists() or path.is_symlink():
                    _remove(path)
                os.symlink(member.linkname, path)
            elif member.islnk():
                target = _inside(root, member.linkname.lstrip("/"))
                if path.exists() or path.is_symlink():
                    _remove(path)
                if target.is_file() and not target.is_symlink():
                    os.link(target, path)
                continue
            else:
                continue  # devices and FIFOs: nothing a function may use
            try:
                os.lchown(path, member.uid, member.gid)
            except (PermissionError, OSError):
                pass
            if not member.issym():
                os.utime(path, (member.mtime, member.mtime))


class ImageCache:
    """Pulls and unpacks images once per manifest digest, for every emulator on this machine.

    It keeps the ``keep`` images used last, and any used within ``busy_s`` (an environment may run it); older
    ones are removed after each new unpack (a PyTorch image is gigabytes)."""

    def __init__(
        self, root: str | Path | None = None, limit: int = MAX_IMAGE_BYTES, keep: int = 4, busy_s: float = 3600.0
    ):
        self.root = Path(root) if root else default_cache_dir()
        self.limit = limit  # Lambda's 10 GiB, uncompressed
        self.keep, self.busy_s = keep, busy_s
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def folder(self, digest: str) -> Path:
        return self.root / digest.replace(":", "-")

    def cached(self, digest: str) -> UnpackedImage | None:
        folder = self.folder(digest)
        try:
            meta = json.loads((folder / "image.json").read_text())
        except (OSError, ValueError):
            return None
        if meta.get("format") != _FORMAT:
            return None
        os.utime(folder / "image.json")  # last use, for eviction
        return UnpackedImage(digest, folder / "rootfs", int(meta["size"]), meta.get("config") or {})

    def unpack(self, image: ResolvedImage, client: RegistryClient, limit: int | None = None) -> UnpackedImage:
        """The image's root file system, pulling and unpacking it now unless it is in the cache."""
        limit = self.limit if limit is None else limit
        found = self.cached(image.digest)
        if found is not None:
            return found
        with self._guard:
            lock = self._locks.setdefault(image.digest, threading.Lock())
        with lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / f".{image.digest.replace(':', '-')}.lock", "w") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                found = self.cached(image.digest)
                if found is not None:
                    return found
                return self._unpack(image, client, limit)

    def _unpack(self, image: ResolvedImage, client: RegistryClient, limit: int) -> UnpackedImage:
        t0 = time.monotonic()
        folder = self.folder(image.digest)
        build = folder.with_name(f".{folder.name}.build-{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(build, ignore_errors=True)
        rootfs = build / "rootfs"
        rootfs.mkdir(parents=True)
        rootfs.chmod(0o755)
        size = 0
        try:
            for layer in image.manifest.get("layers") or []:
                kind = LAYER_TYPES.get(layer.get("mediaType", ""))
                if kind is None:
                    raise ImageFailed(f"a layer's media type ({layer.get('mediaType')}) is not supported")
                digest = layer["digest"]
                hasher = hashlib.sha256()
                with client.blob(image.repository, digest) as resp:
                    raw = _Hashing(resp, hasher)
                    stream: Any = gzip.GzipFile(fileobj=cast(Any, raw), mode="rb") if kind == "gzip" else raw
                    counted = _Counting(stream, limit, size)
                    _apply_layer(rootfs, counted, created=set())
                    while counted.read(1 << 20):  # the tar's padding: the digest covers every byte
                        pass
                    while raw.read(1 << 20):
                        pass
                    size = counted.count
                if "sha256:" + hasher.hexdigest() != digest:
                    raise ImageFailed(f"layer {digest} does not match its digest")
            for point in MOUNT_POINTS:
                target = _inside(rootfs, point, follow_last=True)
                if not target.exists():
                    target.mkdir(parents=True, mode=0o755)
            tmp = _inside(rootfs, "tmp", follow_last=True)
            if tmp.is_dir():
                tmp.chmod(0o1777)
            meta = {"format": _FORMAT, "digest": image.digest, "uri": image.uri, "size": size, "config": image.config}
            (build / "image.json").write_text(json.dumps(meta))
            if folder.exists():
                shutil.rmtree(folder)
            os.rename(build, folder)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        log.info("unpacked %s (%.1f MB) in %.1f s", image.resolved_uri, size / 2**20, time.monotonic() - t0)
        self.evict(keep_also=folder)
        return UnpackedImage(image.digest, folder / "rootfs", size, image.config)

    def evict(self, keep_also: Path | None = None) -> list[Path]:
        """Remove the images used longest ago beyond :attr:`keep` (none used within :attr:`busy_s`, none another
        process is unpacking or removing). Returns what was removed."""
        used = []
        for folder in self.root.glob("sha256-*"):
            try:
                used.append(((folder / "image.json").stat().st_mtime, folder))
            except OSError:
                continue
        used.sort(reverse=True)
        removed = []
        now = time.time()
        for mtime, folder in used[self.keep :]:
            if folder == keep_also or now - mtime < self.busy_s:
                continue
            with open(self.root / f".{folder.name}.lock", "w") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue
                shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.info("removed the unpacked image %s from the cache (used longest ago)", folder.name)
        return removed


class _Hashing:
    def __init__(self, raw, hasher):
        self.raw, self.hasher = raw, hasher

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hasher.update(data)
        return data


# -- the emulator's side -----------------------------------------------------------------------------------------
class ImageSource:
    """Resolves image URIs to the registry that serves them, and images to unpacked roots."""

    def __init__(self, registry: str | None = None, cache: ImageCache | None = None):
        value = registry or os.environ.get(REGISTRY_ENV) or ""
        if value and "://" not in value:
            host = value.split("/")[0]
            loopback = host.split(":")[0] in ("127.0.0.1", "localhost", "::1", "[::1]")
            value = ("http://" if loopback else "https://") + value
        self.registry = value.rstrip("/") or None
        self.cache = cache or ImageCache()

    def describe(self) -> dict[str, Any]:
        return {
            "image_registry": self.registry or "none (image functions need one: --registry or PERFDESK_ECR_REGISTRY)",
            "image_cache": str(self.cache.root),
        }

    def registry_for(self, uri: str) -> tuple[str, str, str]:
        """(registry base URL, repository, reference) of an image URI; refused as Lambda refuses it."""
        host, repo, ref = split_uri(uri)
        registry = self.registry
        own = urlparse(registry).netloc if registry else None
        if ECR_HOST.match(host):
            if registry is None:
                raise invalid(
                    f"Source image {uri} cannot be pulled: the emulator has no registry for ECR's image URIs "
                    f"(start it with --registry URL or set {REGISTRY_ENV})"
                )
            return registry, repo, ref
        if registry and host == own:
            return registry, repo, ref
        raise invalid(f"Source image {uri} is not valid. Provide a valid source image.")

    def resolve(self, uri: str) -> tuple[ResolvedImage, RegistryClient]:
        """Find the image (manifest and config) as CreateFunction does: quick, and with AWS's errors."""
        if not isinstance(uri, str) or not uri:
            raise invalid("ImageUri is required for an image package (Code.ImageUri).")
        base, repo, ref = self.registry_for(uri)
        client = RegistryClient(base)
        try:
            media, digest, raw = client.manifest(repo, ref)
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 400):
                raise not_exist(uri) from None
            raise ApiError(
                502, "ServiceException", f"the registry {base} answered {exc.code} for {uri}: {exc.reason}"
            ) from None
        except OSError as exc:
            raise ApiError(
                502, "ServiceException", f"the image registry {base} cannot be reached for {uri}: {exc}"
            ) from None
        except ImageFailed as exc:
            raise invalid(f"Source image {uri} is not valid: {exc}") from None
        if media not in MANIFEST_TYPES:
            raise not_supported(uri)
        manifest = json.loads(raw)
        config_digest = (manifest.get("config") or {}).get("digest", "")
        try:
            config = json.loads(client.blob_bytes(repo, config_digest))
        except (urllib.error.HTTPError, ImageFailed, ValueError):
            raise not_exist(uri) from None
        if any(layer.get("mediaType") not in LAYER_TYPES for layer in manifest.get("layers") or []):
            raise not_supported(uri)
        return ResolvedImage(uri, base, repo, digest, manifest, config, config_digest), client

    def unpack(self, image: ResolvedImage, client: RegistryClient) -> UnpackedImage:
        """Pull and unpack (or find in the cache); :class:`ImageFailed` where Lambda would refuse the image."""
        try:
            return self.cache.unpack(image, client)
        except ImageFailed:
            raise
        except (OSError, tarfile.TarError, EOFError, ValueError) as exc:
            raise ImageFailed(f"the image's layers could not be read: {exc}") from None


def architecture_of(config: dict) -> str:
    """The image's architecture in Lambda's words (``x86_64`` or ``arm64``)."""
    arch = config.get("architecture", "")
    return {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "arm64", "aarch64": "arm64"}.get(arch, arch)


def is_executable(rootfs: Path, path: str) -> bool:
    try:
        target = _inside(rootfs, path.lstrip("/"), follow_last=True)
        return target.is_file() and bool(target.stat().st_mode & stat.S_IXOTH)
    except (OSError, ImageFailed):
        return False


# -- image functions: records and their life cycle ------------------------------------------------------------------
@dataclass
class ImageFunction:
    """What an image function runs, and where it stands: attached to a FunctionRecord as ``fn.image``."""

    uri: str
    overrides: dict = field(default_factory=dict)  # the function's ImageConfig (EntryPoint, Command, WorkingDirectory)
    resolved: ResolvedImage | None = None
    unpacked: UnpackedImage | None = None
    state: str = "Pending"
    state_reason: str = "The function is being created."
    state_reason_code: str = "Creating"
    last_update_status: str = "Successful"
    last_update_reason: str = ""
    last_update_reason_code: str = ""

    @property
    def run(self) -> ImageConfig | None:
        return self.resolved.run_config(self.overrides) if self.resolved is not None else None

    @property
    def rootfs(self) -> Path | None:
        return self.unpacked.rootfs if self.unpacked is not None else None

    def configuration(self, base: dict[str, Any]) -> dict[str, Any]:
        """GetFunctionConfiguration's answer for an image function, from the zip function's ``base``."""
        out = {k: v for k, v in base.items() if k not in ("Runtime", "Handler", "Layers")}
        out["PackageType"] = "Image"
        out["CodeSize"] = 0
        if self.resolved is not None:
            out["CodeSha256"] = self.resolved.digest.split(":", 1)[-1]
        out["State"] = self.state
        if self.state != "Active":
            out["StateReason"], out["StateReasonCode"] = self.state_reason, self.state_reason_code
        out["LastUpdateStatus"] = self.last_update_status
        if self.last_update_status != "Successful":
            out["LastUpdateStatusReason"] = self.last_update_reason
            out["LastUpdateStatusReasonCode"] = self.last_update_reason_code
        if self.overrides:
            out["ImageConfigResponse"] = {"ImageConfig": dict(self.overrides)}
        return out

    def code(self) -> dict[str, str]:
        """GetFunction's ``Code`` for an image function."""
        out = {"RepositoryType": "ECR", "ImageUri": self.uri}
        if self.resolved is not None:
            out["ResolvedImageUri"] = self.resolved.resolved_uri
        return out

    def check_invokable(self) -> None:
        if self.state != "Active":
            raise ApiError(
                409,
                "ResourceConflictException",
                f"The operation cannot be performed at this time. The function is currently in the following state: "
                f"{self.state}",
            )


def check_image_request(body: dict, code: dict) -> tuple[str, dict]:
    """(ImageUri, ImageConfig) of a CreateFunction body for an image, refused as Lambda refuses a bad mix."""
    if body.get("PackageType", "Zip") != "Image":
        raise invalid("Please don't provide ImageUri when the intended function PackageType is Zip.")
    if any(body.get(key) for key in ("Handler", "Runtime", "Layers")):
        raise invalid(
            "Please don't provide Handler or Runtime or Layer when the intended function PackageType is Image."
        )
    if not code.get("ImageUri"):
        raise invalid("Please provide ImageUri when the intended function PackageType is Image.")
    return code["ImageUri"], check_image_config(body.get("ImageConfig") or {})


def check_image_config(config: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("EntryPoint", "Command"):
        if key in config:
            value = config[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise invalid(f"ImageConfig.{key} must be a list of strings")
            out[key] = list(value)
    if config.get("WorkingDirectory"):
        out["WorkingDirectory"] = str(config["WorkingDirectory"])
    return out


class ImageFunctions:
    """The emulator's image functions: resolve at create/update (AWS's errors, at once), pull and unpack in the
    background (``Pending`` -> ``Active`` or ``Failed``; an update ``InProgress`` -> ``Successful`` or ``Failed``,
    the old image serving meanwhile)."""

    def __init__(self, source: ImageSource | None = None):
        self.source = source or ImageSource()
        self._threads: list[threading.Thread] = []
        self._pending: dict[int, ImageFunction] = {}  # id(function record) -> the update being pulled

    def describe(self) -> dict[str, Any]:
        return self.source.describe()

    def create(self, uri: str, overrides: dict) -> tuple[ImageFunction, RegistryClient]:
        image = ImageFunction(uri, overrides)
        resolved, client = self.source.resolve(uri)
        image.resolved = resolved
        return image, client

    def start_pull(self, fn, image: ImageFunction, client: RegistryClient, *, on_ready) -> None:
        """Pull and unpack in the background; ``on_ready(fn)`` runs when an update's new image serves."""

        resolved = image.resolved
        assert resolved is not None  # resolved at create or update, before the pull starts

        def work() -> None:
            unpacked: UnpackedImage | None
            failure: ImageFailed | None
            try:
                unpacked = self.source.unpack(resolved, client)
                failure = None
            except ImageFailed as exc:
                unpacked, failure = None, exc
            except Exception as exc:
                log.exception("emulator: pulling %s failed", image.uri)
                unpacked, failure = None, ImageFailed(f"the image could not be pulled: {exc}")
            with fn.lock:
                current: ImageFunction = fn.image
                if current is image:  # a create: Pending -> Active | Failed
                    if failure is None:
                        image.unpacked, image.state, image.state_reason, image.state_reason_code = (
                            unpacked,
                            "Active",
                            "",
                            "",
                        )
                    else:
                        image.state, image.state_reason, image.state_reason_code = (
                            "Failed",
                            str(failure),
                            failure.reason_code,
                        )
                    return
                if self._pending.get(id(fn)) is not image:
                    return  # a later update replaced this one
                del self._pending[id(fn)]
                if failure is None:
                    image.overrides = current.overrides  # an ImageConfig change made while it was pulled
                    image.unpacked, image.state, image.state_reason, image.state_reason_code = (
                        unpacked,
                        "Active",
                        "",
                        "",
                    )
                    image.last_update_status = "Successful"
                    fn.image = image
                    fn.code_sha256 = resolved.digest.split(":", 1)[-1]
                    fn.touch()
                else:
                    current.last_update_status = "Failed"
                    current.last_update_reason = str(failure)
                    current.last_update_reason_code = failure.reason_code
            if failure is None:
                on_ready(fn)

        t = threading.Thread(target=work, name=f"image-pull-{fn.name}", daemon=True)
        t.start()
        self._threads = [*(old for old in self._threads if old.is_alive()), t]

    def update(self, fn, uri: str, *, on_ready) -> None:
        """UpdateFunctionCode with an ImageUri: resolve now, pull in the background, swap when unpacked."""
        current: ImageFunction = fn.image
        resolved, client = self.source.resolve(uri)
        new = ImageFunction(uri, dict(current.overrides), resolved=resolved)
        with fn.lock:
            self._pending[id(fn)] = new
            current.last_update_status = "InProgress"
            current.last_update_reason = "The function is being updated."
            current.last_update_reason_code = "InProgress"
        self.start_pull(fn, new, client, on_ready=on_ready)

    def wait(self, timeout_s: float = 600.0) -> None:
        """Wait for the background pulls (tests; the emulator's stop)."""
        deadline = time.monotonic() + timeout_s
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))


# -- the emulator's API, for image functions --------------------------------------------------------------------------
def create_image_function(emu, body: dict, **record_fields: Any):
    """CreateFunction with ``PackageType: Image``: check the request, resolve the image (AWS's errors at once),
    record the function (``Pending``) and pull it in the background. Returns the record."""
    from perfdesk.lambda_pkg.emulator.store import ApiError as _ApiError
    from perfdesk.lambda_pkg.emulator.store import FunctionRecord, function_name_from

    name = body.get("FunctionName") or ""
    function_name_from(name)
    if not body.get("Role"):
        raise invalid("Role is required")
    uri, overrides = check_image_request(body, body.get("Code") or {})
    emu._check_config(body)
    with emu._lock:
        if name in emu.functions:
            raise _ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
    image, client = emu.images.create(uri, overrides)
    fn = FunctionRecord(
        name=name,
        region=emu.region,
        runtime="",
        role=body["Role"],
        handler="",
        task_dir=Path("/var/task"),
        code_sha256=image.resolved.digest.split(":", 1)[-1],
        code_size=0,
        description=body.get("Description", ""),
        timeout=int(body.get("Timeout", 3)),
        memory=int(body.get("MemorySize", 128)),
        variables=dict((body.get("Environment") or {}).get("Variables") or {}),
        architectures=body.get("Architectures") or ["x86_64"],
        tags=dict(body.get("Tags") or {}),
        **record_fields,
    )
    fn.image = image
    with emu._lock:
        if name in emu.functions:
            raise _ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
        emu.functions[name] = fn
    emu.images.start_pull(fn, image, client, on_ready=lambda f: emu._retire(f.name))
    return fn


def update_image_code(emu, fn, body: dict) -> None:
    """UpdateFunctionCode of an image function: only an ImageUri (AWS refuses a zip for it, and an image for a zip
    function)."""
    if fn.image is None:
        raise invalid("Please don't provide ImageUri when the current function package type is Zip.")
    if not body.get("ImageUri"):
        raise invalid("Please provide ImageUri when the current function package type is Image.")
    if fn.image.last_update_status == "InProgress":
        raise ApiError(
            409,
            "ResourceConflictException",
            f"The operation cannot be performed at this time. An update is in progress for resource: {fn.arn}",
        )
    if body.get("Architectures"):
        fn.architectures = body["Architectures"]
    emu.images.update(fn, body["ImageUri"], on_ready=lambda f: emu._retire(f.name))


def check_image_configuration(fn, body: dict) -> None:
    """UpdateFunctionConfiguration of an image function: no Handler, Runtime or Layers; ImageConfig may change."""
    if any(body.get(key) for key in ("Handler", "Runtime", "Layers")):
        raise invalid(
            "Please don't provide Handler or Runtime or Layer when the intended function PackageType is Image."
        )
    if "ImageConfig" in body:
        fn.image.overrides = check_image_config(body.get("ImageConfig") or {})


# -- what an environment of an image function runs ---------------------------------------------------------------------
#: Variables the image's own Env decides (AWS's base images set them), not the managed runtime's defaults.
IMAGE_OWNED = frozenset(
    {"PATH", "LD_LIBRARY_PATH", "LANG", "TZ", "PYTHONPATH", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"}
)


@dataclass(frozen=True)
class ImageRun:
    """An image function's environment: its unpacked root, the command (ENTRYPOINT + CMD, the first resolved on the
    image's PATH), the working directory and the image's Env."""

    rootfs: Path
    argv: tuple[str, ...]
    working_dir: str
    env: tuple[tuple[str, str], ...]
    handler: str = ""  # what Lambda puts in ``_HANDLER`` for an image: the CMD's first word


def image_run(fn) -> ImageRun | None:
    """The run description of an Active image function (None for a zip function)."""
    image: ImageFunction | None = getattr(fn, "image", None)
    if image is None or image.unpacked is None or image.run is None:
        return None
    run = image.run
    argv = list(run.argv)
    env = run.env_dict
    if argv and "/" not in argv[0]:  # exec form with a bare name: the image's PATH, looked up inside its root
        for folder in (env.get("PATH") or "/usr/local/bin:/usr/bin:/bin").split(":"):
            candidate = f"{folder.rstrip('/')}/{argv[0]}"
            if folder and is_executable(image.unpacked.rootfs, candidate):
                argv[0] = candidate
                break
    handler = run.command[0] if run.command else ""
    return ImageRun(image.unpacked.rootfs, tuple(argv), run.working_dir, run.env, handler)


def image_process_env(run: ImageRun, lambda_env: dict[str, str], variables: dict[str, str]) -> dict[str, str]:
    """An image function's process environment: the image's Env, then what Lambda sets (but not the variables the
    image decides), then the function's own variables."""
    env = dict(run.env)
    for key, value in lambda_env.items():
        if key not in IMAGE_OWNED or key not in env:
            env[key] = value
    env["AWS_EXECUTION_ENV"] = "AWS_Lambda_Image"
    env["_HANDLER"] = run.handler
    env["PWD"] = run.working_dir
    env.update(variables)
    return env


def invalid_entrypoint(run: ImageRun) -> str | None:
    """Why the image's command cannot start (Lambda's ``Runtime.InvalidEntrypoint``), or None."""
    if not run.argv:
        return "the image has no ENTRYPOINT or CMD (and the function's ImageConfig sets none)"
    if not is_executable(run.rootfs, run.argv[0]):
        return f"fork/exec {run.argv[0]}: no such file or directory"
    return None
