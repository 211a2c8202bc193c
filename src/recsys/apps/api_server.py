"""``recsys api``: the recommendations API (``recsys.serving.api``) under uvicorn, configured from settings.

The app is the one AWS Lambda runs behind its Function URL; here its runtime gets the database
and S3 settings from ``recsys.core.config`` (the local stack's endpoint and credentials) instead
of a Lambda environment.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from recsys.core import aws
from recsys.core.config import Settings
from recsys.local.firehose.source import write_json_atomically
from recsys.serving.api import PROBLEM_JSON, create_app, problem_body
from recsys.serving.database import DatabasePool, secret_connect_params
from recsys.serving.handler import HandlerConfig, ServingRuntime

# A query that runs longer than this is cancelled: a request answers 503 rather than hang.
STATEMENT_TIMEOUT_MS = 5000
log = logging.getLogger(__name__)
STATS_SECONDS = 5.0  # how often the request counts reach <state>/api.stats.json at most


def api_runtime(settings: Settings, pool_size: int) -> ServingRuntime:
    """The model cache and a pool of ``pool_size`` pgvector connections, from settings."""

    def params() -> dict:
        # RECSYS_DB_SECRET_ARN set: the secret's credentials (re-read after a rotation), as on Lambda
        secret = (
            secret_connect_params(aws.client("secretsmanager", settings), settings.db_secret_arn)
            if settings.db_secret_arn
            else {}
        )
        return settings.pg_params() | secret | {"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"}

    config = HandlerConfig(settings.artifacts_bucket, settings.pointer_ttl_seconds, settings.top_k)
    return ServingRuntime(config, s3=aws.client("s3", settings), database=DatabasePool(params, pool_size))


def api_port(settings: Settings) -> int:
    """The port of ``RECSYS_API_URL`` (where clients look for the API)."""
    parts = urlsplit(settings.api_url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def api_stats_path(settings: Settings) -> Path:
    """``<state>/api.stats.json``: the local API's request counts (what CloudWatch counts on AWS)."""
    return settings.state_dir / "api.stats.json"


class RequestCounter:
    """ASGI middleware counting answers by class (2xx/4xx/5xx), written to ``path`` every few seconds
    and at shutdown: `recsys status` reads the API's error rate from it."""

    def __init__(self, app, path: Path, every_seconds: float = STATS_SECONDS):
        self.app, self.path, self.every = app, path, every_seconds
        self.counts = {"requests": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
        self._lock = threading.Lock()
        self._written = 0.0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}  # an exception escaping the app answers 500

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.count(status["code"])

    def count(self, code: int) -> None:
        with self._lock:
            self.counts["requests"] += 1
            self.counts[f"{min(max(code // 100, 2), 5)}xx"] += 1
            due = code >= 500 or time.monotonic() - self._written >= self.every
        if due:
            self.write()

    def write(self) -> None:
        with self._lock:
            data = {**self.counts, "pid": os.getpid()}
            self._written = time.monotonic()
        try:
            write_json_atomically(self.path, data)
        except OSError as exc:  # a read-only state dir costs the counts, never a request
            log.warning("API request counts not written to %s: %s", self.path, exc)


class ProblemHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, whose own 400 (a request it cannot parse: bad request line,
    raw NUL or non-ASCII bytes, a malformed header) is problem JSON like the app's errors."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(problem_body(400, f"malformed HTTP request: {msg}")).encode()
        head = (
            f"HTTP/1.1 400 Bad Request\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.transport.close()


def server_config(app, host: str, port: int, **options) -> uvicorn.Config:
    """uvicorn's configuration for the API: the problem-JSON protocol, loopback unless told otherwise."""
    return uvicorn.Config(app, host=host, port=port, http=ProblemHttpProtocol, **options)


def serve_api(settings: Settings, host: str, port: int, pool_size: int, access_log: bool = True) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn installs the handlers, also in a background job)."""
    app = RequestCounter(
        create_app(api_runtime(settings, pool_size), settings.api_max_body_bytes), api_stats_path(settings)
    )
    app.write()  # zero counts at start: status tells a fresh API from none
    try:
        uvicorn.Server(
            server_config(app, host, port, access_log=access_log, log_level="info", timeout_graceful_shutdown=5)
        ).run()
    finally:
        app.write()
