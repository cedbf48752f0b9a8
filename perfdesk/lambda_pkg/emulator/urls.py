"""Function URLs: who may call them, the HTTP request as Lambda's event (payload format 2.0), the result as the
HTTP answer.

* ``AuthType AWS_IAM``: the request must be signed (SigV4, service ``lambda``) with credentials the emulator
  accepts (:mod:`sigv4`); anything else is answered 403 with AWS's message, before the function runs.
* ``AuthType NONE``: since October 2025 Lambda answers 403 unless the function's resource-based policy lets
  everyone (``Principal "*"``) call both ``lambda:InvokeFunctionUrl`` and ``lambda:InvokeFunction``
  (``aws lambda add-permission ... --principal "*"``, twice); the emulator does the same.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import unquote_plus

from perfdesk.lambda_pkg.emulator import sigv4
from perfdesk.lambda_pkg.emulator.store import ACCOUNT_ID, FunctionRecord

_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml", "application/yaml")
_TEXT_SUFFIXES = ("+json", "+xml", "+yaml")


def _allows(statement: dict, action: str) -> bool:
    actions = statement.get("Action")
    actions = actions if isinstance(actions, list) else [actions]
    principal = statement.get("Principal")
    anyone = principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*")
    return statement.get("Effect", "Allow") == "Allow" and anyone and (action in actions or "lambda:*" in actions)


def authorize(
    fn: FunctionRecord,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    credentials: dict[str, tuple[str, str | None]],
) -> dict[str, Any] | None:
    """The event's ``requestContext.authorizer`` (None for NONE), or raise :class:`sigv4.Denied`."""
    auth_type = (fn.url_config or {}).get("AuthType", "NONE")
    if auth_type == "AWS_IAM":
        caller = sigv4.verify(method, path, query, headers, body, credentials, "lambda")
        return {
            "iam": {
                "accessKey": caller.access_key_id,
                "accountId": ACCOUNT_ID,
                "callerId": caller.access_key_id,
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": f"arn:aws:iam::{ACCOUNT_ID}:user/{caller.access_key_id}",
                "userId": caller.access_key_id,
            }
        }
    if not (
        any(_allows(s, "lambda:InvokeFunctionUrl") for s in fn.policy)
        and any(_allows(s, "lambda:InvokeFunction") for s in fn.policy)
    ):
        raise sigv4.Denied("AccessDeniedException", sigv4.FORBIDDEN)
    return None


def _is_text(content_type: str) -> bool:
    ct = content_type.split(";")[0].strip().lower()
    return ct.startswith(_TEXT_TYPES) or ct.endswith(_TEXT_SUFFIXES)


def build_event(
    fn: FunctionRecord,
    method: str,
    raw_path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    authorizer: dict | None,
) -> dict[str, Any]:
    """The HTTP request as Lambda's payload format 2.0 event."""
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for key, value in headers:
        k = key.lower()
        if k == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        merged[k] = f"{merged[k]},{value}" if k in merged else value
    params: dict[str, str] = {}
    for part in query.split("&") if query else []:
        k, _, v = part.partition("=")
        k, v = unquote_plus(k), unquote_plus(v)
        params[k] = f"{params[k]},{v}" if k in params else v
    url_id = fn.name.lower()
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": merged,
        "requestContext": {
            "accountId": "anonymous" if authorizer is None else ACCOUNT_ID,
            "apiId": url_id,
            "domainName": f"{url_id}.lambda-url.{fn.region}.on.aws",
            "domainPrefix": url_id,
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    if body:
        if _is_text(merged.get("content-type", "")):
            event["body"] = body.decode("utf-8", errors="replace")
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def http_answer(result_body: bytes) -> tuple[int, dict[str, str], bytes]:
    """The function's result as the URL's HTTP answer (status, headers, body), as Lambda maps it."""
    try:
        result = json.loads(result_body)
    except ValueError:
        return 200, {"Content-Type": "application/json"}, result_body
    if isinstance(result, dict) and "statusCode" in result:
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        body = result.get("body")
        if body is None:
            data = b""
        elif result.get("isBase64Encoded"):
            data = base64.b64decode(body)
        else:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        cookies = result.get("cookies") or []
        return int(result["statusCode"]), headers | ({"Set-Cookie": "; ".join(cookies)} if cookies else {}), data
    return 200, {"Content-Type": "application/json"}, json.dumps(result).encode()
