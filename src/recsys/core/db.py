"""Connections to the MySQL source and the PostgreSQL + pgvector serving database."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions
import pymysql
import pymysql.connections

from recsys.core.config import Settings
from recsys.core.errors import SourceUnavailable

PgConnection = psycopg2.extensions.connection


def connect_mysql(
    settings: Settings, *, database: str | None = None, autocommit: bool = False, **kwargs: Any
) -> pymysql.connections.Connection[Any]:
    """A pymysql connection to the source; ``database=""`` connects without selecting one."""
    try:
        return pymysql.connect(
            connect_timeout=5, autocommit=autocommit, charset="utf8mb4", **settings.mysql_params(database), **kwargs
        )
    except pymysql.err.OperationalError as exc:
        raise SourceUnavailable(
            f"MySQL source not reachable at {settings.mysql_host}:{settings.mysql_port} as {settings.mysql_user!r}: "
            f"{exc.args[-1]}. Start a MySQL-compatible server there (e.g. `docker compose up -d mysql`, or on "
            "Debian `start-stop-daemon --start --background --exec /usr/sbin/mariadbd`) or set MYSQL_HOST/MYSQL_PORT."
        ) from exc


def connect_pg(settings: Settings, **kwargs: Any) -> PgConnection:
    """A psycopg2 connection to the PostgreSQL + pgvector database."""
    conn: PgConnection = psycopg2.connect(connect_timeout=5, **settings.pg_params(), **kwargs)
    return conn


def quote_mysql_identifier(name: str) -> str:
    """A MySQL identifier in backticks, embedded backticks doubled (names from settings go through this)."""
    if "\x00" in name:
        raise ValueError("a MySQL identifier cannot contain NUL")
    return "`" + name.replace("`", "``") + "`"


def drop_database(settings: Settings) -> None:
    """Drop the configured MySQL database (scratch databases of tests and benchmarks)."""
    conn = connect_mysql(settings, database="")
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql_identifier(settings.mysql_database)}")
    finally:
        conn.close()
