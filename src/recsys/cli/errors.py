"""Services that are not there, said in one line with where the CLI looked and what to do."""

from __future__ import annotations

import psycopg2
from botocore.exceptions import EndpointConnectionError, NoCredentialsError

from recsys.core.config import load_settings
from recsys.core.errors import ConfigError

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    NoCredentialsError,
    EndpointConnectionError,
    psycopg2.OperationalError,
)


def unavailable_message(exc: BaseException) -> str:
    """One line naming the service that did not answer, where it was looked for, and the way out."""
    try:
        settings = load_settings()
    except ConfigError as bad:
        return str(bad)
    start = (
        f"start the local stack (`recsys stack up`; this shell looks for it in {settings.state_dir}, "
        "set RECSYS_STATE_DIR to use another)"
    )
    if isinstance(exc, NoCredentialsError):
        return f"no AWS endpoint and no AWS credentials: {start}, or configure AWS credentials for real AWS"
    if isinstance(exc, EndpointConnectionError):
        return f"AWS endpoint {settings.endpoint_url or 'of ' + settings.region} does not answer: {start}"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"PostgreSQL not reachable at {settings.pg_host}:{settings.pg_port} ({first_line}): {start}"
