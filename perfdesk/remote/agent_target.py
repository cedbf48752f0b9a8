"""Targets served by the inference agent: the HTTP client, and the base class shared by the local server, SSH hosts
and EC2 instances. Subclasses only say how the agent is started and stopped (:meth:`AgentTarget._start_agent`,
:meth:`AgentTarget._stop_agent`); sending, health, metrics and forced cold starts are here, written once.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import urllib3

from perfdesk.controllers.results import ERROR, TIMEOUT, RequestResult, result_from_response
from perfdesk.controllers.target import ColdStart, HttpRequest, Target, TargetError, TargetSpec, TargetStatus
from perfdesk.controllers.workload import Payload, WorkloadSpec


def server_price_facts(instance_type: str | None, hourly_price: float | None) -> dict[str, Any]:
    """What a server's describe() says about its price (the cost model reads it from the manifest):
    ``instance_type`` (priced from the price table) and ``hourly_usd`` with ``price_source`` "profile" when the
    profile gave the target's own hourly price."""
    out: dict[str, Any] = {}
    if instance_type:
        out["instance_type"] = instance_type
    if hourly_price is not None:
        out.update(hourly_usd=float(hourly_price), price_source="profile")
    return out


@dataclass
class AgentEndpoint:
    host: str
    port: int
    token: str
    started: float  # time.time() when the start command was issued

    def __repr__(self) -> str:  # never show the token
        return f"AgentEndpoint({self.host}:{self.port})"


class AgentClient:
    """A thread-safe HTTP client of one agent (a keep-alive connection pool sized for the load generator)."""

    def __init__(self, endpoint: AgentEndpoint, *, pool_size: int = 64, timeout: float = 60.0):
        self.endpoint = endpoint
        self.timeout = timeout
        self.pool = urllib3.HTTPConnectionPool(
            endpoint.host,
            endpoint.port,
            maxsize=pool_size,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=min(10.0, timeout), read=timeout),
        )
        self.headers = {"Authorization": f"Bearer {endpoint.token}"}

    def get_json(self, path: str, timeout: float = 5.0) -> dict:
        resp = self.pool.request("GET", path, headers=self.headers, timeout=timeout, retries=False)
        data = json.loads(resp.data or b"{}")
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {data.get('error', '')}")
        return data

    def predict(self, payload: Payload, timeout: float | None = None) -> RequestResult:
        headers = {**self.headers, "Content-Type": payload.content_type}
        t0 = time.time()
        try:
            resp = self.pool.urlopen(
                "POST",
                "/predict",
                body=payload.body,
                headers=headers,
                retries=False,
                timeout=urllib3.Timeout(connect=min(10.0, timeout or self.timeout), read=timeout or self.timeout),
            )
        except urllib3.exceptions.NewConnectionError as exc:  # a ConnectTimeoutError subclass: refused is no timeout
            return RequestResult(actual_send=t0, receive=time.time(), status=ERROR, error=f"connection: {exc}")
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError) as exc:
            return RequestResult(actual_send=t0, receive=time.time(), status=TIMEOUT, error=f"timed out: {exc}")
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            return RequestResult(actual_send=t0, receive=time.time(), status=ERROR, error=f"connection: {reason}")
        t1 = time.time()
        return result_from_response(resp.status, resp.data, t0, t1)

    def close(self) -> None:
        self.pool.close()


class AsyncAgentClient:
    """The event-driven client of one agent (see :mod:`perfdesk.controllers.httpclient`), made in the load
    generator's event loop."""

    def __init__(self, endpoint: AgentEndpoint):
        from perfdesk.controllers.httpclient import AsyncHttpClient

        self._http = AsyncHttpClient(
            f"http://{endpoint.host}:{endpoint.port}/predict",
            parse=lambda status, data, headers, t0, t1: result_from_response(status, data, t0, t1),
        )
        self._auth = f"Bearer {endpoint.token}"
        self._headers: dict[str, dict[str, str]] = {}

    async def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        headers = self._headers.get(payload.content_type)
        if headers is None:
            headers = self._headers[payload.content_type] = {
                "Authorization": self._auth,
                "Content-Type": payload.content_type,
            }
        return await self._http.request(payload.body, headers, timeout=timeout)

    async def close(self) -> None:
        await self._http.close()


