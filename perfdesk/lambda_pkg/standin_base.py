"""perfdesk's stand-in for AWS's Lambda Python base image, for where ``public.ecr.aws/lambda/python`` cannot be
pulled (no internet) and a function image is run by perfdesk's emulator.

It is made from the emulator's prepared runtime of that Python version (:mod:`perfdesk.lambda_pkg.emulator.runtimes`:
this machine's interpreter with only what Lambda's managed runtime ships) and laid out as AWS's base image is, so
a Dockerfile written for one builds on the other:

* ``/var/lang``: the runtime's interpreter (``bin/python3.X``, ``lib/libpython3.X.so``), its standard library and
  the runtime's libraries (boto3, botocore, the runtime interface client awslambdaric; in ``/var/runtime`` for
  python3.10), exactly as the emulator's zip functions get them;
* ``/var/runtime``: the runtime's ``bootstrap`` (and ``bootstrap.py``);
* ``/var/task`` (``LAMBDA_TASK_ROOT``, the working directory) and ``/opt`` empty; ``/tmp``;
* ``ENTRYPOINT ["/lambda-entrypoint.sh"]``, which takes the handler as its one argument (the image's ``CMD``) and
  starts the runtime; the environment AWS's images set (``PATH``, ``LD_LIBRARY_PATH``, ``LANG``, ``TZ``,
  ``LAMBDA_TASK_ROOT``, ``LAMBDA_RUNTIME_DIR``);
* the shared libraries all of that needs (the ``ldd`` closure of the interpreter, its extension modules, the
  runtime's extension modules and ``/bin/sh``; plus ``libstdc++`` and ``libgcc_s``, which manylinux wheels expect
  from the system) in ``/usr/lib64`` (``/lib64`` links to it, as on Amazon Linux), so it runs in a chroot.

It differs from AWS's in what does not matter to a function that runs in it: the C library is this machine's
(a newer glibc than Amazon Linux's, so manylinux wheels resolved for Lambda load), there is no ``pip``, no ``yum``
and no runtime interface emulator. The image is built once per Python version and kept in the builder's storage
(``localhost/perfdesk/lambda-python:<version>-<key>``); the key changes when the runtime or the layout changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Bump when the layout changes: a new key, a new base image.
FORMAT = 3
#: Left out of the standard library copy: the installation's own packages, a test suite, GUI toolkits (and the
#: ``config-3.X-*`` folder: the static library and makefiles for building C extensions).
_STDLIB_SKIP = {
    "site-packages",
    "dist-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "__pycache__",
}
_DYNLOAD_SKIP = re.compile(r"^_tkinter\.")
#: Libraries manylinux wheels may take from the system (PEP 600's list, as far as this machine has them).
_SYSTEM_LIBS = ("libstdc++.so.6", "libgcc_s.so.1", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1")
_MACHINE = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}

#: The image's environment, as AWS's Lambda Python base images set it.
IMAGE_ENV = {
    "LANG": "en_US.UTF-8",
    "TZ": ":/etc/localtime",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
}

ENTRYPOINT_SH = """\
#!/bin/sh
# perfdesk's stand-in for the entrypoint of AWS's Lambda base images: the handler is the one argument (the CMD).
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  echo "AWS_LAMBDA_RUNTIME_API is not set: this image runs on Lambda or perfdesk's emulator (it has no runtime \
interface emulator)" 1>&2
  exit 1
