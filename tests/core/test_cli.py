"""The command line is one parser: every subcommand answers --help, the README's Commands table parses, a bad
argument exits 2 with a message, and ``perfdesk agent`` really serves."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import urllib3

from perfdesk import cli
from perfdesk.controllers.exit_codes import ExitCode
from perfdesk.remote.local import free_port
from tests.conftest import PYTHON, ROOT, agent_env

COMMANDS = sorted(cli.commands(cli.build_parser()))
PROFILE_OK = ROOT / "tests" / "data" / "profiles" / "_base_ok.toml"


def _perfdesk(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "perfdesk", *argv], env=agent_env(), capture_output=True, text=True, timeout=60
    )


# -- help ---------------------------------------------------------------------------------------------------------
def test_perfdesk_help_lists_every_command():
    out = _perfdesk("--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: perfdesk")
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", out.stdout, flags=re.M), f"{name} missing from perfdesk --help"
    for option in ("--headless", "--check", "--baseline", "--output", "--verbose", "--version"):
        assert option in out.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    out = _perfdesk(name, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: perfdesk {name}")


def test_agent_help_is_the_agents_options():
    out = _perfdesk("agent", "--help")
    for option in ("--port", "--token-file", "--model", "--runtime", "--device", "--weights", "--workers"):
        assert option in out.stdout


def test_help_loads_no_heavy_library():
    code = (
        "import sys\nfrom perfdesk.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sys.modules), file=sys.stderr)"
    )
    out = subprocess.run([PYTHON, "-c", code], env=agent_env(), capture_output=True, text=True, timeout=60)
    loaded = {name.split(".")[0] for name in out.stderr.split()}
    assert "perfdesk" in loaded
    heavy = {"torch", "onnxruntime", "boto3", "botocore", "paramiko", "pandas", "numpy", "textual", "rich", "flask"}
    assert not heavy & loaded


# -- the README's Commands table ------------------------------------------------------------------------------------
def _readme_commands() -> list[str]:
    table = (ROOT / "README.md").read_text().split("\n## Commands\n")[1].split("\n## ")[0]
    return re.findall(r"^\| `(perfdesk[^`]*)` \|", table, flags=re.M)


README_COMMANDS = _readme_commands()


def _argv(command: str) -> list[str]:
    """A README command line with its placeholders (PROFILE, SESSION..., DIR) filled in; [optional] parts kept."""
    argv = []
    for word in command.split()[1:]:
        word = word.strip("[]")
        if word == "...":
            continue
        argv.append(f"x-{word.rstrip('.').lower()}" if re.fullmatch(r"[A-Z][A-Z_]*(\.\.\.)?", word) else word)
    return argv


def test_readme_documents_every_command():
    assert len(README_COMMANDS) >= len(COMMANDS)
    documented = {_argv(c)[0] for c in README_COMMANDS if len(c.split()) > 1}
    assert set(COMMANDS) <= documented


@pytest.mark.parametrize("command", README_COMMANDS)
def test_readme_command_parses(command):
    argv = _argv(command)
    args = cli.parse(argv)
    name = argv[0] if argv and argv[0] in COMMANDS else cli.PROFILE_FORM
    assert args.command == name
    parser = cli.subparsers(cli.build_parser())[name]
    values = [str(v) for value in vars(args).values() for v in (value if isinstance(value, list) else [value])]
    words = iter(argv[1:] if name != cli.PROFILE_FORM else argv)
    for word in words:
        if word.startswith("-"):  # an option the README shows: it took effect
            action = parser._option_string_actions[word]
            if action.nargs == 0:
                assert getattr(args, action.dest) != action.default, f"{word} in {command!r}"
            else:
                assert str(getattr(args, action.dest)) == next(words), f"{word} in {command!r}"
        else:  # a positional: it is in the namespace
            assert word in values, f"{word} in {command!r}"


# -- dispatch -------------------------------------------------------------------------------------------------------
def test_the_first_word_decides(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(PROFILE_OK, tmp_path / "export")  # a profile named like a command
    assert cli.parse(["./export"]).profile == "./export"
    assert cli.main(["--check", "export"]) == ExitCode.OK
    assert "export: ok" in capsys.readouterr().out
    assert cli.parse(["export", "s", "-o", "d"]).command == "export"
    assert cli.parse([]).profile is None  # the desk on the default profile
    assert cli.parse([cli.PROFILE_FORM]).profile == cli.PROFILE_FORM  # the form's own name is a profile too


# -- bad arguments and exit codes -----------------------------------------------------------------------------------
BAD = [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["a.toml", "b.toml"], "unrecognized arguments: b.toml"),
    (["--check", "--headless", "a.toml"], "not allowed with argument"),
    (["--baseline", "s", "a.toml"], "--baseline gates a headless run"),
    (["export", "s"], "required: --output/-o"),
    (["compare", "a"], "required: B"),
    (["agent", "--port", "eighty"], "invalid int value: 'eighty'"),
    (["agent", "--runtime", "jax"], "invalid choice: 'jax'"),
    (["emulator", "--token-file", "t"], "unrecognized arguments: --token-file"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_argument_exits_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "usage: perfdesk" in err


def test_bad_argument_exit_code_from_the_shell():
    out = _perfdesk("agent", "--port", "eighty")
    assert out.returncode == ExitCode.BAD_INPUT
    assert "perfdesk agent: error: argument --port: invalid int value: 'eighty'" in out.stderr


def test_agent_without_a_readable_token_file_exits_2(tmp_path, capsys):
    assert cli.main(["agent", "--port", "0", "--token-file", str(tmp_path / "nope")]) == ExitCode.BAD_INPUT
    assert "cannot read --token-file" in capsys.readouterr().err


CLI_MODULES = ["perfdesk/cli.py", "perfdesk/lambda_pkg/cli.py", "perfdesk/remote/cli.py", "perfdesk/verdict/cli.py"]


@pytest.mark.parametrize("path", CLI_MODULES)
def test_handlers_return_exit_codes_not_numbers(path):
    bare = []
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Return) and node.value is not None:
            values = [node.value]
            if isinstance(node.value, ast.IfExp):
                values = [node.value.body, node.value.orelse]
            bare += [node.lineno for v in values if isinstance(v, ast.Constant) and isinstance(v.value, int)]
    assert not bare, f"{path}: return an ExitCode, not a number (lines {bare})"


# -- perfdesk agent serves ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_perfdesk_agent_starts_the_agent(tmp_path: Path):
    token = "cli-test-token-0123456789"
    (tmp_path / "token").write_text(token)
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "perfdesk", "agent", "--port", str(port), "--token-file", str(tmp_path / "token")]
        + ["--model", "mobilenet_v2", "--runtime", "torch", "--threads", "1", "--wsgi-threads", "1"],
        env=agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    http = urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False, timeout=60)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                resp = http.request("GET", "/healthz", headers={"Authorization": f"Bearer {token}"})
                break
            except urllib3.exceptions.HTTPError:
                assert time.monotonic() < deadline, "the agent did not answer /healthz in 120 s"
                time.sleep(0.2)
        assert resp.status == 200
        model = json.loads(resp.data)["model"]
        assert (model["model"], model["runtime"], model["random_weights"]) == ("mobilenet_v2", "torch", True)
        assert http.request("GET", "/healthz").status == 401  # the token is really required
    finally:
        proc.terminate()
        code = proc.wait(30)
    assert code == ExitCode.OK  # SIGTERM: gunicorn's graceful stop
