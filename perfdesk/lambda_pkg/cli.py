"""``perfdesk emulator``: the local Lambda emulator alone, until Ctrl-C (or SIGTERM).

    perfdesk emulator --port 9001
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
    aws lambda invoke --endpoint-url http://127.0.0.1:9001 --function-name f out.json   # any Lambda client

Functions run in Lambda's Python runtimes (python3.10 .. python3.13), each prepared once from this machine's
interpreter of that version (pyenv, PATH, or PERFDESK_LAMBDA_PYTHON_3_12=/path/to/python3.12) and cached in
~/.cache/perfdesk/lambda-runtimes (PERFDESK_LAMBDA_RUNTIMES). Run as root for Lambda's isolation (mount
namespaces, the sandbox user, cgroup limits); the first line printed says what this machine allows.

``perfdesk emulator`` (perfdesk/cli.py) registers :func:`add_arguments` and :func:`run_emulator`;
``python -m perfdesk.lambda_pkg.cli`` runs it too.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from perfdesk.controllers.exit_codes import ExitCode
from perfdesk.controllers.extras import MissingExtra, require


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The emulator's options, added to ``p`` (``perfdesk emulator`` and ``python -m perfdesk.lambda_pkg.cli``)."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=9001, help="port (0: any free port; default 9001)")
    p.add_argument("--idle-s", type=float, default=300.0, help="reclaim environments idle this long (default 300)")
    p.add_argument("--concurrency", type=int, default=10, help="account concurrency limit (default 10)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--no-cpu-limits", action="store_true", help="do not put environments in cpu cgroups")
    p.add_argument(
        "--no-memory-limits", action="store_true", help="poll memory instead of a cgroup's hard limit (less faithful)"
    )
    p.add_argument(
        "--credentials",
        action="append",
        default=[],
        metavar="KEY:SECRET",
        help="accept these credentials for SigV4-signed function URLs (besides test:test); repeatable",
    )
    p.add_argument("--runtime-cache", default=None, help="where prepared runtimes are cached")
    p.add_argument("--work-dir", default=None, help="where code and environments live (default: a temp dir)")
    p.add_argument(
        "--registry",
        default=None,
        help="the registry behind a local ECR, e.g. http://127.0.0.1:5000: image functions' ECR image URIs are pulled "
        "from it (default: PERFDESK_ECR_REGISTRY)",
    )
    p.add_argument(
        "--managed-environments",
        default="1:4",
        metavar="MIN:MAX",
        help="Lambda Managed Instances: environments a published version keeps and scales to (default 1:4; AWS keeps "
        "3 across zones)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print function logs")
    return p


def run_emulator(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; exit 2 when the address cannot be listened on."""
    from perfdesk.lambda_pkg.emulator import Emulator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def sink(function: str, text: str) -> None:
        if not args.quiet:
            for line in text.rstrip("\n").splitlines():
                print(f"[{function}] {line}", flush=True)

    credentials = {}
    for pair in args.credentials:
        key, sep, secret = pair.partition(":")
        if not sep or not key or not secret:
            print(f"perfdesk emulator: --credentials wants KEY:SECRET, not {pair!r}", file=sys.stderr)
            return ExitCode.BAD_INPUT
        credentials[key] = secret
    low, _, high = str(args.managed_environments).partition(":")
    try:
        managed = (int(low), int(high or low))
        if not 1 <= managed[0] <= managed[1]:
            raise ValueError
    except ValueError:
        print(
            f"perfdesk emulator: --managed-environments wants MIN:MAX, not {args.managed_environments!r}",
            file=sys.stderr,
        )
        return ExitCode.BAD_INPUT
    try:
        emu = Emulator(
            host=args.host,
            port=args.port,
            work_dir=args.work_dir,
            idle_s=args.idle_s,
            account_concurrency=args.concurrency,
            cpu_limits=not args.no_cpu_limits,
            region=args.region,
            log_sink=sink,
            memory_limits=not args.no_memory_limits,
            runtime_cache=args.runtime_cache,
            credentials=credentials,
            registry=args.registry,
            managed_min_environments=managed[0],
            managed_max_environments=managed[1],
        ).start()
    except OSError as exc:
        print(
            f"perfdesk emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}; choose another --port",
            file=sys.stderr,
        )
        return ExitCode.BAD_INPUT
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({"endpoint": emu.url, **emu.describe()}), flush=True)
    try:
        require("emulator", what="running a function")
    except MissingExtra as exc:  # the control plane works without it; an invocation would fail with Runtime.ExitError
        print(f"perfdesk emulator: {exc}", file=sys.stderr, flush=True)
    try:
        stop.wait()
    finally:
        emu.stop()
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="perfdesk-emulator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(p)
    return run_emulator(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
