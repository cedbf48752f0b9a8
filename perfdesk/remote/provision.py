"""Provisioning a host for the agent, over any :class:`~perfdesk.remote.transport.Transport`, idempotently.

Layout on the host (``remote_dir``, default ``~/.perfdesk``)::

    venv/         the virtual environment (absent with venv = "system" or an interpreter path)
    app/          the shipped code: perfdesk/__init__.py and perfdesk/shipped/**
    cache/        weights uploaded from this machine (kept with keep_cache)
    run/          token (0600), agent log and pid files: removed when the agent stops
    stamp.json    what is in place: a key per part (dependencies, code, weights), so a second provision checks and
                  skips what is ready (seconds, not minutes)

Each step reports ``done`` or ``skipped`` with its duration in :class:`ProvisionReport`, and every failure names the
host, the step and what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shlex
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from perfdesk import shipped
from perfdesk.controllers.target import TargetError
from perfdesk.remote.transport import Transport
from perfdesk.shipped.options import EngineConfig

STAMP_VERSION = 1

#: The agent's own dependencies, whatever the runtime.
AGENT_PACKAGES = ["flask", "gunicorn", "psutil", "pillow", "numpy"]
#: Per runtime: (CPU packages, CUDA packages, pip index for the CPU build or None).
RUNTIME_PACKAGES: dict[str, tuple[list[str], list[str], str | None]] = {
    "torch": (["torch", "torchvision"], ["torch", "torchvision"], "https://download.pytorch.org/whl/cpu"),
    "onnx": (["onnxruntime"], ["onnxruntime-gpu"], None),
    "tensorflow": (["tensorflow-cpu"], ["tensorflow[and-cuda]"], None),
}
#: Import names of packages, to check an existing interpreter (venv = "system").
IMPORT_NAMES = {
    "pillow": "PIL",
    "tensorflow-cpu": "tensorflow",
    "tensorflow[and-cuda]": "tensorflow",
    "onnxruntime-gpu": "onnxruntime",
}


@dataclass
class ProvisionOptions:
    """How to provision: the parts of the ``ssh``/``ec2`` target spec that concern the host."""

    remote_dir: str = "~/.perfdesk"
    python: str = "python3"  # the interpreter that creates the venv (or runs the agent with venv = "system")
    venv: str = "venv"  # "venv": create remote_dir/venv; "system": use `python` as is; or an interpreter path
    system_site_packages: bool = False
    packages: list[str] | None = None  # None: derived from the runtime and the host's GPU
    index_url: str | None = None
    extra_index_url: str | None = None
    pip_args: list[str] = field(default_factory=list)
    keep_cache: bool = True
    install_timeout_s: float = 1800.0


@dataclass
class HostLayout:
    """Absolute paths of everything perfdesk puts on the host."""

    root: str

    @property
    def venv(self) -> str:
        return f"{self.root}/venv"

    @property
    def app(self) -> str:
        return f"{self.root}/app"

    @property
    def cache(self) -> str:
        return f"{self.root}/cache"

    @property
    def run(self) -> str:
        return f"{self.root}/run"

    @property
    def stamp(self) -> str:
        return f"{self.root}/stamp.json"

    @property
    def token(self) -> str:
        return f"{self.run}/token"

    @property
    def log(self) -> str:
        return f"{self.run}/agent.log"

    @property
    def pid(self) -> str:
        """The launcher's pid file: the process group perfdesk stops (the agent's own pid file is agent.pid)."""
        return f"{self.run}/launcher.pid"

    @property
    def agent_pid(self) -> str:
        return f"{self.run}/agent.pid"


@dataclass
class HostFacts:
    home: str
    system: str
    python_version: str
    cuda: bool
    gpu: str = ""


@dataclass
class ProvisionReport:
    """What a provision did: the interpreter to run the agent with, where things are, each step's outcome."""

    python: str
    layout: HostLayout
    facts: HostFacts
    weights: str
    steps: dict[str, str] = field(default_factory=dict)  # step -> "done 12.3 s" | "skipped 0.1 s"
    seconds: float = 0.0

    @property
    def skipped_all(self) -> bool:
        return all(v.startswith("skipped") for v in self.steps.values())


