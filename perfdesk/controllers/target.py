"""The one interface every target kind implements, and the registry of kinds.

A trial is written once against :class:`Target`; the local server, SSH hosts, EC2 instances, Lambda functions and
the local Lambda emulator are each one subclass, registered by name with :func:`register_target`. The core never
branches on a kind: optional abilities are class attributes with a default (``supports_memory``) and methods that
raise :class:`Unsupported` by default.

Side effects enter through the constructor (:class:`TargetContext`: the event sink, the clock, the session id,
the cancel event), so tests drive real peers on loopback.
"""

from __future__ import annotations

import importlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from perfdesk.controllers.events import Event, LogLine, TargetState
from perfdesk.controllers.results import RequestResult, result_from_response
from perfdesk.controllers.workload import Payload, WorkloadSpec


class Unsupported(Exception):
    """Raised by an optional ability that a target kind does not have."""


class TargetError(Exception):
    """A target failed in a way the user must hear about (which target, which step, what to do)."""

    def __init__(self, target: str, step: str, message: str, hint: str = ""):
        self.target, self.step, self.hint = target, step, hint
        text = f"{target}: {step}: {message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class TargetStatus(StrEnum):
    """Where a target is in its lifecycle. A str enum: events, logs and the desk show the value ("torn down")."""

    NOT_DEPLOYED = "not deployed"
    DEPLOYING = "deploying"
    #: deployed and answering
    READY = "ready"
    #: deployed; warm instances were retired, so the next request starts a fresh one (a function after a forced
    #: cold start or a memory change; a server while its process restarts)
    COLD = "cold"
    FAILED = "failed"
    TORN_DOWN = "torn down"

    @property
    def serving(self) -> bool:
        """Deployed and taking requests: the one notion of "ready" (see :meth:`Target.is_ready`)."""
        return self in (TargetStatus.READY, TargetStatus.COLD)


