"""Errors that mean bad input, bad configuration or an unavailable service.

Every one is a ``RecsysError``: the CLI prints its message as one line, without a traceback.
"""

from __future__ import annotations


class RecsysError(RuntimeError):
    """An expected failure; the message names the problem and, where there is one, the way out."""


class PipelineError(RecsysError):
    """A stage refused its input or could not complete."""


class ConfigError(RecsysError):
    """A setting has a value outside what it allows."""


class SourceUnavailable(RecsysError):
    """The MySQL-compatible source server does not answer."""


class StackError(RecsysError):
    """A local stack service could not be started or reached."""
