"""A local S3 for a local-lambda target: the moto server as a child process on a loopback port.

Lambda takes at most 50 MB of code or layer inline; bigger packages go through S3. A local-lambda target with no S3
endpoint of AWS's own configuration (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``) starts one of these, uploads
there, and points its in-process emulator at it, so the package takes the same S3 path it takes on AWS and nothing
is sent to AWS. The server dies with perfdesk (``PR_SET_PDEATHSIG``) and is stopped at teardown.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from perfdesk.controllers.target import TargetError


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalS3:
    """``moto.server`` on 127.0.0.1 (the ``emulator`` extra installs it); :attr:`url` once :meth:`start` returns."""

    def __init__(self, target: str, log_path: str | os.PathLike[str]):
        self.target = target
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> LocalS3:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TargetError(
                    self.target,
                    "start a local S3",
                    f"moto.server exited ({self.proc.returncode})",
                    f"see {self.log_path}",
                )
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TargetError(self.target, "start a local S3", f"no answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
