"""The verdict's subcommands, wired into the main CLI by ``add_parsers`` / ``run``:

    perfdesk report SESSION [-o FILE]           self-contained HTML report of a session
    perfdesk compare A B [--alpha] [--gate]     per trial x target x level changes from A (baseline) to B

Exit codes: 0 done; 1 ``compare --gate`` found a regression; 2 a session folder or profile section cannot be read.
"""

from __future__ import annotations

import argparse
import sys

COMMANDS = ("report", "compare")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` and ``compare`` subcommands to the main parser's subparsers."""
    report = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a session",
        description="Write an HTML report (charts inlined) of a session folder: latency distributions, throughput "
        "against concurrency, cold against warm, memory sweep, cost per 1,000 inferences, break-even, "
        "the trials and the manifest.",
    )
    report.add_argument("session", metavar="SESSION", help="session folder")
    report.add_argument("-o", "--output", metavar="FILE", help="output file (default: SESSION/report.html)")
    report.set_defaults(func=run, verdict_command="report")
    compare = subparsers.add_parser(
        "compare",
        help="compare two sessions with significance tests",
        description="Compare session B against baseline A per trial x target x level: p50, p99, throughput, "
        "error rate and cost per 1k, each with a test saying whether the change is real.",
    )
    compare.add_argument("baseline", metavar="A", help="baseline session folder")
    compare.add_argument("current", metavar="B", help="session folder compared against A")
    compare.add_argument(
        "--alpha", type=float, default=None, help="significance level (default: B's [thresholds] alpha, else 0.01)"
    )
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    compare.add_argument("-v", "--verbose", action="store_true", help="show baseline values and p-values")
    compare.add_argument(
        "--gate", action="store_true", help="also apply B's [thresholds] (or the defaults) and exit 1 on a regression"
    )
    compare.set_defaults(func=run, verdict_command="compare")


def run(args: argparse.Namespace) -> int:
    """Run a verdict subcommand (set as ``args.func`` by :func:`add_parsers`); returns the exit code."""
    from pydantic import ValidationError
    from rich.console import Console

    from perfdesk.verdict.session_data import SessionError

    console = Console()
    err = Console(stderr=True)
    try:
        if args.verdict_command == "report":
            from perfdesk.verdict.report.html import write_report

            path = write_report(args.session, args.output)
            console.print(f"report written: {path}")
            return 0
        from perfdesk.verdict.compare import (
            Thresholds,
            compare_sessions,
            format_regressions,
            gate_comparison,
        )
        from perfdesk.verdict.report.console import comparison_table
        from perfdesk.verdict.session_data import load_session

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
            return 0
        result = gate_comparison(comparison, limits.model_copy(update={"alpha": alpha}))
        for line in format_regressions(result):
            err.print(line, style="red", highlight=False, soft_wrap=True)
        console.print(f"gate: {len(result.regressions)} regression(s) in {result.checked} checks")
        return 1 if result.regressions else 0
    except SessionError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except ValidationError as exc:
        err.print(
            f"[red]error:[/] bad [prices] or [thresholds] section in the session's profile: {exc}",
            highlight=False,
            soft_wrap=True,
        )
        return 2


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m perfdesk.verdict.cli``) until the main CLI wires the subcommands."""
    parser = argparse.ArgumentParser(prog="perfdesk")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
