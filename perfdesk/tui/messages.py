"""Messages of the desk: small dataclasses named as facts, posted up from panes and from thread workers.

``post_message`` is thread-safe, so a worker reports what happened with one of these and the app (on its own loop)
updates the panes. Textual's :class:`Message` supports dataclasses (its ``__post_init__`` sets it up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from textual.message import Message


@dataclass
class JobFinished(Message):
    """A control job (deploy, tear down, force cold, run trials) ended in a worker thread."""

    job: str
    status: str  # completed | failed | stopped
    detail: str = ""


@dataclass
class ImageAnswered(Message):
    """One target answered the 'try one image' request (``result`` is a RequestResult)."""

    target: str
    result: object


@dataclass
class SessionExported(Message):
    """Session CSVs (and combined.csv) were written."""

    dest: Path
    written: list[Path] = field(default_factory=list)
    error: str = ""


@dataclass
class SessionLoaded(Message):
    """A saved session's CSVs were read (``error`` says why not)."""

    path: Path
    data: object = None  # a ChartData
    summaries: list = field(default_factory=list)  # trials.csv rows
    status: str = ""  # the manifest's status (completed, interrupted, running ...)
    error: str = ""


@dataclass
class TrialEdited(Message):
    """A trial's parameters were changed in the edit form (``spec`` replaces the trial named ``name``)."""

    name: str
    spec: object


@dataclass
class VerdictComputed(Message):
    """A session's verdict was computed in a worker (``verdict`` is a :class:`perfdesk.tui.verdict_data.Verdict`)."""

    path: Path
    verdict: object
