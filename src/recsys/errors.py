"""Errors that mean bad input or an unavailable service: the CLI prints them as one line."""
from __future__ import annotations

from recsys.db import SourceUnavailable
from recsys.stack import StackError


class PipelineError(RuntimeError):
    """A stage refused its input or could not complete; the message names the problem."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (PipelineError, SourceUnavailable, StackError)
