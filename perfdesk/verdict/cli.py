"""The verdict's subcommands; ``perfdesk.cli`` registers them with these argument adders and handlers:

    perfdesk report SESSION [-o FILE]           self-contained HTML report of a session
    perfdesk compare A B [--alpha] [--gate]     per trial x target x level changes from A (baseline) to B

Exit codes: 0 done; 1 ``compare --gate`` found a regression; 2 a session folder or profile section cannot be read.
"""

from __future__ import annotations

import argparse
import functools

from perfdesk.controllers.exit_codes import ExitCode

REPORT_DESCRIPTION = (
    "Write an HTML report (charts inlined) of a session folder: latency distributions, throughput against "
    "concurrency, cold against warm, memory sweep, cost per 1,000 inferences, break-even, the trials and the manifest."
)
COMPARE_DESCRIPTION = (
    "Compare session B against baseline A per trial x target x level: p50, p99, throughput, error rate and cost "
    "per 1k, each with a test saying whether the change is real."
)


def add_report_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("session", metavar="SESSION", help="session folder")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: SESSION/report.html)")
    return p


def add_compare_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("baseline", metavar="A", help="baseline session folder")
    p.add_argument("current", metavar="B", help="session folder compared against A")
    p.add_argument(
        "--alpha", type=float, default=None, help="significance level (default: B's [thresholds] alpha, else 0.01)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("-v", "--verbose", action="store_true", help="show baseline values and p-values")
    p.add_argument(
        "--gate", action="store_true", help="also apply B's [thresholds] (or the defaults) and exit 1 on a regression"
    )
    return p


def _bad_input_is_exit_2(handler):
    """An unreadable session folder or a bad [prices]/[thresholds] section: one line on stderr, exit 2."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from pydantic import ValidationError
        from rich.console import Console

        from perfdesk.verdict.session_data import SessionError

        err = Console(stderr=True)
        try:
            return handler(args)
        except SessionError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        except ValidationError as exc:
            err.print(
                f"[red]error:[/] bad [prices] or [thresholds] section in the session's profile: {exc}",
                highlight=False,
                soft_wrap=True,
            )
        return ExitCode.BAD_INPUT

    return run


@_bad_input_is_exit_2
def run_report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from perfdesk.verdict.report.html import write_report

    path = write_report(args.session, args.output)
    Console().print(f"report written: {path}")
    return ExitCode.OK


@_bad_input_is_exit_2
def run_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from perfdesk.verdict.compare import Thresholds, compare_sessions, format_regressions, gate_comparison
    from perfdesk.verdict.report.console import comparison_table
    from perfdesk.verdict.session_data import load_session

    console = Console()
    err = Console(stderr=True)
    current = load_session(args.current)
    limits = Thresholds.resolve(current.profile.get("thresholds"))
    alpha = args.alpha if args.alpha is not None else limits.alpha
    comparison = compare_sessions(args.baseline, current, alpha=alpha, seed=args.seed)
    console.print(comparison_table(comparison, verbose=args.verbose))
    for label in comparison.only_baseline:
        err.print(f"[yellow]only in {args.baseline}:[/] {label}")
    for label in comparison.only_current:
        err.print(f"[yellow]only in {args.current}:[/] {label}")
    if not args.gate:
        return ExitCode.OK
    result = gate_comparison(comparison, limits.model_copy(update={"alpha": alpha}))
    for line in format_regressions(result):
        err.print(line, style="red", highlight=False, soft_wrap=True)
    console.print(f"gate: {len(result.regressions)} regression(s) in {result.checked} checks")
    return ExitCode.FAILED if result.regressions else ExitCode.OK
