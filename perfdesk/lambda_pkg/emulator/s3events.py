"""S3 event notifications for the emulator's functions: what S3 does when an object is created in a bucket whose
notification configuration names a Lambda function.

S3 itself is the local S3 (the moto server) and knows nothing of the emulator, so the emulator watches it: once a
function's resource-based policy lets ``s3.amazonaws.com`` invoke it (S3 refuses a notification configuration
without that permission), it reads the notification configuration of every bucket each second and lists the
buckets that name one of its functions every ``interval_s`` (50 ms): an object that is new (or whose ETag changed)
under a configuration's prefix and suffix filter is an ``ObjectCreated:Put`` event. The event is S3's version 2.1
message (one record, the key URL-encoded as S3 sends it), delivered as an *asynchronous* invocation: queued, retried
while throttled, and retried twice after a function error (after 1 and 2 minutes), as Lambda's asynchronous
invocation does. When a bucket's configuration is first seen, objects created before the previous look at the
configurations (less a second: S3 lists LastModified to the second) raise no event; later ones do, so an object PUT
right after the configuration is not missed.

Polling adds up to ``interval_s`` to the time from a PUT to its invocation; S3's own delivery takes tens to hundreds
of milliseconds, so the emulator's path is not slower than AWS's and never much faster.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from perfdesk.lambda_pkg.emulator.store import ACCOUNT_ID, ApiError, function_name_from

if TYPE_CHECKING:
    from perfdesk.lambda_pkg.emulator.server import Emulator

log = logging.getLogger(__name__)

S3_PRINCIPAL = "s3.amazonaws.com"
#: Lambda's asynchronous retries after a function error: twice, after one and then two minutes.
ERROR_RETRY_DELAYS_S = (60.0, 120.0)
#: How long a throttled asynchronous event is kept and retried (Lambda: up to 6 hours by default).
MAX_EVENT_AGE_S = 6 * 3600.0


def s3_may_invoke(policy: list[dict], bucket: str) -> bool:
    """Whether a function's resource-based policy lets S3 invoke it for ``bucket`` (as Lambda evaluates it)."""
    for s in policy:
        principal = s.get("Principal")
        service = principal.get("Service") if isinstance(principal, dict) else principal
        action = s.get("Action")
        actions = action if isinstance(action, list) else [action]
        if s.get("Effect", "Allow") != "Allow" or service not in (S3_PRINCIPAL, "*"):
            continue
        if not any(a in ("lambda:InvokeFunction", "lambda:*") for a in actions):
            continue
        source = ((s.get("Condition") or {}).get("ArnLike") or {}).get("AWS:SourceArn")
        if source is None or fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}", source):
            return True
    return False


def _matches(config: dict, key: str) -> bool:
    events = config.get("Events") or []
    if not any(e in ("s3:ObjectCreated:*", "s3:ObjectCreated:Put", "s3:*") for e in events):
        return False
    rules = {
        r.get("Name", "").lower(): r.get("Value", "")
        for r in ((config.get("Filter") or {}).get("Key") or {}).get("FilterRules", [])
    }
    return key.startswith(rules.get("prefix", "")) and key.endswith(rules.get("suffix", ""))


