"""Errors raised by the inference module.

:class:`InferenceError` is a configuration or runtime failure (unknown model, bad weights, missing runtime): the
server agent and the function handler report it as a 5xx / failed deployment. :class:`BadInput` is the caller's
fault (undecodable image, malformed request body): report it as a 4xx with the message as is.
"""

from __future__ import annotations


class InferenceError(Exception):
    """The engine could not be built or could not run; the message says what failed and what to do."""


class BadInput(InferenceError):
    """The request or one of its images is invalid; the message is safe to return to the client (a 4xx)."""
