"""The REPORT line parser on lines in Lambda's real format, and the emulator's formatter against it."""

import base64

from perfdesk.lambda_pkg.report import format_report, parse_log_result, parse_report

COLD = (
    "REPORT RequestId: 3604209a-e9a3-11e6-939a-754dd98c7be3\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
    "Memory Size: 128 MB\tMax Memory Used: 18 MB\tInit Duration: 130.50 ms\t"
)
WARM = (
    "REPORT RequestId: 9f8d1c9e-1111-4a2b-8c3d-aaaaaaaaaaaa  Duration: 401.72 ms  Billed Duration: 402 ms  "
    "Memory Size: 3008 MB  Max Memory Used: 512 MB"
)
TIMEOUT = (
    "REPORT RequestId: b5a3ee31-2222-4b4b-9c9c-bbbbbbbbbbbb\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\t"
    "Memory Size: 128 MB\tMax Memory Used: 41 MB\tStatus: timeout"
)
OOM = (
    "REPORT RequestId: c1c1c1c1-3333-4c4c-8d8d-cccccccccccc\tDuration: 812.00 ms\tBilled Duration: 812 ms\t"
    "Memory Size: 128 MB\tMax Memory Used: 128 MB\tStatus: error\tError Type: Runtime.OutOfMemory"
)


def test_cold_line():
    rep = parse_report("START RequestId: x Version: $LATEST\nhello\nEND RequestId: x\n" + COLD + "\n")
    assert rep.request_id == "3604209a-e9a3-11e6-939a-754dd98c7be3"
    assert (rep.duration_ms, rep.billed_ms, rep.memory_size_mb, rep.max_memory_used_mb) == (12.34, 13, 128, 18)
    assert rep.init_ms == 130.5 and rep.cold


def test_warm_line_has_no_init():
    rep = parse_report(WARM)
    assert rep.duration_ms == 401.72 and rep.billed_ms == 402 and rep.memory_size_mb == 3008
    assert rep.init_ms is None and not rep.cold


def test_failure_lines():
    assert parse_report(TIMEOUT).status == "timeout"
    rep = parse_report(OOM)
    assert rep.status == "error" and rep.error_type == "Runtime.OutOfMemory" and rep.max_memory_used_mb == 128


def test_no_report_line():
    assert parse_report("START RequestId: x\nsome output\n") is None
    assert parse_log_result(None) == ("", None)


def test_format_roundtrip_through_base64():
    line = format_report("abc-123", 41.234, 1536, 300, init_ms=2871.03)
    # since August 2025 the init phase of a zip function on a managed runtime is billed: ceil(41.234 + 2871.03)
    assert line.startswith("REPORT RequestId: abc-123\tDuration: 41.23 ms\tBilled Duration: 2913 ms\t")
    text, rep = parse_log_result(base64.b64encode(("END RequestId: abc-123\n" + line + "\n").encode()).decode())
    assert "END RequestId" in text
    assert (rep.duration_ms, rep.billed_ms, rep.memory_size_mb, rep.max_memory_used_mb, rep.init_ms) == (
        41.23,
        2913,
        1536,
        300,
        2871.03,
    )
