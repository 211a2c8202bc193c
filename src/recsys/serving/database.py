"""One pgvector connection, reused across invocations and reopened after a failure.

Credentials: libpq's own ``PG*`` environment variables (local), or, when ``RECSYS_DB_SECRET_ARN`` is
set, the RDS-managed Secrets Manager secret (``username``/``password``, and ``host``/``port``/``dbname``
when the secret has them). The boto3 client honours ``AWS_ENDPOINT_URL`` natively.

Rotation: RDS rotates the managed secret's password; sessions already open keep working, but the next
connection with the cached password fails authentication. ``ConnectParams`` then re-reads the secret
once (one read however many connections fail together) and the connection is retried with it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions

from recsys.contracts import ENV_DB_SECRET_ARN

log = logging.getLogger(__name__)
T = TypeVar("T")

# errors that mean "the connection or server went away", as opposed to a bug in a query
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)
CONNECT_TIMEOUT_SECONDS = 3


class DatabaseUnavailable(RuntimeError):
    """pgvector could not be reached, even after reconnecting."""


def secret_connect_params(secrets_client: Any, secret_arn: str) -> dict[str, str]:
    """psycopg2 connect keywords from an RDS-managed secret."""
    secret = json.loads(secrets_client.get_secret_value(SecretId=secret_arn)["SecretString"])
    params = {"user": secret["username"], "password": secret["password"]}
    for key, name in (("host", "host"), ("port", "port"), ("dbname", "dbname")):
        if secret.get(key):
            params[name] = str(secret[key])
    return params


# SQLSTATE 28P01 invalid_password / 28000 invalid_authorization_specification: libpq reports a failed
# login as an OperationalError without a pgcode, so the server's message is what tells it apart.
AUTHENTICATION_FAILURES = ("password authentication failed", "pam authentication failed", "invalid_password", "28P01")


def is_authentication_failure(exc: BaseException) -> bool:
    """Whether a connect error says the credentials were refused (a rotated password)."""
    text = str(exc).lower()
    return isinstance(exc, psycopg2.OperationalError) and any(m.lower() in text for m in AUTHENTICATION_FAILURES)


class ConnectParams:
    """The connect keywords of ``provider``, fetched once and shared by every connection (thread-safe).

    ``refresh(generation)`` fetches them again only if nobody did since ``generation`` was handed out,
    so connections refused together after a rotation cause one secret read.
    """

    def __init__(self, provider: Callable[[], dict[str, str]]):
        self._provider = provider
        self._lock = threading.Lock()
        self._params: dict[str, str] | None = None
        self._generation = 0

    def get(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            if self._params is None:
                self._params = self._provider()
            return self._generation, dict(self._params)

    def refresh(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._params = self._provider()
                self._generation += 1


def _connect_with(params: dict[str, str]) -> psycopg2.extensions.connection:
    keywords: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **params}
    conn: psycopg2.extensions.connection = psycopg2.connect(**keywords)
    return conn


class Database:
    """Lazily opened, reused connection; ``run`` retries once on a fresh connection, and a connection
    refused for its credentials is retried once with credentials read again (``ConnectParams``)."""

    def __init__(self, params: ConnectParams | Callable[[], dict[str, str]]):
        self._params = params if isinstance(params, ConnectParams) else ConnectParams(params)
        self._conn: psycopg2.extensions.connection | None = None

    def _connect(self) -> psycopg2.extensions.connection:
        generation, params = self._params.get()
        try:
            conn = _connect_with(params)
        except psycopg2.OperationalError as exc:
            if not is_authentication_failure(exc):
                raise
            log.warning("pgvector refused the credentials (rotated?): reading them again")
            self._params.refresh(generation)
            conn = _connect_with(self._params.get()[1])
        conn.autocommit = False  # callers run each batch in one transaction (vector_store.consistent_read)
        return conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                self._conn.close()
        self._conn = None

    def run(self, work: Callable[[psycopg2.extensions.connection], T]) -> T:
        """``work(conn)``; on a connection error reconnect once, then raise ``DatabaseUnavailable``."""
        for attempt in (1, 2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                elif self._conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                    self._conn.rollback()  # never start a batch inside a previous batch's leftovers
                return work(self._conn)
            except CONNECTION_ERRORS as exc:
                self.close()
                if attempt == 2:
                    raise DatabaseUnavailable(f"pgvector unreachable: {str(exc).strip()}") from exc
                log.warning("pgvector connection failed (%s); reconnecting", str(exc).strip())
        raise AssertionError("unreachable")


class DatabasePool:
    """``size`` reusable ``Database`` connections shared by threads (the API under uvicorn).

    ``run`` borrows one for the duration of ``work`` (so each keeps ``Database``'s reconnect-once
    behaviour) and raises ``DatabaseUnavailable`` when none is free within ``wait_seconds``.
    Connections open lazily and share one ``ConnectParams``: one Secrets Manager call, and one more
    per rotation.
    """

    def __init__(self, params_provider: Callable[[], dict[str, str]], size: int, wait_seconds: float = 10.0):
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got {size}")
        shared = ConnectParams(params_provider)
        self._idle: queue.LifoQueue[Database] = queue.LifoQueue()
        for _ in range(size):
            self._idle.put(Database(shared))
        self._all = list(self._idle.queue)
        self._wait = wait_seconds

    def run(self, work: Callable[[psycopg2.extensions.connection], T]) -> T:
        try:
            database = self._idle.get(timeout=self._wait)
        except queue.Empty:
            raise DatabaseUnavailable(f"all {len(self._all)} database connections busy for {self._wait:g} s") from None
        try:
            return database.run(work)
        finally:
            self._idle.put(database)

    def close(self) -> None:
        for database in self._all:
            database.close()


def params_from_environment(secrets_client_factory: Callable[[], object]) -> Callable[[], dict[str, str]]:
    """A provider of connect keywords: the secret when ``RECSYS_DB_SECRET_ARN`` is set, else libpq's PG*."""

    def provide() -> dict[str, str]:
        arn = os.environ.get(ENV_DB_SECRET_ARN)
        if arn:
            return secret_connect_params(secrets_client_factory(), arn)
        return {}  # libpq reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE itself

    return provide