def s3_event(region: str, bucket: str, key: str, size: int, etag: str, config_id: str, sequencer: str) -> dict:
    """S3's event message (version 2.1) for one created object."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": stamp,
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": f"AWS:{ACCOUNT_ID}"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": uuid.uuid4().hex},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": config_id,
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": ACCOUNT_ID},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag, "sequencer": sequencer},
                },
            }
        ]
    }


class S3Events:
    """Watches a local S3 for created objects and delivers their events to the emulator's functions."""

    def __init__(self, emulator: Emulator, endpoint_url: str, *, interval_s: float = 0.05, config_s: float = 1.0):
        self.emu = emulator
        self.endpoint_url = endpoint_url
        self.interval_s = interval_s
        self.config_s = config_s
        self._seen: dict[str, dict[str, tuple[str, int]]] = {}  # bucket -> key -> (etag, size)
        self._config_read_at = time.time()  # when the configurations were last read
        self._configs: dict[str, list[dict]] = {}  # bucket -> its Lambda notification configurations of ours
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(32, thread_name_prefix="emulator-s3-events")
        self._seq = 0
        self._warned: set[tuple[str, str]] = set()
        self.stats = {"events": 0, "delivered": 0, "retries": 0, "refused": 0}

    def _client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.emu.region,
            aws_access_key_id="perfdesk-local",
            aws_secret_access_key="perfdesk-local",
            config=Config(retries={"max_attempts": 2}, max_pool_connections=4),
        )

    def ensure_started(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._loop, name="emulator-s3-events", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        s3 = self._client()
        next_config = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_config:
                    self._read_configs(s3)
                    next_config = time.monotonic() + self.config_s
                for bucket in list(self._configs):
                    self._scan(s3, bucket)
            except Exception as exc:  # noqa: BLE001 - the local S3 restarting or gone: try again
                log.debug("s3 events: %s", exc)
            self._stop.wait(self.interval_s)

    def _read_configs(self, s3) -> None:
        ours: dict[str, list[dict]] = {}
        for b in s3.list_buckets().get("Buckets", []):
            try:
                conf = s3.get_bucket_notification_configuration(Bucket=b["Name"])
            except Exception:  # noqa: BLE001 - deleted meanwhile
                continue
            mine = [c for c in conf.get("LambdaFunctionConfigurations", []) if self._local(c["LambdaFunctionArn"])]
            if mine:
                ours[b["Name"]] = mine
        before = self._config_read_at - 1.0
        self._config_read_at = time.time()
        for bucket in ours:
            if bucket not in self._configs:  # first seen: what existed before the configuration raises no event
                listing = self._listing(s3, bucket, ours[bucket], with_times=True)
                self._seen[bucket] = {k: (etag, size) for k, (etag, size, at) in listing.items() if at < before}
        for bucket in set(self._configs) - set(ours):
            self._seen.pop(bucket, None)
        self._configs = ours

    def _local(self, arn: str) -> bool:
        try:
            name = function_name_from(arn)
        except ApiError:
            return False
        with self.emu._lock:
            return name in self.emu.functions

    def _listing(self, s3, bucket: str, configs: list[dict], with_times: bool = False) -> dict[str, Any]:
        prefixes = set()
        for c in configs:
            rules = ((c.get("Filter") or {}).get("Key") or {}).get("FilterRules", [])
            prefixes.add(next((r["Value"] for r in rules if r.get("Name", "").lower() == "prefix"), ""))
        if "" in prefixes:
            prefixes = {""}
        out: dict[str, Any] = {}
        for prefix in prefixes:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    entry = (obj["ETag"].strip('"'), int(obj.get("Size", 0)))
                    out[obj["Key"]] = (*entry, obj["LastModified"].timestamp()) if with_times else entry
        return out

    def _scan(self, s3, bucket: str) -> None:
        configs = self._configs.get(bucket, [])
        now = self._listing(s3, bucket, configs)
        before = self._seen.get(bucket, {})
        self._seen[bucket] = now
        for key, (etag, size) in now.items():
            if key in before and before[key][0] == etag:
                continue
            for config in configs:
                if _matches(config, key):
                    self._seq += 1
                    event = s3_event(
                        self.emu.region,
                        bucket,
                        key,
                        size,
                        etag,
                        config.get("Id", ""),
                        f"{int(time.time() * 1e6):016X}{self._seq:04X}",
                    )
                    self.stats["events"] += 1
                    self._pool.submit(self._deliver, function_name_from(config["LambdaFunctionArn"]), bucket, event)

    def _deliver(self, name: str, bucket: str, event: dict[str, Any]) -> None:
        """One asynchronous invocation: retried while throttled, and twice after a function error."""
        with self.emu._lock:
            fn = self.emu.functions.get(name)
        if fn is None:
            return
        if not s3_may_invoke(fn.policy, bucket):
            self.stats["refused"] += 1
            if (name, bucket) not in self._warned:
                self._warned.add((name, bucket))
                log.warning(
                    "s3 events: %s's policy does not let %s invoke it for bucket %s (S3 would have refused the "
                    "notification configuration); event dropped",
                    name,
                    S3_PRINCIPAL,
                    bucket,
                )
            return
        payload = json.dumps(event).encode()
        started = time.monotonic()
        backoff, errors = 0.5, 0
        while not self._stop.is_set():
            try:
                _, headers, _ = self.emu.invoke(name, payload, False)
            except ApiError as exc:
                if exc.status == 429 and time.monotonic() - started < MAX_EVENT_AGE_S:
                    self.stats["retries"] += 1
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                log.warning("s3 event for %s dropped: %s", name, exc.message)
                return
            if "X-Amz-Function-Error" in headers and errors < len(ERROR_RETRY_DELAYS_S):
                self._stop.wait(ERROR_RETRY_DELAYS_S[errors])
                errors += 1
                self.stats["retries"] += 1
                continue
            self.stats["delivered"] += 1
            return
