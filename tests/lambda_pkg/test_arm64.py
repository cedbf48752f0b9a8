"""arm64 on the emulator: native code of another machine fails the init as on Lambda; arm64 code is refused on this
x86_64 machine (no qemu-user binfmt handler) with a message that says so; Architectures checked as Lambda checks it."""

from __future__ import annotations

import base64
import glob
import json
import platform
import struct

import pytest

from perfdesk.lambda_pkg.builders import in_memory_zip
from perfdesk.lambda_pkg.emulator.arch import elf_machine
from perfdesk.lambda_pkg.report import parse_init_reports
from tests.lambda_pkg.conftest import ROLE

APP = b"def handler(event, context):\n    return {'ok': True}\n"


def _host_so() -> bytes:
    import sysconfig

    for path in sorted(glob.glob(sysconfig.get_config_var("DESTSHARED") + "/*.so")):
        with open(path, "rb") as fh:
            data = fh.read()
        if data[:4] == b"\x7fELF":
            return data
    pytest.skip("no x86_64 shared object on this machine")


def _fake_aarch64_so() -> bytes:
    """An ELF header for aarch64 (the emulator reads the machine field, as the loader does first)."""
    head = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + struct.pack("<HH", 3, 0xB7) + bytes(44)
    return head


def _create(client, name: str, files: dict, arch: str):
    return client.create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": in_memory_zip({"app.py": APP, **files})}, Architectures=[arch],
    )  # fmt: skip


def test_elf_machine(tmp_path):
    (tmp_path / "a.so").write_bytes(_fake_aarch64_so())
    (tmp_path / "t.txt").write_text("not elf")
    assert elf_machine(tmp_path / "a.so") == "arm64" and elf_machine(tmp_path / "t.txt") is None


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the refusal is of arm64 code on an x86_64 machine")
def test_arm64_with_x86_code_fails_at_init_and_arm64_is_refused_here(client):
    created = _create(client, "armx86", {"lib/libnative.so": _host_so()}, "arm64")
    assert created["Architectures"] == ["arm64"]
    answer = client.invoke(FunctionName="armx86", LogType="Tail")
    assert answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "/var/task/lib/libnative.so" in error["errorMessage"] and "built for x86_64" in error["errorMessage"]
    log = base64.b64decode(answer["LogResult"]).decode()
    assert [(r.phase, r.status) for r in parse_init_reports(log)] == [("init", "error"), ("invoke", "error")]

    _create(client, "armpure", {}, "arm64")
    with pytest.raises(client.exceptions.ServiceException, match="cannot run arm64 functions on this x86_64"):
        client.invoke(FunctionName="armpure")

    _create(client, "x86arm", {"native.so": _fake_aarch64_so()}, "x86_64")  # the other way round fails too
    error = json.loads(client.invoke(FunctionName="x86arm")["Payload"].read())
    assert "built for arm64, the function runs on x86_64" in error["errorMessage"]
    for name in ("armx86", "armpure", "x86arm"):
        client.delete_function(FunctionName=name)


def test_architectures_checked_as_lambda_checks_them(client):
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="x86_64, arm64"):
        _create(client, "sparc", {}, "sparc")