fi
exec /var/runtime/bootstrap
"""

BOOTSTRAP_SH = """\
#!/bin/sh
exec /var/lang/bin/python{minor} /var/runtime/bootstrap.py
"""


PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\n"
GROUP = "root:x:0:\nsbx_user1051:x:990:\n"

DOCKERFILE = """\
# perfdesk's stand-in for public.ecr.aws/lambda/python:{minor} (built from this machine's Python {version}).
FROM scratch
COPY rootfs/ /
{env}
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
"""


class BaseUnavailable(Exception):
    """The stand-in base cannot be built here; the message says why and what to do."""


def find_interpreter(minor: str) -> Path | None:
    """This machine's ``python<minor>``, where the emulator's runtimes find it (see its ``runtimes``)."""
    from perfdesk.lambda_pkg.emulator.runtimes import find_interpreter as emulator_find

    return emulator_find(minor)


def prepared_runtime(python_version: str, architecture: str = "x86_64"):
    """The emulator's prepared runtime of the Python version (prepared now, once, if it is not in its cache);
    :class:`BaseUnavailable` when this machine has no such Python, or the function's architecture is not this
    machine's."""
    from perfdesk.lambda_pkg.emulator.runtimes import RuntimeCache, RuntimeUnavailable

    machine = _MACHINE.get(platform.machine(), platform.machine())
    if architecture != machine:
        raise BaseUnavailable(
            f"the stand-in base image is built from this machine's Python, which is {machine}, not {architecture}; "
            "use AWS's base image (base_image) or an x86_64 function"
        )
    try:
        return RuntimeCache().get(f"python{python_version}")
    except RuntimeUnavailable as exc:
        raise BaseUnavailable(f"no stand-in Lambda base image for Python {python_version}: {exc}") from None


