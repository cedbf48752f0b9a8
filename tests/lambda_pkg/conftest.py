"""Fixtures: the emulator on loopback, boto3 clients pointed at it, the tiny handlers' zip, the moto server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HANDLERS = Path(__file__).parent / "handlers"
ROLE = "arn:aws:iam::123456789012:role/perfdesk-test"


def lambda_client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60, max_pool_connections=32),
    )


@pytest.fixture(scope="session")
def tiny_zip() -> bytes:
    from perfdesk.lambda_pkg.builders import in_memory_zip

    return in_memory_zip({"tiny.py": (HANDLERS / "tiny.py").read_bytes()})


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    from perfdesk.lambda_pkg.emulator import Emulator

    emu = Emulator(work_dir=tmp_path_factory.mktemp("emu"), idle_s=60, account_concurrency=4).start()
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def client(emulator):
    return lambda_client(emulator.url)


def create_tiny(
    client,
    name: str,
    zip_bytes: bytes,
    handler: str = "tiny.echo",
    memory: int = 256,
    timeout: int = 10,
    env: dict | None = None,
) -> dict:
    return client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": zip_bytes},
        MemorySize=memory,
        Timeout=timeout,
        Environment={"Variables": env or {}},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="module")
def moto_server():
    """The moto server on a free loopback port (a real HTTP peer for IAM and Lambda control-plane calls)."""
    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(
        cmd + ["-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