# -- the shipped code --------------------------------------------------------------------------------------------
def source_root() -> Path:
    """The directory that holds this installation's ``perfdesk`` package."""
    import perfdesk

    return Path(perfdesk.__file__).resolve().parent.parent


def shipped_files(root: Path) -> list[str]:
    """Exactly the files the agent needs on a host, relative to ``root`` (sorted)."""
    try:
        return shipped.shipped_files(root)
    except FileNotFoundError as exc:
        raise TargetError("provision", "package the agent", str(exc), "reinstall perfdesk") from None


def code_bundle(root: Path | None = None) -> tuple[bytes, str]:
    """A reproducible tar.gz of the shipped files and its key (sha256 of names and contents)."""
    root = root or source_root()
    digest = hashlib.sha256()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in shipped_files(root):
            data = (root / rel).read_bytes()
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), digest.hexdigest()


def requirements(runtime: str, cuda: bool, opts: ProvisionOptions) -> tuple[list[str], list[str]]:
    """(packages, pip index arguments) for a runtime on a host with or without CUDA."""
    if opts.packages is not None:
        packages = list(opts.packages)
        index: list[str] = []
    else:
        cpu, gpu, cpu_index = RUNTIME_PACKAGES[runtime]
        packages = (gpu if cuda else cpu) + AGENT_PACKAGES
        index = ["--extra-index-url", cpu_index] if (cpu_index and not cuda) else []
    if opts.index_url:
        index += ["--index-url", opts.index_url]
    if opts.extra_index_url:
        index += ["--extra-index-url", opts.extra_index_url]
    return packages, index + list(opts.pip_args)


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Provisioner:
    """Brings a host to the state the agent needs, skipping every part already in place.

    A re-provision of a ready host costs one probe round trip (facts, stamp and the checks in one shell script)
    and nothing else. ``on_line`` receives progress and command output lines (the target makes them log events).
    """

    def __init__(
        self,
        transport: Transport,
        opts: ProvisionOptions,
        on_line: Callable[[str], None] | None = None,
        code_root: Path | None = None,
    ):
        self.t = transport
        self.opts = opts
        self.on_line = on_line or (lambda line: None)
        self.code_root = code_root
        self._layout: HostLayout | None = None
        self._facts: HostFacts | None = None

    # -- the probe ---------------------------------------------------------------------------------------------
    def _root_expr(self) -> str:
        """remote_dir as a shell word: ``~`` and relative paths are under $HOME on the host."""
        root = self.opts.remote_dir.rstrip("/") or "/"
        if root == "~":
            return '"$HOME"'
        if root.startswith("~/"):
            return '"$HOME"/' + shlex.quote(root[2:])
        if not root.startswith("/"):
            return '"$HOME"/' + shlex.quote(root)
        return shlex.quote(root)

    def probe(self, extra_files: Sequence[str] = ()) -> dict:
        """One round trip: host facts, the layout created, the stamp, and which parts exist.

        ``extra_files`` are paths relative to remote_dir whose existence is reported (weights in the cache).
        """
        q = shlex.quote
        py = q(self.opts.python)
        interp = {"venv": '"$R"/venv/bin/python', "system": py}.get(self.opts.venv, q(self.opts.venv))
        checks = "".join(f'[ -f "$R"/{q(f)} ] && echo "file {f}"; ' for f in extra_files)
        script = (
            f"R={self._root_expr()}; "
            'echo "home $HOME"; echo "root $R"; echo "system $(uname -sm)"; '
            f'echo "python $({py} -c "import sys; print(\'%d.%d.%d\' % sys.version_info[:3])" 2>/dev/null '
            '|| echo none)"; '
            "if command -v nvidia-smi >/dev/null 2>&1; then "
            'echo "gpu $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"; fi; '
            'mkdir -p "$R"/cache "$R"/run && chmod 700 "$R"/run || exit 4; '
            f'I={interp}; ( [ -x "$I" ] || command -v "$I" >/dev/null 2>&1 ) && echo "interpreter ok"; '
            '[ -f "$R"/app/perfdesk/shipped/agent.py ] && echo "code ok"; '
            f"{checks}"
            'echo "stamp"; cat "$R"/stamp.json 2>/dev/null; true'
        )
        res = self.t.run(script, timeout=60, check=False, step="inspect the host")
        if res.rc == 4:
            raise self.t.error(
                "create " + self.opts.remote_dir,
                res.stderr.strip() or "mkdir failed",
                "set remote_dir to a directory the user may write",
            )
        if res.rc != 0:
            raise self.t.error("inspect the host", res.stderr.strip() or f"exit status {res.rc}")
        head, _, stamp_text = res.stdout.partition("\nstamp\n")
        info: dict = {"files": set(), "gpu": ""}
        for line in head.splitlines():
            key, _, value = line.partition(" ")
            if key == "file":
                info["files"].add(value)
            else:
                info[key] = value.strip()
        try:
            stamp = json.loads(stamp_text) if stamp_text.strip() else {}
        except json.JSONDecodeError:
            stamp = {}
        info["stamp"] = stamp if stamp.get("version") == STAMP_VERSION else {}
        if info.get("python", "none") == "none":
            raise self.t.error(
                "inspect the host",
                f"no Python interpreter {self.opts.python!r} on the host",
                "install python3 and python3-venv, or set python = '/path/to/python3'",
            )
        self._facts = HostFacts(
            home=info["home"],
            system=info.get("system", ""),
            python_version=info["python"],
            cuda=bool(info["gpu"]),
            gpu=info["gpu"],
        )
        self._layout = HostLayout(info["root"].rstrip("/") or "/")
        return info

    def facts(self) -> HostFacts:
        """Home directory, OS, Python version and whether an NVIDIA GPU is present."""
        if self._facts is None:
            self.probe()
        assert self._facts is not None  # probe() sets it or raises
        return self._facts

    @property
    def layout(self) -> HostLayout:
        if self._layout is None:
            self.probe()
        assert self._layout is not None  # probe() sets it or raises
        return self._layout

    def write_stamp(self, stamp: dict) -> None:
        stamp = dict(stamp, version=STAMP_VERSION, updated=time.time())
        self.t.put_bytes(json.dumps(stamp, indent=1, sort_keys=True).encode(), self.layout.stamp, 0o644)

    # -- the whole provision -----------------------------------------------------------------------------------
    def provision(self, runtime: str, weights: str = "random") -> ProvisionReport:
        """Python environment, dependencies, code and weights in place; returns what to run the agent with."""
        t0 = time.monotonic()
        local_weights = self._local_weights(weights)
        weights_rel = f"cache/weights-{local_weights[1][:16]}-{local_weights[0].name}" if local_weights else None
        info = self.probe([weights_rel] if weights_rel else [])
        facts, L, stamp = self.facts(), self.layout, info["stamp"]  # set by the probe above
        self.on_line(
            f"provisioning {self.t.host}: {facts.system}, Python {facts.python_version}, "
            f"{'GPU ' + facts.gpu if facts.cuda else 'no GPU'}, in {L.root}"
        )
        before = json.dumps(stamp, sort_keys=True)
        steps: dict[str, str] = {}

        def step(name: str, fn) -> None:
            s0 = time.monotonic()
            did = fn()
            steps[name] = f"{'done' if did else 'skipped'} {time.monotonic() - s0:.1f} s"
            self.on_line(f"{name}: {steps[name]}")

        step("environment", lambda: self._environment(stamp, runtime, "interpreter" in info))
        step("code", lambda: self._code(stamp, "code" in info))
        weights_path = weights
        if local_weights:
            weights_path = f"{L.root}/{weights_rel}"
            step("weights", lambda: self._weights(stamp, local_weights, weights_path, weights_rel in info["files"]))
        if json.dumps(stamp, sort_keys=True) != before:
            self.write_stamp(stamp)
        report = ProvisionReport(
            python=self._python(),
            layout=L,
            facts=facts,
            weights=weights_path,
            steps=steps,
            seconds=time.monotonic() - t0,
        )
        self.on_line(f"provisioned in {report.seconds:.1f} s")
        return report

    def _python(self) -> str:
        v = self.opts.venv
        if v == "venv":
            return f"{self.layout.venv}/bin/python"
        if v == "system":
            return self.opts.python
        return v  # an interpreter path

    def _environment(self, stamp: dict, runtime: str, interpreter_exists: bool) -> bool:
        facts = self.facts()
        packages, index = requirements(runtime, facts.cuda, self.opts)
        python = self._python()
        key = _key(self.opts.venv, python, facts.python_version, self.opts.system_site_packages, packages, index)
        q = shlex.quote
        if stamp.get("environment") == key and interpreter_exists:
            return False  # the stamp is trusted only while the interpreter is still there
        if self.opts.venv == "venv":
            venv = self.layout.venv
            flags = " --system-site-packages" if self.opts.system_site_packages else ""
            self.t.run(
                f"[ -x {q(venv)}/bin/python ] || {q(self.opts.python)} -m venv{flags} {q(venv)}",
                timeout=300,
                step="create the virtual environment",
            )
            pip = f"{q(python)} -m pip install --disable-pip-version-check --no-input"
            args = " ".join(q(a) for a in [*index, *packages])
            self.on_line(f"installing {', '.join(packages)}")
            try:
                self.t.run(
                    f"{pip} {args}",
                    timeout=self.opts.install_timeout_s,
                    on_line=self.on_line,
                    step="install " + " ".join(packages),
                )
            except TargetError as exc:
                raise TargetError(
                    exc.target,
                    exc.step,
                    str(exc).split(": ", 2)[-1],
                    "check the host reaches the package index (install.index_url) and has disk space",
                ) from None
        else:
            modules = sorted({IMPORT_NAMES.get(p, re.split(r"[\[<>=!~ ]", p)[0]) for p in packages})
            # find_spec, not import: proves the packages are there without paying for importing torch
            check = (
                f"import importlib.util, sys; missing = [m for m in {modules!r} if importlib.util.find_spec(m) "
                "is None]; print(*missing, file=sys.stderr); sys.exit(1 if missing else 0)"
            )
            res = self.t.run(
                f"{q(python)} -c {q(check)}", timeout=300, check=False, step="check the interpreter's packages"
            )
            if res.rc in (126, 127):
                raise self.t.error(
                    "check the interpreter",
                    f"no interpreter {python} on the host",
                    'set venv to an existing interpreter, or to "venv" to let perfdesk make one',
                )
            if res.rc != 0:
                raise self.t.error(
                    "check the interpreter's packages",
                    f"{python} lacks {res.stderr.strip()[-300:] or ', '.join(modules)}",
                    'install them into that interpreter, or set venv = "venv" to let perfdesk do it',
                )
        stamp["environment"] = key
        stamp["packages"] = packages
        return True

    def _code(self, stamp: dict, code_exists: bool) -> bool:
        bundle, key = code_bundle(self.code_root)
        if stamp.get("code") == key and code_exists:
            return False
        L = self.layout
        q = shlex.quote
        tarball = f"{L.root}/app.tar.gz"
        self.t.put_bytes(bundle, tarball, 0o644)
        self.t.run(
            f"rm -rf {q(L.app)}.new && mkdir -p {q(L.app)}.new && tar -xzf {q(tarball)} -C {q(L.app)}.new && "
            f"rm -rf {q(L.app)} && mv {q(L.app)}.new {q(L.app)} && rm -f {q(tarball)}",
            timeout=120,
            step="unpack the agent code",
        )
        stamp["code"] = key
        return True

    def _local_weights(self, weights: str) -> tuple[Path, str] | None:
        """(path, sha256) of a local weights file to upload (absolute: the profile loader resolved it); None for
        'random' and URLs (the agent fetches those)."""
        if weights == "random" or "://" in weights:
            return None
        path = Path(weights)
        if not path.is_file():
            raise TargetError(self.t.host, "upload weights", f"{path} does not exist", "fix workload.weights")
        return path, file_sha256(path)

    def _weights(self, stamp: dict, local: tuple[Path, str], remote: str, exists: bool) -> bool:
        """Upload a local weights file into the cache, once per content."""
        path, digest = local
        placed = stamp.setdefault("weights", {})
        if placed.get(remote) == digest and exists:
            return False
        self.on_line(f"uploading {path.name} ({path.stat().st_size / 1e6:.1f} MB)")
        self.t.put(path, remote + ".part", 0o644)
        self.t.run(f"mv {shlex.quote(remote)}.part {shlex.quote(remote)}", timeout=30, step="place weights")
        placed[remote] = digest
        return True

    # -- cleaning up -------------------------------------------------------------------------------------------
    def clean(self, keep_cache: bool | None = None) -> list[str]:
        """Remove what perfdesk put on the host: the run files always; everything unless the cache is kept.

        Call after the agent is stopped. Returns the paths removed.
        """
        keep = self.opts.keep_cache if keep_cache is None else keep_cache
        L = self.layout
        paths = [L.run, f"{L.app}.new", f"{L.root}/app.tar.gz"] if keep else [L.root]
        self.t.run("rm -rf " + " ".join(shlex.quote(p) for p in paths), timeout=120, step="clean up " + L.root)
        return paths


