"""Trial kinds of the traffic verdict: ``replay`` (the profile's ``[traffic]``, time-compressed, through the open
loop) and ``idle`` (the eviction curve: is a request cold after an idle gap?).

Registered into :data:`perfdesk.controllers.trials.TRIAL_KINDS` when :mod:`perfdesk.controllers.trials` is imported.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, ValidationInfo, model_validator

from perfdesk.controllers.loadgen import run_open_loop
from perfdesk.controllers.target import TargetError, Unsupported
from perfdesk.controllers.traffic import TrafficSection, arrivals, window
from perfdesk.controllers.trials import TRIAL_KINDS, TrialKind, TrialRun, TrialSpec


class ReplaySpec(TrialSpec):
    """Replay the profile's ``[traffic]`` (or the trial's own) at each target, time-compressed, seeded, open loop;
    the level is the compression factor."""

    open_loop: ClassVar[bool] = True  # latency from the intended send time (trials.csv loop "open")

    compress: float = Field(
        60.0, gt=0, le=1_000_000, description="Time compression: 60 sends an hour of the traffic in a minute."
    )
    start_minute: float = Field(0.0, ge=0, description="Minute of the traffic's period the replay starts at.")
    minutes: float | None = Field(
        None, gt=0, description="Minutes of the traffic to replay (default: the whole period, a day for most)."
    )
    max_in_flight: int = Field(64, ge=1, le=4096, description="Client workers; beyond that, sends are late.")
    traffic: TrafficSection | None = Field(
        None, description="A [trials.traffic] table of the trial's own (default: the profile's [traffic])."
    )

    @model_validator(mode="after")
    def _traffic(self, info: ValidationInfo):
        if self.traffic is None:
            self.traffic = (info.context or {}).get("traffic")
        if self.traffic is None:
            raise ValueError("a replay trial needs a [traffic] section in the profile (or a [trials.traffic] table)")
        if self.start_minute * 60.0 >= self.traffic.period_s:
            raise ValueError(
                f"start_minute {self.start_minute:g} is past the traffic's period ({self.traffic.period_s / 60:g} min)"
            )
        return self


class IdleSpec(TrialSpec):
    """The eviction curve of a function: for each idle gap, send, wait the gap, send; the second request's cold
    flag says whether the idle environment was kept (one level per gap)."""

    gaps_s: list[float] = Field(
        [60.0, 300.0, 600.0, 900.0, 1800.0], min_length=1, description="Idle gaps to measure, seconds."
    )
    repeats: int = Field(2, ge=1, le=1000, description="Measurements per gap.")

    @model_validator(mode="after")
    def _gaps(self):
        if any(g <= 0 or g > 86400 for g in self.gaps_s):
            raise ValueError("gaps must be between 0 and 86400 seconds")
        return self


def replay_offsets(spec: ReplaySpec):
    """The send offsets of a replay (seconds from its start), after the window and the compression."""
    assert spec.traffic is not None  # the validator filled it
    length = spec.minutes * 60.0 if spec.minutes is not None else None
    return window(arrivals(spec.traffic), spec.start_minute * 60.0, length, spec.compress)


def run_replay(run: TrialRun) -> None:
    spec = run.spec
    assert isinstance(spec, ReplaySpec)  # TRIAL_KINDS runs each kind with its own spec
    assert spec.traffic is not None
    offsets = replay_offsets(spec)
    span = float(offsets[-1]) if len(offsets) else 0.0
    rec = run.level(spec.compress, expected=len(offsets), duration_s=span)
    minutes = f"{spec.minutes:g}" if spec.minutes is not None else f"{spec.traffic.period_s / 60:g}"
    rec.note = (
        f"replay of {spec.traffic.describe()}: {minutes} min from minute {spec.start_minute:g}, "
        f"{len(offsets)} requests compressed x{spec.compress:g} into {span:.1f} s"
    )
    run_open_loop(
        rec.sender(closed_loop=False),
        lambda row: None,
        offsets=offsets,
        cancel=rec.stop,
        max_in_flight=spec.max_in_flight,
    )
    rec.finish()


def run_idle(run: TrialRun) -> None:
    """For each gap (ascending), ``repeats`` times: a priming request (not recorded), the gap, then the probe
    (recorded, with its cold flag and, when cold, the function's Init Duration)."""
    spec = run.spec
    assert isinstance(spec, IdleSpec)  # TRIAL_KINDS runs each kind with its own spec
    if run.target.billing != "function":
        raise Unsupported(f"{run.target.kind} targets keep their process: the idle trial measures functions")
    for gap in sorted(spec.gaps_s):
        if run.cancel.is_set():
            break
        rec = run.level(gap, expected=spec.repeats, duration_s=gap * spec.repeats)
        primed_failed = 0
        try:
            for i in range(spec.repeats):
                if rec.stop.is_set():
                    break
                prime = rec.send(rec.payload())  # through the level's watch: None once the level has ended
                if prime is None:
                    break
                if prime.status != "ok":
                    primed_failed += 1
                if rec.stop.wait(gap):
                    break
                payload = rec.payload()
                probe = rec.send(payload)
                if probe is None:
                    break
                rec.record(probe, payload, seq=i, closed_loop=True)
        except TargetError as exc:
            rec.finish("failed", str(exc))
            raise
        cold = sum(1 for r in rec.rows if r.get("cold"))
        rec.note = f"{cold} of {len(rec.rows)} cold after {gap:g} s idle" + (
            f"; {primed_failed} priming requests failed" if primed_failed else ""
        )
        rec.finish()


TRIAL_KINDS["replay"] = TrialKind(ReplaySpec, run_replay)
TRIAL_KINDS["idle"] = TrialKind(IdleSpec, run_idle)
