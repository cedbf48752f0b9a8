"""The README stays true: its profile reference is the generated one, and .ci/run runs the README's test command."""

from pathlib import Path

from perfdesk.controllers.reference import END, START, markdown

ROOT = Path(__file__).resolve().parents[2]


def test_readme_profile_reference_is_current():
    text = (ROOT / "README.md").read_text()
    section = text.split(START)[1].split(END)[0]
    assert section.strip() == markdown().strip(), "run: python -m perfdesk.controllers.reference --readme README.md"


def test_ci_runs_the_readme_test_command():
    assert "scripts/test.sh" in (ROOT / "README.md").read_text()
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
