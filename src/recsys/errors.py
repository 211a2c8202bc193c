"""Errors that mean bad input or an unavailable service: the CLI prints them as one line."""
from __future__ import annotations

import psycopg2
from botocore.exceptions import EndpointConnectionError, NoCredentialsError

from recsys.config import Settings
from recsys.db import SourceUnavailable
from recsys.stack import StackError


class PipelineError(RuntimeError):
    """A stage refused its input or could not complete; the message names the problem."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (PipelineError, SourceUnavailable, StackError)
# services that are not there: said in one line with what to do, instead of a traceback
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (NoCredentialsError, EndpointConnectionError,
                                                       psycopg2.OperationalError)


def unavailable_message(exc: BaseException, settings: Settings) -> str:
    """One line naming the service that did not answer, where it was looked for, and the way out."""
    start = (f"start the local stack (`recsys stack up`; this shell looks for it in {settings.state_dir}, "
             "set RECSYS_STATE_DIR to use another)")
    if isinstance(exc, NoCredentialsError):
        return f"no AWS endpoint and no AWS credentials: {start}, or configure AWS credentials for real AWS"
    if isinstance(exc, EndpointConnectionError):
        return f"AWS endpoint {settings.endpoint_url or 'of ' + settings.region} does not answer: {start}"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"PostgreSQL not reachable at {settings.pghost}:{settings.pgport} ({first_line}): {start}"
