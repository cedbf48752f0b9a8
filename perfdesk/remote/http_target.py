"""The ``http`` target: an endpoint that already runs (TF Serving, Triton or KServe, a perfdesk agent started
elsewhere, the user's own API). perfdesk deploys nothing: deploy checks that it answers, teardown does nothing.

Secrets never sit in the profile: a header or URL value takes ``${env:NAME}`` (an environment variable) or
``${file:PATH}`` (a file's contents, stripped), read at deploy; a literal value in a credential header
(Authorization, X-API-Key, Cookie, ...) or a secret-looking URL parameter is refused with the way to fix it.

Bodies: perfdesk's wire format (``body = "wire"``, the agent's JSON, answers read for predictions and the agent's
timings), the image bytes or a file as is (``raw``), TF Serving REST (``tf-serving``:
``{"instances": [{"b64": ...}]}``), Triton/KServe v2 (``kserve-v2``: ``{"inputs": [{"name", "shape", "datatype":
"BYTES", "data"}]}``), or the user's own (``template``: text with ``{{image_b64}}``, ``{{images_b64}}`` (a JSON
array), ``{{batch_size}}``). Server-side time is read where the endpoint returns it: the agent's timings (wire), a
header (``server_time_header``: milliseconds, or a Server-Timing ``dur``) or a JSON path (``server_time_json``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import urllib3
from pydantic import Field, ValidationInfo, field_validator, model_validator

from perfdesk.controllers.results import ERROR, OK, TIMEOUT, RequestResult, result_from_response
from perfdesk.controllers.target import HttpRequest, Target, TargetError, TargetSpec, TargetStatus
from perfdesk.controllers.workload import Payload, WorkloadSpec, check_path

_REF = re.compile(r"\$\{(env|file):([^}]+)\}")
#: headers whose value is a credential: a literal value there is refused
_CREDENTIAL_HEADER = re.compile(
    r"^(authorization|proxy-authorization|cookie|x-api-key|api-key|x-auth-token)$|"
    r"(token|secret|password|api[-_]?key|credential)",
    re.I,
)
_SECRET_PARAM = re.compile(r"(token|secret|password|passwd|api[-_]?key|apikey|key|sig|signature|credential)", re.I)

BodyMode = Literal["wire", "raw", "tf-serving", "kserve-v2", "template"]


def _literal_secret(value: str) -> bool:
    """A non-empty value that is not (only) made of ``${env:..}`` / ``${file:..}`` references and a scheme word."""
    rest = _REF.sub("", value).strip()
    return bool(rest) and not re.fullmatch(r"(Bearer|Basic|Token|ApiKey|Key)\s*", rest, re.I)


class HttpSpec(TargetSpec):
    """An endpoint that already runs, sent the workload's images; nothing deployed, nothing torn down."""

    kind: Literal["http"] = "http"
    url: str = Field(description="Where requests go (http:// or https://); may hold ${env:NAME} or ${file:PATH}.")
    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method of a request.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request headers. Credentials only as ${env:NAME} or ${file:PATH} "
        '(e.g. Authorization = "Bearer ${env:API_TOKEN}"); a literal credential is refused.',
    )
    body: BodyMode = Field(
        "wire",
        description="Request body: wire (perfdesk's JSON), raw (the image bytes, or body_file), tf-serving "
        '({"instances": [{"b64": ...}]}), kserve-v2 ({"inputs": [...]}, Triton too), template (template or '
        "template_file).",
    )
    content_type: str | None = Field(
        None, description="Content-Type of a request (default: application/json; image/jpeg for raw)."
    )
    body_file: str | None = Field(None, description="raw: send this file's bytes as every request's body.")
    template: str | None = Field(
        None, description="template: the body, with {{image_b64}}, {{images_b64}} (JSON array), {{batch_size}}."
    )
    template_file: str | None = Field(None, description="template: a file holding the template.")
    input_name: str = Field("input", description="kserve-v2: the input tensor's name.")
    signature_name: str | None = Field(None, description="tf-serving: the signature_name field, if needed.")
    server_time_header: str | None = Field(
        None, description="A response header with the server's time in ms (a number, or Server-Timing dur=)."
    )
    server_time_json: str | None = Field(
        None, description="A dotted path to the server's time in ms in a JSON answer (e.g. timings.total_ms)."
    )
    health_url: str | None = Field(
        None, description="Deploy GETs this and wants a 2xx (default: any HTTP answer from url counts)."
    )
    verify_tls: bool = Field(True, description="Verify the endpoint's TLS certificate (https).")
    pool_size: int = Field(64, ge=1, le=4096, description="Keep-alive connections of the thread-pool client.")

    @field_validator("url", "health_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(_REF.sub("x", v))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {v!r}")
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are refused; send them in a header from ${env:NAME}")
        for name, value in parse_qsl(urlsplit(v).query):
            if _SECRET_PARAM.search(name) and _literal_secret(value):
                raise ValueError(
                    f"URL parameter {name!r} looks like a secret written into the profile; "
                    f"write it as ${{env:NAME}} or ${{file:PATH}}"
                )
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if _CREDENTIAL_HEADER.search(name) and _literal_secret(value):
                raise ValueError(
                    f"header {name!r} holds a literal credential; secrets never go into the profile: write "
                    f'{name} = "... ${{env:NAME}}" (an environment variable) or "${{file:PATH}}" (a file)'
                )
        return v

    @field_validator("body_file", "template_file")
    @classmethod
    def _file(cls, v: str | None, info: ValidationInfo) -> str | None:
        return str(check_path(v, info)) if v is not None else None

    @model_validator(mode="after")
    def _body(self):
        if self.body == "template" and (self.template is None) == (self.template_file is None):
            raise ValueError('body = "template" needs exactly one of template and template_file')
        if self.body != "template" and (self.template is not None or self.template_file is not None):
            raise ValueError('template and template_file go with body = "template"')
        if self.body_file is not None and self.body != "raw":
            raise ValueError('body_file goes with body = "raw"')
        return self


