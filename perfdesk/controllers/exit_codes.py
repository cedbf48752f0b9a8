"""perfdesk's exit codes: the one place they are defined (the CLI, headless runs and the desk all return these)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: a trial failed, or the regression gate fired
    FAILED = 1
    #: bad input: a profile, a session folder or an argument that cannot be used
    BAD_INPUT = 2
    #: Ctrl-C or SIGTERM (after what was done is saved and every target stopped)
    INTERRUPTED = 130


#: A session's final status -> its exit code.
BY_STATUS = {"completed": ExitCode.OK, "failed": ExitCode.FAILED, "interrupted": ExitCode.INTERRUPTED}
