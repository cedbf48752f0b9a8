"""``perfdesk teardown``: remove what a session created in AWS. ``perfdesk.cli`` registers it with
:func:`add_arguments` (its options) and :func:`run_teardown` (its handler)."""

from __future__ import annotations

import argparse
import sys

from perfdesk.controllers.exit_codes import ExitCode

DESCRIPTION = (
    "Find everything perfdesk created in AWS for a session (or for every session) and remove it: EC2 instances, "
    "elastic IPs, security groups and key pairs; Lambda functions (with their versions, URLs and concurrency), layer "
    "versions, execution roles and their policies; S3 objects and the bucket the session created. Found by the "
    "session's tags and by the ledger in its folder (layer versions take no tags). Safe to run after a failed, "
    "interrupted or killed session, and to repeat. AWS's own configuration says where and as whom: the credential "
    "chain, AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> (e.g. a LocalStack or moto "
    "endpoint)."
)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The teardown's options, added to ``p``."""
    p.add_argument(
        "session",
        nargs="?",
        default=None,
        help="the session's folder, or its id (looked for under ./sessions); default: every perfdesk session",
    )
    p.add_argument(
        "--region",
        default=None,
        help="AWS region (default: the regions the session recorded, else AWS_REGION / your AWS config)",
    )
    p.add_argument("--all", action="store_true", help="required to remove every session's resources")
    return p


def run_teardown(args: argparse.Namespace) -> int:
    """Exit codes: 0 removed (or nothing to remove), 1 some resources left behind, 2 usage or AWS setup error."""
    from perfdesk.remote.teardown import teardown

    if args.session is None and not args.all:
        print(
            "perfdesk teardown: give a session (its folder or id), or --all for every perfdesk session", file=sys.stderr
        )
        return ExitCode.BAD_INPUT
    try:
        removed = teardown(args.session, region=args.region, on_line=lambda line: print(line, flush=True))
    except RuntimeError as exc:
        print(f"perfdesk teardown: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except Exception as exc:  # noqa: BLE001 - credentials, endpoint: one line, no traceback
        print(f"perfdesk teardown: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if not removed:
        print("nothing to remove" + (f" for session {args.session}" if args.session else ""))
    return ExitCode.OK
