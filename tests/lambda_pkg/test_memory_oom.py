"""A memory sweep that runs out of memory at the smaller size, measured for real: a ``local-lambda`` target on the
emulator, whose code is the small ``tiny.hog_request`` handler (it holds ``TINY_HOG_MB`` MB) instead of perfdesk's,
swept over 256 and 512 MB. The emulator ends the 256 MB environment with Runtime.OutOfMemory; perfdesk records that
level as ``out of memory`` (a result: exit 0), names the smallest memory that works in the summary, the report and
the desk's verdict, and its gate fires only when a size that worked in the baseline now runs out of memory."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pandas as pd
import pytest

from perfdesk.controllers.results import LEVEL_OUT_OF_MEMORY, OUT_OF_MEMORY_ERROR

from .conftest import HANDLERS

FITS = "smallest memory that works: 512 MB; out of memory at 256 MB"


def _profile(tmp_path: Path, name: str, hog_mb: int) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
[session]
name = "{name}"
output = "{tmp_path / "sessions"}"

[[targets]]
name = "fn"
kind = "local-lambda"
memory_mb = 512
timeout_s = 30
cpu_limits = false
environment = {{ TINY_HOG_MB = "{hog_mb}" }}

[[workloads]]
name = "hog"
model = "mobilenet_v2"
runtime = "onnx"         # a zip function (PyTorch is refused as a zip); the tiny handler loads no model
images = "synthetic"
synthetic_size = [32, 32]
image_count = 1

[[trials]]
kind = "memory"
memory_mb = [256, 512]
warmup = 1
count = 3
""")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three headless runs through the command line, in-process (so the handler swap below applies):
    ``worked`` (100 MB held: both sizes work), ``regressed`` (300 MB, gated against ``worked``) and ``oom``
    (300 MB, gated against ``regressed``: out of memory at 256 MB in both). name -> (exit code, output, session)."""
    from perfdesk.cli import main
    from perfdesk.lambda_pkg import builders

    tmp_path = tmp_path_factory.mktemp("oom")

    def tiny_code_zip(dest, weights=None, root=None, **files) -> Path:
        Path(dest).write_bytes(builders.in_memory_zip({"tiny.py": (HANDLERS / "tiny.py").read_bytes()}))
        return Path(dest)

    def no_dependencies(dest, *args, **kwargs) -> Path:  # the tiny handler imports nothing: no wheels to fetch
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes(builders.in_memory_zip({"python/.keep": b""}))
        return Path(dest)

    out: dict[str, tuple[int, str, Path]] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builders, "build_code_zip", tiny_code_zip)
        mp.setattr(builders, "build_dependency_layer", no_dependencies)
        mp.setattr(builders, "HANDLER", "tiny.hog_request")
        for name, hog_mb, baseline in (("worked", 100, None), ("regressed", 300, "worked"), ("oom", 300, "regressed")):
            argv = ["--headless", str(_profile(tmp_path, name, hog_mb))]
            if baseline:
                argv += ["--baseline", str(out[baseline][2])]
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                code = main(argv)
            (session,) = (tmp_path / "sessions").glob(f"{name}-*")
            out[name] = (code, buf.getvalue(), session)
    return out


def test_out_of_memory_level_is_a_result_not_a_failure(runs):
    code, output, session = runs["oom"]
    assert code == 0, output[-4000:]
    trials = pd.read_csv(session / "trials.csv")
    levels = trials[trials.trial == "memory"].set_index("level")
    assert levels.loc[256, "status"] == LEVEL_OUT_OF_MEMORY
    assert levels.loc[256, "note"].startswith(f"{OUT_OF_MEMORY_ERROR} at 256 MB on the cold request")
    assert levels.loc[512, "status"] == "completed" and levels.loc[512, "ok"] == 4

    requests = pd.read_csv(session / "requests.csv")
    at_256 = requests[(requests.trial == "memory") & (requests.level == 256)]
    # the level stops at the first request that runs out of memory; its row keeps the function's error
    assert len(at_256) == 1 and (at_256.status == "error").all()
    assert at_256.error.str.startswith(OUT_OF_MEMORY_ERROR).all()
    assert (at_256.memory_size_mb == 256).all() and (at_256.max_memory_used_mb >= 256).all()


def test_summary_names_the_smallest_memory_that_works(runs):
    _, output, _ = runs["oom"]
    assert f"memory sweep hog/memory on fn: {FITS}" in output
    assert "out of memory" in output.split("Summary")[1]  # the level's status in the table
    _, worked, _ = runs["worked"]
    assert "memory sweep hog/memory on fn: smallest memory that works: 256 MB (the smallest size tried)" in worked


def test_report_and_desk_verdict_name_it(runs):
    from perfdesk.tui.verdict_data import compute_verdict
    from perfdesk.verdict.report.html import render_report

    _, _, session = runs["oom"]
    page = render_report(session)
    assert f"hog/memory on fn: {FITS}" in page
    verdict = compute_verdict(session)
    assert not verdict.error and f"Memory sweep hog/memory on fn: {FITS}." in verdict.lines


def test_gate_fires_when_a_size_that_worked_runs_out_of_memory(runs):
    from perfdesk.verdict.compare import format_regressions, gate

    code, output, _ = runs["regressed"]
    assert code == 1, output[-4000:]
    assert "REGRESSION out of memory: 'fn' in trial hog/memory level 256 now runs out of memory" in output
    result = gate(runs["regressed"][2], runs["worked"][2])
    (regression,) = result.regressions
    assert (regression.metric, regression.level, regression.baseline, regression.current) == (
        "out_of_memory",
        "256",
        0.0,
        100.0,
    )
    assert "0 of 4 requests out of memory in the baseline, 1 of 1 now" in format_regressions(result)[0]


def test_out_of_memory_in_both_sessions_is_no_regression(runs):
    from perfdesk.verdict.compare import gate

    code, output, _ = runs["oom"]  # gated against "regressed": out of memory at 256 MB in both
    assert code == 0 and "REGRESSION" not in output
    result = gate(runs["oom"][2], runs["regressed"][2])
    assert result.passed and result.checked > 0


def test_desk_results_name_it(runs, tmp_path):
    from perfdesk.controllers.profile import load_profile
    from perfdesk.tui.app import PerfdeskApp
    from perfdesk.tui.screens.sessions import SessionScreen
    from perfdesk.tui.widgets.results import MemoryFitLine, ResultsTable
    from tests.tui.conftest import DATA, SIZE, run, wait_for

    _, _, session = runs["oom"]
    app = PerfdeskApp(load_profile(DATA / "tui.toml"), output=tmp_path / "sessions", export_root=tmp_path / "exp")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            screen = SessionScreen([session], tmp_path / "exp")
            await app.push_screen(screen)
            await wait_for(pilot, lambda: len(screen.loaded) == 1, 30, "the session to load")
            await pilot.pause(0.1)
            statuses = {s["level"]: s["status"] for s in screen.query_one(ResultsTable).summaries}
            assert statuses[256] == LEVEL_OUT_OF_MEMORY and statuses[512] == "completed"
            line = screen.query_one(MemoryFitLine)
            assert line.display and f"hog/memory on fn: {FITS}" in str(line.render())

    run(scenario())
