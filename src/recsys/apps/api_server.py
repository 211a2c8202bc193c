"""``recsys api``: the recommendations API (``recsys.serving.api``) under uvicorn, configured from settings.

The app is the one AWS Lambda runs behind its Function URL; here its runtime gets the database
and S3 settings from ``recsys.core.config`` (the local stack's endpoint and credentials) instead
of a Lambda environment.
"""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from recsys.serving.api import PROBLEM_JSON, create_app, problem_body
from recsys.serving.database import DatabasePool
from recsys.serving.handler import HandlerConfig, ServingRuntime
from recsys.core import aws
from recsys.core.config import Settings

# A query that runs longer than this is cancelled: a request answers 503 rather than hang.
STATEMENT_TIMEOUT_MS = 5000


def api_runtime(settings: Settings, pool_size: int) -> ServingRuntime:
    """The model cache and a pool of ``pool_size`` pgvector connections, from settings."""
    def params() -> dict:
        return settings.pg_params() | {"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"}

    config = HandlerConfig(settings.artifacts_bucket, settings.pointer_ttl_seconds, settings.top_k)
    return ServingRuntime(config, s3=aws.client("s3", settings), database=DatabasePool(params, pool_size))


def api_port(settings: Settings) -> int:
    """The port of ``RECSYS_API_URL`` (where clients look for the API)."""
    parts = urlsplit(settings.api_url)
    return parts.port or (443 if parts.scheme == "https" else 80)


class ProblemHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, whose own 400 (a request it cannot parse: bad request line,
    raw NUL or non-ASCII bytes, a malformed header) is problem JSON like the app's errors."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(problem_body(400, f"malformed HTTP request: {msg}")).encode()
        head = (f"HTTP/1.1 400 Bad Request\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {len(body)}\r\n"
                "connection: close\r\n\r\n").encode()
        self.transport.write(head + body)
        self.transport.close()


def server_config(app, host: str, port: int, **options) -> uvicorn.Config:
    """uvicorn's configuration for the API: the problem-JSON protocol, loopback unless told otherwise."""
    return uvicorn.Config(app, host=host, port=port, http=ProblemHttpProtocol, **options)


def serve_api(settings: Settings, host: str, port: int, pool_size: int, access_log: bool = True) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn installs the handlers, also in a background job)."""
    app = create_app(api_runtime(settings, pool_size), settings.api_max_body_bytes)
    uvicorn.Server(server_config(app, host, port, access_log=access_log, log_level="info",
                                 timeout_graceful_shutdown=5)).run()
