"""A host reached over SSH with paramiko: the :class:`~perfdesk.remote.transport.Transport` for ``ssh`` and ``ec2``.

What it does on top of paramiko, and why:

- resolves ``~/.ssh/config`` host aliases (HostName, User, Port, IdentityFile, ProxyJump) so a profile can say
  ``host = "gpu-box"`` as the user would on the command line;
- verifies the host key against a known_hosts file and refuses unknown or changed keys; trust-on-first-use only
  when asked, and then the fingerprint is logged and the key appended to the file (the next run verifies it);
- reconnects once when the connection dropped (the operation is retried after reconnecting), because a long
  session over a flaky link should not die at the first lost packet;
- puts a timeout on every step and turns paramiko's exceptions into a TargetError naming the host, the step and
  what to do;
- forwards a local port to a port on the host (``direct-tcpip`` channels), so the agent can listen on the host's
  loopback only and still be reached.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from perfdesk.controllers.target import TargetError
from perfdesk.remote.transport import CommandResult, LineSplitter, Transport, _failure, local_path

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger(__name__)

_DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_DEFAULT_CONFIG = "~/.ssh/config"


def fingerprint(key) -> str:
    """OpenSSH-style SHA256 fingerprint of a paramiko key (``SHA256:...``, as ``ssh-keygen -lf`` prints)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """How known_hosts names a host: ``host`` on port 22, ``[host]:port`` elsewhere."""
    return host if port == 22 else f"[{host}]:{port}"


@dataclass
class SshEndpoint:
    """Where and as whom to connect, after ``~/.ssh/config`` was applied (explicit settings win)."""

    alias: str
    hostname: str
    port: int = 22
    user: str | None = None
    identity_files: list[str] = field(default_factory=list)
    proxy_jump: str | None = None

    @property
    def label(self) -> str:
        return f"{self.hostname}:{self.port}"


def resolve_endpoint(
    host: str,
    *,
    port: int | None = None,
    user: str | None = None,
    identity_file: str | None = None,
    ssh_config: str | None = _DEFAULT_CONFIG,
) -> SshEndpoint:
    """Apply ``~/.ssh/config`` (when present) to ``host``; explicit arguments override what it says."""
    import paramiko

    # "user@host:port" as in ProxyJump
    if "@" in host and user is None:
        user, host = host.split("@", 1)
    if host.count(":") == 1 and port is None:
        host, port_text = host.split(":")
        port = int(port_text)
    conf: dict = {}
    if ssh_config:
        path = local_path(ssh_config)
        if path.is_file():
            conf = paramiko.SSHConfig.from_path(str(path)).lookup(host)
    identities = [identity_file] if identity_file else list(conf.get("identityfile", []))
    return SshEndpoint(
        alias=host,
        hostname=conf.get("hostname", host),
        port=int(port or conf.get("port", 22)),
        user=user or conf.get("user"),
        identity_files=[str(local_path(p)) for p in identities],
        proxy_jump=None if conf.get("proxyjump", "none").lower() == "none" else conf.get("proxyjump"),
    )


class _UnknownHostKey(Exception):
    def __init__(self, name: str, key):
        self.name, self.key = name, key
        super().__init__(name)


class _HostKeyPolicy:
    """paramiko's missing-host-key hook: refuse (default), or trust on first use and remember the key."""

    def __init__(self, transport: SshTransport):
        self.t = transport

    def missing_host_key(self, client, hostname, key) -> None:
        if not self.t.trust_on_first_use:
            raise _UnknownHostKey(hostname, key)
        fp = fingerprint(key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        path = local_path(self.t.known_hosts)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path, "a", encoding="ascii") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        self.t._note(
            f"trusting the {key.get_name()} host key of {hostname} on first use: {fp} (saved to {path}; "
            "compare it with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the host)"
        )


