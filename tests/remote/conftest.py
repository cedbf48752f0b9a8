"""Real peers for the remote tests: an OpenSSH sshd on 127.0.0.1 and the moto server, both started here."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0, banner: bytes | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if banner is None or s.recv(64).startswith(banner):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} within {timeout} s")


def ensure_sshd() -> None:
    """Install openssh-server when it is missing (idempotent; the suite's install command does the same)."""
    if os.path.exists(SSHD):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("OpenSSH sshd is missing and cannot be installed here (apt-get install openssh-server)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    res = subprocess.run(["apt-get", "install", "-y", "-q", "openssh-server"], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        res = subprocess.run(
            ["apt-get", "install", "-y", "-q", "openssh-server"], env=env, capture_output=True, text=True
        )
    if res.returncode != 0 or not os.path.exists(SSHD):
        pytest.skip(f"could not install openssh-server: {res.stderr[-500:]}")


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "perfdesk-test", "-f", str(path)], check=True)
    return Path(str(path) + ".pub").read_text().strip()


@dataclass
class Sshd:
    host: str
    port: int
    user: str
    identity_file: str
    known_hosts: str
    host_key_line: str
    dir: Path
    log: Path

    def transport(self, **kw):
        from perfdesk.remote.ssh import SshTransport

        opts = dict(
            port=self.port,
            user=self.user,
            identity_file=self.identity_file,
            known_hosts=self.known_hosts,
            allow_agent=False,
            ssh_config=None,
            connect_timeout_s=10,
            command_timeout_s=60,
        )
        opts.update(kw)
        return SshTransport(self.host, **opts)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> Sshd:
    """A real OpenSSH server on 127.0.0.1 with its own host key, accepting one user key (the current user)."""
    ensure_sshd()
    d = tmp_path_factory.mktemp("sshd")
    host_pub = keygen(d / "host_ed25519")
    user_pub = keygen(d / "user_ed25519")
    (d / "authorized_keys").write_text(user_pub + "\n")
    os.chmod(d / "authorized_keys", 0o600)
    port = free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_ed25519'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nAllowTcpForwarding yes\n"
        "MaxSessions 64\nMaxStartups 64\nSubsystem sftp internal-sftp\nLogLevel INFO\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    log = d / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, banner=b"SSH-")
        kind, b64 = host_pub.split()[:2]
        line = f"[127.0.0.1]:{port} {kind} {b64}"
        (d / "known_hosts").write_text(line + "\n")
        yield Sshd("127.0.0.1", port, getpass.getuser(), str(d / "user_ed25519"), str(d / "known_hosts"), line, d, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory) -> str:
    """The moto server on 127.0.0.1 (AWS control-plane calls stay on this machine)."""
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=open(log, "ab"), stderr=subprocess.STDOUT
    )
    try:
        wait_port(port, proc, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch):
    # boto3 needs credentials to sign; these reach only the moto server on loopback
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
