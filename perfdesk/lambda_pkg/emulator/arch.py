"""Architectures in the emulator: a function's ``Architectures`` checked as Lambda checks them, its native code held
to its architecture, and arm64 functions refused where this machine cannot run them.

An arm64 function whose code or layers carry native code of another machine (an x86_64 ``.so`` from a wheel built
for the wrong platform) fails its init on Lambda (the loader refuses the file); the emulator finds such files by the
ELF header's machine field and fails the init the same way, whatever machine it runs on. Running arm64 code on an
x86_64 machine needs qemu-user with binfmt_misc and an aarch64 interpreter for the runtime; the emulator has neither,
so it refuses to run an arm64 function there, saying so (the packaging is still checked: the refusal comes after it).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import struct
from pathlib import Path

from perfdesk.lambda_pkg.emulator.store import ApiError, FunctionRecord, invalid
from perfdesk.lambda_pkg.report import format_init_report, format_report

ARCHITECTURES = ("x86_64", "arm64")
#: ELF e_machine values, by the names Lambda uses.
_MACHINES = {0x3E: "x86_64", 0xB7: "arm64", 0x03: "i386", 0x28: "arm"}
_HOST = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
_MAX_FILES = 20000


def check_architectures(body: dict) -> list[str] | None:
    """The ``Architectures`` of a CreateFunction / UpdateFunctionCode (None: not given), refused as Lambda does."""
    archs = body.get("Architectures")
    if archs is None:
        return None
    if len(archs) != 1:
        raise invalid(
            "1 validation error detected: Value at 'architectures' failed to satisfy constraint: Member must have "
            "length less than or equal to 1"
        )
    if archs[0] not in ARCHITECTURES:
        raise invalid(
            f"1 validation error detected: Value '[{archs[0]}]' at 'architectures' failed to satisfy constraint: "
            "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]"
        )
    return list(archs)


def describe() -> str:
    """For the manifest: which architectures run here."""
    other = "arm64" if _HOST == "x86_64" else "x86_64"
    return (
        f"{_HOST} runs here; {other} functions are refused (no qemu-user binfmt_misc handler), after their native "
        "code is checked against their architecture"
    )


def elf_machine(path: Path) -> str | None:
    """The machine an ELF file is built for (``x86_64``, ``arm64``, ...), or None when it is not ELF."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack(order + "H", head[18:20])
    return _MACHINES.get(machine, f"machine {machine:#x}")


_FOUND: dict[tuple, list[tuple[Path, str]]] = {}


def foreign_native_code(dirs: list[Path], arch: str, key: tuple | None = None) -> list[tuple[Path, str]]:
    """Shared objects under ``dirs`` built for another machine than ``arch``: [(path, its machine)]. With ``key``
    (what the folders hold: their zips' hashes) each content is scanned once."""
    if key is None:
        return _scan(dirs, arch)
    key = (*key, tuple(str(d) for d in dirs), arch)
    if key not in _FOUND:
        _FOUND[key] = _scan(dirs, arch)
    return _FOUND[key]


def _scan(dirs: list[Path], arch: str) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    seen = 0
    for root in dirs:
        for dirpath, _, names in os.walk(root):
            for name in names:
                if not (name.endswith(".so") or ".so." in name):
                    continue
                seen += 1
                if seen > _MAX_FILES:
                    return found
                path = Path(dirpath) / name
                machine = elf_machine(path)
                if machine is not None and machine != arch:
                    found.append((path, machine))
    return found


def init_failure(fn: FunctionRecord) -> dict | None:
    """The init error Lambda would give an invocation of ``fn`` for its architecture (None: it can start), or raise
    when this machine cannot run the architecture at all."""
    arch = (fn.architectures or ["x86_64"])[0]
    if fn.image is not None:
        return None
    dirs = [fn.task_dir, *(lv.directory for lv in fn.layers)]
    foreign = foreign_native_code(dirs, arch, key=(fn.code_sha256, *(lv.code_sha256 for lv in fn.layers)))
    if foreign:
        path, machine = foreign[0]
        roots = {str(fn.task_dir): "/var/task"}
        shown = str(path)
        for host, seen in roots.items():
            shown = shown.replace(host, seen)
        for lv in fn.layers:
            shown = shown.replace(str(lv.directory), "/opt")
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        return {
            "errorType": "Runtime.ImportModuleError",
            "errorMessage": f"Unable to import module '{fn.handler.rsplit('.', 1)[0]}': {shown}: cannot open shared "
            f"object file: it is built for {machine}, the function runs on {arch}{more}",
        }
    if _HOST != arch:
        raise ApiError(
            502,
            "ServiceException",
            f"The emulator cannot run {arch} functions on this {platform.machine()} machine: it has no qemu-user "
            "binfmt_misc handler and no aarch64 interpreter for the runtime. The function's packaging was checked "
            f"(no native code of another machine); run it on an {arch} host or on AWS.",
        )
    return None


def failed_invocation(request_id: str, fn: FunctionRecord, error: dict, tail: bool) -> tuple[int, dict, bytes, str]:
    """Lambda's answer to an invoke whose init failed (twice: the init phase, then the retry inside the invocation):
    (status, headers, body, log text)."""
    etype = error["errorType"]
    text = (
        format_init_report("init", 0.0, "error", etype)
        + f"START RequestId: {request_id} Version: {fn.version}\n"
        + f"[ERROR] {etype}: {error['errorMessage']}\n"
        + format_init_report("invoke", 0.0, "error", etype)
        + f"END RequestId: {request_id}\n"
        + format_report(request_id, 0.0, fn.memory, 1, None, "error", etype)
        + "\n"
    )
    headers = {
        "X-Amz-Executed-Version": fn.version,
        "X-Amzn-RequestId": request_id,
        "X-Amz-Function-Error": "Unhandled",
    }
    if tail:
        headers["X-Amz-Log-Result"] = base64.b64encode(text.encode()[-4096:]).decode()
    return 200, headers, json.dumps(error).encode(), text