class AgentTarget(Target):
    """Base of the server targets: an agent reached over HTTP at an :class:`AgentEndpoint`."""

    supports_metrics = True
    supports_async = True

    def __init__(self, spec: TargetSpec, ctx):
        super().__init__(spec, ctx)
        self.client: AgentClient | None = None
        self.health: dict[str, Any] = {}

    @abstractmethod
    def _start_agent(self, workload: WorkloadSpec) -> AgentEndpoint:
        """Start the agent serving ``workload`` (fresh token) and return where it listens; do not wait for health."""

    @abstractmethod
    def _stop_agent(self) -> None:
        """Stop the agent and everything it started (no orphan). Safe to call when it is not running."""

    def _agent_alive(self) -> bool:
        """Whether the started agent still runs (used to fail fast while waiting for health)."""
        return True

    def _startup_output(self) -> str:
        """The last lines the agent printed (for start-up errors); empty where unknown."""
        return ""

    def _startup_timeout(self) -> float:
        return float(getattr(self.spec, "startup_timeout_s", 300.0))

    def _wait_healthy(self, endpoint: AgentEndpoint) -> dict:
        client = AgentClient(
            endpoint, pool_size=getattr(self.spec, "pool_size", 64), timeout=self.spec.request_timeout_s
        )
        deadline = time.time() + self._startup_timeout()
        last = ""
        while time.time() < deadline:
            if self.ctx.cancel.is_set():
                client.close()
                raise TargetError(self.name, "start agent", "cancelled while waiting for the agent")
            if not self._agent_alive():
                client.close()
                tail = self._startup_output()
                raise TargetError(
                    self.name,
                    "start agent",
                    f"the agent exited during start-up: {tail or last or 'no answer'}",
                    "the session's log.txt has the agent's whole output",
                )
            try:
                health = client.get_json("/healthz", timeout=min(30.0, max(1.0, deadline - time.time())))
                self.client = client
                return health
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = str(exc)[:200]
                time.sleep(0.1)
        client.close()
        raise TargetError(
            self.name,
            "start agent",
            f"no healthy answer within {self._startup_timeout():.0f} s ({last})",
            "raise startup_timeout_s or look at the agent log",
        )

    def _start_and_wait(self, workload: WorkloadSpec) -> ColdStart:
        endpoint = self._start_agent(workload)
        try:
            self.health = self._wait_healthy(endpoint)
        except BaseException:
            self._stop_agent()
            raise
        ready = time.time()
        load_ms = self.health.get("agent_load_ms")
        total_ms = (ready - endpoint.started) * 1000.0
        return ColdStart(
            start_ms=total_ms - (load_ms or 0.0),
            init_ms=load_ms,
            phases={
                "process_start_ms": total_ms - (load_ms or 0.0),
                "model_load_ms": load_ms or 0.0,
                "import_ms": self.health.get("agent_import_ms", 0.0),
            },
        )

    def deploy(self, workload: WorkloadSpec) -> None:
        self.workload = workload
        self.set_state(TargetStatus.DEPLOYING, workload.name)
        try:
            self._start_and_wait(workload)
        except TargetError:
            self.set_state(TargetStatus.FAILED)
            raise
        model = self.health.get("model", {})
        self.set_state(
            TargetStatus.READY,
            f"{model.get('model')} on {model.get('runtime')}"
            f"{' (random weights)' if model.get('random_weights') else ''}",
        )

    def force_cold(self) -> ColdStart:
        assert self.workload is not None, "deploy first"
        self.set_state(TargetStatus.COLD)
        self._close_client()
        self._stop_agent()
        try:
            cold = self._start_and_wait(self.workload)
        except TargetError:
            self.set_state(TargetStatus.FAILED)  # the agent is down: not ready, so the next use redeploys
            raise
        self.set_state(TargetStatus.READY)
        return cold

    def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        client = self.client
        if client is None:
            now = time.time()
            return RequestResult(actual_send=now, receive=now, status=ERROR, error="agent not running")
        return client.predict(payload, timeout=timeout or self.spec.request_timeout_s)

    def async_client(self) -> AsyncAgentClient:
        if self.client is None:
            raise TargetError(self.name, "send", "agent not running")
        return AsyncAgentClient(self.client.endpoint)

    def check_alive(self) -> str | None:
        """The agent's process, as the subclass finds it (a local child, a pid file on the host)."""
        if self.client is None or not self.state.serving:
            return None
        return None if self._agent_alive() else "the agent's process exited"

    def check_answering(self, timeout: float) -> str | None:
        """``/healthz`` with a short timeout of its own (the agent answers it from another request thread)."""
        from perfdesk.controllers.watchdog import short_error

        client = self.client
        if client is None:
            return None
        try:
            client.get_json("/healthz", timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
            return f"/healthz: {short_error(str(exc))}"
        return None

    def http_endpoint(self, payload: Payload) -> HttpRequest | None:
        client = self.client
        if client is None:
            return None
        ep = client.endpoint
        headers = {**client.headers, "Content-Type": payload.content_type}
        return HttpRequest(f"http://{ep.host}:{ep.port}/predict", headers, payload.body)

    def sample_metrics(self) -> dict[str, Any] | None:
        if self.client is None:
            return None
        m = self.client.get_json("/metrics", timeout=2.0)
        m["cpu_per_core"] = ";".join(f"{v:.1f}" for v in m.get("cpu_per_core", []))
        m.pop("cores", None)
        return m

    def _close_client(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def teardown(self) -> None:
        self._close_client()
        self._stop_agent()
        if self.state not in (TargetStatus.NOT_DEPLOYED, TargetStatus.TORN_DOWN):
            self.set_state(TargetStatus.TORN_DOWN)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.health:
            d["model"] = self.health.get("model")
        return d
