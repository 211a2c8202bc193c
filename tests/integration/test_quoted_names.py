"""Database names that SQL must quote, but that the settings allow, work end to end: seeding (and a
reseed's staging swap), the apps' reads, the ETL over JDBC and dropping the MySQL database; loading
embeddings into a PostgreSQL database whose name has spaces, quotes and capitals.

The unit test tests/unit/test_sql_identifiers.py checks statically that no value is pasted into SQL
unquoted; this one checks the quoting really works on the servers.
"""

from __future__ import annotations

import os
import time

import pytest

from recsys.apps.source import product_catalogue, seed_configured_source, source_catalogue
from recsys.core.aws import client
from recsys.core.db import connect_mysql, connect_pg, drop_database
from recsys_seed import SeedSpec

SPEC = SeedSpec(customers=30, products=20, ratings=200, seed=5)


def _databases(settings) -> set[str]:
    conn = connect_mysql(settings, database="")
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        names = {name for (name,) in cur.fetchall()}
    conn.close()
    return names


@pytest.mark.spark
@pytest.mark.slow
def test_an_all_digit_mysql_database_name(stack, etl_spark):
    """All digits: allowed by MYSQL_DATABASE's rule, an error in SQL unless quoted (`CREATE DATABASE 123`)."""
    from recsys.pipeline.etl import run_etl

    name = f"{os.getpid()}{int(time.time())}"
    settings = stack.replace(MYSQL_DATABASE=name, RECSYS_DATALAKE_BUCKET=f"recsys-quoted-{name}")
    client("s3", settings).create_bucket(Bucket=settings.datalake_bucket)
    try:
        assert not seed_configured_source(settings, SPEC).skipped
        assert seed_configured_source(settings, SPEC).skipped
        assert not seed_configured_source(settings, SPEC, reset=True).skipped  # staging tables, one RENAME
        assert len(product_catalogue(settings)) == SPEC.products
        assert len(source_catalogue(settings).customers) == SPEC.customers
        manifest = run_etl(settings)
        assert manifest["row_count"] == SPEC.ratings
    finally:
        drop_database(settings)
    assert name not in _databases(settings)


def test_a_postgresql_database_name_with_spaces_and_quotes(stack, vectordb_publisher):
    from tests.support.fixtures_vectordb import fresh_pg_database

    from recsys.pipeline.vector_load import load_embeddings

    name = f'Recsys "quoted" db-{os.getpid()}'
    fresh_pg_database(stack, name)
    settings = stack.replace(PGDATABASE=name, RECSYS_ARTIFACTS_BUCKET=vectordb_publisher.bucket)
    try:
        model = vectordb_publisher.synthetic(items=40, users=10, dim=4, seed=9)
        assert load_embeddings(settings, model.version).switched
        with connect_pg(settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database(), (SELECT version FROM live_model)")
            assert cur.fetchone() == (name, model.version)
        conn.close()
    finally:
        admin = connect_pg(stack)
        admin.autocommit = True
        with admin.cursor() as cur:
            from psycopg2 import sql

            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()
