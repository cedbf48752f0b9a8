"""The experiment runner: for each workload, each target in turn is deployed, runs every trial, and is torn down.

Targets run one at a time so that they never compete for this machine's cores. Both front ends drive this class:
the headless CLI calls :meth:`Experiment.run`; the TUI calls the finer steps (:meth:`deploy`, :meth:`run_trial`,
:meth:`teardown`) from thread workers. :meth:`stop` (Ctrl-C, the Stop key) stops new requests at once; requests
in flight end and their rows are kept; every target is torn down on every exit path.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from perfdesk.controllers.events import (
    EventBus,
    LogLine,
    MetricSample,
    SessionFinished,
    SessionStarted,
    TrialFinished,
    Warning_,
)
from perfdesk.controllers.exit_codes import BY_STATUS
from perfdesk.controllers.profile import Profile
from perfdesk.controllers.session import SessionStore
from perfdesk.controllers.target import Target, TargetContext, TargetError, Unsupported, target_class
from perfdesk.controllers.trials import TRIAL_KINDS, TrialRun, TrialSpec
from perfdesk.controllers.workload import Payload, WorkloadSpec, build_payloads


@dataclass
class Outcome:
    status: str  # completed | failed | interrupted
    session_path: Path
    failures: list[str] = field(default_factory=list)
    summaries: list[dict] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return int(BY_STATUS[self.status])


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
        self.closed = False

    # -- events ---------------------------------------------------------------------------------------------
    def _collect(self, event) -> None:
        if isinstance(event, TrialFinished):
            self.summaries.append(event.summary)
            if event.summary["status"] == "failed":
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
            except Exception as exc:  # a sample is best effort; the requests tell the story
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
        self.log(f"deploying {target.name} ({target.kind}) with {workload.name}", target.name)
        try:
            target.deploy(workload)
        except TargetError as exc:
            self.failures.append(str(exc))
            self.log(f"deploy failed: {exc}", target.name)
            target.set_state("failed", str(exc))
            return False
        except Exception as exc:
            self.failures.append(f"{target.name}: deploy: {exc!r}")
            self.log(f"deploy failed: {traceback.format_exc()}", target.name)
            target.set_state("failed", repr(exc))
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
        except Exception as exc:
            self._rtt[target.name] = {"error": repr(exc)}

    def applies(self, trial: TrialSpec, target: Target) -> bool:
        return trial.targets is None or target.name in trial.targets

    def run_trial(self, trial: TrialSpec, target: Target, workload: WorkloadSpec) -> None:
        run = TrialRun(trial, target, workload, self.payloads(workload), self.session_id, self.bus.emit, self.cancel)
        self._current = (target, workload.name, trial.name)
        self.log(f"trial {trial.name} ({trial.kind}) on {target.name}", target.name)
        try:
            TRIAL_KINDS[trial.kind].run(run)
        except Unsupported as exc:
            self.log(f"trial {trial.name} skipped: {exc}", target.name)
            self._emit_status(trial, target, workload, "skipped", str(exc))
        except TargetError as exc:
            self.log(f"trial {trial.name} failed: {exc}", target.name)
            if not run.failed_levels:
                self._emit_status(trial, target, workload, "failed", str(exc))
        except Exception as exc:
            self.log(f"trial {trial.name} failed: {traceback.format_exc()}", target.name)
            self._emit_status(trial, target, workload, "failed", repr(exc))
        finally:
            self._current = None

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
        try:
            target.teardown()
        except Exception as exc:
            self.failures.append(f"{target.name}: teardown: {exc}")
            self.log(f"teardown failed: {exc}", target.name)

    def run(self) -> Outcome:
        """Run the whole profile; always tears every target down and closes the session."""
        status = "completed"
        try:
            self.open()
            for workload in self.profile.workloads:
                for target in self.targets.values():
                    if self.cancel.is_set():
                        break
                    trials = [t for t in self.profile.trials if self.applies(t, target)]
                    if not trials:
                        continue
                    if not self.deploy(target, workload):
                        for trial in trials:
                            self._emit_status(trial, target, workload, "failed", f"deploy failed: {self.failures[-1]}")
                        continue
                    try:
                        for trial in trials:
                            if self.cancel.is_set():
                                break
                            self.run_trial(trial, target, workload)
                    finally:
                        self.teardown(target)
        except KeyboardInterrupt:
            self.cancel.set()
        finally:
            if self.cancel.is_set():
                status = "interrupted"
            elif self.failures:
                status = "failed"
            self.close(status)
        return Outcome(status, self.path, list(self.failures), list(self.summaries))

    def stop(self) -> None:
        """Stop: no new requests; requests in flight end and their rows are kept."""
        self.cancel.set()

    def close(self, status: str) -> None:
        from perfdesk.controllers.provenance import manifest_extras

        if self.closed:
            return
        self.closed = True
        self._sampler_stop.set()
        for target in self.targets.values():
            self.teardown(target)
        described = {name: t.describe() for name, t in self.targets.items()}
        try:
            provenance = manifest_extras({})
        except Exception as exc:  # provenance is best effort; the measurements are already saved
            provenance = {"error": repr(exc)}
        provenance["rtt"] = dict(self._rtt)
        self.store.write_manifest(targets=described, provenance=provenance)
        self.store.close(status)
        self.bus.emit(SessionFinished(self.session_id, str(self.path), status))
        with self._log_lock:
            self._log.close()