# -- the agent process ---------------------------------------------------------------------------------------------
def free_port_command(python: str) -> str:
    code = "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
    return f"{shlex.quote(python)} -c {shlex.quote(code)}"


def agent_command(
    python: str,
    layout: HostLayout,
    *,
    host: str,
    port: int,
    engine: EngineConfig,
    workers: int = 1,
    wsgi_threads: int = 4,
) -> str:
    """The agent's command line on the host. It carries no secret: the token is read from a 0600 file."""
    args = [
        python,
        "-m",
        "perfdesk.shipped.agent",
        "--host",
        host,
        "--port",
        str(port),
        "--token-file",
        layout.token,
        "--pid-file",
        layout.agent_pid,
        *engine.to_argv(),
        "--workers",
        str(workers),
        "--wsgi-threads",
        str(wsgi_threads),
    ]
    # no --log-file: stdout and stderr already go to layout.log (start_detached), one writer, one stream
    return " ".join(shlex.quote(a) for a in args)


def start_agent(transport: Transport, layout: HostLayout, command: str, token: str) -> int:
    """Write the token (0600) and start the agent detached with the shipped code on its path; returns its pid.

    An agent left by an earlier, interrupted session is stopped first.
    """
    transport.stop(layout.pid, timeout=10)
    transport.run(
        f"mkdir -p {shlex.quote(layout.run)} && chmod 700 {shlex.quote(layout.run)} && : > {shlex.quote(layout.log)}",
        timeout=30,
        step="prepare " + layout.run,
    )
    transport.put_bytes(token.encode(), layout.token, 0o600)
    return transport.start_detached(
        command, layout.log, layout.pid, env={"PYTHONPATH": layout.app, "PYTHONUNBUFFERED": "1"}, cwd=layout.app
    )


def stop_agent(transport: Transport, layout: HostLayout, timeout: float = 15.0) -> bool:
    """Stop the agent's process group and remove the token; True when one was running."""
    # INT is gunicorn's quick shutdown (TERM would wait out graceful_timeout for idle keep-alive connections)
    was = transport.stop(layout.pid, timeout=timeout, signal="INT")
    transport.run(
        f"rm -f {shlex.quote(layout.token)} {shlex.quote(layout.agent_pid)}",
        timeout=30,
        check=False,
        step="remove the token",
    )
    return was
