"""Lambda's Python runtimes for the emulator: the interpreter of each version with only what the managed runtime
ships (the standard library, boto3/botocore and their dependencies, the runtime interface client), prepared once
per version and cached.

A prepared runtime is two folders, mounted read-only in every execution environment of that runtime:

* ``lang/`` as ``/var/lang``: a copy of the interpreter (``bin/python3.X``, ``libpython3.X.so`` where the build is
  shared) and its standard library, without the ``site-packages`` (nor ``test``, ``idlelib``, ``tkinter``) of the
  installation it was copied from. From Python 3.11 on, the runtime's libraries are in its
  ``lib/python3.X/site-packages``, as in Lambda's runtimes;
* ``runtime/`` as ``/var/runtime``: the bootstrap (:mod:`bootstrap`), and for Python 3.10 the runtime's libraries
  (Lambda's 3.10 runtime keeps them there).

The libraries are installed with pip from the package registry as wheels for that Python version (compiled by
that interpreter, since the function cannot write ``__pycache__`` into a read-only folder).

Where the interpreters come from, in order: ``PERFDESK_LAMBDA_PYTHON_3_12=/path/to/python3.12`` (one variable per
version), then pyenv's ``$PYENV_ROOT/versions/3.12.*`` (default ``~/.pyenv``), then ``python3.12`` on ``PATH``.
A version found nowhere is refused at CreateFunction with a message saying how to provide it. The cache is
``$PERFDESK_LAMBDA_RUNTIMES`` or ``$XDG_CACHE_HOME/perfdesk/lambda-runtimes`` (default ``~/.cache/perfdesk/...``);
delete a version's folder to prepare it again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Lambda's Python runtimes the emulator runs (identifier -> Python version).
PYTHON_RUNTIMES = {"python3.10": "3.10", "python3.11": "3.11", "python3.12": "3.12", "python3.13": "3.13"}
#: What Lambda's Python runtimes ship besides the standard library (pip resolves their dependencies).
RUNTIME_PACKAGES = ("boto3", "awslambdaric")
#: Left out of the copied standard library: a test suite, GUI toolkits Lambda has no libraries for, and the
#: installation's own third-party packages.
_STDLIB_SKIP = {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo"}
_FORMAT = 1  # bump when the layout of a prepared runtime changes
_PLATFORMS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"],
    "aarch64": ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"],
}


class RuntimeUnavailable(Exception):
    """The runtime is not one the emulator runs, or its Python version is not on this machine."""


def env_var(version: str) -> str:
    return "PERFDESK_LAMBDA_PYTHON_" + version.replace(".", "_")


def how_to_provide(version: str) -> str:
    return (
        f"install it with `pyenv install {version}`, or point {env_var(version)} at a python{version} "
        f"interpreter (e.g. {env_var(version)}=/usr/bin/python{version})"
    )


def default_cache_dir() -> Path:
    if os.environ.get("PERFDESK_LAMBDA_RUNTIMES"):
        return Path(os.environ["PERFDESK_LAMBDA_RUNTIMES"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "perfdesk" / "lambda-runtimes"


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", name))


def find_interpreter(version: str) -> Path | None:
    """A ``python<version>`` on this machine: the variable, then pyenv, then PATH (None: nowhere)."""
    configured = os.environ.get(env_var(version))
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_file() and os.access(path, os.X_OK) else None
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if pyenv.is_dir():
        found = [
            d / "bin" / f"python{version}"
            for d in pyenv.iterdir()
            if re.fullmatch(re.escape(version) + r"\.\d+", d.name) and (d / "bin" / f"python{version}").is_file()
        ]
        if found:
            return max(found, key=lambda p: _version_key(p.parent.parent.name))
    which = shutil.which(f"python{version}")
    if which and ".pyenv/shims" not in which:  # a pyenv shim is not an interpreter
        return Path(which)
    return None


@dataclass(frozen=True)
class PreparedRuntime:
    """A runtime ready to mount: ``lang`` is ``/var/lang``, ``runtime`` is ``/var/runtime``."""

    runtime: str
    python_version: str  # the full version, e.g. 3.12.1
    lang: Path
    runtime_dir: Path
    source: str

    @property
    def minor(self) -> str:
        return PYTHON_RUNTIMES[self.runtime]

    @property
    def executable(self) -> str:
        """The interpreter's path inside the environment."""
        return f"/var/lang/bin/python{self.minor}"

    def host_path(self, sandbox_path: str) -> str:
        """Where a /var/lang or /var/runtime path of the environment is on this machine."""
        for prefix, folder in (("/var/lang", self.lang), ("/var/runtime", self.runtime_dir)):
            if sandbox_path == prefix or sandbox_path.startswith(prefix + "/"):
                return str(folder) + sandbox_path[len(prefix) :]
        return sandbox_path