class SshTransport(Transport):
    """Commands, files and port forwards on a host over one paramiko connection (reconnected when it drops).

    Thread-safe: many threads may run commands and open forwarded connections at once (each is its own channel).
    """

    def __init__(
        self,
        host: str,
        *,
        port: int | None = None,
        user: str | None = None,
        identity_file: str | None = None,
        known_hosts: str = _DEFAULT_KNOWN_HOSTS,
        trust_on_first_use: bool = False,
        allow_agent: bool = True,
        ssh_config: str | None = _DEFAULT_CONFIG,
        connect_timeout_s: float = 15.0,
        command_timeout_s: float = 600.0,
        on_log: Callable[[str], None] | None = None,
    ):
        self.endpoint = resolve_endpoint(host, port=port, user=user, identity_file=identity_file, ssh_config=ssh_config)
        self.host = self.endpoint.label
        self.known_hosts = known_hosts
        self.trust_on_first_use = trust_on_first_use
        self.allow_agent = allow_agent
        self.ssh_config = ssh_config
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.on_log = on_log
        self.reconnects = 0
        self._client: paramiko.SSHClient | None = None
        self._sftp = None
        self._jump: SshTransport | None = None
        self._lock = threading.RLock()
        self._closed = False

    # -- connection --------------------------------------------------------------------------------------------
    def _note(self, message: str) -> None:
        log.info("%s", message)
        if self.on_log is not None:
            self.on_log(message)

    def connect(self) -> SshTransport:
        """Connect now (otherwise the first operation does); raises TargetError with what to do."""
        with self._lock:
            self._closed = False
            if self._client is None or not self._active():
                self._open()
        return self

    def _active(self) -> bool:
        t = self._client.get_transport() if self._client is not None else None
        return bool(t is not None and t.is_active())

    def _open(self) -> None:
        import paramiko

        self._drop()
        ep = self.endpoint
        sock = None
        if ep.proxy_jump:
            sock = self._jump_channel(ep)
        client = paramiko.SSHClient()
        kh = local_path(self.known_hosts)
        if kh.is_file():
            try:
                client.load_host_keys(str(kh))
            except (OSError, paramiko.SSHException) as exc:
                raise self.error("read known hosts", f"{kh}: {exc}", "fix or remove the broken line") from exc
        client.set_missing_host_key_policy(_HostKeyPolicy(self))
        name = known_hosts_name(ep.hostname, ep.port)
        try:
            client.connect(
                ep.hostname,
                ep.port,
                username=ep.user,
                key_filename=ep.identity_files or None,
                timeout=self.connect_timeout_s,
                banner_timeout=self.connect_timeout_s,
                auth_timeout=self.connect_timeout_s,
                channel_timeout=self.connect_timeout_s,
                allow_agent=self.allow_agent,
                look_for_keys=not ep.identity_files,
                sock=sock,
            )
        except _UnknownHostKey as exc:
            client.close()
            raise self.error(
                "verify host key",
                f"host key for {name} is not known ({exc.key.get_name()} {fingerprint(exc.key)})",
                "check the fingerprint, then add it with "
                f"`ssh-keyscan -p {ep.port} {ep.hostname} >> {self.known_hosts}`"
                " or set trust_on_first_use = true in the profile",
            ) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise self.error(
                "verify host key",
                f"host key for {name} changed (now {fingerprint(exc.key)}, known {fingerprint(exc.expected_key)})",
                f"remove the old key from {self.known_hosts} if the change is expected: "
                f"ssh-keygen -R '{name}' -f {self.known_hosts}",
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            who = ep.user or "the current user"
            raise self.error(
                "authenticate",
                f"login as {who} refused ({exc})",
                "check user, identity_file (or the keys in ssh-agent) and the host's authorized_keys",
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise self.error(
                "connect",
                f"cannot connect to {ep.hostname} port {ep.port}: {exc or exc.__class__.__name__}",
                "check that the host is up, the port is right and a firewall or security group admits you",
            ) from None
        self._client = client
        client.get_transport().set_keepalive(15)

    def _jump_channel(self, ep: SshEndpoint):
        """A direct-tcpip channel through the ProxyJump host(s) to ``ep`` (the last hop of a chain is nearest)."""
        hops = [h.strip() for h in (ep.proxy_jump or "").split(",") if h.strip()]
        jump = SshTransport(
            hops[-1],
            known_hosts=self.known_hosts,
            trust_on_first_use=self.trust_on_first_use,
            allow_agent=self.allow_agent,
            ssh_config=self.ssh_config,
            connect_timeout_s=self.connect_timeout_s,
            on_log=self.on_log,
        )
        if len(hops) > 1 and not jump.endpoint.proxy_jump:
            jump.endpoint.proxy_jump = ",".join(hops[:-1])
        jump.connect()
        self._jump = jump
        assert jump._client is not None  # connect() opened it
        try:
            return jump._client.get_transport().open_channel(
                "direct-tcpip", (ep.hostname, ep.port), ("127.0.0.1", 0), timeout=self.connect_timeout_s
            )
        except Exception as exc:  # noqa: BLE001 - paramiko raises several kinds here
            raise self.error(
                "connect through " + jump.host,
                f"jump host cannot reach {ep.label}: {exc}",
                "check ProxyJump and that the jump host can reach the target",
            ) from None

    def _drop(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
        if self._client is not None:
            self._client.close()
        if self._jump is not None:
            self._jump.close()
        self._client = self._sftp = self._jump = None

    def _reconnect(self, step: str, reason: BaseException) -> None:
        self._note(f"{self.host}: connection lost during {step} ({reason or reason.__class__.__name__}); reconnecting")
        with self._lock:
            self._open()
            self.reconnects += 1

    def _transport(self):
        with self._lock:
            if self._closed:
                raise self.error("connect", "the connection was closed")
            if self._client is None or not self._active():
                if self._client is not None:
                    self._note(f"{self.host}: connection found closed; reconnecting")
                    self.reconnects += 1
                self._open()
            return self._client.get_transport()

    def _retry(self, step: str, fn):
        """Run ``fn()``; when the connection dropped under it, reconnect and run it once more."""
        import paramiko

        try:
            return fn()
        except TargetError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._reconnect(step, exc)
        try:
            return fn()
        except TargetError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self.error(
                step,
                f"failed after reconnecting: {exc or exc.__class__.__name__}",
                "check the network path to the host",
            ) from None

    # -- primitives --------------------------------------------------------------------------------------------
    def run(self, cmd, *, timeout=None, check=True, on_line=None, stop_event=None, step="run") -> CommandResult:
        timeout = self.command_timeout_s if timeout is None else timeout

        def open_channel():
            chan = self._transport().open_session(timeout=self.connect_timeout_s)
            # the login shell may be anything (fish, csh): run POSIX sh explicitly
            chan.exec_command("sh -c " + shlex.quote(cmd))
            return chan

        chan = self._retry(step, open_channel)
        out, err = LineSplitter(on_line), LineSplitter(on_line)
        deadline = time.monotonic() + timeout
        stopped = False
        try:
            while True:
                got = False
                if chan.recv_ready():
                    out.feed(chan.recv(65536))
                    got = True
                if chan.recv_stderr_ready():
                    err.feed(chan.recv_stderr(65536))
                    got = True
                if got:
                    continue
                if chan.exit_status_ready() or chan.closed:
                    if not (chan.recv_ready() or chan.recv_stderr_ready()):
                        break
                    continue
                if stop_event is not None and stop_event.is_set():
                    stopped = True
                    break
                if time.monotonic() > deadline:
                    raise self.error(
                        step,
                        f"timed out after {timeout:g} s",
                        "raise command_timeout_s in the profile if the step is slow",
                    )
                if not chan.get_transport().is_active():
                    raise self.error(
                        step,
                        "connection lost while the command ran (it may have partly run)",
                        "run again; the step is safe to repeat",
                    )
                chan.status_event.wait(0.005)
            rc = -1 if stopped else chan.recv_exit_status()
        finally:
            chan.close()
        result = CommandResult(rc, out.close(), err.close())
        if check and not stopped and rc != 0:
            raise self.error(step, _failure(result))
        return result

    def sftp(self):
        """The connection's SFTP session (opened on first use, again after a reconnect)."""
        with self._lock:
            transport = self._transport()
            if self._sftp is None or self._sftp.get_channel().get_transport() is not transport:
                self._sftp = self._client.open_sftp()
                self._sftp.get_channel().settimeout(self.command_timeout_s)
            return self._sftp

    def put(self, local, remote, mode=0o644) -> None:
        def op():
            sftp = self.sftp()
            sftp.put(str(local_path(local)), remote)
            sftp.chmod(remote, mode)

        self._sftp_op("upload " + remote, op)

    def put_bytes(self, data, remote, mode=0o600) -> None:
        def op():
            with self.sftp().open(remote, "wb") as fh:
                fh.chmod(mode)  # before any byte lands: a token is never readable by others, even briefly
                fh.write(data)

        self._sftp_op("write " + remote, op)

    def _sftp_op(self, step: str, op) -> None:
        try:
            self._retry(step, op)
        except FileNotFoundError as exc:
            raise self.error(
                step, f"no such directory on the host ({exc})", "create the parent directory first"
            ) from None
        except PermissionError as exc:
            raise self.error(step, f"permission denied ({exc})", "check remote_dir is writable by the user") from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()

    # -- port forwarding ---------------------------------------------------------------------------------------
    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> LocalForward:
        """Listen on 127.0.0.1:<free port> here and carry each connection to ``remote_host:remote_port`` there."""
        return LocalForward(self, remote_host, remote_port)

    def open_direct(self, remote_host: str, remote_port: int, origin=("127.0.0.1", 0)):
        """A direct-tcpip channel to ``remote_host:remote_port`` as seen from the host (reconnects once)."""
        return self._retry(
            f"forward to {remote_host}:{remote_port}",
            lambda: self._transport().open_channel(
                "direct-tcpip", (remote_host, remote_port), origin, timeout=self.connect_timeout_s
            ),
        )

    def drop_connection_for_test(self) -> None:
        """Close the TCP socket under the live connection, as a network failure would (tests use it)."""
        with self._lock:
            if self._client is not None:
                sock = self._client.get_transport().sock
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


class LocalForward:
    """A local listening socket whose connections are carried over SSH to a port on the host."""

    def __init__(self, ssh: SshTransport, remote_host: str, remote_port: int):
        self.ssh, self.remote_host, self.remote_port = ssh, remote_host, remote_port
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.5)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name=f"forward :{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(conn, addr), daemon=True).start()

    def _pipe(self, conn: socket.socket, addr) -> None:
        with self._conns_lock:
            self._conns.add(conn)
        chan = None
        try:
            try:
                chan = self.ssh.open_direct(self.remote_host, self.remote_port, addr)
            except Exception as exc:  # noqa: BLE001 - the client sees a closed connection; say why in the log
                log.warning("%s: forward to %s:%s failed: %s", self.ssh.host, self.remote_host, self.remote_port, exc)
                return
            while not self._stop.is_set():
                ready, _, _ = select.select([conn, chan], [], [], 0.5)
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in ready:
                    data = chan.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
        except OSError:
            pass
        finally:
            if chan is not None:
                chan.close()
            conn.close()
            with self._conns_lock:
                self._conns.discard(conn)

    def close(self) -> None:
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        with self._conns_lock:
            for conn in list(self._conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=2)
