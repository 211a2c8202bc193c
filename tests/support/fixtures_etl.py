"""Fixtures of the ETL stage: one shared local SparkSession, the job module, a first published run,
and helpers that bend the seeded source (orphans, out-of-range ratings) and restore it."""

from __future__ import annotations

from contextlib import contextmanager

import pytest


@pytest.fixture(scope="session")
def etl_spark(stack):
    """ONE SparkSession for all ETL tests (local[2], 2 shuffle partitions, no UI), with the JDBC jar.

    ``run_etl`` builds its session with ``getOrCreate()``, so it runs on this one.
    """
    from recsys.pipeline.etl import local_spark_session

    spark = local_spark_session(master="local[2]", driver_memory="1g", shuffle_partitions=2)
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()


@pytest.fixture(scope="session")
def etl_job():
    """glue/etl_job.py loaded as a module (the same object ``run_etl`` runs)."""
    from recsys.pipeline.etl import load_job_module

    return load_job_module()


@pytest.fixture(scope="session")
def etl_first_manifest(stack, seeded, etl_spark):
    """The manifest of a first ETL run with default arguments on the lab-scale seeded source."""
    from recsys.pipeline.etl import run_etl

    return run_etl(stack)


@pytest.fixture
def etl_published(stack, etl_first_manifest):
    """The currently published manifest (tests may have republished since the first run)."""
    from recsys.pipeline.dataset import read_manifest

    return read_manifest(stack)


@pytest.fixture
def etl_source_sql(stack, seeded):
    """Run SQL against the test source as a context manager that undoes it: ``with etl_source_sql(do, undo):``.

    FK and CHECK enforcement are off in that session so tests can plant what the schema forbids.
    """
    from recsys.core.db import connect_mysql

    @contextmanager
    def bend(do: list[tuple[str, tuple]], undo: list[tuple[str, tuple]]):
        conn = connect_mysql(stack)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION foreign_key_checks = 0, check_constraint_checks = 0")
                for sql, params in do:
                    cur.execute(sql, params)
            conn.commit()
            yield conn
        finally:
            with conn.cursor() as cur:
                for sql, params in undo:
                    cur.execute(sql, params)
            conn.commit()
            conn.close()

    return bend
