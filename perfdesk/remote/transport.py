"""A host to run commands on: the small interface provisioning and the SSH target are written against.

Two implementations share it: :class:`LocalTransport` (this machine, through ``sh -c``) and
:class:`perfdesk.remote.ssh.SshTransport` (a host reached with paramiko). Each implements the primitives
(:meth:`Transport.run`, :meth:`Transport.put`, :meth:`Transport.put_bytes`, :meth:`Transport.close`); the process
operations (:meth:`Transport.start_detached`, :meth:`Transport.is_running`, :meth:`Transport.stop`,
:meth:`Transport.follow`) are written once on top of :meth:`run` as POSIX shell, so a local "host" and a remote
one behave the same and the local one can stand in for the remote in tests.

Every operation has a timeout; failures raise :class:`~perfdesk.controllers.target.TargetError` naming the host,
the step and what to do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from perfdesk.controllers.target import TargetError

LineSink = Callable[[str], None]


@dataclass
class CommandResult:
    """The outcome of :meth:`Transport.run`: exit status and the whole output (also streamed line by line)."""

    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class LineSplitter:
    """Turns chunks of bytes into complete lines for a sink (the last partial line is flushed at the end)."""

    def __init__(self, sink: LineSink | None):
        self.sink = sink
        self._buf = b""
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self._parts.append(data)
        if self.sink is None:
            return
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            self.sink(line.decode("utf-8", "replace").rstrip("\r"))

    def close(self) -> str:
        if self.sink is not None and self._buf:
            self.sink(self._buf.decode("utf-8", "replace").rstrip("\r"))
            self._buf = b""
        return b"".join(self._parts).decode("utf-8", "replace")


class Transport(ABC):
    """Run commands, upload files and manage detached processes on one host.

    Paths are host paths; relative ones are relative to the login directory. Commands are POSIX shell. Nothing
    secret may be put in a command line or an environment variable given to :meth:`start_detached` (both are
    visible in ``ps`` on the host): write secrets to a 0600 file with :meth:`put_bytes`.
    """

    #: How the host is named in messages ("127.0.0.1:2222", "local").
    host: str = "host"
    #: Default timeout of one command, in seconds.
    command_timeout_s: float = 600.0

    # -- primitives --------------------------------------------------------------------------------------------
    @abstractmethod
    def run(
        self,
        cmd: str,
        *,
        timeout: float | None = None,
        check: bool = True,
        on_line: LineSink | None = None,
        stop_event: threading.Event | None = None,
        step: str = "run",
    ) -> CommandResult:
        """Run ``cmd`` with ``sh -c`` on the host, stream stdout and stderr lines to ``on_line``, wait for it.

        Raises TargetError when it runs past ``timeout`` (default :attr:`command_timeout_s`), and, with ``check``,
        when it exits non-zero (the message carries the last lines of stderr). ``stop_event`` ends it early (the
        result then has rc -1). ``step`` names the operation in error messages.
        """

    @abstractmethod
    def put(self, local: str | os.PathLike, remote: str, mode: int = 0o644) -> None:
        """Upload a file to ``remote`` (parent directories must exist) and set its mode."""

    @abstractmethod
    def put_bytes(self, data: bytes, remote: str, mode: int = 0o600) -> None:
        """Write ``data`` to ``remote`` with ``mode`` set before any byte is written (safe for secrets)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; safe to call twice. Detached processes keep running."""

    # -- helpers written once on top of run() --------------------------------------------------------------------
    def error(self, step: str, message: str, hint: str = "") -> TargetError:
        return TargetError(self.host, step, message, hint)

    def read_text(self, path: str, *, timeout: float = 30.0) -> str | None:
        """The content of a small text file on the host, or None when it does not exist."""
        q = shlex.quote(path)
        res = self.run(
            f"if [ -f {q} ]; then cat {q}; else exit 3; fi", timeout=timeout, check=False, step="read " + path
        )
        if res.rc == 3:
            return None
        if res.rc != 0:
            raise self.error("read " + path, res.stderr.strip() or f"exit status {res.rc}")
        return res.stdout

    def home(self) -> str:
        """The login directory on the host (absolute)."""
        return self.run('printf "%s" "$HOME"', timeout=30, step="find the home directory").stdout.strip()

    def start_detached(
        self,
        cmd: str,
        log_path: str,
        pid_path: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> int:
        """Start ``cmd`` in a new session (it outlives this connection), output appended to ``log_path``.

        The process id, which is also its process group id, is written to ``pid_path`` and returned. ``env`` is
        for non-secret settings only (visible in ``ps``).
        """
        exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in (env or {}).items())
        # cd on its own: in "cd X && cmd &" the whole list would be the background job and $! its subshell
        chdir = f"cd {shlex.quote(cwd)} || exit 1; " if cwd else ""
        # In a non-interactive shell a background job stays in the shell's process group, so setsid(1) calls
        # setsid() in place (no fork): $! is the new session leader and its pid is the process group id.
        script = (
            f"{exports}{chdir}nohup setsid sh -c {shlex.quote('exec ' + cmd)} "
            f">>{shlex.quote(log_path)} 2>&1 </dev/null & "
            f"echo $! >{shlex.quote(pid_path)}; echo $!"
        )
        res = self.run(script, timeout=30, step="start " + _short(cmd))
        try:
            return int(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise self.error("start " + _short(cmd), f"no process id came back (output: {res.stdout!r})") from None

    def read_pid(self, pid_path: str) -> int | None:
        text = self.read_text(pid_path)
        if text is None:
            return None
        try:
            return int(text.strip())
        except ValueError:
            return None

    def is_running(self, pid_path: str) -> bool:
        """Whether the process named by ``pid_path`` is alive (False when the file is missing or stale)."""
        q = shlex.quote(pid_path)
        res = self.run(
            f'[ -f {q} ] && p=$(cat {q}) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null',
            timeout=30,
            check=False,
            step="check " + pid_path,
        )
        return res.rc == 0

    def stop(self, pid_path: str, timeout: float = 10.0, signal: str = "TERM") -> bool:
        """Stop the process group named by ``pid_path``: ``signal``, then KILL after ``timeout``; remove the pid file.

        Returns True when something was running. Safe to call when nothing is.
        """
        q = shlex.quote(pid_path)
        steps = max(1, int(timeout * 10))
        script = (
            f'[ -f {q} ] || exit 3; p=$(cat {q}); [ -n "$p" ] || {{ rm -f {q}; exit 3; }}; '
            f'kill -0 "$p" 2>/dev/null || kill -0 -"$p" 2>/dev/null || {{ rm -f {q}; exit 3; }}; '
            f'kill -{signal} -"$p" 2>/dev/null || kill -{signal} "$p" 2>/dev/null; '
            # a stopped (SIGSTOP, hung) process handles the signal only once continued
            f'kill -CONT -"$p" 2>/dev/null || kill -CONT "$p" 2>/dev/null; i=0; '
            f'while [ $i -lt {steps} ]; do kill -0 -"$p" 2>/dev/null || break; sleep 0.1; i=$((i+1)); done; '
            f'if kill -0 -"$p" 2>/dev/null; then kill -KILL -"$p" 2>/dev/null; echo killed; fi; rm -f {q}'
        )
        res = self.run(script, timeout=timeout + 30, check=False, step="stop " + pid_path)
        if res.rc not in (0, 3):
            raise self.error(
                "stop " + pid_path,
                res.stderr.strip() or f"exit status {res.rc}",
                "stop it by hand: kill -TERM -<pid from the pid file>",
            )
        return res.rc == 0

    def follow(
        self,
        log_path: str,
        on_line: LineSink,
        stop_event: threading.Event,
        pid_path: str | None = None,
    ) -> threading.Thread:
        """Stream ``log_path`` (from its start, following rotation) to ``on_line`` in a daemon thread.

        Ends when ``stop_event`` is set, or, with ``pid_path``, when that process exits (so no ``tail`` is left on
        the host). Errors end the thread quietly after one line to ``on_line``: a log stream is best effort.
        """
        q = shlex.quote(log_path)
        if pid_path:
            cmd = f"exec tail -n +1 -F --pid=$(cat {shlex.quote(pid_path)}) {q} 2>/dev/null"
        else:
            cmd = f"exec tail -n +1 -F {q} 2>/dev/null"

        def pump() -> None:
            try:
                self.run(
                    cmd, timeout=10**7, check=False, on_line=on_line, stop_event=stop_event, step="follow " + log_path
                )
            except Exception as exc:  # noqa: BLE001 - the stream is best effort; say why it ended
                on_line(f"[log stream ended: {exc}]")

        thread = threading.Thread(target=pump, name=f"follow {log_path}", daemon=True)
        thread.start()
        return thread

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _short(cmd: str, n: int = 60) -> str:
    cmd = " ".join(cmd.split())
    return cmd if len(cmd) <= n else cmd[: n - 3] + "..."


class LocalTransport(Transport):
    """This machine as a "host": commands run with ``sh -c`` through subprocess, files are copied.

    Used by tests and wherever provisioning runs locally, so the same code paths serve both.
    """

    def __init__(self, host: str = "local", command_timeout_s: float = 600.0):
        self.host = host
        self.command_timeout_s = command_timeout_s

    def run(self, cmd, *, timeout=None, check=True, on_line=None, stop_event=None, step="run") -> CommandResult:
        timeout = self.command_timeout_s if timeout is None else timeout
        proc = subprocess.Popen(
            ["sh", "-c", cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        out, err = LineSplitter(on_line), LineSplitter(on_line)
        readers = [
            threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
            threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True),
        ]
        for r in readers:
            r.start()
        deadline = time.monotonic() + timeout
        stopped = timed_out = False
        while proc.poll() is None:
            if stop_event is not None and stop_event.is_set():
                stopped = True
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.02)
        if stopped or timed_out:
            _kill_group(proc)
        proc.wait()
        for r in readers:
            r.join(timeout=5)
        result = CommandResult(-1 if stopped else proc.returncode, out.close(), err.close())
        if timed_out:
            raise self.error(step, f"timed out after {timeout:g} s", "raise command_timeout_s if the step is slow")
        if check and not stopped and result.rc != 0:
            raise self.error(step, _failure(result))
        return result

    def put(self, local, remote, mode=0o644) -> None:
        try:
            shutil.copyfile(local, remote)
            os.chmod(remote, mode)
        except OSError as exc:
            raise self.error("upload " + remote, str(exc)) from exc

    def put_bytes(self, data, remote, mode=0o600) -> None:
        try:
            fd = os.open(remote, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            os.fchmod(fd, mode)  # an existing file keeps its old mode through O_CREAT
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise self.error("write " + remote, str(exc)) from exc

    def close(self) -> None:
        pass


def _drain(stream, splitter: LineSplitter) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):
        splitter.feed(chunk)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=2)
    except (ProcessLookupError, PermissionError):
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass


def _failure(result: CommandResult, lines: int = 8) -> str:
    """A short reason for a failed command: its exit status and the last lines of stderr (or stdout)."""
    text = (result.stderr.strip() or result.stdout.strip()).splitlines()[-lines:]
    tail = " | ".join(line.strip() for line in text if line.strip())
    return f"exit status {result.rc}" + (f": {tail}" if tail else "")


def local_path(path: str | os.PathLike) -> Path:
    return Path(os.path.expanduser(str(path)))
