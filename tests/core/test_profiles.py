"""Broken profiles give one clear message naming the file, the key path and the line; the CLI exits 2."""

from pathlib import Path

import pytest

from perfdesk.cli import main
from perfdesk.controllers.profile import ProfileError, key_lines, load_profile

DATA = Path(__file__).parent.parent / "data" / "profiles"

# file, key path in the message, line, phrase in the message
BROKEN = [
    ("not_toml.toml", "", 4, "not valid TOML"),
    ("unknown_key.toml", "targets[0].wrkers", 7, "did you mean 'workers'"),
    ("wrong_type.toml", "trials[1].count", 10, "valid integer"),
    ("out_of_range.toml", "workloads[0].batch", 7, "greater than or equal to 1"),
    ("unknown_target_kind.toml", "targets[0].kind", 3, "did you mean 'lambda'"),
    ("duplicate_target.toml", "targets[1].name", 6, "duplicate target name 'server'"),
    ("missing_file.toml", "workloads[0].images", 7, "no such folder"),
    ("missing_weights.toml", "workloads[0].weights", 7, "no such file"),
    ("unknown_section.toml", "sesion", 1, "did you mean 'session'"),
    ("unknown_trial_kind.toml", "trials[0].kind", 6, "did you mean 'concurrency'"),
    ("trial_unknown_target.toml", "trials[0].targets", 7, "no target named 'servr'"),
    ("bad_levels.toml", "trials[0]", 5, "duration_s or requests, not both"),
    ("no_targets.toml", "targets", None, "at least one [[targets]]"),
]


@pytest.mark.parametrize("name,key,line,phrase", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_profile_message(name, key, line, phrase):
    path = DATA / name
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert phrase in message
    first = next(p for p in info.value.problems if phrase in f"{p[0]}: {p[2]}")
    assert first[0] == key
    assert first[1] == line
    where = f"{path}:{line}" if line else str(path)
    assert where in message


@pytest.mark.parametrize("name", [b[0] for b in BROKEN])
def test_cli_exits_2_without_traceback(name, capsys):
    code = main(["--headless", str(DATA / name)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert str(DATA / name) in err


def test_cli_exit_code_is_2(capsys):
    assert main(["--check", str(DATA / "unknown_key.toml")]) == 2
    assert main(["--check", str(DATA / "_base_ok.toml")]) == 0


def test_missing_profile_file(capsys):
    assert main(["--check", str(DATA / "nope.toml")]) == 2
    assert "no such profile file" in capsys.readouterr().err


def test_valid_profile_and_defaults():
    p = load_profile(DATA / "_base_ok.toml")
    assert [t.name for t in p.targets] == ["server"]
    assert p.workloads[0].name == "mobilenet_v2-torch"
    assert p.trials[0].count == 5 and p.trials[0].warmup == 3


@pytest.mark.parametrize("profile", sorted((Path(__file__).parents[2] / "profiles").glob("*.toml")))
def test_shipped_profiles_are_valid(profile):
    load_profile(profile)


def test_key_lines_arrays_of_tables_and_subtables():
    text = '[session]\nname = "a"\n\n[[targets]]\nname = "x"\n\n[[targets]]\nname = "y"\n[targets.env]\nA = "1"\n'
    lines = key_lines(text)
    assert lines[("session", "name")] == 2
    assert lines[("targets", 0, "name")] == 5
    assert lines[("targets", 1, "name")] == 8
    assert lines[("targets", 1, "env", "A")] == 10
