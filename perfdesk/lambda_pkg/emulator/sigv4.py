"""Signature Version 4 verification for function URLs with ``AuthType AWS_IAM``, against the credentials the
emulator accepts.

The canonical request is rebuilt from the request as received (method, path, query, the headers the client
signed, the payload's hash), signed with the secret of the access key named in the ``Authorization`` header (or in
the ``X-Amz-Credential`` query parameter of a presigned URL), and compared with the signature sent. The answers
are AWS's: 403 with ``{"Message":"Forbidden"...}`` for a request that is not signed, ``The security token included
in the request is invalid.`` for an unknown key, the signature mismatch message for a wrong signature, and
``Signature expired`` for a date more than 5 minutes off.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from calendar import timegm
from dataclasses import dataclass
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 300
FORBIDDEN = (
    "Forbidden. For troubleshooting Function URL authorization issues, see: "
    "https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html"
)
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access "
    "Key and signing method. Consult the service documentation for details."
)
BAD_TOKEN = "The security token included in the request is invalid."
_AUTH_RX = re.compile(r"(\w+)=([^,\s]+)")


@dataclass
class Denied(Exception):
    """Why a request is refused: AWS's error type and message (always HTTP 403)."""

    error_type: str
    message: str


@dataclass(frozen=True)
class Caller:
    access_key_id: str
    region: str


def _uri_encode_path(path: str) -> str:
    # Lambda (like every service but S3) signs the path as sent, URI-encoded once more, segment by segment
    return "/".join(quote(seg, safe="-_.~") for seg in (path or "/").split("/"))


def _query_pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&") if query else []:
        key, _, value = part.partition("=")
        pairs.append((unquote(key), unquote(value)))  # no '+' to space: signers encode a space as %20
    return pairs


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    enc = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in enc)


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _parse_amz_date(value: str) -> float:
    return timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))


def verify(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    credentials: dict[str, tuple[str, str | None]],
    service: str = "lambda",
    now: float | None = None,
) -> Caller:
    """Check the request's SigV4 signature; return the caller, or raise :class:`Denied`.

    ``headers`` keys are lower case; ``path`` is the raw path as sent (percent-encoded as on the wire);
    ``credentials`` maps access key ids to (secret, session token or None)."""
    pairs = _query_pairs(query)
    params = dict(pairs)
    auth = headers.get("authorization", "")
    if auth.startswith(ALGORITHM + " "):
        fields = dict(_AUTH_RX.findall(auth[len(ALGORITHM) :]))
        credential, signed, signature = fields.get("Credential"), fields.get("SignedHeaders"), fields.get("Signature")
        amz_date = headers.get("x-amz-date") or ""
        expires = None
        query_pairs = pairs
    elif params.get("X-Amz-Algorithm") == ALGORITHM:
        credential, signed = params.get("X-Amz-Credential"), params.get("X-Amz-SignedHeaders")
        signature, amz_date = params.get("X-Amz-Signature"), params.get("X-Amz-Date") or ""
        expires = params.get("X-Amz-Expires")
        query_pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
    else:
        raise Denied("AccessDeniedException", FORBIDDEN)
    if not (credential and signed and signature):
        raise Denied(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        )
    try:
        key_id, date, region, svc, terminator = credential.split("/")
    except ValueError:
        raise Denied("IncompleteSignatureException", f"Credential should be scoped correctly: {credential}") from None
    known = credentials.get(key_id)
    if known is None:
        raise Denied("UnrecognizedClientException", BAD_TOKEN)
    secret, token = known
    sent_token = headers.get("x-amz-security-token") or params.get("X-Amz-Security-Token")
    if token is not None and sent_token != token:
        raise Denied("UnrecognizedClientException", BAD_TOKEN)
    if svc != service or terminator != "aws4_request":
        raise Denied("InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'.")
    try:
        signed_at = _parse_amz_date(amz_date)
    except ValueError:
        raise Denied("IncompleteSignatureException", "Authorization requires a valid X-Amz-Date.") from None
    current = time.time() if now is None else now
    if expires is not None:
        if current > signed_at + int(expires):
            raise Denied("AccessDeniedException", "Signature expired.")
    elif abs(current - signed_at) > MAX_SKEW_S:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(current))
        raise Denied(
            "InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than {stamp} ({stamp} - 5 min.)"
        )
    names = signed.split(";")
    if "host" not in names:
        raise Denied("InvalidSignatureException", "'Host' must be a 'SignedHeader' in the AWS Authorization.")
    canonical_headers = "".join(f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in names)
    payload_hash = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    if payload_hash not in ("UNSIGNED-PAYLOAD",) and payload_hash != hashlib.sha256(body).hexdigest():
        raise Denied("InvalidSignatureException", BAD_SIGNATURE)
    canonical = "\n".join(
        [method, _uri_encode_path(path), _canonical_query(query_pairs), canonical_headers, signed, payload_hash]
    )
    scope = f"{date}/{region}/{svc}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    expected = hmac.new(_signing_key(secret, date, region, svc), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise Denied("InvalidSignatureException", BAD_SIGNATURE)
    return Caller(key_id, region)
