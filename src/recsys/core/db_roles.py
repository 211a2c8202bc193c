"""The vector DB's least-privilege roles (sql/roles.sql): created, and given their passwords, by a
connection of the master (RDS) or the local superuser. The pipeline's DatabaseRoles stage and
``recsys stack up`` both call ``apply_roles``; nothing else connects as the master."""

from __future__ import annotations

from collections.abc import Mapping

from psycopg2 import sql

from recsys.contracts import DB_LOADER_ROLE, DB_ROLES, DB_SERVING_ROLE
from recsys.core.config import PROJECT_ROOT
from recsys.core.db import PgConnection
from recsys.core.errors import ConfigError

SQL_DIR = PROJECT_ROOT / "sql"
SCRIPTS = (SQL_DIR / "pgvector.sql", SQL_DIR / "roles.sql")  # the serving schema first: roles.sql grants on it
# Where a pipeline task finds a role's password to set (the dbroles task definition's secrets).
PASSWORD_ENV = {DB_LOADER_ROLE: "RECSYS_DB_LOADER_PASSWORD", DB_SERVING_ROLE: "RECSYS_DB_SERVING_PASSWORD"}


def passwords_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Each role's password from ``PASSWORD_ENV``; ConfigError naming what is missing."""
    missing = [name for name in PASSWORD_ENV.values() if not environ.get(name)]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not set: the database roles' passwords (their secrets on AWS)")
    return {role: environ[name] for role, name in PASSWORD_ENV.items()}


def apply_roles(conn: PgConnection, passwords: Mapping[str, str]) -> None:
    """Apply the serving schema and the roles, then let each role log in with its password. Committed."""
    if set(passwords) != set(DB_ROLES):
        raise ValueError(f"passwords for exactly {', '.join(DB_ROLES)} expected")
    with conn.cursor() as cur:
        for script in SCRIPTS:
            cur.execute(script.read_text())
        for role, password in passwords.items():
            cur.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), (password,))
    conn.commit()
