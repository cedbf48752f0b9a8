"""The HTML report renders every chart from a session; the CLI subcommands run end to end on session folders."""

from __future__ import annotations

import base64
import re
import subprocess
import sys

import pytest

from perfdesk.cli import main
from perfdesk.verdict.report.html import SECTIONS, write_report

from .synth import SynthTarget, add_capacity_trial, default_targets, write_session

PRICES = {"targets": {"srv": {"instance_type": "t3.medium"}}}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    path = write_session(tmp_path_factory.mktemp("r") / "full", seed=5, prices=PRICES)
    srv, fn = default_targets()
    add_capacity_trial(path, srv, slo_ms=100, capacity_rps=40, rates=(10, 20, 40, 80))
    add_capacity_trial(path, fn, slo_ms=100, capacity_rps=20, rates=(10, 20, 40), cold_every=10)
    return path


def test_report_has_every_chart_inline(session, tmp_path):
    out = write_report(session, tmp_path / "report.html")
    text = out.read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', text)
    # all six, in order, then the cold starts side by side (no [traffic] in this profile: no traffic chart)
    assert [alt for alt, _ in images] == [title for _, title, _ in SECTIONS] + ["cold start phases"]
    for _, data in images:
        assert base64.b64decode(data).startswith(PNG_MAGIC)
    for section in ("verdict", *(key for key, _, _ in SECTIONS), "coldstarts", "trials", "manifest"):
        assert f"<section id='{section}'>" in text
    assert 'class="missing"' not in text
    assert "the server srv becomes cheaper than fn above" in text  # the verdict names the crossover
    assert "At equal service (p99 &lt;= 100 ms for both)" in text
    assert "srv sustains 40 req/s with p99 &lt;= 100 ms" in text and "fn sustains 20 req/s" in text
    assert 'src="http' not in text and "<script" not in text  # self-contained
    assert session.name in text and "t3.medium" in text  # manifest and profile shown


def test_report_says_what_is_missing(tmp_path):
    # a server-only session: no function, no memory sweep, no price
    path = write_session(tmp_path / "srv-only", targets=[SynthTarget("srv", "local-server", 20.0)], cold_n=0)
    text = write_report(path).read_text()
    assert (path / "report.html").exists()
    assert "no memory trial in this session" in text and "no cold start in this session" in text
    # latency and throughput only: cost and break-even need the server's price, and the report says so
    assert text.count("<img") == 2
    assert "no priced trial" in text and "[prices.targets.srv]" in text


def test_cli_report_and_compare(session, tmp_path, capsys):
    assert main(["report", str(session), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 10_000
    slow = write_session(tmp_path / "slow", seed=6, prices=PRICES, slow={"srv": 1.3})
    capsys.readouterr()
    assert main(["compare", str(session), str(slow)]) == 0
    out = capsys.readouterr().out
    assert "sweep" in out and "p99 ms" in out and "*" in out
    assert main(["compare", str(session), str(slow), "--gate"]) == 1
    captured = capsys.readouterr()
    assert "REGRESSION" in captured.err and "'srv'" in captured.err
    same = write_session(tmp_path / "same", seed=7, prices=PRICES)
    assert main(["compare", str(session), str(same), "--gate"]) == 0


def test_cli_reports_a_bad_folder_clearly(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), str(tmp_path / "empty")]) == 2
    assert "no requests.csv" in capsys.readouterr().err


def test_core_verdict_modules_do_not_import_front_end_libraries():
    code = (
        "import sys; import perfdesk.verdict.cost, perfdesk.verdict.compare, "
        "perfdesk.controllers.provenance, perfdesk.verdict.session_data; "
        "bad = [m for m in ('rich', 'textual', 'matplotlib') if m in sys.modules]; print(bad); "
        "raise SystemExit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