class TargetSpec(BaseModel):
    """Options common to every target kind; each kind subclasses this with its own fields.

    Unknown keys are rejected (``extra='forbid'``) and reported with the closest known key.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Unique name of the target, used in CSVs and the UI.")
    kind: str = Field(description="Target kind: one of the registered kinds (see the profile reference).")
    request_timeout_s: float = Field(60.0, gt=0, le=3600, description="Client-side timeout of one request, in seconds.")


@dataclass
class ColdStart:
    """What one forced fresh start cost, phase by phase (milliseconds); None where a phase does not apply."""

    start_ms: float | None = None  # process / instance / execution environment start until it answers
    init_ms: float | None = None  # model load (imports, weights) as the target reports it
    phases: dict[str, float] = field(default_factory=dict)  # finer phases, kind-specific names


@dataclass
class HttpRequest:
    """One request as any HTTP client can send it: what a load engine outside perfdesk (Locust's workers) sends."""

    url: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"
    #: the answer (status, body, response headers, send and receive times) as a result; default: perfdesk's wire
    #: format (the agent's answer)
    parse: Callable[[int, bytes, Mapping[str, str], float, float], RequestResult] = field(
        default=lambda status, body, headers, t0, t1: result_from_response(status, body, t0, t1)
    )
    #: check the server's certificate (https)
    verify_tls: bool = True


@dataclass
class TargetContext:
    """What a target gets from the experiment: where to send events, the session id, cancellation."""

    session_id: str
    emit: Callable[[Event], None]
    cancel: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.time
    work_dir: str = "."


class AsyncClient(Protocol):
    """An event-driven client of one target, made by :meth:`Target.async_client` inside the load generator's event
    loop and used only from that loop (many requests in flight on one thread)."""

    async def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        """As :meth:`Target.send`: never raises for a failed request (cancellation excepted)."""
        ...

    async def close(self) -> None: ...


class Target(ABC):
    """A place inference runs: deploy it, send it requests, force cold starts, sample it, tear it down.

    Threading contract: :meth:`send` is called from many load-generator threads at once and must be thread-safe;
    every other method is called from one controlling thread. Every blocking call honours ``ctx.cancel`` and has
    a timeout.
    """

    kind: ClassVar[str] = ""
    spec_model: ClassVar[type[TargetSpec]] = TargetSpec
    #: The target can change its memory size between trials (Lambda): enables the memory sweep trial.
    supports_memory: ClassVar[bool] = False
    #: The target exposes a /metrics-like resource sample (server agent).
    supports_metrics: ClassVar[bool] = False
    #: How the target is billed: "server" (an instance by the hour) or "function" (per request and GB-second).
    #: Written to the manifest by :meth:`describe`; the cost model reads it, never the kind's name.
    billing: ClassVar[str] = "server"
    #: The target has an event-driven client (:meth:`async_client`): the load generator then drives it from one
    #: event loop instead of a thread per request in flight (HTTP-speaking targets).
    supports_async: ClassVar[bool] = False
    #: Non-empty for a local stand-in (a local server, the local Lambda emulator): what it emulates. Written to the
    #: manifest by :meth:`describe`; every price of its results is labelled an emulation.
    emulation: ClassVar[str] = ""

    def __init__(self, spec: TargetSpec, ctx: TargetContext):
        self.spec = spec
        self.ctx = ctx
        self.name = spec.name
        self.state = TargetStatus.NOT_DEPLOYED
        self.workload: WorkloadSpec | None = None

    def is_ready(self, workload: WorkloadSpec | None = None) -> bool:
        """Deployed and taking requests (:attr:`TargetStatus.serving`); with ``workload``, serving that workload.

        The one test of readiness: the experiment deploys a target only when this is false, and the desk offers
        only ready targets to "try one image".
        """
        if not self.state.serving:
            return False
        return workload is None or (self.workload is not None and self.workload.name == workload.name)

    # -- lifecycle -------------------------------------------------------------------------------------------
    @abstractmethod
    def deploy(self, workload: WorkloadSpec) -> None:
        """Bring the target up serving ``workload`` and wait until it answers (raises TargetError)."""

    @abstractmethod
    def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        """Send one inference request; never raises for a failed request: the result carries the error."""

    def async_client(self) -> AsyncClient:
        """A new event-driven client (only where ``supports_async``), called inside the running event loop; the
        load generator closes it when its level ends. Other targets are driven by threads over :meth:`send`."""
        raise Unsupported(f"{self.kind} targets have no event-driven client")

    def force_cold(self) -> ColdStart:
        """Retire every warm instance so that the next request is a cold start; return the start's phases.

        For a server: stop the process and start it again (timed). For a function: change the configuration so
        warm environments are retired (the timing then arrives with the first request's REPORT line).
        """
        raise Unsupported(f"{self.kind} targets cannot force a cold start")

    def set_memory(self, memory_mb: int) -> None:
        """Change the configured memory size (functions); only where ``supports_memory``."""
        raise Unsupported(f"{self.kind} targets have no memory size to set")

    def check_alive(self) -> str | None:
        """None while the deployed target is there; else why it is certainly gone ("the agent's process exited",
        "emulator not listening"). Called about once a second during a level from a watchdog thread (concurrently
        with :meth:`send`); must be quick and bounded. Default: None (nothing to check)."""
        return None

    def check_answering(self, timeout: float) -> str | None:
        """None when the target answers a health request within ``timeout`` seconds; else what went wrong. A hung
        target is judged lost when this fails and no request was answered for a while (a busy one still answers
        requests). Called like :meth:`check_alive`. Default: None."""
        return None

    def http_endpoint(self, payload: Payload) -> HttpRequest | None:
        """``payload`` as a plain HTTP request (URL, headers, body), for load engines that send it themselves
        (``[load] engine = "locust"``); None (the default) where requests are not plain HTTP."""
        return None

    def sample_metrics(self) -> dict[str, Any] | None:
        """One resource sample (CPU %, RSS, ...) or None; called about once a second during trials."""
        return None

    @abstractmethod
    def teardown(self) -> None:
        """Stop and remove everything this target started or created. Safe to call twice and after failures."""

    def describe(self) -> dict[str, Any]:
        """Key facts for the manifest and the UI (host, function, memory, instance type, versions, ...)."""
        facts: dict[str, Any] = {"name": self.name, "kind": self.kind, "billing": self.billing}
        if self.emulation:
            facts["emulation"] = self.emulation
        return facts

    @classmethod
    def sweep(
        cls,
        session_id: str | None,
        *,
        session_dir: Path | None,
        region: str | None,
        facts: list[dict[str, Any]],
        say: Callable[[str], None],
    ) -> list[str]:
        """Remove what sessions of this kind left in the cloud, with no live target (``perfdesk teardown``, also
        after the session was killed): found by the session's tags, and by what its targets recorded in
        ``session_dir`` as they created it. ``session_id`` None: every session's. ``region``: the user's choice
        (None: what the session recorded, else the provider's default); ``facts``: the manifest's ``describe()``
        of the session's targets of this kind. Returns what was removed; raises RuntimeError naming what could not
        be. Default: nothing (local processes end with their session)."""
        return []

    # -- helpers for subclasses --------------------------------------------------------------------------------
    def set_state(self, state: TargetStatus | str, detail: str = "") -> None:
        """Record and announce a new state (a :class:`TargetStatus`; its value is accepted, anything else raises)."""
        self.state = TargetStatus(state)
        self.ctx.emit(TargetState(target=self.name, state=self.state, detail=detail, time=self.ctx.clock()))

    def log(self, line: str, stream: str = "perfdesk") -> None:
        self.ctx.emit(LogLine(target=self.name, line=line, stream=stream, time=self.ctx.clock()))


# -- registry ---------------------------------------------------------------------------------------------------
# Kinds are imported lazily: a profile that uses no SSH never imports paramiko, none with no Lambda never boto3.
_KINDS: dict[str, str] = {
    "local-server": "perfdesk.remote.local:LocalServerTarget",
    "ssh": "perfdesk.remote.ssh_target:SshTarget",
    "ec2": "perfdesk.remote.ec2_target:Ec2Target",
    "lambda": "perfdesk.lambda_pkg.target:LambdaTarget",
    "local-lambda": "perfdesk.lambda_pkg.target:LocalLambdaTarget",
    "http": "perfdesk.remote.http_target:HttpTarget",
}
_LOADED: dict[str, type[Target]] = {}


def register_target(kind: str, path: str) -> None:
    """Register a target kind by import path ``module:Class`` (imported only when a profile uses it)."""
    _KINDS[kind] = path


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def target_class(kind: str) -> type[Target]:
    """The class of a kind; raises KeyError for an unknown kind (the profile loader reports it)."""
    if kind in _LOADED:
        return _LOADED[kind]
    path = _KINDS[kind]
    module_name, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    _LOADED[kind] = cls
    return cls
