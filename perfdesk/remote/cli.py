"""``perfdesk teardown``: remove the EC2 resources a session created. ``perfdesk.cli`` registers it with
:func:`add_arguments` (its options) and :func:`run_teardown` (its handler)."""

from __future__ import annotations

import argparse
import sys

from perfdesk.controllers.exit_codes import ExitCode

DESCRIPTION = (
    "Find every EC2 instance, elastic IP, security group and key pair tagged by perfdesk for a session (or for "
    "every session) and remove them. Safe to run after a failed or interrupted session."
)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The teardown's options, added to ``p``."""
    p.add_argument("session", nargs="?", default=None, help="session id (default: every perfdesk session)")
    p.add_argument("--region", default=None, help="AWS region (default: AWS_REGION / your AWS config)")
    p.add_argument("--endpoint-url", default=None, help="EC2 endpoint (a local test endpoint such as moto)")
    p.add_argument("--all", action="store_true", help="required to remove every session's resources")
    return p


def run_teardown(args: argparse.Namespace) -> int:
    """Exit codes: 0 removed (or nothing to remove), 1 some resources left behind, 2 usage or AWS setup error."""
    from perfdesk.remote.teardown import teardown_session

    if args.session is None and not args.all:
        print("perfdesk teardown: give a session id, or --all for every perfdesk session", file=sys.stderr)
        return ExitCode.BAD_INPUT
    region = args.region
    if region is None:
        import boto3

        region = boto3.session.Session().region_name
        if not region:
            print("perfdesk teardown: no region: pass --region or set AWS_REGION", file=sys.stderr)
            return ExitCode.BAD_INPUT
    try:
        removed = teardown_session(args.session, region, args.endpoint_url, on_line=lambda line: print(line))
    except RuntimeError as exc:
        print(f"perfdesk teardown: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except Exception as exc:  # noqa: BLE001 - credentials, endpoint: one line, no traceback
        print(f"perfdesk teardown: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if not removed:
        print(f"nothing to remove in {region}" + (f" for session {args.session}" if args.session else ""))
    return ExitCode.OK
