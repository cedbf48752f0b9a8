"""The interactive desk: a thin Textual shell over the core's :class:`Experiment`.

Every job calls the experiment's own steps, the ones headless runs are made of: ``d`` is
:meth:`Experiment.ensure_deployed`, ``r`` :meth:`Experiment.run_trial_on`, ``a`` :meth:`Experiment.run_trials`
(target by target, each torn down after its trials, as a headless run), ``c`` :meth:`Experiment.force_cold`, ``x``
:meth:`Experiment.teardown`; the session's status and the exit code are the experiment's.

Threading: every blocking step (deploy, trials, tear down, forced cold starts) runs in one thread worker at a time
(group ``control``); Stop calls :meth:`Experiment.stop`, whose cancel event every load generator and wait loop
honours, so requests in flight end and their rows are kept. Events from worker threads land in a
:class:`LiveFeed` (a bounded, locked buffer); a timer drains it a few times a second and hands the batch down to the
panes. Workers report their end with :class:`JobFinished` messages (``post_message`` is thread-safe).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import WorkerState

from perfdesk.controllers.events import EventBus
from perfdesk.controllers.exit_codes import ExitCode
from perfdesk.controllers.experiment import Experiment
from perfdesk.controllers.profile import Profile
from perfdesk.tui.chart_data import ChartData
from perfdesk.tui.live import LiveFeed
from perfdesk.tui.messages import JobFinished
from perfdesk.tui.screens.edit_trial import EditTrialScreen
from perfdesk.tui.screens.help import HelpScreen
from perfdesk.tui.screens.sessions import ExportScreen, OpenSessionScreen, SessionScreen
from perfdesk.tui.screens.try_image import TryImageScreen
from perfdesk.tui.screens.verdict import VerdictScreen
from perfdesk.tui.widgets.charts import ChartsPane
from perfdesk.tui.widgets.logs import LogsPane
from perfdesk.tui.widgets.targets import TargetsPane, key_facts
from perfdesk.tui.widgets.trials import TrialsPane

TICK_S = 0.25  # the panes redraw at 4 Hz from buffered events, never per request


class PerfdeskApp(App):
    """The desk on one profile; one session folder per app (made when the app is built)."""

    CSS_PATH = "app.tcss"
    TITLE = "perfdesk"
    BINDINGS = [
        Binding("d", "deploy", "Deploy"),
        Binding("c", "force_cold", "Cold"),
        Binding("x", "teardown", "Tear down"),
        Binding("r", "run_trial", "Run"),
        Binding("a", "run_all", "Run all"),
        Binding("s", "stop", "Stop"),
        Binding("e", "edit_trial", "Edit"),
        Binding("i", "try_image", "Try image"),
        Binding("l", "next_log_filter", "Log filter"),
        Binding("o", "open_session", "Sessions"),
        Binding("w", "export", "Export"),
        Binding("v", "verdict", "Verdict"),
        Binding("left_square_bracket", "chart(-1)", "Prev chart", show=False),
        Binding("right_square_bracket", "chart(1)", "Next chart", show=False),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, profile: Profile, *, output: str | Path | None = None, export_root: str | Path = "exports"):
        super().__init__()
        self.profile = profile
        self.bus = EventBus()
        self.feed = LiveFeed()
        self.bus.subscribe(self.feed)
        self.experiment = Experiment(profile, bus=self.bus, output=output)
        self.trials = list(profile.trials)
        self.workload = profile.workloads[0]
        self.chart_data = ChartData()
        self.export_root = Path(export_root)
        self.job: str | None = None
        self.rows_seen = 0
        self.last_tick: float = 0.0

    # -- layout -----------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield TargetsPane(id="targets")
                yield TrialsPane(id="trials")
            with Vertical(id="right"):
                yield ChartsPane(id="charts")
                yield LogsPane(id="logs")
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        # the panes of the main screen, kept: App.query_one would search whichever screen is on top
        self.targets_pane = self.query_one(TargetsPane)
        self.trials_pane = self.query_one(TrialsPane)
        self.logs_pane = self.query_one(LogsPane)
        self.charts_pane = self.query_one(ChartsPane)
        self.status_line = self.query_one("#status", Static)
        self.experiment.open()
        self.sub_title = f"{self.profile.path.name} · session {self.experiment.session_id}"
        self.targets_pane.set_targets(self.experiment.targets)
        self.trials_pane.set_trials(self.trials)
        self.logs_pane.set_sources(list(self.experiment.targets))
        self.experiment.log(
            f"session {self.experiment.path} opened on {self.profile.path}; "
            f"workload {self.workload.name}; ? shows the keys"
        )
        self.set_interval(TICK_S, self.tick)
        self.query_one("#targets-table").focus()

    # -- the steady redraw --------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Drain what the workers produced since the last tick and hand it down to the panes."""
        if not self.targets_pane.is_attached:  # shutting down
            return
        self.last_tick = time.monotonic()
        batch = self.feed.drain()
        trials = self.trials_pane
        if batch:
            self.logs_pane.add_lines(batch.logs)
            targets = self.targets_pane
            for name, state in batch.states.items():
                target = self.experiment.targets.get(name)
                facts = key_facts(target.describe()) if target is not None else None
                targets.set_state(name, state.state, state.detail, facts)
            for started in batch.started:
                trials.trial_started(started)
            trials.rows_done(batch.rows)
            self.rows_seen += len(batch.rows) + batch.dropped_rows
            self.chart_data.add_rows(batch.rows)
            self.chart_data.add_summaries(batch.finished)
            trials.trials_finished(batch.finished)
        if self.job or batch:
            trials.refresh_progress()
        self.charts_pane.show(self.chart_data)
        self._status()

    def _status(self) -> None:
        job = f"[yellow]{self.job}[/] (s stops)" if self.job else "[green]idle[/]"
        self.status_line.update(
            f" {job} · {self.rows_seen} requests · workload {self.workload.name} · {self.experiment.path}"
        )

    # -- jobs in the control worker -----------------------------------------------------------------------------
    def start_job(self, name: str, fn: Callable[..., str | None], *args) -> bool:
        """Run ``fn(*args)`` in the control worker; one job at a time (targets never compete for the cores)."""
        if self.job is not None:
            self.notify(f"busy: {self.job} is running (s stops it)", severity="warning")
            return False
        self.job = name
        self.experiment.resume()  # a Stop ended the previous job; this one starts fresh
        self.run_job(name, fn, args)
        self._status()
        return True

    @work(thread=True, exit_on_error=False, group="control")
    def run_job(self, name: str, fn: Callable[..., str | None], args: tuple) -> None:
        status, detail = "completed", ""
        try:
            detail = fn(*args) or ""
            if self.experiment.cancel.is_set():
                status = "stopped"
        except Exception as exc:  # noqa: BLE001 - reported in the logs and a notification; the desk stays up
            status, detail = "failed", f"{type(exc).__name__}: {exc}"
            self.experiment.log(f"{name} failed: {detail}")
        finally:
            self.post_message(JobFinished(name, status, detail))

    def on_job_finished(self, message: JobFinished) -> None:
        self.job = None
        levels: dict[str, SeverityLevel] = {"failed": "error", "stopped": "warning"}
        severity = levels.get(message.status, "information")
        self.notify(
            f"{message.job}: {message.status}{': ' + message.detail if message.detail else ''}",
            severity=severity,
            timeout=6,
        )
        self.tick()

    # the jobs: each is one of the experiment's own steps, with the desk's current workload and edited trials
    def _job_deploy(self, name: str) -> str:
        target = self.experiment.targets[name]
        ok = self.experiment.ensure_deployed(target, self.workload)
        return str(target.state) if ok else f"{target.state} (see the logs)"

    def _job_teardown(self, name: str) -> None:
        self.experiment.teardown(self.experiment.targets[name])

    def _job_force_cold(self, name: str) -> str:
        cold = self.experiment.force_cold(self.experiment.targets[name], self.workload)
        if cold is None:
            return "deploy failed (see the logs)"
        return f"start {cold.start_ms or 0:.0f} ms, init {cold.init_ms or 0:.0f} ms"

    def _job_run_trial(self, spec) -> str:
        return f"{self.experiment.run_trial_on(spec, workload=self.workload)} trial run(s)"

    def _job_run_all(self) -> str:
        ran = self.experiment.run_trials(self.trials, self.workload)
        return f"{ran} trial run(s); each target torn down after its trials"

    # -- actions ------------------------------------------------------------------------------------------------
    def _selected_target(self) -> str | None:
        name = self.targets_pane.selected
        if name is None:
            self.notify("no target selected", severity="warning")
        return name

    def _selected_trial(self):
        name = self.trials_pane.selected
        return next((t for t in self.trials if t.name == name), None)

    def action_deploy(self, name: str | None = None) -> None:
        name = name or self._selected_target()
        if name:
            self.start_job(f"deploy {name}", self._job_deploy, name)

    def action_teardown(self, name: str | None = None) -> None:
        name = name or self._selected_target()
        if name:
            self.start_job(f"tear down {name}", self._job_teardown, name)

    def action_force_cold(self, name: str | None = None) -> None:
        name = name or self._selected_target()
        if name:
            self.start_job(f"force cold {name}", self._job_force_cold, name)

    def action_run_trial(self, name: str | None = None) -> None:
        spec = next((t for t in self.trials if t.name == name), None) if name else self._selected_trial()
        if spec is not None:
            self.start_job(f"trial {spec.name}", self._job_run_trial, spec)

    def action_run_all(self) -> None:
        self.start_job("all trials", self._job_run_all)

    def action_stop(self) -> None:
        if self.job is None:
            self.notify("nothing is running")
            return
        self.experiment.stop()
        for worker in self.workers:
            if worker.group == "control":
                worker.cancel()
        self.notify("stopping: no new requests; requests in flight end and their rows are kept")

    def action_edit_trial(self, name: str | None = None) -> None:
        spec = next((t for t in self.trials if t.name == name), None) if name else self._selected_trial()
        if spec is None:
            return

        def edited(new) -> None:
            if new is None:
                return
            self.trials = [new if t.name == spec.name else t for t in self.trials]
            self.trials_pane.update_trial(new)
            self.experiment.log(f"trial {new.name} edited: {new.model_dump(exclude_none=True)}")

        self.push_screen(EditTrialScreen(spec), edited)

    def action_try_image(self) -> None:
        ready = {n: t for n, t in self.experiment.targets.items() if t.is_ready()}
        self.push_screen(TryImageScreen(ready, self.workload, self.profile.base_dir))

    def action_next_log_filter(self) -> None:
        self.logs_pane.next_filter()

    def action_chart(self, step: int) -> None:
        self.charts_pane.cycle(step)

    def action_open_session(self) -> None:
        roots = [self.experiment.path.parent]

        def chosen(paths) -> None:
            if paths:
                self.push_screen(SessionScreen(paths, self.export_root))

        self.push_screen(OpenSessionScreen(roots, exclude=None), chosen)

    def action_export(self) -> None:
        self.push_screen(ExportScreen([self.experiment.path], self.export_root / self.experiment.session_id))

    def action_verdict(self) -> None:
        """The verdict of this session so far (its CSVs are flushed as rows complete)."""
        self.push_screen(VerdictScreen(self.experiment.path, live=True))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_use_workload(self, name: str) -> None:
        workload = next((w for w in self.profile.workloads if w.name == name), None)
        if workload is not None:
            self.workload = workload
            self.experiment.log(f"workload {name}: targets are redeployed with it when next used")

    async def action_quit(self) -> None:
        """Stop, tear every target down and close the session in a worker, then exit."""
        if self.experiment.closed:
            self.exit()
            return
        if self.job is not None:
            self.experiment.stop()  # the job is cut short: the session ends "interrupted"
        self.notify("closing: stopping the trial and tearing every target down ...")
        self.close_and_exit()

    @work(thread=True, exit_on_error=False, group="closing")
    def close_and_exit(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            w.group == "control" and w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in self.workers
        ):
            time.sleep(0.05)
        self.close_experiment()
        self.call_from_thread(self.exit)

    def close_experiment(self) -> None:
        """Tear every target down and close the session folder with the experiment's status (idempotent)."""
        self.experiment.close()

    def on_unmount(self) -> None:
        if self.job is not None:
            self.experiment.stop()
        self.close_experiment()

    # -- command palette ------------------------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Run all trials", "Every trial on every target it names", self.action_run_all)
        yield SystemCommand("Stop", "No new requests; requests in flight end, rows are kept", self.action_stop)
        yield SystemCommand("Try one image", "Predictions and timings of every ready target", self.action_try_image)
        yield SystemCommand("Open session", "View a saved session or compare two", self.action_open_session)
        yield SystemCommand("Export session", "This session's CSVs and combined.csv to a folder", self.action_export)
        yield SystemCommand(
            "Verdict", "Cost per 1k inferences, break-even and monthly cost of this session", self.action_verdict
        )
        yield SystemCommand("Help", "Keys and panes", self.action_help)
        for name in self.experiment.targets:
            yield SystemCommand(f"Deploy {name}", "Deploy / provision the target", lambda n=name: self.action_deploy(n))
            yield SystemCommand(
                f"Force cold start {name}",
                "Retire warm instances; time the fresh start",
                lambda n=name: self.action_force_cold(n),
            )
            yield SystemCommand(
                f"Tear down {name}", "Stop and remove what the target started", lambda n=name: self.action_teardown(n)
            )
        for spec in self.trials:
            yield SystemCommand(
                f"Run trial {spec.name}", f"{spec.kind} trial", lambda n=spec.name: self.action_run_trial(n)
            )
            yield SystemCommand(
                f"Edit trial {spec.name}",
                "Change its parameters before running",
                lambda n=spec.name: self.action_edit_trial(n),
            )
        for workload in self.profile.workloads:
            yield SystemCommand(
                f"Use workload {workload.name}",
                f"{workload.model} on {workload.runtime}",
                lambda n=workload.name: self.action_use_workload(n),
            )


def run_app(profile: Profile, output: str | Path | None = None) -> ExitCode:
    """Run the desk on a profile until the user quits; returns the session's exit code, as a headless run does
    (OK, FAILED when a deploy or trial failed, INTERRUPTED when a run was stopped)."""
    app = PerfdeskApp(profile, output=output)
    try:
        app.run()
    finally:
        if not app.experiment.closed:  # the app ended without closing the session: whatever ran was cut short
            app.experiment.stop()
            app.close_experiment()
    print(f"session: {app.experiment.path} ({app.experiment.status})")
    return app.experiment.exit_code