def base_key(python_version: str, architecture: str = "x86_64") -> str:
    """What the base is built from, hashed: the image's tag changes when the runtime or the layout changes."""
    runtime = prepared_runtime(python_version, architecture)
    try:
        manifest = json.loads((runtime.lang.parent / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {"python_version": runtime.python_version, "interpreter": runtime.source}
    spec = [FORMAT, manifest, ENTRYPOINT_SH, BOOTSTRAP_SH]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def base_ref(python_version: str, architecture: str = "x86_64") -> str:
    return f"localhost/perfdesk/lambda-python:{python_version}-{base_key(python_version, architecture)}"


# -- the root file system ----------------------------------------------------------------------------------------
def _elf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _ldd(path: Path, env: dict[str, str]) -> dict[str, str]:
    """{soname or interpreter path: resolved file} of one ELF file's dependencies (``ldd``)."""
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env, timeout=60)
    deps: dict[str, str] = {}
    for line in out.stdout.splitlines():
        line = line.strip()
        m = re.match(r"^(\S+) => (/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            deps[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            deps[Path(m.group(1)).name] = m.group(1)
        elif "not found" in line:
            raise BaseUnavailable(f"{path} needs {line.split()[0]}, which this machine does not have")
    return deps


def _system_lib(name: str) -> str | None:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=60)
    machine = "x86-64" if platform.machine() == "x86_64" else "AArch64"
    for line in out.stdout.splitlines():
        m = re.match(rf"^\s*{re.escape(name)} \(([^)]*)\) => (\S+)$", line)
        if m and (machine in m.group(1) or platform.machine() != "x86_64"):
            return m.group(2)
    return None


def _copy_libraries(root: Path, elves: list[Path], lang_lib: Path) -> list[str]:
    """Copy the shared-library closure of ``elves`` (plus the manylinux system libraries) into ``usr/lib64``."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_LIBRARY_PATH": str(lang_lib)}
    libdir = root / "usr" / "lib64"
    libdir.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, str] = {}
    for name in _SYSTEM_LIBS:
        found = _system_lib(name)
        if found:
            wanted[name] = found
    todo = [str(p) for p in elves] + list(wanted.values())
    seen: set[str] = set()
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        for name, resolved in _ldd(Path(item), env).items():
            if resolved.startswith(str(lang_lib)):
                continue  # libpython: already in /var/lang/lib
            if name not in wanted:
                wanted[name] = resolved
                todo.append(resolved)
    for name, resolved in sorted(wanted.items()):
        shutil.copyfile(os.path.realpath(resolved), libdir / name)
        (libdir / name).chmod(0o755)
    return sorted(wanted)


def _compile(python: Path, folder: Path, shown_as: str) -> None:
    """Byte-compile with unchecked hashes (forced: the runtime's own are checked against file times, which the
    builder clamps): valid in the image, and the same bytes on every build; a read-only root takes none later."""
    subprocess.run(
        [
            str(python),
            "-I",
            "-m",
            "compileall",
            "-q",
            "-f",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-d",
            shown_as,
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _copy_tree(src: Path, dest: Path, top_skip: set[str]) -> None:
    shutil.copytree(
        src,
        dest,
        symlinks=True,
        ignore=lambda d, names: [
            n
            for n in names
            if n == "__pycache__"
            or (Path(d) == src and n in top_skip)
            or n.startswith("config-3.")
            or (d.endswith("lib-dynload") and _DYNLOAD_SKIP.match(n))
        ],
    )
    for path in (dest, *dest.rglob("*")):  # the runtime's cache keeps its files read-only: writable for the build
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)


def build_rootfs(python_version: str, dest: str | Path, architecture: str = "x86_64") -> Path:
    """Lay out the stand-in base's root file system in ``dest/rootfs`` and its Dockerfile in ``dest``."""
    runtime = prepared_runtime(python_version, architecture)
    minor = python_version
    dest = Path(dest)
    root = dest / "rootfs"
    shutil.rmtree(root, ignore_errors=True)
    lang = root / "var" / "lang"
    lang.parent.mkdir(parents=True)
    _copy_tree(runtime.lang, lang, {"include", "share"})
    stdlib = lang / "lib" / f"python{minor}"
    for name in _STDLIB_SKIP - {"site-packages"}:
        shutil.rmtree(stdlib / name, ignore_errors=True)
    rt = root / "var" / "runtime"
    _copy_tree(runtime.runtime_dir, rt, set())
    (rt / "bootstrap").write_text(BOOTSTRAP_SH.format(minor=minor))
    (rt / "bootstrap").chmod(0o755)
    (root / "lambda-entrypoint.sh").write_text(ENTRYPOINT_SH)
    (root / "lambda-entrypoint.sh").chmod(0o755)
    for folder in ("var/task", "opt", "proc", "dev", "sys", "usr/bin", "etc", "home/sbx_user1051"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    for link, target in (("bin", "usr/bin"), ("lib64", "usr/lib64"), ("lib", "usr/lib64")):
        (root / link).symlink_to(target)
    sh = shutil.which("sh") or "/bin/sh"
    shutil.copyfile(os.path.realpath(sh), root / "usr" / "bin" / "sh")
    (root / "usr" / "bin" / "sh").chmod(0o755)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "etc" / "ld.so.conf").write_text("/var/lang/lib\n/usr/lib64\n")
    (root / "etc" / "os-release").write_text(
        'NAME="perfdesk Lambda stand-in"\nID=perfdesk-lambda\n'
        f'PRETTY_NAME="perfdesk stand-in for the Lambda python{minor} base image"\n'
    )
    zone = Path("/usr/share/zoneinfo/UTC")
    if zone.is_file():
        shutil.copyfile(zone, root / "etc" / "localtime")
    exe = lang / "bin" / f"python{minor}"
    lang_lib = lang / "lib"
    elves = [exe, root / "usr" / "bin" / "sh"]
    elves += [p for p in lang_lib.glob("*.so*") if _elf(p)]
    elves += [p for p in sorted(lang.rglob("*.so")) if _elf(p)]
    elves += [p for p in sorted(rt.rglob("*.so")) if _elf(p)]
    _copy_libraries(root, elves, lang_lib)
    if shutil.which("ldconfig"):  # a loader cache, so the libraries are found without LD_LIBRARY_PATH too
        subprocess.run(["ldconfig", "-r", str(root)], capture_output=True, timeout=60, check=False)
    python = Path(runtime.host_path(runtime.executable))
    _compile(python, stdlib, f"/var/lang/lib/python{minor}")
    _compile(python, rt, "/var/runtime")
    env = "\n".join(f"ENV {k}={v}" for k, v in IMAGE_ENV.items())
    (dest / "Dockerfile").write_text(DOCKERFILE.format(minor=minor, version=runtime.python_version, env=env))
    return dest


def prepare(python_version: str, architecture: str = "x86_64", work_dir: str | Path | None = None) -> Path:
    """A build context of the stand-in base (the root file system and its Dockerfile), in a new folder."""
    dest = Path(tempfile.mkdtemp(prefix=f"perfdesk-base-{python_version}-", dir=work_dir))
    return build_rootfs(python_version, dest, architecture)