def resolve_refs(value: str, *, what: str) -> str:
    """Replace ``${env:NAME}`` and ``${file:PATH}`` with their values (raises ValueError naming what is missing)."""

    def one(m: re.Match) -> str:
        source, ref = m.group(1), m.group(2).strip()
        if source == "env":
            if ref not in os.environ:
                raise ValueError(f"{what}: environment variable {ref} is not set")
            return os.environ[ref]
        path = Path(ref).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None

    return _REF.sub(one, value)


def json_path(data: Any, path: str) -> Any:
    """``a.b.0.c`` into parsed JSON; None where it does not lead anywhere."""
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.lstrip("-").isdigit() and -len(data) <= int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _server_timing(value: str) -> float | None:
    """A header's milliseconds: a plain number, or the first ``dur=`` of a Server-Timing value."""
    try:
        return float(value)
    except ValueError:
        m = re.search(r"dur=([\d.]+)", value)
        return float(m.group(1)) if m else None


def _argmax_label(values: Any) -> str:
    """Top-1 class index of a list of scores (TF Serving's predictions, a v2 output's data); '' otherwise."""
    if isinstance(values, list) and values and isinstance(values[0], list):
        values = values[0]
    if isinstance(values, list) and values and all(isinstance(x, int | float) for x in values[:1000]):
        return str(max(range(len(values)), key=values.__getitem__))
    return ""


