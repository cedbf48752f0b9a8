"""API Gateway HTTP APIs in front of the emulator's functions: the data plane of ``apigatewayv2``.

The control plane (``create-api``, ``create-integration``, ``create-route``, ``create-stage``) is the local one the
emulator is given (the moto server, as for S3); the emulator serves each API's requests itself at
``<emulator>/_aws/execute-api/<api-id>/<path>`` (on AWS: ``https://<api-id>.execute-api.<region>.amazonaws.com``),
as API Gateway does:

* the stage: ``$default`` (no path prefix) or the path's first segment naming a stage;
* the route: the most specific match of ``METHOD /path`` (``ANY`` and ``{param}`` / ``{proxy+}`` segments), else
  ``$default``; none: 404 ``{"message":"Not Found"}``;
* the integration: ``AWS_PROXY`` to a Lambda function (its ARN or the ``apigateway:lambda:path`` invoke URI),
  payload format 2.0 (1.0 is refused: perfdesk creates 2.0); the function's result maps to the HTTP answer as for
  a function URL;
* the permission: Lambda invokes the function only if its resource-based policy lets ``apigateway.amazonaws.com``
  call ``lambda:InvokeFunction`` with a ``SourceArn`` matching ``arn:aws:execute-api:<region>:<account>:<api-id>/
  <stage>/<method>/<path>``; otherwise (and when the function fails, is throttled or is missing) the client gets
  API Gateway's 500 ``{"message":"Internal Server Error"}``.

An API's configuration is read from the control plane at most once a second (a change takes effect within one).
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from perfdesk.lambda_pkg.emulator import urls
from perfdesk.lambda_pkg.emulator.store import ACCOUNT_ID, ApiError, function_name_from

if TYPE_CHECKING:
    from perfdesk.lambda_pkg.emulator.server import Emulator

PREFIX = "/_aws/execute-api/"
APIGW_PRINCIPAL = "apigateway.amazonaws.com"
NOT_FOUND = (404, {"Content-Type": "application/json"}, b'{"message":"Not Found"}')
INTERNAL = (500, {"Content-Type": "application/json"}, b'{"message":"Internal Server Error"}')
_INVOKE_URI = re.compile(r"^arn:aws:apigateway:[^:]+:lambda:path/2015-03-31/functions/(?P<fn>.+)/invocations$")


def apigw_may_invoke(policy: list[dict], source_arn: str) -> bool:
    """Whether a function's resource-based policy lets API Gateway invoke it for this request's execute-api ARN."""
    for s in policy:
        principal = s.get("Principal")
        service = principal.get("Service") if isinstance(principal, dict) else principal
        action = s.get("Action")
        actions = action if isinstance(action, list) else [action]
        if s.get("Effect", "Allow") != "Allow" or service not in (APIGW_PRINCIPAL, "*"):
            continue
        if not any(a in ("lambda:InvokeFunction", "lambda:*") for a in actions):
            continue
        pattern = ((s.get("Condition") or {}).get("ArnLike") or {}).get("AWS:SourceArn")
        if pattern is None or fnmatch.fnmatchcase(source_arn, pattern):
            return True
    return False


def _route_pattern(path: str) -> tuple[re.Pattern, int]:
    """A route path as a regex, and its specificity (literal segments count most)."""
    parts, score = [], 0
    for seg in path.strip("/").split("/") if path.strip("/") else []:
        if seg.startswith("{") and seg.endswith("+}"):
            parts.append(f"(?P<{seg[1:-2]}>.+)")
        elif seg.startswith("{") and seg.endswith("}"):
            parts.append(f"(?P<{seg[1:-1]}>[^/]+)")
            score += 1
        else:
            parts.append(re.escape(seg))
            score += 10
    return re.compile("^/" + "/".join(parts) + "$"), score


def match_route(routes: list[dict], method: str, path: str) -> tuple[dict, dict[str, str]] | None:
    """The route API Gateway picks for ``method path`` (with its path parameters), else ``$default``, else None."""
    best: tuple[int, dict, dict[str, str]] | None = None
    default = None
    for route in routes:
        key = route.get("RouteKey", "")
        if key == "$default":
            default = route
            continue
        r_method, _, r_path = key.partition(" ")
        if r_method not in (method, "ANY"):
            continue
        rx, score = _route_pattern(r_path)
        m = rx.match(path if path != "" else "/")
        if m:
            score = score * 2 + (1 if r_method == method else 0)
            if best is None or score > best[0]:
                best = (score, route, {k: v for k, v in m.groupdict().items()})
    if best is not None:
        return best[1], best[2]
    return (default, {}) if default is not None else None


class HttpApis:
    """The data plane of the HTTP APIs in a local ``apigatewayv2`` control plane, invoking the emulator's functions."""

    def __init__(self, emulator: Emulator, endpoint_url: str | None, *, cache_s: float = 1.0):
        self.emu = emulator
        self.endpoint_url = endpoint_url
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, dict | None]] = {}
        self._lock = threading.Lock()
        self._client_obj = None

    def _client(self):
        if self._client_obj is None:
            import boto3
            from botocore.config import Config

            self._client_obj = boto3.client(
                "apigatewayv2",
                endpoint_url=self.endpoint_url,
                region_name=self.emu.region,
                aws_access_key_id="perfdesk-local",
                aws_secret_access_key="perfdesk-local",
                config=Config(retries={"max_attempts": 2}),
            )
        return self._client_obj

    def _api(self, api_id: str) -> dict | None:
        with self._lock:
            hit = self._cache.get(api_id)
            if hit is not None and time.monotonic() - hit[0] < self.cache_s:
                return hit[1]
        cli = self._client()
        try:
            api = cli.get_api(ApiId=api_id)
            conf = {
                "api": api,
                "stages": [s["StageName"] for s in cli.get_stages(ApiId=api_id).get("Items", [])],
                "routes": cli.get_routes(ApiId=api_id).get("Items", []),
                "integrations": {i["IntegrationId"]: i for i in cli.get_integrations(ApiId=api_id).get("Items", [])},
            }
        except cli.exceptions.NotFoundException:
            conf = None
        with self._lock:
            self._cache[api_id] = (time.monotonic(), conf)
        return conf

    def handle(
        self,
        method: str,
        api_id: str,
        rest: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to an API: (status, headers, body) as API Gateway answers it."""
        if self.endpoint_url is None:
            return NOT_FOUND
        conf = self._api(api_id)
        if conf is None or conf["api"].get("ProtocolType") != "HTTP":
            return NOT_FOUND
        path = rest or "/"
        stage = "$default"
        first = path.strip("/").split("/", 1)[0]
        if "$default" not in conf["stages"]:
            if first not in conf["stages"]:
                return NOT_FOUND
            stage, path = first, "/" + path.strip("/").partition("/")[2]
        elif first in conf["stages"] and first != "$default":
            stage, path = first, "/" + path.strip("/").partition("/")[2]
        found = match_route(conf["routes"], method, path)
        if found is None:
            return NOT_FOUND
        route, params = found
        integration = conf["integrations"].get(str(route.get("Target", "")).removeprefix("integrations/"))
        if integration is None or integration.get("IntegrationType") != "AWS_PROXY":
            return INTERNAL
        if integration.get("PayloadFormatVersion", "2.0") != "2.0":
            return INTERNAL  # perfdesk creates payload format 2.0 integrations only
        uri = integration.get("IntegrationUri", "")
        m = _INVOKE_URI.match(uri)
        try:
            name = function_name_from(m.group("fn") if m else uri)
        except ApiError:
            return INTERNAL
        with self.emu._lock:
            fn = self.emu.functions.get(name)
        if fn is None:
            return INTERNAL
        source_arn = f"arn:aws:execute-api:{self.emu.region}:{ACCOUNT_ID}:{api_id}/{stage}/{method}{path}"
        if not apigw_may_invoke(fn.policy, source_arn):
            return INTERNAL  # Lambda refused API Gateway: the client sees API Gateway's 500
        event = self._event(fn, api_id, stage, route, params, method, rest or "/", query, headers, body, source_ip)
        try:
            _, out_headers, result = self.emu.invoke(name, json.dumps(event).encode(), False)
        except ApiError:
            return INTERNAL
        if "X-Amz-Function-Error" in out_headers:
            return INTERNAL
        status, answer_headers, data = urls.http_answer(result)
        answer_headers["apigw-requestid"] = event["requestContext"]["requestId"]
        return status, answer_headers, data

    def _event(
        self, fn, api_id, stage, route, params, method, raw_path, query, headers, body, source_ip
    ) -> dict[str, Any]:
        event = urls.build_event(fn, method, raw_path, query, headers, body, source_ip, None)
        ctx = event["requestContext"]
        domain = f"{api_id}.execute-api.{self.emu.region}.amazonaws.com"
        event["routeKey"] = route["RouteKey"]
        ctx.update(
            accountId=ACCOUNT_ID,
            apiId=api_id,
            domainName=domain,
            domainPrefix=api_id,
            routeKey=route["RouteKey"],
            stage=stage,
        )
        if params:
            event["pathParameters"] = params
        return event
