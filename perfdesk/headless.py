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
    RequestsDone,
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
from perfdesk.controllers.stats import few_samples_caption, num, percentile_text

#: Colour of a level's status in the summary table and the progress lines (an out-of-memory level is a result).
STATUS_STYLE = {
    "failed": "red",
    "timed out": "red",
    "interrupted": "yellow",
    "skipped": "yellow",
    LEVEL_OUT_OF_MEMORY: "magenta",
}


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

    #: the event bus hands this printer whole RequestsDone batches (one progress update per batch)
    takes_batches = True

    def __call__(self, event) -> None:
        if isinstance(event, TrialStarted):
            with self._lock:
                self._done = self._errors = 0
                self._started = time.time()
                self._duration = event.duration_s
                total = event.expected if event.expected is not None else None
                desc = f"{event.workload} {event.trial} {event.target} @{event.level}"
                self._task = self.progress.add_task(desc, total=total if total is not None else 100, rate="-", errors=0)
        elif isinstance(event, RequestDone | RequestsDone):
            rows = event.rows if isinstance(event, RequestsDone) else [event.row]
            with self._lock:
                if self._task is None:
                    return
                before = self._done
                self._done += len(rows)
                self._errors += sum(1 for row in rows if row.get("status") != "ok")
                elapsed = max(1e-6, time.time() - self._started)
                if self._duration:
                    completed = min(100.0, 100.0 * elapsed / self._duration)
                else:
                    completed = self._done
                if self._done // 5 != before // 5 or completed >= 100:
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
                if event.summary.get("status") in ("failed", "timed out", "skipped", LEVEL_OUT_OF_MEMORY):
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
    """One row per level. Percentiles count failed requests as slower than any success ('failed' where they reach
    it) and are marked where they rest on too few samples; ``fail`` counts errors, timeouts, throttles and dropped
    frames; ``warm p99`` is given where a level mixes cold and warm requests."""
    table = Table(
        title="Summary (latency in ms; random weights are timing-only)", caption=escape(few_samples_caption())
    )
    for col in (
        "workload",
        "trial",
        "target",
        "level",
        "status",
        "ok",
        "fail",
        "thr/s",
        "p50",
        "p90",
        "p99",
        "p99 95% CI",
        "warm p99",
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
        failed = s.get("failed")
        if failed in (None, ""):
            failed = sum(int(s.get(c) or 0) for c in ("errors", "timeouts", "throttled", "dropped"))
        status = s.get("status", "")
        style = STATUS_STYLE.get(status, "green")
        n = s.get("latency_samples")
        p99_ci = "-"
        if num(s.get("p99_ci_low_ms")) is not None:
            low, high = (percentile_text(s.get(c), math.inf, 99) for c in ("p99_ci_low_ms", "p99_ci_high_ms"))
            p99_ci = f"{low}-{high}"
        warm_n = (num(s.get("count")) or 0) - (num(s.get("cold_starts")) or 0)
        table.add_row(
            escape(str(s.get("workload", ""))),
            escape(str(s.get("trial", ""))),
            escape(str(s.get("target", ""))),
            escape(str(s.get("level", ""))),
            f"[{style}]{escape(str(status))}[/]",
            str(s.get("ok", "")),
            f"[red]{failed}[/]" if failed else "0",
            _fmt(s.get("throughput_rps")),
            escape(percentile_text(s.get("p50_ms"), n, 50)),
            escape(percentile_text(s.get("p90_ms"), n, 90)),
            escape(percentile_text(s.get("p99_ms"), n, 99)),
            p99_ci,
            escape(percentile_text(s.get("warm_p99_ms"), warm_n, 99)) if num(s.get("warm_p99_ms")) is not None else "",
            _fmt(s.get("max_ms")),
            ci,
            str(s.get("cold_starts", "")),
        )
    return table


def verdict_table(result) -> Table | None:
    """Monthly cost of each priced target at a few sustained rates around each break-even (servers as steps of
    instances at their capacity under the SLO): the break-even chart, as a table."""
    marks = [c.break_even_rps for c in result.crossovers if c.break_even_rps]
    rates = sorted({0.1, 1.0, 10.0, 100.0, *(round(m, 1) for m in marks), *(round(2 * m, 1) for m in marks)})
    rows = []
    for name, target in result.targets.items():
        values = [target.monthly_usd(r, result.hours_per_month) for r in rates]
        if any(v is not None for v in values):
            rows.append((name, target, values))
    if not rows:
        return None
    table = Table(title=f"Monthly cost (USD, {result.hours_per_month:g} h) at a sustained rate (req/s)")
    table.add_column("target")
    for r in rates:
        table.add_column(
            f"{r:g}" + (" (break-even)" if any(math.isclose(r, round(m, 1)) for m in marks) else ""), justify="right"
        )
    for name, target, values in rows:
        cheapest = [min((v for _, _, vs in rows if (v := vs[i]) is not None), default=None) for i in range(len(rates))]
        cells = []
        for v, low in zip(values, cheapest):
            text = "-" if v is None else f"{v:,.0f}"
            cells.append(f"[green]{text}[/]" if v is not None and v == low and len(rows) > 1 else text)
        label = f"{name} ({target.pricing.model}{', emulation' if target.pricing.emulation else ''})"
        table.add_row(escape(label), *cells)
    return table


def print_verdict(console: Console, session_path: Path) -> None:
    """The verdict of the finished session (:mod:`perfdesk.verdict.words`, as the desk and the report say it):
    capacity under the SLO of each target, the break-even, the emulations; never raises."""
    from perfdesk.verdict.cost import break_even
    from perfdesk.verdict.session_data import load_session
    from perfdesk.verdict.words import verdict_lines

    try:
        session = load_session(session_path)
        if not len(session.requests):
            return
        result = break_even(session)
    except Exception as exc:  # noqa: BLE001 - the measurements are saved; the verdict is a reading of them
        console.print("[yellow]verdict:[/] " + escape(f"cannot compute: {type(exc).__name__}: {exc}"), highlight=False)
        return
    console.print("[bold]Verdict[/]")
    for line in verdict_lines(result):
        console.print("  " + escape(line), highlight=False)
    table = verdict_table(result)
    if table is not None:
        console.print(table)


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
    print_verdict(console, outcome.session_path)
    try:  # the verdict across paradigms (server, on-demand, SnapStart, Managed Instances), where there are several
        from perfdesk.verdict.paradigms import session_lines as paradigm_lines

        for line in paradigm_lines(outcome.session_path):
            console.print("paradigms " + escape(line), highlight=False)
    except Exception as exc:  # noqa: BLE001 - the summary must not hide the run's outcome
        console.print(f"[yellow]paradigms verdict unavailable:[/] {escape(str(exc))}", highlight=False)
    for failure in outcome.failures:
        console.print("[red]failed:[/] " + escape(str(failure)), highlight=False)
    from perfdesk.verdict.traffic import session_lines  # the traffic projection, the cold starts side by side

    for line in session_lines(outcome.session_path):
        console.print(escape(line), highlight=False)
    for lost in outcome.lost:
        console.print("[red]lost:[/] " + escape(lost), highlight=False)
    console.print(f"session: [bold]{escape(str(outcome.session_path))}[/] ({escape(str(outcome.status))})")
    return outcome.exit_code, outcome.session_path
