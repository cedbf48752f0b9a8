"""The headless front end: runs a profile with no UI, shows rich progress bars and a summary table.

The run is :meth:`Experiment.run` (the same steps the desk's jobs call); its exit code is the experiment's
(perfdesk/controllers/exit_codes.py): 0 success, 1 a deploy or trial failed, 130 Ctrl-C or SIGTERM (after saving
what was done and stopping every target). A bad profile (2) never gets this far. A memory-sweep level at which
the function runs out of memory is a result, not a failure: the summary names the smallest memory that works.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from perfdesk.controllers.events import (
    EventBus,
    LogLine,
    RequestDone,
    SessionStarted,
    TargetState,
    TrialFinished,
    TrialStarted,
    Warning_,
)
from perfdesk.controllers.exit_codes import ExitCode
from perfdesk.controllers.experiment import Experiment
from perfdesk.controllers.memory_fit import memory_fits
from perfdesk.controllers.profile import Profile
from perfdesk.controllers.results import LEVEL_OUT_OF_MEMORY

#: Colour of a level's status in the summary table and the progress lines (an out-of-memory level is a result).
STATUS_STYLE = {"failed": "red", "interrupted": "yellow", "skipped": "yellow", LEVEL_OUT_OF_MEMORY: "magenta"}


def _fmt(v, digits: int = 1) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v) if v not in (None, "") else "-"
    if math.isnan(f):
        return "-"
    return f"{f:.{digits}f}"


class HeadlessPrinter:
    """Turns events into progress bars (one per trial x target x level) and log lines."""

    def __init__(self, console: Console, verbose: bool = False):
        self.console = console
        self.verbose = verbose
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7} req/s"),
            TextColumn("[red]{task.fields[errors]} err"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._started = 0.0
        self._done = 0
        self._errors = 0
        self._duration: float | None = None
        self._lock = threading.Lock()

    def __call__(self, event) -> None:
        if isinstance(event, TrialStarted):
            with self._lock:
                self._done = self._errors = 0
                self._started = time.time()
                self._duration = event.duration_s
                total = event.expected if event.expected is not None else None
                desc = f"{event.workload} {event.trial} {event.target} @{event.level}"
                self._task = self.progress.add_task(desc, total=total if total is not None else 100, rate="-", errors=0)
        elif isinstance(event, RequestDone):
            with self._lock:
                if self._task is None:
                    return
                self._done += 1
                if event.row.get("status") != "ok":
                    self._errors += 1
                elapsed = max(1e-6, time.time() - self._started)
                if self._duration:
                    completed = min(100.0, 100.0 * elapsed / self._duration)
                else:
                    completed = self._done
                if self._done % 5 == 0 or completed >= 100:
                    self.progress.update(
                        self._task, completed=completed, rate=f"{self._done / elapsed:.1f}", errors=self._errors
                    )
        elif isinstance(event, TrialFinished):
            with self._lock:
                if self._task is not None:
                    s = event.summary
                    total = self.progress.tasks[-1].total if self.progress.tasks else None
                    if s.get("status") == LEVEL_OUT_OF_MEMORY:
                        total = self._done  # the level stopped at the request that ran out of memory
                    self.progress.update(
                        self._task,
                        completed=total,
                        rate=_fmt(s.get("throughput_rps")),
                        errors=(s.get("errors") or 0) + (s.get("timeouts") or 0),
                    )
                    self.progress.stop_task(self._task)
                    self._task = None
                if event.summary.get("status") in ("failed", "skipped", LEVEL_OUT_OF_MEMORY):
                    s = event.summary
                    color = STATUS_STYLE[s["status"]]
                    at = f" @{s['level']}" if s["status"] == LEVEL_OUT_OF_MEMORY else ""
                    self.console.print(
                        f"[{color}]{s['status']}[/]: "
                        + escape(f"{s['trial']} on {s['target']}{at}: {s.get('note', '')}"),
                        highlight=False,
                    )
        elif isinstance(event, TargetState):
            self.console.print(
                f"[cyan]{escape(event.target)}[/] " + escape(f"{event.state} {event.detail}".rstrip()), highlight=False
            )
        elif isinstance(event, Warning_):
            self.console.print("[yellow]warning[/] " + escape(f"{event.target}: {event.message}"), highlight=False)
        elif isinstance(event, SessionStarted):
            self.console.print(f"session [bold]{escape(event.session_id)}[/] -> " + escape(str(event.path)))
        elif isinstance(event, LogLine) and (self.verbose or event.stream == "perfdesk"):
            if self.verbose or "failed" in event.line:
                self.console.print(f"{event.target}: {event.line}", style="dim", highlight=False, markup=False)


def summary_table(summaries: list[dict]) -> Table:
    table = Table(title="Summary (latency in ms; random weights are timing-only)")
    for col in (
        "workload",
        "trial",
        "target",
        "level",
        "status",
        "ok",
        "err",
        "thr/s",
        "p50",
        "p90",
        "p99",
        "max",
        "mean ± 95% CI",
        "cold",
    ):
        table.add_column(col, justify="right" if col not in ("workload", "trial", "target", "status") else "left")
    for s in summaries:
        ci = "-"
        if s.get("mean_ms") not in (None, "") and not math.isnan(float(s.get("mean_ms", math.nan) or math.nan)):
            half = (
                (float(s["mean_ci_high_ms"]) - float(s["mean_ci_low_ms"])) / 2 if s.get("mean_ci_high_ms") else math.nan
            )
            ci = f"{_fmt(s['mean_ms'])} ± {_fmt(half)}"
        err = (s.get("errors") or 0) + (s.get("timeouts") or 0) + (s.get("throttled") or 0)
        status = s.get("status", "")
        style = STATUS_STYLE.get(status, "green")
        table.add_row(
            str(s.get("workload", "")),
            str(s.get("trial", "")),
            str(s.get("target", "")),
            str(s.get("level", "")),
            f"[{style}]{status}[/]",
            str(s.get("ok", "")),
            str(err),
            _fmt(s.get("throughput_rps")),
            _fmt(s.get("p50_ms")),
            _fmt(s.get("p90_ms")),
            _fmt(s.get("p99_ms")),
            _fmt(s.get("max_ms")),
            ci,
            str(s.get("cold_starts", "")),
        )
    return table


def run_headless(
    profile: Profile, *, output: str | None = None, verbose: bool = False, console: Console | None = None
) -> tuple[ExitCode, Path]:
    """Run a profile to the end (:meth:`Experiment.run`). Returns (the experiment's exit code, session folder)."""
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=180)  # logs of nightly runs: keep the summary table readable
    bus = EventBus()
    experiment = Experiment(profile, bus=bus, output=output)
    printer = HeadlessPrinter(console, verbose=verbose)
    bus.subscribe(printer)

    interrupts = {"n": 0}

    def on_sigint(signum, frame):
        interrupts["n"] += 1
        if interrupts["n"] == 1:
            console.print(
                "[yellow]Ctrl-C: stopping (requests in flight end, rows are kept); Ctrl-C again to abandon waiting[/]"
            )
            experiment.stop()
        else:
            raise KeyboardInterrupt

    old_int = signal.signal(signal.SIGINT, on_sigint)
    old_term = signal.signal(signal.SIGTERM, on_sigint)
    try:
        with printer.progress:
            outcome = experiment.run()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    console.print(summary_table(outcome.summaries))
    for fit in memory_fits(outcome.summaries):
        console.print("memory sweep " + escape(fit.line), highlight=False)
    try:  # the verdict across paradigms (server, on-demand, SnapStart, Managed Instances), where there are several
        from perfdesk.verdict.paradigms import session_lines

        for line in session_lines(outcome.session_path):
            console.print("paradigms " + escape(line), highlight=False)
    except Exception as exc:  # noqa: BLE001 - the summary must not hide the run's outcome
        console.print(f"[yellow]paradigms verdict unavailable:[/] {escape(str(exc))}", highlight=False)
    for failure in outcome.failures:
        console.print("[red]failed:[/] " + escape(str(failure)), highlight=False)
    console.print(f"session: [bold]{escape(str(outcome.session_path))}[/] ({escape(str(outcome.status))})")
    return outcome.exit_code, outcome.session_path
