"""The vector DB's least-privilege roles (sql/roles.sql) on the embedded PostgreSQL, as `recsys stack up`
creates them: the serving role reads the live tables and writes nothing; the loader role creates and swaps
the versioned tables and reads nothing else."""

from __future__ import annotations

from contextlib import closing
from dataclasses import replace

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql

from recsys.contracts import DB_LOADER_ROLE, DB_SERVING_ROLE
from recsys.core.db import connect_pg
from recsys.core.db_roles import apply_roles
from recsys.local.stack import EmbeddedStack


@pytest.fixture(scope="module", autouse=True)
def roles_in_place(stack):
    """The roles as the pipeline's DatabaseRoles stage leaves them before every run: earlier tests load
    versions as the superuser (as `recsys load-embeddings` does with the stack's default PGUSER), whose
    tables the stage hands to the loader and opens to the serving role."""
    with closing(connect_pg(stack)) as conn:
        apply_roles(conn, EmbeddedStack(stack).role_passwords())


def connect_as(settings, role: str):
    password = EmbeddedStack(settings).role_passwords()[role]
    return connect_pg(replace(settings, pg_user=role, pg_password=password))


@pytest.fixture(scope="module")
def master_table(stack):
    """A table of the superuser's (as the master's own tables on RDS): no role was granted anything on it."""
    with closing(connect_pg(stack)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS recsys_test_master_only (note text)")
        cur.execute("INSERT INTO recsys_test_master_only VALUES ('not for the roles')")
        conn.commit()
    yield "recsys_test_master_only"
    with closing(connect_pg(stack)) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE recsys_test_master_only")
        conn.commit()


def refused(conn, statement: str) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    except psycopg2.errors.InsufficientPrivilege:
        conn.rollback()
        return True
    conn.rollback()
    return False


def test_serving_role_reads_the_live_tables(stack):
    with closing(connect_as(stack, DB_SERVING_ROLE)) as conn, conn.cursor() as cur:
        for table in ("item_emb", "user_emb", "user_rated", "live_model"):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            assert cur.fetchone()[0] >= 0


@pytest.mark.parametrize(
    "statement",
    [
        (
            "INSERT INTO live_model (version, dimension, item_count, user_count, hnsw_m, hnsw_ef_construction, "
            "source_uri) VALUES ('x', 1, 0, 0, 16, 64, 's3://x/')"
        ),
        "DELETE FROM user_emb",
        "UPDATE item_emb SET id = id",
        "DROP TABLE item_emb",
        "CREATE TABLE item_emb_stolen (id int)",
        "ALTER TABLE live_model RENAME TO live_model_old",
    ],
)
def test_serving_role_is_refused_a_write(stack, statement):
    with closing(connect_as(stack, DB_SERVING_ROLE)) as conn:
        assert refused(conn, statement)


def test_serving_role_is_refused_the_masters_tables(stack, master_table):
    with closing(connect_as(stack, DB_SERVING_ROLE)) as conn:
        assert refused(conn, f"SELECT * FROM {master_table}")


def test_loader_role_is_refused_a_read_of_anything_but_its_tables(stack, master_table):
    with closing(connect_as(stack, DB_LOADER_ROLE)) as conn:
        assert refused(conn, f"SELECT * FROM {master_table}")
        assert refused(conn, f"INSERT INTO {master_table} VALUES ('x')")
        assert refused(conn, "SELECT pg_read_file('postgresql.conf')")
        assert refused(conn, "CREATE ROLE recsys_test_intruder")


def test_loader_role_creates_and_swaps_versioned_tables_the_serving_role_then_reads(stack):
    """What the loader's switch does, in miniature: a new versioned table renamed into place (and back)."""
    with closing(connect_as(stack, DB_LOADER_ROLE)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM live_model")  # its own
        cur.execute("CREATE TABLE user_rated_test_v1 (user_id integer NOT NULL, item_id varchar NOT NULL)")
        cur.execute("INSERT INTO user_rated_test_v1 VALUES (1, 'S10_1678')")
        cur.execute("ALTER TABLE user_rated RENAME TO user_rated_test_old")
        cur.execute("ALTER TABLE user_rated_test_v1 RENAME TO user_rated")
        conn.commit()
    try:
        with closing(connect_as(stack, DB_SERVING_ROLE)) as conn, conn.cursor() as cur:
            cur.execute("SELECT user_id, item_id FROM user_rated")  # the default privileges reach the new table
            assert cur.fetchall() == [(1, "S10_1678")]
    finally:
        with closing(connect_as(stack, DB_LOADER_ROLE)) as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE user_rated")
            cur.execute("ALTER TABLE user_rated_test_old RENAME TO user_rated")
            conn.commit()
