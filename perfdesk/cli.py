"""Command line: ``perfdesk`` (TUI), ``perfdesk PROFILE`` (TUI on a profile), ``perfdesk --headless PROFILE``,
and subcommands for the rest (export, summarize, report, compare, teardown, agent, emulator)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perfdesk import __version__
from perfdesk.controllers.exit_codes import ExitCode

EXIT_OK, EXIT_FAILED, EXIT_PROFILE, EXIT_INTERRUPTED = (
    ExitCode.OK,
    ExitCode.FAILED,
    ExitCode.BAD_INPUT,
    ExitCode.INTERRUPTED,
)


def default_profile() -> Path:
    """profiles/local.toml of the checkout perfdesk runs from, else of the working directory."""
    here = Path(__file__).resolve().parents[1] / "profiles" / "local.toml"
    return here if here.exists() else Path("profiles/local.toml")


def main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="perfdesk",
        description="Measure DNN inference on servers (local, SSH hosts, EC2) against serverless functions "
        "(Lambda, local emulator). With no PROFILE, opens the interactive desk on profiles/local.toml.",
        epilog="Subcommands: perfdesk export|summarize|report|compare|teardown|agent|emulator --help. "
        "Exit codes: 0 ok, 1 a trial failed or the regression gate fired, 2 bad profile, 130 interrupted.",
    )
    p.add_argument("profile", nargs="?", help="profile TOML file (default: profiles/local.toml)")
    p.add_argument(
        "--headless",
        action="store_true",
        help="run the profile with no UI (progress bars, summary, exit code); for nightly runs",
    )
    p.add_argument("--output", "-o", metavar="DIR", help="folder for the session folder (overrides [session] output)")
    p.add_argument(
        "--baseline",
        metavar="SESSION",
        help="session folder to gate against: exit 1 when a threshold "
        "of [thresholds] is crossed by a significant change (overrides [session] baseline)",
    )
    p.add_argument("--check", action="store_true", help="validate the profile and exit (0 valid, 2 invalid)")
    p.add_argument("--verbose", "-v", action="store_true", help="headless: print every log line (agent, functions)")
    p.add_argument("--version", action="version", version=f"perfdesk {__version__}")
    return p


def _load(path: str):
    from perfdesk.controllers.profile import ProfileError, load_profile

    try:
        return load_profile(path)
    except ProfileError as exc:
        print(f"perfdesk: bad profile\n{exc}", file=sys.stderr)
        raise SystemExit(EXIT_PROFILE) from None


def run_main(args) -> int:
    profile_path = args.profile or str(default_profile())
    profile = _load(profile_path)
    if args.check:
        print(
            f"{profile_path}: ok ({len(profile.targets)} targets, {len(profile.workloads)} workloads, "
            f"{len(profile.trials)} trials)"
        )
        return EXIT_OK
    if not args.headless:
        from perfdesk.tui.app import run_app

        return run_app(profile, output=args.output)
    from perfdesk.headless import run_headless

    code, session = run_headless(profile, output=args.output, verbose=args.verbose)
    baseline = args.baseline or profile.session.baseline
    if baseline and code == EXIT_OK:
        code = gate(session, Path(baseline), profile.thresholds)
    return code


def gate(session: Path, baseline: Path, thresholds: dict) -> int:
    """The regression gate: exit 1 and print what regressed."""
    try:
        from perfdesk.verdict.compare import format_regressions
        from perfdesk.verdict.compare import gate as run_gate
    except ImportError:
        print("perfdesk: the regression gate is not available in this build", file=sys.stderr)
        return EXIT_FAILED
    if not (baseline / "requests.csv").exists():
        print(f"perfdesk: baseline {baseline}: no requests.csv there", file=sys.stderr)
        return EXIT_PROFILE
    result = run_gate(session, baseline, thresholds)
    lines = format_regressions(result)
    for line in lines:
        print(line)
    return EXIT_FAILED if result.regressions else EXIT_OK


# -- subcommands ------------------------------------------------------------------------------------------------
def _export(args) -> int:
    from perfdesk.verdict.export import export_sessions

    try:
        written = export_sessions([Path(s) for s in args.sessions], Path(args.output))
    except (FileNotFoundError, ValueError) as exc:
        print(f"perfdesk export: {exc}", file=sys.stderr)
        return EXIT_PROFILE
    for path in written:
        print(path)
    return EXIT_OK


def _summarize(args) -> int:
    import pandas as pd

    from perfdesk.controllers.stats import summarize_frame

    path = Path(args.session) / "requests.csv"
    if not path.exists():
        print(f"perfdesk summarize: {path}: no such file", file=sys.stderr)
        return EXIT_PROFILE
    frame = summarize_frame(pd.read_csv(path))
    cols = ["workload", "trial", "target", "level", "count", "ok", "throughput_rps", "p50_ms", "p99_ms"]
    print(frame[cols].to_string(index=False))
    return EXIT_OK


def _agent(args) -> int:
    from perfdesk.shipped.agent import main as agent_main

    agent_main(args.agent_args)
    return EXIT_OK


SUBCOMMANDS = {}


def sub_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="perfdesk")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="copy session CSVs to a folder, plus combined.csv of every request")
    e.add_argument("sessions", nargs="+", help="session folders")
    e.add_argument("--output", "-o", required=True, help="destination folder")
    e.set_defaults(func=_export)

    s = sub.add_parser("summarize", help="recompute the per-trial summary from a session's requests.csv")
    s.add_argument("session")
    s.set_defaults(func=_summarize)

    a = sub.add_parser("agent", help="run the inference agent alone (what is shipped to hosts)", add_help=False)
    a.add_argument("agent_args", nargs=argparse.REMAINDER)
    a.set_defaults(func=_agent)

    for module, adder in (
        ("perfdesk.lambda_pkg.cli", "add_emulator_parser"),
        ("perfdesk.remote.cli", "add_teardown_parser"),
        ("perfdesk.verdict.cli", "add_parsers"),
    ):
        try:
            mod = __import__(module, fromlist=[adder])
        except ImportError:
            continue
        getattr(mod, adder)(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    known = {"export", "summarize", "agent", "emulator", "teardown", "report", "compare"}
    if argv and argv[0] in known:
        args = sub_parser().parse_args(argv)
        handler = getattr(args, "func", None) or args.handler
        return int(handler(args) or 0)
    args = main_parser().parse_args(argv)
    try:
        return run_main(args)
    except SystemExit as exc:  # a bad profile: message already printed
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