class HttpTarget(Target):
    kind = "http"
    spec_model = HttpSpec
    supports_async = True

    def __init__(self, spec: HttpSpec, ctx):
        super().__init__(spec, ctx)
        self.spec: HttpSpec = spec
        self._url = ""
        self._headers: dict[str, str] = {}
        self._bodies: dict[int, tuple[bytes, dict[str, str]]] = {}
        self._pool: urllib3.PoolManager | None = None
        self._raw = Path(spec.body_file).read_bytes() if spec.body_file else None
        tpl = spec.template
        if spec.template_file:
            tpl = Path(spec.template_file).read_text(encoding="utf-8")
        self._template = tpl

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def deploy(self, workload: WorkloadSpec) -> None:
        self.workload = workload
        self.set_state(TargetStatus.DEPLOYING, workload.name)
        try:
            self._url = resolve_refs(self.spec.url, what="url")
            self._headers = {k: resolve_refs(v, what=f"header {k}") for k, v in self.spec.headers.items()}
            health = resolve_refs(self.spec.health_url, what="health_url") if self.spec.health_url else None
        except ValueError as exc:
            self.set_state(TargetStatus.FAILED)
            raise TargetError(self.name, "read secrets", str(exc), "set it, or fix the reference") from None
        self._bodies.clear()
        self._pool = urllib3.PoolManager(
            maxsize=self.spec.pool_size,
            block=False,
            retries=False,
            cert_reqs="CERT_REQUIRED" if self.spec.verify_tls else "CERT_NONE",
        )
        try:
            self._check_answers(health)
        except TargetError:
            self.set_state(TargetStatus.FAILED)
            raise
        self.set_state(TargetStatus.READY, f"{self.spec.body} body to {_safe_url(self.spec.url)}")

    def _check_answers(self, health: str | None) -> None:
        assert self._pool is not None
        url = health or self._url
        shown = _safe_url(self.spec.health_url if health and self.spec.health_url else self.spec.url)
        timeout = min(10.0, self.spec.request_timeout_s)
        try:
            resp = self._pool.request("GET", url, headers=self._headers, timeout=timeout, retries=False)
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise TargetError(self.name, "check the endpoint", f"no answer from {shown}: {reason}") from None
        if health and not 200 <= resp.status < 300:
            raise TargetError(self.name, "check the endpoint", f"{shown} answered HTTP {resp.status}")
        self.log(f"{shown} answers (HTTP {resp.status})")

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.clear()
            self._pool = None
        if self.state not in (TargetStatus.NOT_DEPLOYED, TargetStatus.TORN_DOWN):
            self.set_state(TargetStatus.TORN_DOWN)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(url=_safe_url(self.spec.url), body=self.spec.body, headers=sorted(self.spec.headers))
        return d

    # -- requests --------------------------------------------------------------------------------------------------
    def request_body(self, payload: Payload) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a payload in this target's body mode (made once per payload)."""
        key = id(payload)
        made = self._bodies.get(key)
        if made is not None:
            return made
        mode = self.spec.body
        content_type = self.spec.content_type or ("image/jpeg" if mode == "raw" else "application/json")
        if mode == "wire":
            body = payload.body
            content_type = self.spec.content_type or payload.content_type
        elif mode == "raw":
            body = self._raw if self._raw is not None else payload.images[0]
        else:
            b64 = [base64.b64encode(img).decode("ascii") for img in payload.images]
            if mode == "tf-serving":
                doc: dict[str, Any] = {"instances": [{"b64": b} for b in b64]}
                if self.spec.signature_name:
                    doc["signature_name"] = self.spec.signature_name
                body = json.dumps(doc).encode()
            elif mode == "kserve-v2":
                tensor = {"name": self.spec.input_name, "shape": [len(b64)], "datatype": "BYTES", "data": b64}
                body = json.dumps({"inputs": [tensor]}).encode()
            else:
                assert self._template is not None  # the spec validator demands one
                text = (
                    self._template.replace("{{images_b64}}", json.dumps(b64))
                    .replace("{{image_b64}}", b64[0])
                    .replace("{{batch_size}}", str(len(b64)))
                )
                body = text.encode()
        headers = {k: v for k, v in self._headers.items() if k.lower() != "content-type"}
        if self.spec.content_type is None:  # a Content-Type among the headers stands for content_type
            content_type = next((v for k, v in self._headers.items() if k.lower() == "content-type"), content_type)
        made = (body, {**headers, "Content-Type": content_type})
        self._bodies[key] = made
        return made

    def parse(self, status: int, data: bytes, headers: Mapping[str, str], t0: float, t1: float) -> RequestResult:
        """An answer as a result: the agent's fields (wire), else 2xx is ok; server time from header or JSON."""
        if self.spec.body == "wire":
            result = result_from_response(status, data, t0, t1)
        elif 200 <= status < 300:
            result = RequestResult(actual_send=t0, receive=t1, status=OK, http_status=status, response_bytes=len(data))
        else:
            text = data[:200].decode("utf-8", "replace")
            return RequestResult(
                actual_send=t0,
                receive=t1,
                status=ERROR,
                http_status=status,
                error=f"HTTP {status}: {text}",
                response_bytes=len(data),
            )
        doc: Any = None
        if self.spec.body in ("tf-serving", "kserve-v2") or self.spec.server_time_json:
            try:
                doc = json.loads(data)
            except ValueError:
                doc = None
        if self.spec.body == "tf-serving" and isinstance(doc, dict):
            result.top1 = _argmax_label(doc.get("predictions"))
        elif self.spec.body == "kserve-v2" and isinstance(doc, dict):
            outputs = doc.get("outputs") or [{}]
            result.top1 = _argmax_label(outputs[0].get("data") if isinstance(outputs[0], dict) else None)
        if self.spec.server_time_header:
            value = headers.get(self.spec.server_time_header)
            if value is not None:
                result.server_total_ms = _server_timing(value)
        if self.spec.server_time_json and doc is not None:
            value = json_path(doc, self.spec.server_time_json)
            if isinstance(value, int | float):
                result.server_total_ms = float(value)
        return result

    def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        pool = self._pool
        if pool is None:
            now = time.time()
            return RequestResult(actual_send=now, receive=now, status=ERROR, error="not deployed")
        body, headers = self.request_body(payload)
        limit = timeout or self.spec.request_timeout_s
        t0 = time.time()
        try:
            resp = pool.urlopen(
                self.spec.method,
                self._url,
                body=body,
                headers=headers,
                retries=False,
                timeout=urllib3.Timeout(connect=min(10.0, limit), read=limit),
            )
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError) as exc:
            return RequestResult(actual_send=t0, receive=time.time(), status=TIMEOUT, error=f"timed out: {exc}")
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            return RequestResult(actual_send=t0, receive=time.time(), status=ERROR, error=f"connection: {reason}")
        return self.parse(resp.status, resp.data, resp.headers, t0, time.time())

    def http_endpoint(self, payload: Payload) -> HttpRequest | None:
        """The request as Locust's workers send it (``[load] engine = "locust"``): the same URL, headers and body,
        and the answer parsed here as :meth:`send` parses it."""
        if self._pool is None:
            return None
        body, headers = self.request_body(payload)
        return HttpRequest(
            self._url, headers, body, method=self.spec.method, parse=self.parse, verify_tls=self.spec.verify_tls
        )

    def async_client(self) -> _AsyncHttpTargetClient:
        if self._pool is None:
            raise TargetError(self.name, "send", "not deployed")
        return _AsyncHttpTargetClient(self)


class _AsyncHttpTargetClient:
    def __init__(self, target: HttpTarget):
        from perfdesk.controllers.httpclient import AsyncHttpClient

        self._target = target
        self._http = AsyncHttpClient(
            target._url, parse=target.parse, method=target.spec.method, verify_tls=target.spec.verify_tls
        )

    async def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        body, headers = self._target.request_body(payload)
        return await self._http.request(body, headers, timeout=timeout)

    async def close(self) -> None:
        await self._http.close()


def _safe_url(url: str) -> str:
    """A URL fit for logs and the manifest: references stay unexpanded, the query is dropped."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?..." if parts.query else "")
