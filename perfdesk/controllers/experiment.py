"""The experiment: the one orchestrator both front ends drive.

For each workload, each target in turn is deployed, runs every trial that names it, and is torn down; targets run
one at a time so that they never compete for this machine's cores. The steps are public methods and both front ends
call the same ones: :meth:`Experiment.run` (headless) is :meth:`open`, :meth:`run_trials` per workload and
:meth:`close`; the desk's jobs call :meth:`ensure_deployed` (deploy one target), :meth:`run_trial_on` (run one
trial), :meth:`run_trials` (run all), :meth:`force_cold` and :meth:`teardown` from a thread worker.

The rules live here once: a target whose deploy fails gets every trial it would have run marked failed; a target
is torn down after :meth:`run_trials` ran its trials; the session's final status (:attr:`Experiment.status`:
completed, failed or interrupted) and its exit code are decided here. :meth:`stop` (Ctrl-C, the Stop key) stops
new requests at once; requests in flight end and their rows are kept; every target is torn down on every exit
path.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfdesk.controllers.events import (
    EventBus,
    LogLine,
    MetricSample,
    SessionFinished,
    SessionStarted,
    TrialFinished,
    Warning_,
    takes_batches,
)
from perfdesk.controllers.exit_codes import BY_STATUS, ExitCode
from perfdesk.controllers.profile import Profile
from perfdesk.controllers.session import SessionStore
from perfdesk.controllers.target import (
    ColdStart,
    Target,
    TargetContext,
    TargetError,
    TargetStatus,
    Unsupported,
    target_class,
)
from perfdesk.controllers.trials import TRIAL_KINDS, TrialRun, TrialSpec
from perfdesk.controllers.watchdog import TIMED_OUT, TargetLost
from perfdesk.controllers.workload import Payload, WorkloadSpec, build_payloads


@dataclass
class Outcome:
    """What a finished session comes to (see :attr:`Experiment.status`)."""

    status: str  # completed | failed | interrupted
    session_path: Path
    failures: list[str] = field(default_factory=list)
    summaries: list[dict] = field(default_factory=list)
    #: Targets lost during a level: which, when, why, and whether they were brought back.
    lost: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return BY_STATUS[self.status]


class Experiment:
    def __init__(self, profile: Profile, *, bus: EventBus | None = None, output: str | Path | None = None):
        self.profile = profile
        self.bus = bus or EventBus()
        self.cancel = threading.Event()
        out = Path(output) if output is not None else Path(profile.session.output)
        self.store = SessionStore(out, profile.session.name)
        self.session_id = self.store.session_id
        self.path = self.store.path
        self.bus.subscribe(self.store.handle)
        self.bus.subscribe(self._collect)
        self._log = open(self.path / "log.txt", "a", encoding="utf-8")
        self._log_lock = threading.Lock()
        self.failures: list[str] = []
        self.summaries: list[dict] = []
        self.lost: list[str] = []
        self._lost: dict[str, str] = {}  # target name -> why it was lost (it could not be brought back)
        self._pending: dict[str, tuple[str, str, str]] = {}  # lost, not yet brought back: (why, trial, when)
        self.ctx = TargetContext(
            session_id=self.session_id,
            emit=self.bus.emit,
            cancel=self.cancel,
            work_dir=str(self.path),
        )
        self.targets: dict[str, Target] = {s.name: target_class(s.kind)(s, self.ctx) for s in profile.targets}
        self._payloads: dict[str, list[Payload]] = {}
        self._rtt: dict[str, dict] = {}
        self._current: tuple[Target, str, str] | None = None  # (target, workload, trial) being measured
        self._sampler_stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_loop, name="metrics", daemon=True)
        self.interrupted = False  # stop() was called: the session ends "interrupted" whatever runs after
        self.closed = False
        self._final_status: str | None = None

    # -- events ---------------------------------------------------------------------------------------------
    @takes_batches  # it reads no request rows: batches pass it whole
    def _collect(self, event) -> None:
        if isinstance(event, TrialFinished):
            self.summaries.append(event.summary)
            if event.summary["status"] in ("failed", TIMED_OUT):
                s = event.summary
                self.failures.append(f"{s['workload']}/{s['trial']}/{s['target']} level {s['level']}: {s['note']}")
        elif isinstance(event, LogLine):
            with self._log_lock:
                if not self._log.closed:
                    stamp = time.strftime("%H:%M:%S", time.localtime(event.time or time.time()))
                    self._log.write(f"{stamp} [{event.target}:{event.stream}] {event.line}\n")
                    self._log.flush()

    def log(self, line: str, target: str = "perfdesk") -> None:
        self.bus.emit(LogLine(target=target, line=line, stream="perfdesk", time=time.time()))

    def _sample_loop(self) -> None:
        interval = self.profile.session.metrics_interval_s
        while not self._sampler_stop.wait(interval):
            current = self._current
            if current is None:
                continue
            target, workload, trial = current
            try:
                sample = target.sample_metrics()
            except Exception as exc:  # noqa: BLE001 - a sample is best effort; the requests tell the story
                sample = None
                self.log(f"metrics sample failed: {exc}", target.name)
            if sample:
                row = {
                    "session": self.session_id,
                    "workload": workload,
                    "trial": trial,
                    "target": target.name,
                    "time": time.time(),
                    **sample,
                }
                self.bus.emit(MetricSample(row))

    # -- lifecycle ------------------------------------------------------------------------------------------
    def open(self) -> None:

        self.store.write_manifest(
            status="running",
            profile_path=str(self.profile.path),
            profile=self.profile.raw,
            targets={name: t.describe() for name, t in self.targets.items()},
        )
        self.bus.emit(SessionStarted(self.session_id, str(self.path), str(self.profile.path)))
        self._sampler.start()

    def payloads(self, workload: WorkloadSpec) -> list[Payload]:
        if workload.name not in self._payloads:
            self._payloads[workload.name] = build_payloads(workload)
        return self._payloads[workload.name]

    def deploy(self, target: Target, workload: WorkloadSpec) -> bool:
        """Deploy ``target`` with ``workload`` now; False (the failure recorded and logged) if it failed."""
        self.log(f"deploying {target.name} ({target.kind}) with {workload.name}", target.name)
        try:
            target.deploy(workload)
        except TargetError as exc:
            self.failures.append(str(exc))
            self.log(f"deploy failed: {exc}", target.name)
            target.set_state(TargetStatus.FAILED, str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - a defect: logged with its traceback; the session goes on
            self.failures.append(f"{target.name}: deploy: {exc!r}")
            self.log(f"deploy failed: {traceback.format_exc()}", target.name)
            target.set_state(TargetStatus.FAILED, repr(exc))
            return False
        if workload.weights == "random":
            self.bus.emit(
                Warning_(
                    f"{workload.name}: random weights (timing only; predictions are meaningless)", target=target.name
                )
            )
        self._measure_rtt(target)
        return True

    def _measure_rtt(self, target: Target) -> None:
        """The client's TCP round trip to a deployed target, for the manifest (best effort)."""
        from perfdesk.controllers.provenance import target_endpoint, tcp_rtt

        try:
            endpoint = target_endpoint(target.describe())
            self._rtt[target.name] = (
                tcp_rtt(*endpoint, samples=5, timeout=2.0) if endpoint else {"error": "no endpoint known"}
            )
        except Exception as exc:  # noqa: BLE001 - the round trip time is best effort
            self._rtt[target.name] = {"error": repr(exc)}

    def ensure_deployed(self, target: Target, workload: WorkloadSpec) -> bool:
        """Deploy ``target`` with ``workload`` unless it already serves it (:meth:`Target.is_ready`); a target
        serving another workload is torn down first. False if the deploy failed (recorded and logged)."""
        if target.is_ready(workload):
            return True
        if target.is_ready():
            self.teardown(target)  # serving another workload
        return self.deploy(target, workload)

    def applies(self, trial: TrialSpec, target: Target) -> bool:
        """The trial runs on the target: the trial names no targets, or names this one."""
        return trial.targets is None or target.name in trial.targets

    def run_trial_on(
        self, trial: TrialSpec, targets: list[str] | None = None, workload: WorkloadSpec | None = None
    ) -> int:
        """Run one trial on each of ``targets`` (names; default: every target) that the trial applies to, with
        ``workload`` (default: the profile's first), deploying each where needed; the targets stay deployed.
        A target whose deploy fails gets the trial marked failed. Returns the number of trial runs measured."""
        workload = workload or self.profile.workloads[0]
        chosen = [self.targets[n] for n in targets] if targets is not None else list(self.targets.values())
        ran = 0
        for target in chosen:
            if self.cancel.is_set():
                break
            if not self.applies(trial, target):
                continue
            if target.name in self._pending and not self._bring_back(target, workload):
                self._emit_status(trial, target, workload, "skipped", f"target lost: {self._lost[target.name]}")
                continue
            if not self.ensure_deployed(target, workload):
                self._deploy_failed([trial], target, workload)
                continue
            self.run_trial(trial, target, workload)
            ran += 1
        return ran

    def run_trials(self, trials: list[TrialSpec], workload: WorkloadSpec | None = None) -> int:
        """Run ``trials`` with ``workload`` (default: the profile's first) target by target: each target is
        deployed where needed, runs every trial that applies to it, and is torn down, so targets never compete
        for the cores. A target whose deploy fails gets its trials marked failed. Returns the trial runs measured.
        """
        workload = workload or self.profile.workloads[0]
        ran = 0
        for target in self.targets.values():
            if self.cancel.is_set():
                break
            mine = [t for t in trials if self.applies(t, target)]
            if not mine:
                continue
            if not self.ensure_deployed(target, workload):
                self._deploy_failed(mine, target, workload)
                continue
            try:
                for i, trial in enumerate(mine):
                    if self.cancel.is_set():
                        break
                    if target.name in self._pending:
                        self._bring_back(target, workload)
                    if target.name in self._lost:
                        for rest in mine[i:]:
                            self._emit_status(
                                rest, target, workload, "skipped", f"target lost: {self._lost[target.name]}"
                            )
                        break
                    self.run_trial(trial, target, workload)
                    ran += 1
            finally:
                self.teardown(target)
        return ran

    def _deploy_failed(self, trials: list[TrialSpec], target: Target, workload: WorkloadSpec) -> None:
        reason = self.failures[-1] if self.failures else "see the log"
        for trial in trials:
            self._emit_status(trial, target, workload, "failed", f"deploy failed: {reason}")

    def force_cold(self, target: Target, workload: WorkloadSpec) -> ColdStart | None:
        """Deploy ``target`` where needed, then retire its warm instances (:meth:`Target.force_cold`) and log what
        the fresh start cost. None if the deploy failed; raises :class:`Unsupported` or :class:`TargetError`."""
        if not self.ensure_deployed(target, workload):
            return None
        cold = target.force_cold()
        phases = ", ".join(f"{k} {v:.0f} ms" for k, v in cold.phases.items())
        self.log(
            f"forced cold start: start {cold.start_ms or 0:.0f} ms, init {cold.init_ms or 0:.0f} ms ({phases})",
            target.name,
        )
        return cold

    def run_trial(self, trial: TrialSpec, target: Target, workload: WorkloadSpec) -> None:
        """Run one trial on a deployed target (its levels' rows and summaries go to the bus); never raises for a
        failed trial: the trial is marked failed (or skipped, for an ability the target lacks)."""
        run = TrialRun(trial, target, workload, self.payloads(workload), self.session_id, self.bus.emit, self.cancel)
        run.recover = self._recover
        run.load = self.profile.load
        self._current = (target, workload.name, trial.name)
        self.log(f"trial {trial.name} ({trial.kind}) on {target.name}", target.name)
        try:
            TRIAL_KINDS[trial.kind].run(run)
            if run.lost is not None:  # brought back (once) before the target's next trial
                self._pending[target.name] = (run.lost, trial.name, time.strftime("%H:%M:%S"))
                target.set_state(TargetStatus.FAILED, f"lost: {run.lost}")
        except TargetLost as exc:
            self.log(f"trial {trial.name}: the rest skipped: target lost ({exc.reason})", target.name)
            self._emit_status(trial, target, workload, "skipped", f"target lost: {exc.reason}")
        except Unsupported as exc:
            self.log(f"trial {trial.name} skipped: {exc}", target.name)
            self._emit_status(trial, target, workload, "skipped", str(exc))
        except TargetError as exc:
            self.log(f"trial {trial.name} failed: {exc}", target.name)
            if not run.failed_levels:
                self._emit_status(trial, target, workload, "failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - a defect in a trial: logged with its traceback; the session goes on
            self.log(f"trial {trial.name} failed: {traceback.format_exc()}", target.name)
            self._emit_status(trial, target, workload, "failed", repr(exc))
        finally:
            self._current = None

    def _recover(self, run: TrialRun) -> bool:
        """A level lost ``run``'s target and the trial has more levels: :meth:`_bring_back` it now."""
        self._pending[run.target.name] = (run.lost or "lost", run.spec.name, time.strftime("%H:%M:%S"))
        run.target.set_state(TargetStatus.FAILED, f"lost: {run.lost}")
        return self._bring_back(run.target, run.workload)

    def _bring_back(self, target: Target, workload: WorkloadSpec) -> bool:
        """Try once to bring a lost target back (tear down, deploy again: reconnect SSH, restart the agent,
        re-create the environment). True when it serves again; else its later trials are skipped. Recorded in
        :attr:`lost`: which target, when, why, and what came of it."""
        reason, trial, when = self._pending.pop(target.name)
        line = f"{target.name}: lost at {when} in trial {trial} ({reason}); "
        if self.cancel.is_set():
            self.lost.append(line + "not deployed again (stopped)")
            self._lost[target.name] = reason
            return False
        self.log(f"target lost ({reason}); tearing down and deploying again", target.name)
        self.teardown(target)
        back = self.deploy(target, workload)
        if back:
            self.lost.append(line + "deployed again")
        else:
            self.lost.append(line + f"could not be deployed again: {self.failures[-1] if self.failures else '?'}")
            self._lost[target.name] = reason
        return back

    def _emit_status(self, trial: TrialSpec, target: Target, workload: WorkloadSpec, status: str, note: str) -> None:
        self.bus.emit(
            TrialFinished(
                {
                    "session": self.session_id,
                    "workload": workload.name,
                    "trial": trial.name,
                    "trial_kind": trial.kind,
                    "target": target.name,
                    "target_kind": target.kind,
                    "level": "",
                    "status": status,
                    "note": note,
                    "count": 0,
                    "ok": 0,
                }
            )
        )

    def teardown(self, target: Target) -> None:
        """Tear ``target`` down; a failure is recorded and logged, never raised."""
        try:
            target.teardown()
        except Exception as exc:  # noqa: BLE001 - recorded and logged, never raised
            self.failures.append(f"{target.name}: teardown: {exc}")
            self.log(f"teardown failed: {exc}", target.name)

    def run(self) -> Outcome:
        """Run the whole profile (:meth:`run_trials` for each workload); always tears every target down and closes
        the session."""
        try:
            self.open()
            for workload in self.profile.workloads:
                if self.cancel.is_set():
                    break
                self.run_trials(self.profile.trials, workload)
        except KeyboardInterrupt:
            self.stop()
        except Exception as exc:  # a defect: the session still closes, as failed, and the traceback is logged
            self.failures.append(f"experiment: {exc!r}")
            self.log(f"experiment failed: {traceback.format_exc()}")
            raise
        finally:
            self.close()
        return self.outcome()

    def stop(self) -> None:
        """Stop: no new requests; requests in flight end and their rows are kept. The session is "interrupted"."""
        if not self.closed:
            self.interrupted = True
        self.cancel.set()

    def resume(self) -> None:
        """Let the next step send requests again after a :meth:`stop` (the desk's next job); the session stays
        interrupted."""
        self.cancel.clear()

    @property
    def status(self) -> str:
        """The session's status, decided here only: "interrupted" once stopped (the Stop key, Ctrl-C), else
        "failed" if a deploy, trial level or tear down failed, else "completed". Fixed when the session closes."""
        if self._final_status is not None:
            return self._final_status
        if self.interrupted:
            return "interrupted"
        return "failed" if self.failures else "completed"

    @property
    def exit_code(self) -> ExitCode:
        return BY_STATUS[self.status]

    def outcome(self) -> Outcome:
        return Outcome(self.status, self.path, list(self.failures), list(self.summaries), list(self.lost))

    def close(self) -> None:
        """Tear every target down, write the manifest and close the session with its :attr:`status` (idempotent)."""
        from perfdesk.controllers.provenance import manifest_extras

        if self.closed:
            return
        self.closed = True
        self._sampler_stop.set()
        for name, (reason, trial, when) in self._pending.items():
            self.lost.append(f"{name}: lost at {when} in trial {trial} ({reason}); no trial of it was left to run")
        self._pending.clear()
        self.profile.load.close()  # the Locust master and workers, where [load] engine = "locust" started them
        for target in self.targets.values():
            self.teardown(target)
        described = {name: t.describe() for name, t in self.targets.items()}
        try:
            provenance: dict[str, Any] = manifest_extras({})
        except Exception as exc:  # noqa: BLE001 - provenance is best effort; the measurements are already saved
            provenance = {"error": repr(exc)}
        provenance["rtt"] = dict(self._rtt)
        self.store.write_manifest(targets=described, provenance=provenance)
        status = self._final_status = self.status
        self.store.close(status)
        self.bus.emit(SessionFinished(self.session_id, str(self.path), status))
        with self._log_lock:
            self._log.close()
