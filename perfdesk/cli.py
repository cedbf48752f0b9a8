"""The command line, one argparse parser (:func:`build_parser`):

    perfdesk                                               the desk on profiles/local.toml
    perfdesk PROFILE                                       the desk on PROFILE
    perfdesk --headless PROFILE [--baseline SESSION] [-o DIR] [-v]
    perfdesk --check PROFILE
    perfdesk COMMAND ...      export, summarize, report, compare, teardown, agent, emulator

The parser's subcommands are the commands, each registered here explicitly with the argument adder and the
handler its package defines (``perfdesk.shipped.agent``, ``perfdesk.lambda_pkg.cli``, ``perfdesk.remote.cli``,
``perfdesk.verdict.cli``; export and summarize are defined here), and one unlisted subcommand, the profile form
(:data:`PROFILE_FORM`: PROFILE and the run options).

Dispatch (:func:`parse`): when the first word of the command line is a command's name, the line is that command
(``-h``, ``--help`` and ``--version`` as the first word are the top parser's); otherwise it is the profile form,
parsed as ``[PROFILE_FORM, *argv]``. The names come from the parser itself (:func:`commands`), never from a second
list, so a new command is one more registration in :func:`build_parser`. A profile named like a command is still a
profile wherever it is not the first word, and whenever it is written as a path: ``perfdesk --headless export``,
``perfdesk ./export``. (argparse cannot hold an optional PROFILE positional next to subcommands, hence the unlisted
form; the top parser carries the same run options only so that ``perfdesk --help`` shows them.)

Building the parser imports no engine, AWS, SSH or UI library (handlers import what they need when they run), so
``perfdesk --help`` is quick. Every exit code is an :class:`~perfdesk.controllers.exit_codes.ExitCode`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perfdesk import __version__
from perfdesk.controllers.exit_codes import ExitCode
from perfdesk.lambda_pkg import cli as emulator_cli
from perfdesk.remote import cli as teardown_cli
from perfdesk.shipped import agent
from perfdesk.verdict import cli as verdict_cli

#: The profile form's subcommand name: never typed (:func:`parse` puts it in front) and not one of :func:`commands`,
#: so a profile file of this name is a profile like any other.
PROFILE_FORM = "profile"

USAGE = """%(prog)s [--headless | --check] [--baseline SESSION] [-o DIR] [-v] [PROFILE]
       %(prog)s COMMAND ...   (%(prog)s COMMAND --help)"""


def default_profile() -> Path:
    """profiles/local.toml of the checkout perfdesk runs from, else of the working directory."""
    here = Path(__file__).resolve().parents[1] / "profiles" / "local.toml"
    return here if here.exists() else Path("profiles/local.toml")


# -- the profile form ---------------------------------------------------------------------------------------------
def _add_run_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--headless",
        action="store_true",
        help="run the profile with no UI (progress bars, summary, exit code); for nightly runs",
    )
    mode.add_argument("--check", action="store_true", help="validate the profile and exit (0 valid, 2 invalid)")
    p.add_argument(
        "--baseline",
        metavar="SESSION",
        help="headless: session folder to gate against: exit 1 when a threshold of [thresholds] is crossed by a "
        "significant change (overrides [session] baseline)",
    )
    p.add_argument("--output", "-o", metavar="DIR", help="folder for the session folder (overrides [session] output)")
    p.add_argument("--verbose", "-v", action="store_true", help="headless: print every log line (agent, functions)")


def run_main(args: argparse.Namespace) -> int:
    """The profile form: check the profile, open the desk on it, or run it headless (and gate it)."""
    from perfdesk.controllers.profile import ProfileError, load_profile

    profile_path = args.profile or str(default_profile())
    try:
        profile = load_profile(profile_path)
    except ProfileError as exc:
        print(f"perfdesk: bad profile\n{exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.check:
        print(
            f"{profile_path}: ok ({len(profile.targets)} targets, {len(profile.workloads)} workloads, "
            f"{len(profile.trials)} trials)"
        )
        return ExitCode.OK
    if not args.headless:
        from perfdesk.tui.app import run_app

        return run_app(profile, output=args.output)
    from perfdesk.headless import run_headless

    code, session = run_headless(profile, output=args.output, verbose=args.verbose)
    baseline = args.baseline or profile.session.baseline
    if baseline and code == ExitCode.OK:
        code = gate(session, Path(baseline), profile.thresholds)
    return code


def gate(session: Path, baseline: Path, thresholds: dict) -> int:
    """The regression gate: exit 1 and print what regressed."""
    from perfdesk.verdict.compare import format_regressions
    from perfdesk.verdict.compare import gate as run_gate

    if not (baseline / "requests.csv").exists():
        print(f"perfdesk: baseline {baseline}: no requests.csv there", file=sys.stderr)
        return ExitCode.BAD_INPUT
    result = run_gate(session, baseline, thresholds)
    for line in format_regressions(result):
        print(line)
    return ExitCode.FAILED if result.regressions else ExitCode.OK


# -- export, summarize, agent ---------------------------------------------------------------------------------------
def _add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="session folders")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="destination folder")


def _export(args: argparse.Namespace) -> int:
    from perfdesk.verdict.export import export_sessions

    try:
        written = export_sessions([Path(s) for s in args.sessions], Path(args.output))
    except (FileNotFoundError, ValueError) as exc:
        print(f"perfdesk export: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    for path in written:
        print(path)
    return ExitCode.OK


def _add_summarize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", metavar="SESSION", help="session folder")


def _summarize(args: argparse.Namespace) -> int:
    import pandas as pd

    from perfdesk.controllers.stats import summarize_frame

    path = Path(args.session) / "requests.csv"
    if not path.exists():
        print(f"perfdesk summarize: {path}: no such file", file=sys.stderr)
        return ExitCode.BAD_INPUT
    frame = summarize_frame(pd.read_csv(path))
    cols = ["workload", "trial", "target", "level", "count", "ok", "throughput_rps", "p50_ms", "p99_ms"]
    print(frame[cols].to_string(index=False))
    return ExitCode.OK


def _agent(args: argparse.Namespace) -> int:
    try:
        agent.serve(args)  # until SIGTERM or Ctrl-C
    except SystemExit as exc:
        if isinstance(exc.code, str):  # the agent's own refusal (no token): its message, and bad input
            print(exc.code, file=sys.stderr)
            return ExitCode.BAD_INPUT
        return ExitCode.OK if not exc.code else ExitCode.FAILED  # gunicorn's exit: its log says why
    return ExitCode.OK


# -- the parser ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The command line's one parser."""
    p = argparse.ArgumentParser(
        prog="perfdesk",
        usage=USAGE,
        description="Measure DNN inference on servers (local, SSH hosts, EC2) against serverless functions "
        "(Lambda, local emulator). With no PROFILE, opens the interactive desk on profiles/local.toml.",
        epilog="Exit codes: 0 ok, 1 a trial failed or the regression gate fired, 2 bad profile or argument, "
        "130 interrupted.",
    )
    p.add_argument("--version", action="version", version=f"perfdesk {__version__}")
    # shown by ``perfdesk --help``; parse() hands these to the profile form, which parses them
    _add_run_options(
        p.add_argument_group("running a profile", "PROFILE: a profile TOML file (default: profiles/local.toml)")
    )
    sub = p.add_subparsers(title="commands", dest="command", metavar="COMMAND", prog="perfdesk")

    def command(name: str, add_arguments, handler, **kwargs) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, **kwargs)
        add_arguments(cmd)
        cmd.set_defaults(handler=handler)
        return cmd

    form = command(PROFILE_FORM, _add_run_options, run_main, prog="perfdesk", usage=USAGE.split("\n")[0])
    form.add_argument("profile", nargs="?", metavar="PROFILE", help="profile TOML file (default: profiles/local.toml)")

    command(
        "export",
        _add_export_arguments,
        _export,
        help="copy session CSVs to a folder, plus combined.csv of every request",
        description="Copy each session's files to DIR/<session>/ and write DIR/combined.csv: every request of "
        "every session, with its level's summary figures.",
    )
    command(
        "summarize",
        _add_summarize_arguments,
        _summarize,
        help="recompute the per-trial summary from a session's requests.csv",
    )
    command(
        "report",
        verdict_cli.add_report_arguments,
        verdict_cli.run_report,
        help="write a self-contained HTML report of a session",
        description=verdict_cli.REPORT_DESCRIPTION,
    )
    command(
        "compare",
        verdict_cli.add_compare_arguments,
        verdict_cli.run_compare,
        help="compare two sessions with significance tests",
        description=verdict_cli.COMPARE_DESCRIPTION,
    )
    command(
        "teardown",
        teardown_cli.add_arguments,
        teardown_cli.run_teardown,
        help="remove every cloud resource a session created (EC2, functions, layers, roles, S3), also after a kill",
        description=teardown_cli.DESCRIPTION,
    )
    command(
        "agent",
        agent.add_arguments,
        _agent,
        help="run the inference agent alone (what is shipped to hosts)",
        description="The inference agent (Flask under gunicorn) until Ctrl-C or SIGTERM: POST /predict, "
        "GET /metrics, GET /healthz, each behind 'Authorization: Bearer <token>'. The token comes from "
        "--token-file or PERFDESK_AGENT_TOKEN, never from the command line.",
    )
    command(
        "emulator",
        emulator_cli.add_arguments,
        emulator_cli.run_emulator,
        help="run the local Lambda emulator until Ctrl-C",
        description=emulator_cli.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    form.epilog = f"Commands: {', '.join(commands(p))} (perfdesk --help lists them)."
    return p


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser by name, the profile form's included."""
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's commands by name, as registered (the profile form is not one): the one list of names."""
    return {name: cmd for name, cmd in subparsers(parser).items() if name != PROFILE_FORM}


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse a command line (see the module docstring for the dispatch); exits 2 with a message on a bad one."""
    parser = build_parser()
    if argv and (argv[0] in commands(parser) or argv[0] in ("-h", "--help", "--version")):
        return parser.parse_args(argv)
    args = parser.parse_args([PROFILE_FORM, *argv])
    if args.baseline and not args.headless:
        subparsers(parser)[PROFILE_FORM].error("--baseline gates a headless run: add --headless")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
