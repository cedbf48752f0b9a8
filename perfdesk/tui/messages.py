"""Messages of the desk: small dataclasses named as facts, posted up from panes and from thread workers.

``post_message`` is thread-safe, so a worker reports what happened with one of these and the app (on its own loop)
updates the panes. Textual's :class:`Message` supports dataclasses (its ``__post_init__`` sets it up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from perfdesk.controllers.results import RequestResult
    from perfdesk.tui.chart_data import ChartData
    from perfdesk.tui.verdict_data import Verdict


@dataclass
class JobFinished(Message):
    """A control job (deploy, tear down, force cold, run trials) ended in a worker thread."""

    job: str
    status: str  # completed | failed | stopped
    detail: str = ""


@dataclass
class ImageAnswered(Message):
    """One target answered the 'try one image' request."""

    target: str
    result: RequestResult


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
    data: ChartData | None = None
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
    """A session's verdict was computed in a worker."""

    path: Path
    verdict: Verdict
