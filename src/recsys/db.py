"""Connections to the MySQL source and the PostgreSQL + pgvector serving database."""
from __future__ import annotations

import pymysql
import psycopg2

from recsys.config import Settings, load_settings


class SourceUnavailable(RuntimeError):
    """The MySQL-compatible source server does not answer."""


def connect_mysql(settings: Settings | None = None, *, database: str | None = None, autocommit: bool = False,
                  **kwargs):
    """A pymysql connection to the source; ``database=""`` connects without selecting one."""
    s = settings or load_settings()
    params = s.mysql_params(database)
    if not params["database"]:
        params.pop("database")
    try:
        return pymysql.connect(connect_timeout=5, autocommit=autocommit, charset="utf8mb4", **params, **kwargs)
    except pymysql.err.OperationalError as exc:
        raise SourceUnavailable(
            f"MySQL source not reachable at {s.mysql_host}:{s.mysql_port} as {s.mysql_user!r}: {exc.args[-1]}. "
            "Start a MySQL-compatible server there (e.g. `docker compose up -d mysql`, or on Debian "
            "`start-stop-daemon --start --background --exec /usr/sbin/mariadbd`) or set MYSQL_HOST/MYSQL_PORT."
        ) from exc


def connect_pg(settings: Settings | None = None, **kwargs):
    """A psycopg2 connection to the PostgreSQL + pgvector database."""
    s = settings or load_settings()
    return psycopg2.connect(s.pg_dsn, connect_timeout=5, **kwargs)


def drop_database(settings: Settings) -> None:
    """Drop the configured MySQL database (scratch databases of tests and benchmarks)."""
    conn = connect_mysql(settings, database="")
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{settings.mysql_database}`")
    finally:
        conn.close()