def _describe_interpreter(python: Path) -> dict:
    code = (
        "import json, sys, sysconfig; c = sysconfig.get_config_var; print(json.dumps({"
        "'version': sys.version.split()[0], 'executable': sys.executable, "
        "'stdlib': sysconfig.get_paths()['stdlib'], 'libdir': c('LIBDIR'), 'shared': bool(c('Py_ENABLE_SHARED')), "
        "'soname': c('INSTSONAME') or c('LDLIBRARY')}))"
    )
    out = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeUnavailable(f"{python} does not run: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout)


def _refresh_bootstrap(path: Path) -> None:
    """Keep a prepared runtime's bootstrap the emulator's current one (it changes more often than the runtime)."""
    current = Path(__file__).with_name("bootstrap.py").read_bytes()
    try:
        if path.read_bytes() == current:
            return
        tmp = path.with_name(f".bootstrap.{os.getpid()}")
        tmp.write_bytes(current)
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not refresh %s: %s", path, exc)


class RuntimeCache:
    """Prepares runtimes on first use (a minute at most, once per version) and finds them after. Thread- and
    process-safe: a file lock per version, and a folder that appears only when complete."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_cache_dir()
        self._prepared: dict[str, PreparedRuntime] = {}

    def check(self, runtime: str) -> None:
        """Refuse a runtime the emulator cannot run, saying why and how to provide it (fast: no preparation)."""
        if runtime not in PYTHON_RUNTIMES:
            raise RuntimeUnavailable(
                f"the emulator runs the Python runtimes {', '.join(PYTHON_RUNTIMES)}, not {runtime!r}"
            )
        if runtime in self._prepared or (self.root / runtime / "manifest.json").exists():
            return
        version = PYTHON_RUNTIMES[runtime]
        if find_interpreter(version) is None:
            where = env_var(version) if os.environ.get(env_var(version)) else "pyenv or PATH"
            raise RuntimeUnavailable(
                f"no Python {version} for runtime {runtime} on this machine (looked in {where}); "
                + how_to_provide(version)
            )

    def describe(self, runtime: str) -> str:
        """One line for the manifest: prepared (which Python), preparable (from where), or how to provide it."""
        prepared = self._prepared.get(runtime) or self._load(runtime, self.root / runtime)
        if prepared is not None:
            return f"Python {prepared.python_version} from {prepared.source} (prepared in {self.root / runtime})"
        version = PYTHON_RUNTIMES[runtime]
        found = find_interpreter(version)
        if found is not None:
            return f"prepared on first use from {found}"
        return "unavailable: " + how_to_provide(version)

    def get(self, runtime: str) -> PreparedRuntime:
        """The prepared runtime, preparing it now if it is not in the cache."""
        if runtime in self._prepared:
            return self._prepared[runtime]
        self.check(runtime)
        folder = self.root / runtime
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{runtime}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            prepared = self._load(runtime, folder)
            if prepared is None:
                prepared = self._prepare(runtime, folder)
        self._prepared[runtime] = prepared
        return prepared

    def _load(self, runtime: str, folder: Path) -> PreparedRuntime | None:
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        if manifest.get("format") != _FORMAT:
            return None
        configured = os.environ.get(env_var(PYTHON_RUNTIMES[runtime]))
        if configured and str(Path(configured).expanduser()) != manifest.get("interpreter"):
            return None  # the user points at another interpreter now
        _refresh_bootstrap(folder / "runtime" / "bootstrap.py")
        return PreparedRuntime(
            runtime, manifest["python_version"], folder / "lang", folder / "runtime", manifest["interpreter"]
        )

    def _prepare(self, runtime: str, folder: Path) -> PreparedRuntime:
        version = PYTHON_RUNTIMES[runtime]
        python = find_interpreter(version)
        if python is None:
            raise RuntimeUnavailable(f"no Python {version} for runtime {runtime}; " + how_to_provide(version))
        t0 = time.monotonic()
        log.info("preparing the %s runtime from %s (once; cached in %s)", runtime, python, folder)
        info = _describe_interpreter(python)
        build = folder.with_name(f".{runtime}.build-{os.getpid()}")
        shutil.rmtree(build, ignore_errors=True)
        try:
            lang, rt = build / "lang", build / "runtime"
            (lang / "bin").mkdir(parents=True)
            rt.mkdir(parents=True)
            exe = lang / "bin" / f"python{version}"
            shutil.copy2(os.path.realpath(info["executable"]), exe)
            for alias in ("python3", "python"):
                (lang / "bin" / alias).symlink_to(exe.name)
            stdlib = lang / "lib" / f"python{version}"
            shutil.copytree(
                info["stdlib"],
                stdlib,
                symlinks=True,
                ignore=lambda d, names: [n for n in names if n in _STDLIB_SKIP and d == info["stdlib"]],
            )
            if info["shared"] and info["soname"]:
                lib = Path(info["libdir"]) / info["soname"]
                if lib.exists():
                    shutil.copy2(os.path.realpath(lib), lang / "lib" / info["soname"])
            site_packages = stdlib / "site-packages"
            site_packages.mkdir()
            target = site_packages if version != "3.10" else rt
            self._install_packages(python, version, target)
            shutil.copy2(Path(__file__).with_name("bootstrap.py"), rt / "bootstrap.py")
            packages = {
                m.group(1): m.group(2)
                for d in target.glob("*.dist-info")
                if (m := re.match(r"(.+?)-(\d[^-]*)\.dist-info$", d.name))
            }
            (build / "manifest.json").write_text(
                json.dumps(
                    {
                        "format": _FORMAT,
                        "runtime": runtime,
                        "python_version": info["version"],
                        "interpreter": str(python),
                        "packages": packages,
                        "prepared": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                    indent=1,
                )
            )
            for path in (build, *build.rglob("*")):  # readable by the sandbox user, writable by no one
                if not path.is_symlink():
                    mode = path.stat().st_mode
                    path.chmod((mode | 0o444 | (0o111 if path.is_dir() or mode & 0o100 else 0)) & ~0o222 | 0o200)
            if folder.exists():
                shutil.rmtree(folder)
            os.rename(build, folder)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        log.info("%s runtime (Python %s) prepared in %.1f s", runtime, info["version"], time.monotonic() - t0)
        return PreparedRuntime(runtime, info["version"], folder / "lang", folder / "runtime", str(python))

    @staticmethod
    def _install_packages(python: Path, version: str, target: Path) -> None:
        machine = platform.machine()
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(target),
            "--only-binary=:all:",
            "--python-version",
            version,
            "--implementation",
            "cp",
            "--abi",
            "cp" + version.replace(".", ""),
        ]
        for plat in _PLATFORMS.get(machine, []):
            cmd += ["--platform", plat]
        proc = subprocess.run(cmd + list(RUNTIME_PACKAGES), capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
            raise RuntimeUnavailable(f"could not install {' '.join(RUNTIME_PACKAGES)} for Python {version}: {tail}")
        shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts of the host's pip, not the runtime's
        comp = subprocess.run(
            [str(python), "-I", "-m", "compileall", "-q", "-j", "0", str(target)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if comp.returncode != 0:
            log.warning("compiling the runtime's libraries for Python %s: %s", version, comp.stdout[-300:])
