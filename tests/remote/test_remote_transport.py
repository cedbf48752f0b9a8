"""The Transport contract, run against this machine (LocalTransport) and a real sshd on loopback (SshTransport)."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time

import pytest

from perfdesk.controllers.target import TargetError
from perfdesk.remote.transport import LocalTransport


@pytest.fixture(params=["local", "ssh"])
def transport(request, sshd):
    t = LocalTransport() if request.param == "local" else sshd.transport()
    yield t
    t.close()


def test_run_streams_lines_and_returns_output(transport):
    lines = []
    res = transport.run("echo one; echo two >&2; printf three", on_line=lines.append)
    assert res.rc == 0
    assert res.stdout == "one\nthree"
    assert res.stderr == "two\n"
    assert sorted(lines) == ["one", "three", "two"]


def test_failed_command_names_host_step_and_stderr(transport):
    with pytest.raises(TargetError) as err:
        transport.run("echo boom >&2; exit 7", step="install packages")
    text = str(err.value)
    assert transport.host in text and "install packages" in text and "exit status 7" in text and "boom" in text
    assert transport.run("exit 7", check=False).rc == 7


def test_command_timeout(transport):
    t0 = time.monotonic()
    with pytest.raises(TargetError, match="timed out after 0.5 s"):
        transport.run("sleep 5", timeout=0.5, step="slow step")
    assert time.monotonic() - t0 < 4


def test_put_and_put_bytes_set_modes(transport, tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("payload")
    dst_dir = tmp_path / "dst"
    dst_dir.mkdir()
    transport.put(src, str(dst_dir / "copy.txt"), mode=0o640)
    transport.put_bytes(b"secret", str(dst_dir / "token"), mode=0o600)
    assert (dst_dir / "copy.txt").read_text() == "payload"
    assert stat.S_IMODE(os.stat(dst_dir / "copy.txt").st_mode) == 0o640
    assert (dst_dir / "token").read_bytes() == b"secret"
    assert stat.S_IMODE(os.stat(dst_dir / "token").st_mode) == 0o600
    assert transport.read_text(str(dst_dir / "copy.txt")) == "payload"
    assert transport.read_text(str(dst_dir / "missing")) is None


def test_start_detached_outlives_the_connection_and_stops(transport, tmp_path):
    log, pid = str(tmp_path / "p.log"), str(tmp_path / "p.pid")
    # a parent with a child: stop() must end the whole process group
    started = transport.start_detached(
        "sh -c 'sleep 300 & echo ready $GREETING; wait'", log, pid, env={"GREETING": "hello"}, cwd=str(tmp_path)
    )
    assert int(open(pid).read()) == started
    transport.close()  # the process must not depend on the session that started it

    def log_text() -> str:
        return open(log).read() if os.path.exists(log) else ""

    deadline = time.monotonic() + 30  # a loaded machine may take a while to start the shell
    while "ready hello" not in log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "ready hello" in log_text()
    assert transport.is_running(pid) if isinstance(transport, LocalTransport) else _reopen_running(transport, pid)
    assert os.getpgid(started) == started
    t = transport if isinstance(transport, LocalTransport) else transport.connect()
    assert t.stop(pid, timeout=5) is True
    assert not os.path.exists(pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(started, 0)
    assert t.stop(pid) is False  # stopping twice is harmless


def _reopen_running(transport, pid) -> bool:
    transport.connect()
    return transport.is_running(pid)


def test_follow_streams_a_log_until_the_process_ends(transport, tmp_path):
    log, pid = str(tmp_path / "f.log"), str(tmp_path / "f.pid")
    transport.start_detached("sh -c 'for i in 1 2 3; do echo line$i; sleep 0.2; done; sleep 300'", log, pid)
    lines: list[str] = []
    stop = threading.Event()
    thread = transport.follow(log, lines.append, stop, pid_path=pid)
    deadline = time.monotonic() + 10
    while len(lines) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lines[:3] == ["line1", "line2", "line3"]
    transport.stop(pid, timeout=5)
    thread.join(timeout=10)  # tail --pid ends with the process: nothing left on the host
    assert not thread.is_alive()
    stop.set()


def test_stop_event_ends_a_running_command(transport):
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    res = transport.run("sleep 30", stop_event=stop, check=False)
    assert res.rc == -1


def test_known_host_key_connects(sshd):
    with sshd.transport() as t:
        assert t.run("echo ok").stdout.strip() == "ok"


def test_changed_host_key_is_refused_with_what_to_do(sshd, tmp_path):
    other = tmp_path / "other"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")
    kind, b64 = open(f"{other}.pub").read().split()[:2]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {kind} {b64}\n")
    with pytest.raises(TargetError) as err:
        sshd.transport(known_hosts=str(kh)).connect()
    msg = str(err.value)
    assert f"host key for [127.0.0.1]:{sshd.port} changed" in msg
    assert "remove the old key from" in msg and "ssh-keygen -R" in msg
    assert err.value.step == "verify host key"


def test_unknown_host_key_refused_unless_trust_on_first_use(sshd, tmp_path):
    kh = tmp_path / "ssh" / "known_hosts"
    with pytest.raises(TargetError, match="is not known .*SHA256:.*trust_on_first_use"):
        sshd.transport(known_hosts=str(kh)).connect()
    notes: list[str] = []
    with sshd.transport(known_hosts=str(kh), trust_on_first_use=True, on_log=notes.append) as t:
        assert t.run("echo ok").stdout.strip() == "ok"
    assert any("trusting the ssh-ed25519 host key" in n and "SHA256:" in n for n in notes)
    assert kh.read_text().split() == sshd.host_key_line.split()
    # the key is now known: verified without trust-on-first-use
    with sshd.transport(known_hosts=str(kh)) as t:
        assert t.run("echo again").stdout.strip() == "again"


def test_wrong_user_key_is_refused(sshd, tmp_path):
    key = tmp_path / "stranger"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {key}")
    with pytest.raises(TargetError, match="authenticate: login as .* refused"):
        sshd.transport(identity_file=str(key)).connect()


def test_connection_refused_says_what_to_check(sshd):
    from tests.remote.conftest import free_port

    with pytest.raises(TargetError, match="cannot connect to 127.0.0.1 port .*check that the host is up"):
        sshd.transport(port=free_port()).connect()


def test_reconnects_after_the_connection_drops(sshd):
    notes: list[str] = []
    with sshd.transport(on_log=notes.append) as t:
        assert t.run("echo first").stdout.strip() == "first"
        t.drop_connection_for_test()
        assert t.run("echo second").stdout.strip() == "second"
        assert t.reconnects == 1
        t.drop_connection_for_test()
        t.put_bytes(b"x", "/tmp/perfdesk-reconnect-test", 0o600)  # SFTP reconnects too
        assert t.reconnects == 2
    assert any("reconnecting" in n for n in notes)


def test_ssh_config_alias_and_proxy_jump(sshd, tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text(
        f"Host box\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n  IdentityFile {sshd.identity_file}\n"
        f"Host behind\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.identity_file}\n  ProxyJump box\n"
    )
    from perfdesk.remote.ssh import SshTransport

    common = dict(known_hosts=sshd.known_hosts, allow_agent=False, ssh_config=str(cfg), connect_timeout_s=10)
    with SshTransport("box", **common) as t:
        assert t.host == f"127.0.0.1:{sshd.port}"
        assert t.run("echo alias").stdout.strip() == "alias"
    with SshTransport("behind", **common) as t:
        assert t.endpoint.proxy_jump == "box"
        assert t.run("echo jumped").stdout.strip() == "jumped"
        assert t._jump is not None


def test_local_forward_carries_connections(sshd):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]

    def echo():
        for _ in range(3):
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(100).upper())

    threading.Thread(target=echo, daemon=True).start()
    with sshd.transport() as t:
        fwd = t.forward(port)
        try:
            for word in (b"alpha", b"beta", b"gamma"):
                with socket.create_connection(("127.0.0.1", fwd.port), timeout=10) as c:
                    c.sendall(word)
                    assert c.recv(100) == word.upper()
        finally:
            fwd.close()
    server.close()
